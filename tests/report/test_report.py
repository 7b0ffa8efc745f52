"""The HTML report (`itemrep report`, `itemrep dedup --report`): content, determinism, sampling, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.cli import app
from itemrep.report import REVIEW_COLUMNS, ReportError, build_report
from itemrep.report import data as D

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "catalog.csv"
GROCERY = REPO / "examples" / "grocery" / "catalog.csv"

runner = CliRunner()


def _index(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="search-index">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def _specs(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="chart-specs">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_report_content_on_the_example(example_out):
    out, cat = example_out
    info = build_report(out, cat)
    html = info.html.read_text(encoding="utf-8")
    run = json.loads((out / "run.json").read_text())
    # header: items, clusters, duplicates removed %, τ, model, failed items
    assert f"{run['n_items']:,}" in html and f"{run['n_clusters']:,}" in html
    pct = 100 * run["n_duplicates_removed"] / run["n_items"]
    assert f"{pct:.1f} %" in html and f"{run['tau']:.3f}" in html and "built-in" in html
    # the five charts, compiled to Vega
    specs = _specs(html)
    assert set(specs) == {"chart-size", "chart-alpha", "chart-nn", "chart-slots-by-score", "chart-slot-nn"}
    assert all(s["$schema"].endswith("vega/v6.json") for s in specs.values())
    # every item is searchable, with its cluster
    idx = _index(html)
    cl = pd.read_parquet(out / "clusters.parquet")
    assert sorted(idx["id"]) == sorted(cl["item_id"])
    k = idx["id"].index("p001")
    assert idx["cid"][idx["c"][k]] == cl.set_index("item_id").at["p001", "cluster_id"]
    # gallery: every cluster of ≥ 2 items (12 clusters, none alone), representative first
    sizes = cl.groupby("cluster_id").size()
    assert html.count('<div class="cl"') == int((sizes >= 2).sum()) == info.n_clusters_shown
    first = re.search(r'<div class="cl" id="c-([0-9a-f]+)">.*?data-item="([^"]+)"', html, re.S)
    assert cl.set_index("item_id").at[first.group(2), "representative_id"] == first.group(2)
    # term bars, the weakest link, borderline pairs and label errors
    assert 'class="tb"' in html and "weakest link" in html
    assert "Merged, lowest scores" in html and "Not merged, just below τ" in html
    assert "Worst false merges" in html and "different labels" in html
    assert "mean_item_f1" in html and "No item failed." in html
    # self-contained: no script, style or image from anywhere else
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", html, flags=re.S)
    assert markup.count("<script") == 4 and not re.search(r"<script[^>]+src=", markup)
    assert not re.search(r'<(img|link|iframe)[^>]+(src|href)="(?!data:)', markup)


def test_review_pairs_csv(example_out, tmp_path):
    out, cat = example_out
    info = build_report(out, cat, n_review_pairs=20)
    df = pd.read_csv(info.review_pairs, dtype={"label": str}, keep_default_na=False)
    assert tuple(df.columns[:3]) == REVIEW_COLUMNS and len(df) == 20
    assert (df["label"] == "").all()
    assert {"score", "tau", "merged", "title_a", "title_b"} <= set(df.columns)
    assert any(c.startswith("term_") for c in df.columns)
    # the pairs closest to τ come first, both sides present
    d = (df["score"] - df["tau"]).abs().to_numpy()
    assert (np.diff(d) >= -1e-9).all() and set(df["merged"]) == {0, 1}
    # a filled-in file is a valid pair table for `itemrep fit --pairs` / `itemrep pairs`
    from itemrep.dedup.pairs import read_pair_table

    df["label"] = (df["merged"] == 1).astype(int)
    df.to_csv(tmp_path / "filled.csv", index=False)
    pt = read_pair_table(tmp_path / "filled.csv")
    assert list(pt["item_a"]) == list(df["item_a"].astype(str)) and "label" in pt


def test_same_input_and_seed_give_the_same_report(example_out, tmp_path):
    out, cat = example_out
    a = build_report(out, cat, max_clusters=5, seed=3).html.read_bytes()
    b = build_report(out, cat, max_clusters=5, seed=3).html.read_bytes()
    assert a == b


def test_sampling_of_big_catalogs():
    rng = np.random.default_rng(0)
    n = 500
    table = pd.DataFrame({"cluster_id": [f"c{k:04d}" for k in range(n)], "size": rng.integers(1, 30, n),
                          "representative_id": [f"i{k}" for k in range(n)], "weakest_score": rng.uniform(0.4, 1.0, n),
                          "min_member_score": 0.5, "weakest_a": "a", "weakest_b": "b"})
    table = table.sort_values(["size", "cluster_id"], ascending=[False, True]).reset_index(drop=True)
    s = D.sample_clusters(table, tau=0.5, max_clusters=50, seed=1)
    assert len(s) == 50 and s["cluster_id"].is_unique and (s["size"] >= 2).all()
    r = s["reason"].value_counts()
    assert r["largest"] == 20 and r["borderline"] == 10 and r["random"] == 20
    multi = table[table["size"] >= 2]
    assert set(multi["cluster_id"].iloc[:20]) == set(s.loc[s["reason"] == "largest", "cluster_id"])
    # the borderline ones have the weakest links closest to τ among the rest
    rest = multi.iloc[20:]
    closest = rest.assign(d=(rest["weakest_score"] - 0.5).abs()).nsmallest(10, "d")["cluster_id"]
    assert set(closest) == set(s.loc[s["reason"] == "borderline", "cluster_id"])
    assert s.equals(D.sample_clusters(table, 0.5, 50, 1))
    assert not s.equals(D.sample_clusters(table, 0.5, 50, 2))
    assert list(s["size"]) == sorted(s["size"], reverse=True)


def test_max_clusters_in_the_page(example_out):
    out, cat = example_out
    info = build_report(out, cat, max_clusters=4, seed=0)
    html = info.html.read_text(encoding="utf-8")
    assert html.count('<div class="cl"') == 4 == info.n_clusters_shown
    assert "4 of the 12 clusters of two or more items are shown" in html
    idx = _index(html)
    assert sum(idx["cs"]) == 4 and len(idx["id"]) == 43  # the search still finds every item


def test_weakest_link_is_the_bottleneck_of_the_spanning_tree(tmp_path):
    # a–b 0.9, b–c 0.6, a–c 0.7: the maximum spanning tree keeps 0.9 and 0.7 → weakest link 0.7 (a–c)
    out = tmp_path / "out"
    out.mkdir()
    pd.DataFrame({"item_id": ["a", "b", "c", "d"], "cluster_id": ["x", "x", "x", "y"], "representative_id": ["a", "a", "a", "d"],
                  "score": [1.0, 0.9, 0.7, 1.0]}).to_parquet(out / "clusters.parquet")
    pd.DataFrame({"item_a": ["a", "b", "a"], "item_b": ["b", "c", "c"], "score": [0.9, 0.6, 0.7],
                  "term_t": [0.9, 0.6, 0.7]}).to_parquet(out / "edges.parquet")
    (out / "run.json").write_text(json.dumps({"n_items": 4, "n_clusters": 2, "tau": 0.5, "alpha": {"t": 1.0}}))
    o = D.load_outputs(out)
    ct = D.cluster_table(o).set_index("cluster_id")
    assert ct.at["x", "weakest_score"] == pytest.approx(0.7)
    assert (ct.at["x", "weakest_a"], ct.at["x", "weakest_b"]) == ("a", "c")
    assert np.isnan(ct.at["y", "weakest_score"])
    # an old output: no neighbours.parquet, no catalog → the report says so and still renders
    info = build_report(out)
    html = info.html.read_text(encoding="utf-8")
    assert "no <code>neighbours.parquet</code>" in html and "chart-nn" not in _specs(html)


def test_nearest_neighbours_output(example_out):
    out, _ = example_out
    nb = pd.read_parquet(out / "neighbours.parquet")
    edges = pd.read_parquet(out / "edges.parquet")
    terms = [c for c in edges.columns if c.startswith("term_")]
    assert list(nb.columns) == ["item_a", "item_b", "score", "edge", *terms]
    # the terms add up to the score, as for edges
    assert np.allclose(nb[terms].sum(axis=1), nb["score"], atol=1e-4)
    # every item has its nearest neighbour in the file; edges there are edges of edges.parquet
    items = set(pd.read_parquet(out / "clusters.parquet")["item_id"])
    assert set(nb["item_a"]) | set(nb["item_b"]) == items
    e = set(zip(edges["item_a"], edges["item_b"]))
    assert all((a, b) in e for a, b in zip(nb.loc[nb["edge"], "item_a"], nb.loc[nb["edge"], "item_b"]))
    assert (~nb["edge"]).any() and (nb.loc[~nb["edge"], "score"] < json.loads((out / "run.json").read_text())["tau"]).all()


def test_nearest_pairs_picks_best_and_best_non_edge():
    from itemrep.dedup.neighbours import nearest_pairs

    i = np.array([0, 0, 1, 2])
    j = np.array([1, 2, 2, 3])
    s = np.array([0.9, 0.5, 0.4, 0.3])
    edge = s >= 0.45
    # item 0: best (0,1), best non-edge none other than... (0,2) is an edge; item 1: best (0,1), non-edge (1,2);
    # item 2: best (0,2), non-edge (1,2); item 3: (2,3)
    assert nearest_pairs(i, j, s, edge).tolist() == [0, 1, 2, 3]
    assert nearest_pairs(i, j, s, np.ones(4, bool)).tolist() == [0, 1, 3]
    assert nearest_pairs(i[:0], j[:0], s[:0], edge[:0]).tolist() == []


def test_thumbnails_from_the_grocery_catalog(grocery_out):
    out, cat = grocery_out
    info = build_report(out, cat)
    html = info.html.read_text(encoding="utf-8")
    imgs = re.findall(r'<img loading="lazy" decoding="async" src="data:image/jpeg;base64,[^"]+" width="(\d+)" height="(\d+)"', html)
    assert imgs and info.thumbnails > 0
    assert all(int(w) <= 96 and int(h) <= 96 for w, h in imgs)
    assert info.size_bytes < 3_000_000


def test_errors_name_the_file(tmp_path, example_out, fresh_copy):
    with pytest.raises(ReportError, match="no such directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match=r"empty/run\.json: not found.*not an `itemrep dedup` output"):
        build_report(tmp_path / "empty")
    out = fresh_copy(example_out[0])
    (out / "clusters.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReportError, match=r"clusters\.parquet: cannot read"):
        build_report(out)
    out2 = tmp_path / "o2"
    shutil.copytree(example_out[0], out2)
    (out2 / "run.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"o2/run\.json: cannot read"):
        build_report(out2)
    other = tmp_path / "other.csv"
    other.write_text("item_id,title\nzz1,a\nzz2,b\n")
    with pytest.raises(ReportError, match=r"other\.csv: none of its item ids"):
        build_report(example_out[0], other)


def test_old_column_name_similarity_is_read(example_out, fresh_copy):
    out = fresh_copy(example_out[0])
    cl = pd.read_parquet(out / "clusters.parquet").rename(columns={"score": "similarity"})
    cl.to_parquet(out / "clusters.parquet")
    e = pd.read_parquet(out / "edges.parquet")
    if "score" in e.columns:
        e.rename(columns={"score": "similarity"}).to_parquet(out / "edges.parquet")
    assert D.load_outputs(out).clusters.columns.tolist()[-1] == "score"
    assert build_report(out).html.is_file()


def test_cli_report_and_dedup_report(tmp_path, example_out):
    out = tmp_path / "o"
    shutil.copytree(example_out[0], out)
    for f in ("report.html", "review_pairs.csv"):
        (out / f).unlink(missing_ok=True)
    r = runner.invoke(app, ["report", str(out), "--max-clusters", "3", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").is_file() and (out / "review_pairs.csv").is_file()
    assert "3 clusters in the gallery" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "nothing: no such directory" in r.output
    d = tmp_path / "d"
    r = runner.invoke(app, ["dedup", str(EXAMPLE), "--out", str(d), "--label-col", "label", "--quiet", "--report"])
    assert r.exit_code == 0, r.output
    assert (d / "report.html").is_file() and (d / "review_pairs.csv").is_file()
    assert json.loads((d / "run.json").read_text())["model"] == "built-in"
    # `itemrep report OUT` finds the catalog recorded in run.json (titles, labels)
    html = (d / "report.html").read_text(encoding="utf-8")
    assert "Tupperware Eco Bottle" in html and "Worst false merges" in html


def test_grocery_catalog_given_on_the_command_line(tmp_path, grocery_out):
    out = tmp_path / "g"
    shutil.copytree(grocery_out[0], out)
    r = runner.invoke(app, ["report", str(out), "--catalog", str(GROCERY), "--label-col", "label"])
    assert r.exit_code == 0, r.output
    assert "thumbnails" in r.output and " 0 thumbnails" not in r.output


def test_partial_catalog_is_noted(example_out, tmp_path):
    out, _ = example_out
    rows = EXAMPLE.read_text(encoding="utf-8").splitlines()
    part = tmp_path / "part.csv"
    part.write_text("\n".join(rows[:-3]) + "\n", encoding="utf-8")  # the last 3 items left out
    info = build_report(out, part, label_col="label")
    assert any("3 clustered items are not in the catalog" in n for n in info.notes)
    html = info.html.read_text(encoding="utf-8")
    assert "3 clustered items are not in the catalog" in html and "Worst false merges" in html


def test_a_labelled_review_file_is_never_overwritten(example_out, fresh_copy):
    out = fresh_copy(example_out[0])
    build_report(out)
    df = pd.read_csv(out / "review_pairs.csv", dtype=str, keep_default_na=False)
    df.loc[0, "label"] = "1"  # a reviewer's work
    df.to_csv(out / "review_pairs.csv", index=False)
    before = (out / "review_pairs.csv").read_bytes()
    info = build_report(out, n_review_pairs=10)
    assert (out / "review_pairs.csv").read_bytes() == before and info.review_pairs is None
    assert any("already holds labels" in n for n in info.notes)
    assert "already holds labels and was kept" in info.html.read_text(encoding="utf-8")
    # an unlabelled one is replaced
    df["label"] = ""
    df.to_csv(out / "review_pairs.csv", index=False)
    assert build_report(out, n_review_pairs=10).n_review_pairs == 10
