import json

import pytest
from typer.testing import CliRunner

from itemrep.recsys.cli import app
from itemrep.recsys.features import concept_text

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "recsys"

runner = CliRunner()


def test_train_writes_metrics(tmp_path, synth_dir):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 3\ntrain_batch_size: 256\nthreads: 1\nknn_k: 5\n")
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(synth_dir), "--model", "lirdrec", "--out", str(out), "--config", str(cfg), "--seed", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert {"valid", "test", "best_epoch"} <= set(m)
    assert "recall@20" in m["test"] and 1 <= m["best_epoch"] <= 3
    assert (out / "best.pt").exists() and (out / "topk_test.npz").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 2


def test_train_bad_inputs(tmp_path, synth_dir):
    r = runner.invoke(app, ["train", "--data", str(synth_dir), "--model", "nope", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown model" in r.output
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "none"), "--model", "bpr", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "not found" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    r = runner.invoke(app, ["train", "--data", str(synth_dir), "--model", "bpr", "--out", str(tmp_path / "r"), "--config", str(bad)])
    assert r.exit_code == 2 and "mapping" in r.output


def test_prepare_converters(tmp_path):
    r = runner.invoke(app, ["prepare", "amazon-baby", "--src", str(FIXTURES / "baby"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "interactions.tsv").exists()
    r = runner.invoke(app, ["prepare", "movielens-100k", "--src", str(FIXTURES / "ml"), "--out", str(tmp_path / "m"), "--k-core", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["prepare", "hm", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "h")])
    assert r.exit_code == 2 and "not found" in r.output


def test_concept_text_format():
    from itemrep.concepts.schema import Concept, ConceptHierarchy

    h = ConceptHierarchy(
        item_id="1",
        concepts=[
            Concept(slot="color", value="red"),
            Concept(slot="category", value="t-shirt"),
            Concept(slot="promo", value="sale", level="auxiliary"),
            Concept(slot="brand", value="acme"),
            Concept(slot="color", value="red"),
            Concept(slot="name", value="leftover words"),
        ],
    )
    assert concept_text(h) == "category: t-shirt; brand: acme; color: red"
    assert concept_text(h, "genre: drama") == "category: t-shirt; brand: acme; color: red; genre: drama"
    assert concept_text(None, "genre: drama") == "genre: drama"
    assert "name: leftover words" in concept_text(h, skip_slots=())


def test_features_text_and_concept(tmp_path):
    runner.invoke(app, ["prepare", "hm", "--src", str(FIXTURES / "hm"), "--out", str(tmp_path / "h"), "--min-user", "3"])
    r = runner.invoke(app, ["features", str(tmp_path / "h"), "--modalities", "text,concept"])
    assert r.exit_code == 0, r.output
    import numpy as np

    t = np.load(tmp_path / "h" / "feat_text.npy")
    c = np.load(tmp_path / "h" / "feat_concept.npy")
    n = len((tmp_path / "h" / "items.csv").read_text().strip().splitlines()) - 1
    assert t.shape == (n, 512) and c.shape == (n, 512)
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-4)
    assert "colour group" in (tmp_path / "h" / "concept_text.txt").read_text()
    r = runner.invoke(app, ["features", str(tmp_path / "h"), "--modalities", "audio"])
    assert r.exit_code == 2 and "unknown modalities" in r.output


@pytest.mark.slow
def test_features_image_records_failures(tmp_path):
    runner.invoke(app, ["prepare", "movielens-100k", "--src", str(FIXTURES / "ml"), "--out", str(tmp_path / "m"), "--k-core", "3"])
    r = runner.invoke(app, ["features", str(tmp_path / "m"), "--modalities", "image"])
    assert r.exit_code == 0, r.output
    import numpy as np

    x = np.load(tmp_path / "m" / "feat_image.npy")
    fails = json.loads((tmp_path / "m" / "feature_failures.json").read_text())
    assert x.shape[1] == 1280
    assert {f["item_id"] for f in fails} >= {"5", "7"}  # no poster / unreadable poster
    assert any(np.linalg.norm(x, axis=1) == 0)
