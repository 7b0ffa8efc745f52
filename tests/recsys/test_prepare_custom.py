"""`itemrep rec prepare custom`: bring your own interactions and catalog (issue #13, part 1).

Fast tests run on the tiny committed fixture ``tests/fixtures/recsys/custom`` (interactions of 6
users on 9 catalog items, plus a repeated interaction, a low rating, an item missing from the
catalog and a repeated catalog id). The MovieLens-100k test needs ``$ITEMREP_DATA`` (default
``../shared/data``) and skips with a message where it is absent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.errors import CatalogError
from itemrep.recsys.cli import app
from itemrep.recsys.data import (RecDataError, RecDataset, convert_movielens, data_root, prepare_custom, split_per_user,
                                 split_temporal)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "recsys" / "custom"
INTER, CAT = FIX / "interactions.csv", FIX / "catalog.csv"
COLS = dict(user_col="user_id", item_col="item_id")
runner = CliRunner()


def _frames(d: Path):
    inter = pd.read_csv(d / "interactions.tsv", sep="\t")
    users = pd.read_csv(d / "users.csv", dtype=str)
    items = pd.read_csv(d / "items.csv", dtype=str, keep_default_na=False)
    inter["user"] = users["source_id"].to_numpy()[inter["userID"]]
    inter["item"] = items["source_id"].to_numpy()[inter["itemID"]]
    return inter, users, items


# ---------------------------------------------------------------------- fixture: joins, k-core, filters
def test_custom_joins_filters_and_kcore(tmp_path):
    ds = prepare_custom(INTER, CAT, tmp_path / "d", **COLS, rating_col="rating", min_rating=2, k_core=3, attr_cols=["brand"])
    inter, users, items = _frames(tmp_path / "d")
    # x99 is not in the catalog; the 3-core drops u6 (2 interactions), i09 (1) and i04 (u1 and u5 only)
    assert set(users["source_id"]) == {"u1", "u2", "u3", "u4", "u5"}
    assert set(items["source_id"]) == {"i01", "i02", "i03", "i05", "i06", "i07", "i08"}
    assert (ds.n_users, ds.n_items) == (5, 7)
    # every kept user and item has >= 3 interactions; repeats count once; the rating-1 row is gone
    assert inter.groupby("user").size().min() >= 3 and inter.groupby("item").size().min() >= 3
    assert not inter.duplicated(["user", "item"]).any()
    assert not ((inter["user"] == "u5") & (inter["item"] == "i07")).any()
    assert len(inter) == 7 + 6 + 5 + 5 + 3
    # items: the first row of a repeated catalog id, the loader's default text column, attributes, images
    row = items.set_index("source_id")
    assert row.loc["i03", "title"] == "Nike Air Zoom Pegasus 40"
    assert row.loc["i01", "text"].startswith("Description of tupperware")
    assert row.loc["i05", "attributes"] == "brand: samsung"
    assert row.loc["i01", "image"].endswith("0100000000.jpg") and row.loc["i02", "image"] == ""
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    warn = " ".join(meta["warnings"])
    assert "1 item id(s) are not in" in warn and "'x99'" in warn and "2 interaction(s) are dropped" in warn
    assert "repeat an id of column 'item_id'" in warn and "kept the first row" in warn
    assert meta["k_core"] == 3 and meta["split"].startswith("per-user random")
    assert RecDataset.load(tmp_path / "d").n_items == 7


def test_custom_min_rating_and_item_k_core(tmp_path):
    prepare_custom(INTER, CAT, tmp_path / "all", **COLS, k_core=1)
    inter, _, items = _frames(tmp_path / "all")
    assert "i09" in set(items["source_id"]) and ((inter["user"] == "u5") & (inter["item"] == "i07")).any()
    assert len(inter) == 35 - 2 - 1  # 35 rows less the 2 of x99 and the repeat of (u1, i05)
    # users with >= 3, items with >= 1
    prepare_custom(INTER, CAT, tmp_path / "u3", **COLS, k_core=3, item_k_core=1)
    _, users, items = _frames(tmp_path / "u3")
    assert "u6" not in set(users["source_id"]) and "i09" in set(items["source_id"])


# ---------------------------------------------------------------------- splits
def test_random_split_is_seeded_and_per_user(tmp_path):
    a = prepare_custom(INTER, CAT, tmp_path / "a", **COLS, k_core=3, seed=1)
    b = prepare_custom(INTER, CAT, tmp_path / "b", **COLS, k_core=3, seed=1)
    c = prepare_custom(INTER, CAT, tmp_path / "c", **COLS, k_core=3, seed=2)
    assert (tmp_path / "a" / "interactions.tsv").read_bytes() == (tmp_path / "b" / "interactions.tsv").read_bytes()
    assert (tmp_path / "a" / "interactions.tsv").read_bytes() != (tmp_path / "c" / "interactions.tsv").read_bytes()
    for ds in (a, c):  # every user (>= 3 interactions, < 10) has n-2 / 1 / 1
        assert np.bincount(ds.valid[:, 0], minlength=ds.n_users).tolist() == [1] * ds.n_users
        assert np.bincount(ds.test[:, 0], minlength=ds.n_users).tolist() == [1] * ds.n_users


def test_time_split_puts_each_users_latest_in_test(tmp_path):
    ds = prepare_custom(INTER, CAT, tmp_path / "t", **COLS, time_col="timestamp", k_core=3, split="time", seed=0)
    inter, _, _ = _frames(tmp_path / "t")
    raw = pd.read_csv(INTER, dtype={"timestamp": np.int64})
    first_time = raw.groupby(["user_id", "item_id"])["timestamp"].min()  # a repeat keeps its earliest time
    inter["time"] = [first_time[(u, i)] for u, i in zip(inter["user"], inter["item"])]
    for _, g in inter.groupby("user"):
        g = g.sort_values("time")
        assert g["x_label"].tolist() == [0] * (len(g) - 2) + [1, 2]
    assert json.loads((tmp_path / "t" / "meta.json").read_text())["split"].startswith("per-user temporal")
    assert len(ds.test) == ds.n_users


def test_split_temporal_ties_follow_the_seed():
    users = np.zeros(12, int)
    times = np.r_[np.arange(8), np.full(4, 100.0)]  # the 4 latest share one time
    labels = {s: split_temporal(users, times, seed=s) for s in range(6)}
    for lab in labels.values():
        assert (lab[:8] == 0).all() and sorted(lab[8:]) == [0, 0, 1, 2]  # n=12: 10 / 1 / 1, from the latest 4
    assert np.array_equal(labels[0], split_temporal(users, times, seed=0))
    assert len({tuple(v) for v in labels.values()}) > 1
    # same counts as the random split
    u = np.r_[np.zeros(20, int), np.ones(7, int), np.full(2, 2)]
    t = np.arange(len(u), dtype=float)
    assert np.array_equal(np.sort(split_temporal(u, t, 0)), np.sort(split_per_user(u, 0)))


def test_dates_as_times(tmp_path):
    f = tmp_path / "inter.csv"
    rows = [f"u{u},i0{i},2020-09-{10 + i:02d}" for u in (1, 2, 3) for i in range(1, 6)]
    f.write_text("user_id,item_id,t_dat\n" + "\n".join(rows) + "\n")
    prepare_custom(f, CAT, tmp_path / "d", **COLS, time_col="t_dat", k_core=3, split="time")
    inter, _, _ = _frames(tmp_path / "d")
    assert set(inter.loc[inter["x_label"] == 2, "item"]) == {"i05"} and set(inter.loc[inter["x_label"] == 1, "item"]) == {"i04"}
    f.write_text("user_id,item_id,t_dat\nu1,i01,2020-09-10\nu1,i02,yesterday\n")
    with pytest.raises(RecDataError, match=r"line 3, column 't_dat' \(--time-col\): expected a number .* or a date"):
        prepare_custom(f, CAT, tmp_path / "e", **COLS, time_col="t_dat", split="time")


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("body, kw, pattern", [
    ("user_id,item_id\nu1,i01\n", dict(user_col="user"), r"column 'user' \(--user-col\) not found; the file has columns: user_id, item_id"),
    ("user_id,item_id\nu1,i01\nu2,\n", {}, r"line 3: empty id in column 'item_id' \(--item-col\); 1 row\(s\) in all"),
    ("user_id,item_id,rating\nu1,i01,4\nu1,i02,four\n", dict(rating_col="rating", min_rating=3),
     r"line 3, column 'rating' \(--rating-col\): expected a number, got 'four'"),
    ("user_id,item_id,rating\nu1,i01,1\n", dict(rating_col="rating", min_rating=3), r"no rating in column 'rating' is >= 3"),
    ("user_id,item_id\nu1,i01\n", dict(min_rating=3), r"--min-rating needs --rating-col"),
    ("user_id,item_id\nu1,i01\n", dict(split="time"), r"--split time needs --time-col"),
    ("user_id,item_id\nu1,i01\n", dict(split="weekly"), r"--split must be one of random, time; got 'weekly'"),
    ("user_id,item_id\nu1,i01\n", dict(k_core=0), r"--k-core must be at least 1"),
    ("user_id,item_id\nu1,zz1\nu2,zz2\n", {}, r"none of the 2 item ids is in .*catalog.csv .*'zz1'.*'i01'.*check --item-col and --id-col"),
    ("user_id,item_id\nu1,i01\nu2,i02\n", {}, r"nothing left after the k-core filter \(users need >= 5 and items >= 5"),
    ("user_id,item_id\n", {}, r"0 rows \(only a header with columns user_id, item_id\)"),
])
def test_interaction_errors_name_the_problem(tmp_path, body, kw, pattern):
    f = tmp_path / "inter.csv"
    f.write_text(body)
    with pytest.raises(RecDataError, match=pattern):
        prepare_custom(f, CAT, tmp_path / "d", **{**COLS, **kw})


def test_catalog_errors_are_the_dedup_loaders(tmp_path):
    with pytest.raises(RecDataError, match=r"nope.csv: interactions file not found"):
        prepare_custom(tmp_path / "nope.csv", CAT, tmp_path / "d", **COLS)
    with pytest.raises(CatalogError, match=r"nope.csv: catalog file not found"):
        prepare_custom(INTER, tmp_path / "nope.csv", tmp_path / "d", **COLS)
    with pytest.raises(CatalogError, match=r"column 'name' \(--title-col\) not found; the file has columns: item_id, title, description"):
        prepare_custom(INTER, CAT, tmp_path / "d", **COLS, title_col="name")
    with pytest.raises(CatalogError, match=r"column 'colour' \(--attr-cols\) not found"):
        prepare_custom(INTER, CAT, tmp_path / "d", **COLS, attr_cols=["colour"])
    cat = tmp_path / "cat.csv"
    cat.write_text("item_id,title\ni01,a\n,b\n")
    with pytest.raises(CatalogError, match=r"empty id in column 'item_id' at data row\(s\) 2"):
        prepare_custom(INTER, cat, tmp_path / "d", **COLS)
    with pytest.raises(CatalogError, match=r"--image-template '\{sku\}.jpg': cannot fill it in"):
        prepare_custom(INTER, CAT, tmp_path / "d", **COLS, image_template="{sku}.jpg")


def test_image_template_resolves_against_the_catalog_folder(tmp_path):
    prepare_custom(INTER, CAT, tmp_path / "d", **COLS, k_core=3, image_col=None,
                   image_template="../hm/images/010/010000000{id[2]}.jpg")
    _, _, items = _frames(tmp_path / "d")
    got = dict(zip(items["source_id"], items["image"]))
    assert got["i01"].endswith("0100000001.jpg") and got["i08"] == ""  # 0100000008.jpg does not exist
    assert "per-item problem" in " ".join(json.loads((tmp_path / "d" / "meta.json").read_text())["warnings"])


# ---------------------------------------------------------------------- command line
def test_cli_prepare_custom(tmp_path):
    out = tmp_path / "d"
    r = runner.invoke(app, ["prepare", "custom", "--interactions", str(INTER), "--items", str(CAT), "--user-col", "user_id",
                            "--item-col", "item_id", "--time-col", "timestamp", "--split", "time", "--k-core", "3",
                            "--attr-cols", "brand", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "'x99'" in r.output
    assert RecDataset.load(out).n_users == 5
    r = runner.invoke(app, ["prepare", "custom", "--items", str(CAT), "--out", str(out)])
    assert r.exit_code == 2 and "needs --interactions, --user-col, --item-col" in r.output
    r = runner.invoke(app, ["prepare", "movielens-100k", "--interactions", str(INTER), "--out", str(out)])
    assert r.exit_code == 2 and "--interactions only apply to `rec prepare custom`" in r.output
    r = runner.invoke(app, ["prepare", "custom", "--interactions", str(INTER), "--items", str(CAT), "--user-col", "user",
                            "--item-col", "item_id", "--out", str(out)])
    assert r.exit_code == 2 and "column 'user' (--user-col) not found" in r.output


# ---------------------------------------------------------------------- MovieLens-100k from its raw files
ML = data_root() / "movielens-100k"
#: sha256 of the bundled converter's interactions.tsv (seed 0, 5-core) as it was before the
#: converters shared prepare_custom's code: the refactor kept the split byte for byte.
ML_SEED0_SHA256 = "61d090b9204598fa05abcd5a2f54aa7d4f861446399f0c109743f676130a82a4"


@pytest.mark.skipif(not (ML / "ratings.csv").is_file(),
                    reason=f"MovieLens-100k not found at {ML} (set ITEMREP_DATA to the shared data directory)")
@pytest.mark.parametrize("split", ["random", "time"])
def test_movielens_custom_matches_the_bundled_converter(tmp_path, split):
    bundled = tmp_path / "bundled"
    convert_movielens(ML, bundled, seed=0, k_core=5, split=split)
    args = ["prepare", "custom", "--interactions", str(ML / "ratings.csv"), "--items", str(ML / "items.csv"),
            "--user-col", "user_id", "--item-col", "movie_id", "--rating-col", "rating", "--min-rating", "0",
            "--text-col", "overview", "--image-template", "posters/{id}.jpg", "--k-core", "5", "--split", split, "--seed", "0",
            "--out", str(tmp_path / "custom")]
    if split == "time":
        args += ["--time-col", "unix_timestamp"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    for f in ("interactions.tsv", "users.csv"):
        assert (tmp_path / "custom" / f).read_bytes() == (bundled / f).read_bytes(), f
    a = pd.read_csv(bundled / "items.csv", dtype=str, keep_default_na=False)
    b = pd.read_csv(tmp_path / "custom" / "items.csv", dtype=str, keep_default_na=False)
    for col in ("itemID", "source_id", "title", "text", "image"):
        assert a[col].equals(b[col]), col
    ds = RecDataset.load(tmp_path / "custom")
    assert (ds.n_users, ds.n_items, len(ds.train) + len(ds.valid) + len(ds.test)) == (943, 1342, 99126)
    if split == "random":
        assert hashlib.sha256((bundled / "interactions.tsv").read_bytes()).hexdigest() == ML_SEED0_SHA256
