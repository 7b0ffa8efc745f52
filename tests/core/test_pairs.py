"""Pair scoring (`itemrep pairs`, itemrep.dedup.pairs): wdc-pairs parsing, exact term sums, pair
metrics, thresholds, and the command end to end. No shared data: a tiny hand-written wdc-pairs
fixture and the committed example catalog."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.catalog import Catalog
from itemrep.cli import app
from itemrep.dedup.pairs import (PairsError, best_threshold, check_pairs, is_wdc_pairs_file, pair_metrics,
                                 read_pair_table, read_wdc_pairs, score_pairs, wdc_catalog)
from itemrep.dedup.pipeline import FITRep

FIX = Path(__file__).resolve().parents[1] / "fixtures"
WDC = FIX / "wdc_pairs_tiny.txt"
CATALOG = FIX / "catalog_small.csv"
runner = CliRunner()


def _write(tmp_path: Path, text: str, name: str = "p.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


# ---------------------------------------------------------------- wdc-pairs format
def test_read_wdc_pairs_ids_titles_labels():
    cat, pairs = read_wdc_pairs(WDC)
    assert len(pairs) == 8 and list(pairs.columns) == ["item_a", "item_b", "label", "line"]
    assert pairs["item_a"].tolist()[:2] == ["a1", "a2"] and pairs["item_b"].tolist()[:2] == ["b1", "b2"]
    assert pairs["label"].tolist() == [1, 0] * 4 and pairs["line"].tolist() == list(range(1, 9))
    assert cat["item_id"].tolist()[:4] == ["a1", "b1", "a2", "b2"] and cat["item_id"].is_unique
    # the 'COL title VAL' prefix is gone, the raw text (quotes, @en tags, "Null") is kept
    titles = dict(zip(cat["item_id"], cat["title"]))
    assert titles["b1"] == '"MZ-76E500B/EU Samsung 860 EVO 500 GB SSD", "Null"'
    assert titles["a3"] == '"Canon EOS 80D DSLR Camera Body Only"@en'
    assert is_wdc_pairs_file(WDC) and not is_wdc_pairs_file(CATALOG)


def test_read_wdc_pairs_blank_lines_unlabelled_and_attributes(tmp_path):
    p = _write(tmp_path, "\nCOL title VAL x one\tCOL title VAL y one\n\nCOL title VAL x two COL price VAL 9.99\tCOL title VAL y two\n")
    cat, pairs = read_wdc_pairs(p)
    assert pairs["item_a"].tolist() == ["a2", "a4"] and "label" not in pairs.columns  # ids follow file lines
    row = cat.set_index("item_id").loc["a4"]
    assert row["title"] == "x two" and row["text"] == "price: 9.99"


@pytest.mark.parametrize("text, line, words", [
    ("COL title VAL a\tCOL title VAL b\t1\nCOL title VAL c\tCOL title VAL d\t2\n", 2, "label must be 0 or 1"),
    ("COL title VAL a\tCOL title VAL b\t1\nCOL title VAL c COL title VAL d 1\n", 2, "2 or 3 tab-separated fields"),
    ("COL title VAL a\tCOL title VAL b\t1\n\nCOL title VAL c\tCOL title VAL d\t1\textra\n", 3, "got 4"),
    ("COL title VAL a\tCOL title VAL b\t0\ntitle a\tCOL title VAL b\t1\n", 2, "'COL <attribute> VAL'"),
    ("COL title VAL a\tCOL title VAL b\t0\nCOL title VAL c\tCOL title VAL d\n", 2, "lacks a label"),
])
def test_read_wdc_pairs_errors_name_file_and_line(tmp_path, text, line, words):
    p = _write(tmp_path, text)
    with pytest.raises(PairsError) as e:
        read_wdc_pairs(p)
    assert f"{p}: line {line}" in str(e.value) and words in str(e.value)


def test_read_wdc_pairs_bad_bytes_and_empty(tmp_path):
    p = _write(tmp_path, b"COL title VAL a\tCOL title VAL b\t0\nCOL title VAL \xff\tCOL title VAL b\t0\n")
    with pytest.raises(PairsError, match="line 2: not valid UTF-8"):
        read_wdc_pairs(p)
    with pytest.raises(PairsError, match="no pairs"):
        read_wdc_pairs(_write(tmp_path, "\n\n", "empty.txt"))
    with pytest.raises(PairsError, match="not found"):
        read_wdc_pairs(tmp_path / "nope.txt")


def test_pair_table_labels_and_errors(tmp_path):
    p = _write(tmp_path, "item_a,item_b,label\np001,p002,1\np001,p004,false\n", "pairs.csv")
    df = read_pair_table(p)
    assert df["label"].tolist() == [1, 0] and df["row"].tolist() == [1, 2]
    with pytest.raises(PairsError, match="missing column.*item_b"):
        check_pairs(pd.DataFrame({"item_a": ["x"], "other": ["y"]}))
    with pytest.raises(PairsError, match=r"data row 2 \('maybe'\)"):
        check_pairs(pd.DataFrame({"item_a": ["x", "y"], "item_b": ["y", "z"], "label": ["1", "maybe"]}))
    with pytest.raises(PairsError, match="empty item_b at data row 1"):
        check_pairs(pd.DataFrame({"item_a": ["x"], "item_b": [""]}))


# ---------------------------------------------------------------- scoring
@pytest.fixture(scope="module")
def wdc_scores():
    cat, pairs = read_wdc_pairs(WDC)
    model = FITRep.default()
    return score_pairs(model, wdc_catalog(cat, WDC), pairs, source=str(WDC)), model


def test_terms_sum_to_score_and_match_is_score_at_tau(wdc_scores):
    s, model = wdc_scores
    terms = [c for c in s.columns if c.startswith("term_")]
    assert list(s.columns[:5]) == ["item_a", "item_b", "score", "match", "label"] and terms
    assert [t[5:] for t in terms] == s.attrs["feature_names"]
    assert np.array_equal(s[terms].to_numpy().sum(axis=1), s["score"].to_numpy())  # exact decomposition
    assert (s["match"] == (s["score"] >= model.pair_tau)).all() and s.attrs["tau"] == model.pair_tau
    # the pair decision point is the fitted τ_logistic, below the clustering τ
    assert model.pair_tau == model.fusion.to_dict()["tau_logistic"] < model.tau == s.attrs["cluster_tau"]
    assert s["score"].between(-2, 2).all() and s.attrs["n_items"] == 16


def test_scores_agree_with_the_model_scoring_rows_itself(wdc_scores):
    """score_pairs maps ids through the model's canonical (sorted-id) order: check against a direct call."""
    s, model = wdc_scores
    cat, pairs = read_wdc_pairs(WDC)
    enc = model.fit_transform(wdc_catalog(cat, WDC))
    pos = {x: n for n, x in enumerate(enc.ids)}
    ref, _ = model.score_pairs(enc.slots, [pos["a3"]], [pos["b3"]])
    got = s.set_index(["item_a", "item_b"]).loc[("a3", "b3"), "score"]
    assert abs(float(ref[0]) - got) < 1e-5


