"""End to end: `itemrep fit` and `itemrep dedup` on the committed example catalog."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.cli import app

FIX = Path(__file__).resolve().parents[1] / "fixtures"
runner = CliRunner()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    r = runner.invoke(app, ["fit", str(FIX / "catalog_small.csv"), "--label-col", "label", "--model-dir", str(d), "--quiet"])
    assert r.exit_code == 0, r.output
    return d


def test_fit_writes_alpha_and_tau(fitted):
    m = json.loads((fitted / "model.json").read_text())
    alpha = m["fusion"]["alpha"]
    assert abs(sum(alpha.values()) - 1) < 1e-6 and all(v >= 0 for v in alpha.values())
    assert 0.05 < m["params"]["tau"] < 1.0
    assert m["fit"]["train_mean_item_f1"] > 0.8


def test_dedup_outputs_and_quality(fitted, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["dedup", str(FIX / "catalog_small.csv"), "--out", str(out), "--model-dir", str(fitted),
                            "--label-col", "label", "--quiet"])
    assert r.exit_code == 0, r.output
    cl = pd.read_parquet(out / "clusters.parquet")
    assert list(cl.columns) == ["item_id", "cluster_id", "representative_id", "score"]
    assert len(cl) == 43 and cl["item_id"].is_unique
    assert all(isinstance(x, str) for x in cl["cluster_id"])
    # every representative belongs to its own cluster
    rep_cluster = dict(zip(cl["item_id"], cl["cluster_id"]))
    assert all(rep_cluster[r] == c for r, c in zip(cl["representative_id"], cl["cluster_id"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mean_item_f1"] > 0.85
    run = json.loads((out / "run.json").read_text())
    assert {"extract", "encode", "reduce", "cluster"} <= set(run["stages"])
    assert all("peak_rss_mb" in v and "seconds" in v for v in run["stages"].values())
    assert run["failed_items"] == 0 and "numpy" in run["versions"]
    concepts = pd.read_parquet(out / "concepts.parquet")
    assert set(concepts["item_id"]) == set(cl["item_id"])
    assert {"primary", "auxiliary"} <= set(concepts["level"].dropna())
    edges = pd.read_parquet(out / "edges.parquet")
    terms = edges[[c for c in edges.columns if c.startswith("term_")]].sum(axis=1)
    assert (terms - edges["similarity"]).abs().max() < 1e-4  # similarity = Σ α_k cos_k, shown per slot


def test_same_clusters_when_rows_shuffled(fitted, tmp_path):
    df = pd.read_csv(FIX / "catalog_small.csv", dtype=str, keep_default_na=False)
    df.sample(frac=1.0, random_state=7).to_csv(tmp_path / "shuffled.csv", index=False)
    outs = []
    for name in ("catalog_small.csv", "shuffled.csv"):
        src = FIX / name if name == "catalog_small.csv" else tmp_path / name
        out = tmp_path / f"o_{name}"
        r = runner.invoke(app, ["dedup", str(src), "--out", str(out), "--model-dir", str(fitted), "--quiet"])
        assert r.exit_code == 0, r.output
        outs.append(pd.read_parquet(out / "clusters.parquet").set_index("item_id").sort_index())
    pd.testing.assert_frame_equal(outs[0][["cluster_id", "representative_id"]], outs[1][["cluster_id", "representative_id"]])


def test_clear_errors_not_tracebacks(tmp_path):
    r = runner.invoke(app, ["dedup", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "catalog file not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["fit", str(FIX / "catalog_small.csv"), "--label-col", "nope", "--model-dir", str(tmp_path)])
    assert r.exit_code == 2 and "column 'nope'" in r.output
    r = runner.invoke(app, ["dedup", str(FIX / "catalog_small.csv"), "--out", str(tmp_path / "o"), "--model-dir", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no model.json" in r.output


def test_per_item_failures_are_reported(tmp_path):
    shutil.copy(FIX / "catalog_small.csv", tmp_path / "c.csv")
    text = (tmp_path / "c.csv").read_text().replace("c3d4e5f60718293b", "not-a-hash")
    (tmp_path / "c.csv").write_text(text)
    out = tmp_path / "o"
    r = runner.invoke(app, ["dedup", str(tmp_path / "c.csv"), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    fails = pd.read_csv(out / "failures.csv")
    assert list(fails["item_id"]) == ["p002"] and "malformed phash" in fails["message"][0]
    assert "p002" in set(pd.read_parquet(out / "clusters.parquet")["item_id"])
    assert json.loads((out / "run.json").read_text())["failed_items"] == 1


@pytest.mark.slow
def test_fit_and_dedup_with_images(tmp_path):
    """The bundled Grocery photos: image slots are built, weighted by fit, and explained per edge."""
    cat = Path(__file__).resolve().parents[2] / "examples" / "grocery" / "catalog.csv"
    model = tmp_path / "m"
    r = runner.invoke(app, ["fit", str(cat), "--label-col", "label", "--model-dir", str(model), "--quiet"])
    assert r.exit_code == 0, r.output
    alpha = json.loads((model / "model.json").read_text())["fusion"]["alpha"]
    assert {"image_primary", "image_context"} <= set(alpha)
    out = tmp_path / "o"
    r = runner.invoke(app, ["dedup", str(cat), "--label-col", "label", "--model-dir", str(model), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["mean_item_f1"] > 0.8
    concepts = pd.read_parquet(out / "concepts.parquet")
    assert "visual_object" in set(concepts["slot"]) and "image" in set(concepts["source"])
    assert "term_image_primary" in pd.read_parquet(out / "edges.parquet").columns


def test_default_model_warns_about_unweighted_slots(tmp_path):
    cat = Path(__file__).resolve().parents[2] / "examples" / "grocery" / "catalog.csv"
    r = runner.invoke(app, ["dedup", str(cat), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "no weight to slots image_primary, image_context" in r.output


@pytest.mark.parametrize("flag,value", [("--images", "maybe"), ("--reducer", "tsne")])
def test_bad_option_values_are_clear_errors(tmp_path, flag, value):
    r = runner.invoke(app, ["dedup", str(FIX / "catalog_small.csv"), "--out", str(tmp_path / "o"), flag, value])
    assert r.exit_code == 2 and f"{flag} must be one of" in r.output and "Traceback" not in r.output
