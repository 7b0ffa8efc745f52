"""`itemrep explain`: the term table of one pair adds up to the pipeline's score exactly; unknown ids
are named; `itemrep review-pairs` writes the borderline pairs to label."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.catalog import Catalog
from itemrep.cli import app
from itemrep.dedup.explain import ExplainError, explain_pair
from itemrep.dedup.pipeline import FITRep

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CATALOG = FIX / "catalog_small.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("dedup")
    r = runner.invoke(app, ["dedup", str(CATALOG), "--out", str(d), "--quiet"])
    assert r.exit_code == 0, r.output
    return d


def _explain(*args) -> dict:
    r = runner.invoke(app, ["explain", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_terms_add_up_to_the_edge_score_exactly(out):
    edges = pd.read_parquet(out / "edges.parquet")
    a, b, edge = edges["item_a"].iat[0], edges["item_b"].iat[0], edges["similarity"].iat[0]
    ex = _explain(a, b, "--out", str(out))
    contrib = np.array([t["contribution"] for t in ex["terms"]], dtype=np.float32)
    assert contrib.sum() == np.float32(ex["score"])  # the pipeline's own float32 sum, bit for bit
    assert np.float32(ex["score"]) == edge  # the score edges.parquet holds for that pair
    assert ex["edges_parquet_score"] == float(edge) and ex["passes"] and ex["same_cluster"]
    for t in ex["terms"]:  # every contribution is its weight times its value (times 1/ρ)
        assert np.float32(t["contribution"]) == np.float32(t["weight"]) * np.float32(t["value"]) * np.float32(ex["scale"])
    # the order of the arguments does not matter
    assert _explain(b, a, "--out", str(out))["score"] == ex["score"]


def test_same_score_as_itemrep_pairs_and_the_catalog_route(out, tmp_path):
    edges = pd.read_parquet(out / "edges.parquet")
    # one edge and one pair below τ (not in edges.parquet)
    pairs = pd.DataFrame({"item_a": [edges["item_a"].iat[1], "p001"], "item_b": [edges["item_b"].iat[1], "p030"]})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    r = runner.invoke(app, ["pairs", str(tmp_path / "pairs.csv"), "--catalog", str(CATALOG), "--out", str(tmp_path / "s.parquet"), "--quiet"])
    assert r.exit_code == 0, r.output
    scores = pd.read_parquet(tmp_path / "s.parquet")
    for k in range(2):
        a, b = pairs["item_a"].iat[k], pairs["item_b"].iat[k]
        ex = _explain(a, b, "--out", str(out))
        via_catalog = _explain(a, b, "--catalog", str(CATALOG))
        assert via_catalog["score"] == ex["score"] and via_catalog["terms"] == ex["terms"]
        row = scores.iloc[k]
        contrib = np.array([t["contribution"] for t in ex["terms"]], dtype=np.float64)
        assert [row[f"term_{t['feature']}"] for t in ex["terms"]] == contrib.tolist()  # the same terms
        assert row["score"] == contrib.sum()  # `pairs` sums the same terms in float64
        assert abs(row["score"] - ex["score"]) < 1e-6 and bool(row["match"]) == ex["passes"]
    assert not ex["passes"] and ex["edges_parquet_score"] is None and ex["margin"] < 0


def test_table_shows_alpha_tau_and_concepts(out):
    r = runner.invoke(app, ["explain", "p001", "p004", "--out", str(out)], terminal_width=160)
    assert r.exit_code == 0, r.output
    for s in ("α", "τ", "0.4600", "primary_chars", "conflict_spec", "total", "concepts", "tupperware", "1 l", "0.5 l"):
        assert s in r.stdout, s


def test_unknown_id_names_the_id_and_the_file(out):
    r = runner.invoke(app, ["explain", "p001", "nope-42", "--out", str(out)])
    assert r.exit_code == 2
    assert "'nope-42'" in r.output and "clusters.parquet" in r.output
    r = runner.invoke(app, ["explain", "nope-42", "p001", "--catalog", str(CATALOG)])
    assert r.exit_code == 2
    assert "'nope-42'" in r.output and "catalog_small.csv" in r.output
    r = runner.invoke(app, ["explain", "p001", "p002"])
    assert r.exit_code == 2 and "--out" in r.output


def test_explain_pair_library_unknown_id():
    cat = Catalog.load(CATALOG)
    m = FITRep.default()
    enc, _, _ = m.dedup_encoding(cat)
    with pytest.raises(ExplainError, match="'zzz' is not in somewhere"):
        explain_pair(m, enc.slots, enc.ids.tolist(), "p001", "zzz", source="somewhere")


def test_explain_from_an_index(out, tmp_path):
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", str(CATALOG), "--index", str(idx), "--quiet"])
    assert r.exit_code == 0, r.output
    edges = pd.read_parquet(out / "edges.parquet")
    a, b = edges["item_a"].iat[0], edges["item_b"].iat[0]
    ex = _explain(a, b, "--index", str(idx), "--catalog", str(CATALOG))
    contrib = np.array([t["contribution"] for t in ex["terms"]], dtype=np.float32)
    assert contrib.sum() == np.float32(ex["score"])
    assert abs(ex["score"] - _explain(a, b, "--out", str(out))["score"]) < 1e-6  # same model, same catalog
    assert ex["concepts"][a] and ex["titles"][a]
    r = runner.invoke(app, ["explain", a, "nope-42", "--index", str(idx)])
    assert r.exit_code == 2 and "'nope-42'" in r.output and str(idx) in r.output


def test_review_pairs_borderline_and_exclude(out, tmp_path):
    dest = tmp_path / "review.csv"
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--to", str(dest), "--quiet"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(dest, dtype=str, keep_default_na=False)
    assert list(df.columns[:3]) == ["item_a", "item_b", "label"] and len(df) == 6
    assert (df["label"] == "").all()
    tau = float(df["tau"].iat[0])
    score = df["score"].astype(float)
    assert {"above", "below"} == set(df["side"]) and ((score >= tau) == (df["side"] == "above")).all()
    assert np.all(np.diff(np.abs(score - tau)) >= 0)  # closest to τ first
    # the same pairs again: nothing new may be proposed twice
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--to", str(tmp_path / "r2.csv"), "--exclude", str(dest), "--quiet"])
    assert r.exit_code == 0, r.output
    df2 = pd.read_csv(tmp_path / "r2.csv", dtype=str, keep_default_na=False)
    seen = {frozenset(p) for p in zip(df["item_a"], df["item_b"])}
    assert len(df2) == 6 and not seen & {frozenset(p) for p in zip(df2["item_a"], df2["item_b"])}