def test_score_pairs_on_a_catalog_and_unknown_ids():
    cat = Catalog.load(CATALOG, label_col="label")
    lab = dict(zip(cat.ids, cat.labels))
    ids = cat.ids
    pairs = pd.DataFrame({"item_a": ids[:10], "item_b": ids[1:11]})
    pairs["label"] = [int(lab[a] == lab[b]) for a, b in zip(pairs.item_a, pairs.item_b)]
    s = score_pairs(FITRep.default(), cat, pairs)
    assert s[["item_a", "item_b", "label"]].values.tolist() == pairs.values.tolist()  # pair order kept
    assert s.loc[s.label == 1, "score"].mean() > s.loc[s.label == 0, "score"].mean()
    bad = pd.DataFrame({"item_a": ["p001", "p002"], "item_b": ["p003", "nope"], "row": [7, 8]})
    with pytest.raises(PairsError, match=r"1 item id\(s\) not in the catalog.*data row 8: item_b 'nope'"):
        score_pairs(FITRep.default(), cat, bad, source="my.csv")


# ---------------------------------------------------------------- metrics and thresholds
def test_pair_metrics_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 1, 0]
    p = [1, 1, 0, 1, 0, 0, 0, 0]  # tp 2, fp 1, fn 2
    m = pair_metrics(y, p)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * 2 / (3 + 4)) and (m["n_pairs"], m["n_positive"], m["n_predicted"]) == (8, 4, 3)
    assert pair_metrics([1, 0], [0, 0])["precision"] == 0.0  # nothing predicted: 0, not an error
    with pytest.raises(ValueError):
        pair_metrics([1, 0], [1])


def test_best_threshold_hand_computed_and_ties_go_high():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1, 0, 1, 1, 0, 0]
    # τ=0.9: F1 2/(1+3)=.5; τ=.8: 2/(2+3)=.4; τ=.7: 4/(3+3)=.667; τ=.6: 6/(4+3)=.857; lower: worse
    assert best_threshold(scores, labels) == (0.6, pytest.approx(6 / 7))
    # equal F1 at τ=0.9 (1 of 1 predicted, 1 of 2 positives: 2/3) and τ=0.5 (all predicted: 2*2/(4+2)=2/3): higher wins
    assert best_threshold([0.9, 0.8, 0.7, 0.5], [1, 0, 0, 1]) == (0.9, pytest.approx(2 / 3))
    # tied scores are one candidate
    assert best_threshold([0.5, 0.5, 0.1], [1, 0, 0])[0] == 0.5
    with pytest.raises(ValueError, match="no matching pair"):
        best_threshold([0.1, 0.2], [0, 0])


