"""`itemrep rec train` refuses a dataset without validation or test interactions (issue 11, item 17).

Early stopping reads the validation split and the scores come from the test split: with either
empty, every metric was 0.0 and the command exited 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from itemrep.recsys.cli import app
from itemrep.recsys.data import RecDataError, RecDataset
from itemrep.recsys.trainer import Trainer

runner = CliRunner()
EMPTY = np.zeros((0, 2), np.int64)


def _with_splits(synth: RecDataset, valid: bool, test: bool) -> RecDataset:
    return RecDataset(synth.n_users, synth.n_items, synth.train, synth.valid if valid else EMPTY, synth.test if test else EMPTY,
                      {}, name="nosplit")  # fmt: skip


def test_train_refuses_empty_validation_and_test_splits(tmp_path, synth):
    data = tmp_path / "data"
    _with_splits(synth, valid=False, test=False).save(data)
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(data), "--model", "bpr", "--out", str(out), "--epochs", "2", "--no-progress"])
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    assert "validation and test splits are empty" in msg and "interactions.tsv" in msg and "x_label 1 or 2" in msg
    assert "Traceback" not in r.output
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(("valid", "test", "words"), [(False, True, "validation split is empty"), (True, False, "test split is empty")])
def test_trainer_refuses_one_empty_split(synth, valid, test, words):
    with pytest.raises(RecDataError, match=words):
        Trainer("bpr", {"epochs": 1, "threads": 1}, progress=False).fit(_with_splits(synth, valid, test))
