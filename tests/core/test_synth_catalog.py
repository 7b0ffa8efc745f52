"""bench/synth_catalog.py: the synthetic catalogs of bench/scale.py (skipped when the Shopee data is absent)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.shared_data

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ITEMREP_DATA", REPO.parent / "shared" / "data"))
SHOPEE = DATA / "shopee" / "train.csv"


def _load_module():
    spec = importlib.util.spec_from_file_location("synth_catalog", REPO / "bench" / "synth_catalog.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sc():
    return _load_module()


@pytest.fixture(scope="module")
def source():
    if not SHOPEE.exists():
        pytest.skip(f"{SHOPEE} not found (set ITEMREP_DATA to the shared data folder)")
    return pd.read_csv(SHOPEE, dtype=str, keep_default_na=False)


def _hamming(a: pd.Series, b: pd.Series) -> np.ndarray:
    x = np.array([int(h, 16) for h in a], dtype=np.uint64) ^ np.array([int(h, 16) for h in b], dtype=np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _check(cat: pd.DataFrame, source: pd.DataFrame, n: int) -> pd.DataFrame:
    assert len(cat) == n
    assert {"posting_id", "title", "image_phash", "source_group", "source_posting"} <= set(cat.columns)
    assert "image" not in cat.columns
    assert cat["posting_id"].is_unique
    src = source.set_index("posting_id").loc[cat["source_posting"]]
    assert (cat["source_group"].to_numpy() == src["label_group"].to_numpy()).all()
    assert cat["image_phash"].str.fullmatch(r"[0-9a-f]{16}").all()
    dist = _hamming(cat["image_phash"], src["image_phash"])
    assert dist.max() <= 4
    assert (cat["title"].str.strip() != "").all()
    return src


def test_default_first_copies_are_originals(sc, source):
    cat = sc.make_catalog(2000, seed=3, source=SHOPEE)
    src = _check(cat, source, 2000)
    # 2,000 < 23,937: one copy of 2,000 distinct listings, unchanged
    assert cat["source_posting"].is_unique and (cat["copy"] == 0).all()
    assert (cat["title"].to_numpy() == src["title"].to_numpy()).all()
    assert (cat["image_phash"].to_numpy() == src["image_phash"].to_numpy()).all()


def test_perturbed_copies_round_robin_and_deterministic(sc, source):
    small = source.iloc[:500]  # 2,000 rows = 4 copies of each of 500 listings
    a = sc.make_catalog(2000, seed=7, source=small)
    src = _check(a, source, 2000)
    assert (a["source_posting"].value_counts() == 4).all()
    assert sorted(a["copy"].value_counts().to_dict().items()) == [(0, 500), (1, 500), (2, 500), (3, 500)]
    later = (a["copy"] > 0).to_numpy()
    changed = a["title"].to_numpy() != src["title"].to_numpy()
    assert changed[~later].sum() == 0 and changed[later].mean() > 0.8  # copies are perturbed, originals not
    dist = _hamming(a["image_phash"], src["image_phash"])
    assert set(np.unique(dist[later])) == {0, 1, 2, 3, 4}
    # same seed -> same table; another seed -> another one
    pd.testing.assert_frame_equal(a, sc.make_catalog(2000, seed=7, source=small))
    b = sc.make_catalog(2000, seed=8, source=small)
    assert not a["title"].equals(b["title"]) and b["posting_id"].str.startswith("s8-").all()


def test_no_originals_perturbs_every_row(sc, source):
    cat = sc.make_catalog(2000, seed=0, source=source, keep_originals=False)
    src = _check(cat, source, 2000)
    assert (cat["title"].to_numpy() != src["title"].to_numpy()).mean() > 0.8


def test_cli_writes_parquet(sc, source, tmp_path):
    out = tmp_path / "c.parquet"
    assert sc.main(["--n", "300", "--seed", "1", "--out", str(out), "--source", str(SHOPEE)]) == 0
    df = pd.read_parquet(out)
    _check(df, source, 300)
    pd.testing.assert_frame_equal(df, sc.make_catalog(300, seed=1, source=SHOPEE), check_dtype=False)
