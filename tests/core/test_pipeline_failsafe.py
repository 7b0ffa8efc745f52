"""Fail-safe behaviour of the dedup pipeline and CLI (issue #11 items 4, 11, 14, 15, 19)."""

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.catalog import Catalog
from itemrep.cli import app
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import Concept, ConceptHierarchy
from itemrep.dedup.pipeline import FITRep
from itemrep.errors import ModelDirError

FIX = Path(__file__).resolve().parents[1] / "fixtures"
runner = CliRunner()


@pytest.mark.parametrize("value", ["nan", "-5", "0", "2.5"])
def test_threshold_outside_range_is_rejected(tmp_path, value):
    r = runner.invoke(app, ["dedup", str(FIX / "catalog_small.csv"), "--out", str(tmp_path / "o"), "-q", "--threshold", value])
    assert r.exit_code == 2 and "--threshold must be in (0, 2]" in r.output
    assert not (tmp_path / "o" / "clusters.parquet").exists()


def test_out_that_is_a_file_fails_before_work(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = runner.invoke(app, ["dedup", str(FIX / "catalog_small.csv"), "--out", str(f), "-q"])
    assert r.exit_code == 2 and "not a directory" in r.output and "Traceback" not in r.output


def test_model_naming_a_sentence_transformer_needs_the_users_consent(tmp_path):
    m = json.loads((resources.files("itemrep") / "data" / "default_model.json").read_text())
    m["params"]["text_encoder"] = "st:/some/model"
    (tmp_path / "model.json").write_text(json.dumps(m))
    with pytest.raises(ModelDirError, match="--text-encoder st:/some/model"):
        FITRep.load(tmp_path)
    assert FITRep.load(tmp_path, text_encoder="st:/some/model").text_encoder == "st:/some/model"


class _SameAnswer(ConceptExtractor):
    name, version = "same", "1"

    def extract_one(self, item):
        return ConceptHierarchy(item_id=item.item_id, extractor=self.identifier,
                                concepts=[Concept(slot="category", value="botol", level="primary")])


def test_degenerate_extractor_output_is_reported(tmp_path):
    cat = Catalog.load(FIX / "catalog_small.csv")
    run = FITRep.default(extractor=_SameAnswer(), images="off").dedup(cat).run
    assert run["degenerate_extractor"]["items"] == len(cat)
    assert FITRep.default(images="off").dedup(cat).run["degenerate_extractor"] is None


def test_model_slots_absent_from_catalog_are_named(tmp_path):
    rows = pd.read_csv(FIX / "catalog_small.csv").drop(columns=["phash"])
    p = tmp_path / "c.csv"
    rows.to_csv(p, index=False)
    r = runner.invoke(app, ["dedup", str(p), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    assert "phash (α" in r.output and "renormalising" in r.output


def test_full_disk_leaves_no_partial_output(tmp_path, monkeypatch):
    """A write that fails half-way (ENOSPC on concepts.parquet) leaves the earlier outputs untouched
    and no half-written file: outputs are all there or none is."""
    import errno

    import pyarrow.parquet as pq

    cat = Catalog.load(FIX / "catalog_small.csv", label_col="label")
    res = FITRep.default(images="off").dedup(cat)
    out = tmp_path / "out"
    res.write(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError, match="No space"):
        res.write(out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".itemrep-tmp")]
