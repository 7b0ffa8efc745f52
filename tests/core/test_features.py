"""`itemrep dedup --features`: item_features.parquet for CTR models (issue #13, part 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from itemrep.cli import app
from itemrep.dedup.features import (FEATURE_COLUMNS, FEATURE_SLOTS, FEATURES_FILE, build_item_features, read_item_features,
                                    write_item_features)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup")
    r = runner.invoke(app, ["dedup", str(EXAMPLE), "--out", str(out), "--features", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "item_features.parquet" in r.output
    return out


def _score_col(cl: pd.DataFrame) -> str:
    return "score" if "score" in cl.columns else "similarity"


def test_one_row_per_item_in_catalog_order(run):
    feats = pd.read_parquet(run / FEATURES_FILE)
    catalog = pd.read_csv(EXAMPLE, dtype=str)
    assert list(feats.columns) == FEATURE_COLUMNS
    assert feats["item_id"].tolist() == catalog["item_id"].tolist()
    assert str(feats["cluster_size"].dtype) == "int64" and feats["is_representative"].dtype == bool
    assert feats["score_to_representative"].dtype == np.float32 and feats["failed"].dtype == bool
    assert not feats["failed"].any()


def test_cluster_columns_agree_with_clusters_parquet(run):
    feats = pd.read_parquet(run / FEATURES_FILE)
    cl = pd.read_parquet(run / "clusters.parquet")
    assert feats["cluster_id"].tolist() == cl["cluster_id"].tolist()
    # the representative flag: the item is its own representative, exactly one per cluster
    assert (feats["is_representative"] == (cl["item_id"] == cl["representative_id"])).all()
    assert (feats.groupby("cluster_id")["is_representative"].sum() == 1).all()
    assert (feats.loc[feats["is_representative"], "score_to_representative"] == 1.0).all()
    # cluster_size = members of the cluster in clusters.parquet
    sizes = cl["cluster_id"].value_counts()
    assert (feats["cluster_size"] == feats["cluster_id"].map(sizes)).all()
    assert feats["cluster_size"].sum() == (sizes ** 2).sum()
    assert np.allclose(feats["score_to_representative"], cl[_score_col(cl)].astype(np.float32))


def test_slot_columns_hold_the_primary_title_concepts(run):
    feats = pd.read_parquet(run / FEATURES_FILE).set_index("item_id")
    concepts = pd.read_parquet(run / "concepts.parquet")
    assert feats.loc["p001", "brand"] == "tupperware" and feats.loc["p001", "spec"] == "0.5 l"
    assert feats.loc["p006", "model"] == "a52"
    # every value comes from a primary title/image concept of that item and slot
    prim = concepts[(concepts["level"] == "primary") & (concepts["source"] != "text")]
    have = set(zip(prim["item_id"], prim["slot"], prim["value"]))
    for slot in FEATURE_SLOTS:
        for item, v in feats[slot].dropna().items():
            assert all((item, slot, x) in have for x in v.split("|")), (item, slot, v)
    # auxiliary concepts (promo, shipping ...) never appear
    assert not feats[list(FEATURE_SLOTS)].apply(lambda c: c.str.contains("ongkir", na=False)).any().any()


def test_rebuilt_from_the_folder_and_failed_items_flagged(run, tmp_path):
    assert read_item_features(run).equals(pd.read_parquet(run / FEATURES_FILE))
    # a malformed phash is a per-item failure: the item stays, flagged
    df = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    df.loc[df["item_id"] == "p002", "phash"] = "not-a-hash"
    cat = tmp_path / "catalog.csv"
    df.to_csv(cat, index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / FEATURES_FILE).write_bytes(b"stale")
    r = runner.invoke(app, ["dedup", str(cat), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert not (out / FEATURES_FILE).exists()  # no --features: an earlier run's file is removed
    feats = read_item_features(out)
    assert feats.loc[feats["failed"], "item_id"].tolist() == ["p002"] and len(feats) == len(df)
    write_item_features(feats, out)
    assert pd.read_parquet(out / FEATURES_FILE)["failed"].sum() == 1


def test_builder_accepts_the_older_column_name_and_names_missing_columns():
    cl = pd.DataFrame({"item_id": ["a", "b", "c"], "cluster_id": ["x", "x", "y"], "representative_id": ["a", "a", "c"],
                       "similarity": [1.0, 0.8, 1.0]})
    concepts = pa.table({"item_id": ["a", "a", "a", "b", "b"], "slot": ["color", "color", "brand", "color", "promo"],
                         "value": ["red", "blue", "acme", "red", "sale"], "level": ["primary"] * 4 + ["auxiliary"],
                         "source": ["title", "title", "text", "title", "title"]})
    f = build_item_features(cl, concepts, failed_ids=["c"])
    assert f["cluster_size"].tolist() == [2, 2, 1] and f["is_representative"].tolist() == [True, False, True]
    assert f["color"].tolist()[:2] == ["red|blue", "red"] and pd.isna(f["color"].iloc[2])
    assert f["brand"].isna().all()  # found in the description only: left out, as in the slot view
    assert f["failed"].tolist() == [False, False, True]
    with pytest.raises(ValueError, match=r"lacks column\(s\) representative_id, score.*has item_id, cluster_id"):
        build_item_features(cl[["item_id", "cluster_id"]], None)
