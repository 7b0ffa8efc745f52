"""`itemrep fit --pairs`: learning α, β, γ and τ from labelled pairs (alone or with groups)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.catalog import Catalog
from itemrep.cli import app
from itemrep.dedup.fusion import AttentionFusion
from itemrep.dedup.pipeline import DEFAULT_PRIOR_STRENGTH, FITRep
from itemrep.dedup.review import read_pair_labels

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CATALOG = FIX / "catalog_small.csv"
runner = CliRunner()

# the built-in model merges these variants (other size, colour or model) of one product line
DIFFERENT = [("p001", "p004"), ("p006", "p008"), ("p010", "p012"), ("p014", "p016"), ("p018", "p020"),
             ("p030", "p032"), ("p034", "p036"), ("p038", "p040")]
SAME = [("p001", "p002"), ("p004", "p005"), ("p006", "p007"), ("p008", "p009"), ("p010", "p011"), ("p014", "p015"),
        ("p018", "p019"), ("p030", "p031"), ("p034", "p035"), ("p038", "p039")]


def _labels() -> pd.DataFrame:
    rows = [(a, b, 0) for a, b in DIFFERENT] + [(a, b, 1) for a, b in SAME]
    return pd.DataFrame(rows, columns=["item_a", "item_b", "label"])


def _unlabelled() -> Catalog:
    cat = Catalog.load(CATALOG)
    assert not cat.has_labels
    return cat


def _merged(model: FITRep, cat: Catalog, pairs) -> list[bool]:
    cid = dict(zip(cat.ids, model.dedup(cat).clusters["cluster_id"]))
    return [cid[a] == cid[b] for a, b in pairs]


def test_pairs_move_the_model_the_expected_way():
    cat = _unlabelled()
    builtin = FITRep.default()
    before = _merged(builtin, cat, DIFFERENT)
    assert sum(before) >= 6  # the built-in model merges most of these variants
    m = FITRep().fit(cat, pairs=_labels(), prior=FITRep.default())
    info = m.fit_info_
    assert info["n_labelled_pairs"] == 18 and info["labelled_positive_pairs"] == 10 and info["n_candidate_pairs"] == 0
    assert info["tau_criterion"] == "co-membership accuracy (labelled pairs)" and info["train_mean_item_f1"] is None
    after = _merged(m, cat, DIFFERENT)
    assert sum(after) < sum(before)  # fewer of the labelled-different pairs merged
    right_before = sum(_merged(builtin, cat, SAME)) + len(DIFFERENT) - sum(before)
    right_after = sum(_merged(m, cat, SAME)) + len(DIFFERENT) - sum(after)
    assert right_after > right_before  # more labelled pairs decided as labelled
    # the scores of the different pairs fall relative to τ; conflicts weigh more than in the built-in model
    enc, _, _ = m.dedup_encoding(cat)
    pos = {x: n for n, x in enumerate(enc.ids)}
    i, j = np.array([pos[a] for a, _ in DIFFERENT]), np.array([pos[b] for _, b in DIFFERENT])
    margin_after = m.score_pairs(enc.slots, i, j)[0] - m.tau
    enc0, _, _ = builtin.dedup_encoding(cat)
    margin_before = builtin.score_pairs(enc0.slots, i, j)[0] - builtin.tau
    assert margin_after.mean() < margin_before.mean()
    old_gamma = sum(builtin.fusion_.gamma_.values())
    assert sum(info["gamma"].values()) > old_gamma


def test_same_input_same_model():
    a = FITRep().fit(_unlabelled(), pairs=_labels(), prior=FITRep.default()).fit_info_
    b = FITRep().fit(_unlabelled(), pairs=_labels().iloc[::-1].reset_index(drop=True), prior=FITRep.default()).fit_info_
    assert a["alpha"] == pytest.approx(b["alpha"], abs=1e-6) and a["tau"] == b["tau"]


def test_cli_pairs_only_fit(tmp_path):
    f = tmp_path / "labels.csv"
    df = _labels().astype({"label": object})
    df.loc[0, "label"] = "false"
    df.loc[len(DIFFERENT), "label"] = "true"
    df = pd.concat([df, pd.DataFrame([{"item_a": "p020", "item_b": "p021", "label": ""}])], ignore_index=True)  # not labelled yet
    df["score"] = 0.5  # extra columns are ignored
    df.to_csv(f, index=False)
    d = tmp_path / "m"
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(d), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "18 labelled pairs (10 duplicates)" in r.output and "prior builtin" in r.output
    fit = json.loads((d / "model.json").read_text())["fit"]
    assert fit["n_labelled_pairs"] == 18 and fit["prior"]["strength"] == DEFAULT_PRIOR_STRENGTH
    out = tmp_path / "out"
    r = runner.invoke(app, ["dedup", str(CATALOG), "--model-dir", str(d), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    # no prior: learnt from the pairs alone
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m2"), "--prior", "none", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m2" / "model.json").read_text())["fit"]["prior"] is None


def test_cli_pairs_with_groups(tmp_path):
    f = tmp_path / "labels.csv"
    _labels().to_csv(f, index=False)
    d = tmp_path / "m"
    r = runner.invoke(app, ["fit", str(CATALOG), "--label-col", "label", "--pairs", str(f), "--model-dir", str(d), "--quiet"])
    assert r.exit_code == 0, r.output
    fit = json.loads((d / "model.json").read_text())["fit"]
    assert fit["tau_criterion"] == "mean per-item F1 (groups) + co-membership accuracy (labelled pairs)"
    assert fit["n_candidate_pairs"] > 0 and fit["n_labelled_pairs"] == 18 and fit["prior"] is None
    assert fit["train_mean_item_f1"] > 0.8 and fit["train_pair_accuracy"] is not None and fit["train_pair_f1"] is not None


def test_bad_id_names_the_line(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("item_a,item_b,label\np001,p002,1\np003,p004,\np001,p999,0\n")
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2
    assert "line 4" in r.output and "'p999'" in r.output and str(f) in r.output


def test_bad_rows_are_named(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("item_a,item_b,label\np001,p002,1\np003,p003,0\n")
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2 and "line 3" in r.output and "itself" in r.output
    f.write_text("item_a,item_b,label\np001,p002,1\np003,p004,maybe\n")
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2 and "line 3" in r.output and "'maybe'" in r.output
    f.write_text("item_a,item_b,label\np001,p002,\n")
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2 and "no labelled pair" in r.output
    f.write_text("item_a,item_b\np001,p002\n")
    r = runner.invoke(app, ["fit", str(CATALOG), "--pairs", str(f), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2 and "label" in r.output
    r = runner.invoke(app, ["fit", str(CATALOG), "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 2 and "--label-col" in r.output and "--pairs" in r.output


def test_read_pair_labels_skips_empty_and_keeps_last(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("item_a,item_b,label,score\np001,p002,1,0.9\np001,p004,,0.5\np004,p001,no,0.5\n")
    df = read_pair_labels(f)
    assert df[["item_a", "item_b"]].values.tolist() == [["p001", "p002"], ["p004", "p001"]]
    assert df["label"].tolist() == [1, 0] and df["line"].tolist() == [2, 4]


def test_prior_coef_recovers_the_fitted_coefficients():
    rng = np.random.default_rng(0)
    x = rng.random((400, 3)).astype(np.float32)
    y = (x[:, 0] * 2 + x[:, 1] - 1.4 + rng.normal(0, 0.2, 400) > 0).astype(np.int8)
    names = ["a", "b", "conflict_b"]
    f = AttentionFusion().fit(x, y, names)
    w, b = AttentionFusion.from_dict(f.to_dict()).prior_coef(names)
    assert w == pytest.approx([f.coef_[n] for n in names], rel=1e-9, abs=1e-12) and b == pytest.approx(f.intercept_)
    # a strong prior keeps the prior's weights; data of one class alone is accepted with a prior
    strong = AttentionFusion().fit(x[:50], np.zeros(50), names, prior=(w, b), prior_strength=1e6)
    assert strong.alpha_ == pytest.approx(f.alpha_, abs=1e-3)
    with pytest.raises(ValueError, match="both duplicate and non-duplicate"):
        AttentionFusion().fit(x[:50], np.zeros(50), names)
    with pytest.raises(ValueError, match="cannot serve as a prior"):
        AttentionFusion(alpha={"a": 1.0}).prior_coef(names)


def test_unlabelled_catalog_needs_pairs():
    with pytest.raises(ValueError, match="--pairs"):
        FITRep().fit(_unlabelled())
    cat = dataclasses.replace(_unlabelled())
    with pytest.raises(ValueError, match="both duplicate and non-duplicate"):
        FITRep().fit(cat, pairs=_labels().query("label == 1"))


def test_pair_comembership_f1_counts_chains():
    from itemrep.dedup.metrics import pair_comembership_accuracy, pair_comembership_f1

    clusters = ["a", "a", "a", "b"]  # items 0, 1, 2 chained into one cluster
    # (0, 2) labelled distinct but merged through the chain: a false positive; (2, 3) a missed duplicate
    assert pair_comembership_f1(clusters, [0, 0, 2], [1, 2, 3], [1, 0, 1]) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert pair_comembership_f1(clusters, [0], [3], [0]) == 1.0  # nothing to get wrong
    assert pair_comembership_accuracy(clusters, [0, 0, 2], [1, 2, 3], [1, 0, 1]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        pair_comembership_f1(clusters, [0], [1, 2], [1])


def test_review_pairs_never_overwrites_labels(tmp_path):
    """`itemrep review-pairs` writes an unlabelled file, then refuses to replace it once it holds labels."""
    out = tmp_path / "out"
    r = runner.invoke(app, ["dedup", str(CATALOG), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--quiet"])
    assert r.exit_code == 0, r.output
    f = out / "review_pairs.csv"
    df = pd.read_csv(f, dtype=str, keep_default_na=False)
    assert list(df.columns[:3]) == ["item_a", "item_b", "label"] and (df["label"] == "").all()
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--quiet"])  # unlabelled: replaced
    assert r.exit_code == 0, r.output
    df.loc[0, "label"] = "1"
    df.to_csv(f, index=False)
    before = f.read_bytes()
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--quiet"])
    assert r.exit_code != 0 and "already holds labels" in r.output
    assert f.read_bytes() == before
    r = runner.invoke(app, ["review-pairs", str(out), "--n", "6", "--to", str(tmp_path / "next.csv"), "--exclude", str(f), "--quiet"])
    assert r.exit_code == 0, r.output
    nxt = pd.read_csv(tmp_path / "next.csv", dtype=str)
    assert not set(zip(nxt["item_a"], nxt["item_b"])) & set(zip(df["item_a"], df["item_b"]))