# ---------------------------------------------------------------- command line
def test_cli_wdc_end_to_end(tmp_path):
    out, mj = tmp_path / "o" / "scores.parquet", tmp_path / "m.json"
    r = runner.invoke(app, ["pairs", str(WDC), "--out", str(out), "--metrics-json", str(mj), "--quiet"])
    assert r.exit_code == 0, r.output
    s = pd.read_parquet(out)
    assert len(s) == 8 and {"item_a", "item_b", "score", "match", "label"} <= set(s.columns)
    terms = [c for c in s.columns if c.startswith("term_")]
    assert np.allclose(s[terms].sum(axis=1), s["score"], atol=1e-12)
    m = json.loads(mj.read_text())
    assert m["at_tau"]["tau_source"] == "model" and 0 <= m["at_tau"]["f1"] <= 1
    assert m["at_best_tau"]["f1"] >= m["at_tau"]["f1"] and "optimistic" in m["at_best_tau"]["note"]
    assert "best τ on these pairs (optimistic)" in r.output and "P " in r.output
    assert not [p for p in out.parent.iterdir() if p.name != "scores.parquet"]  # no temporary files left


def test_cli_threshold_override(tmp_path):
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["pairs", str(WDC), "--out", str(out), "--threshold", "1.5", "--quiet"])
    assert r.exit_code == 0, r.output
    assert not pd.read_parquet(out)["match"].any() and "--threshold" in r.output


def test_cli_pair_table_with_catalog(tmp_path):
    p = _write(tmp_path, "item_a,item_b,label\np001,p002,1\np001,p004,0\np003,p002,1\n", "pairs.csv")
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["pairs", str(p), "--catalog", str(CATALOG), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    s = pd.read_parquet(out)
    assert s["item_a"].tolist() == ["p001", "p001", "p003"] and s["label"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("case", ["no_catalog", "wdc_with_catalog", "unknown_id", "bad_line", "out_is_dir", "missing"])
def test_cli_bad_inputs_fail_clearly(tmp_path, case):
    out = tmp_path / "s.parquet"
    table = _write(tmp_path, "item_a,item_b\np001,p002\np001,zzz\n", "pairs.csv")
    args = {
        "no_catalog": [str(table)],
        "wdc_with_catalog": [str(WDC), "--catalog", str(CATALOG)],
        "unknown_id": [str(table), "--catalog", str(CATALOG)],
        "bad_line": [str(_write(tmp_path, "COL title VAL a\tCOL title VAL b\t1\nCOL title VAL c\tCOL title VAL d\tx\n"))],
        "out_is_dir": [str(WDC)],
        "missing": [str(tmp_path / "nope.txt")],
    }[case]
    if case == "out_is_dir":
        out = tmp_path
    r = runner.invoke(app, ["pairs", *args, "--out", str(out), "--quiet"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "error:" in r.output
    expect = {"no_catalog": "pass --catalog", "wdc_with_catalog": "--catalog cannot be used",
              "unknown_id": "data row 2: item_b 'zzz'", "bad_line": "line 2: label must be 0 or 1",
              "out_is_dir": "is a directory", "missing": "not found"}[case]
    assert expect in " ".join(r.output.split()), r.output
    assert case == "out_is_dir" or not out.exists()


@pytest.mark.shared_data
def test_every_shared_wdc_file_parses():
    """Each wdc-pairs file of the shared data parses, with the pair counts of the data README."""
    from itemrep.paths import dataset

    root = dataset("wdc-pairs")
    if root is None:
        pytest.skip("wdc-pairs not in the shared data (set ITEMREP_DATA)")
    counts = {("computers", "train.txt.small"): 2231, ("cameras", "valid.txt.small"): 392, ("all", "train.txt.small"): 7230}
    files = sorted(root.glob("*/*.txt.*"))
    assert files
    for f in files:
        cat, pairs = read_wdc_pairs(f)
        assert len(cat) == 2 * len(pairs) and set(pairs["label"].unique()) <= {0, 1}
        assert not any(t.startswith("COL ") for t in cat["title"]), f
        if (f.parent.name, f.name) in counts:
            assert len(pairs) == counts[(f.parent.name, f.name)], f
