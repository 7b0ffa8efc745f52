import json

import numpy as np
import pandas as pd
import pytest

from itemrep.recsys.data import RecDataError, RecDataset, convert_amazon_baby, convert_hm, convert_movielens, kcore_filter, split_per_user

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "recsys"


def test_split_per_user_rules_and_seed():
    users = np.r_[np.zeros(20, int), np.ones(7, int), np.full(2, 2)]
    lab = split_per_user(users, seed=3)
    # n=20 -> 16/2/2 ; n=7 (<10) -> 5/1/1 ; n=2 -> all train
    assert [(lab[users == 0] == k).sum() for k in range(3)] == [16, 2, 2]
    assert [(lab[users == 1] == k).sum() for k in range(3)] == [5, 1, 1]
    assert (lab[users == 2] == 0).all()
    assert np.array_equal(lab, split_per_user(users, seed=3))
    assert not np.array_equal(lab, split_per_user(users, seed=4))


def test_kcore_filter_is_iterative():
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 11, 10, 11, 12]})
    out = kcore_filter(df, 2, 2)
    assert set(out["user"]) == {1, 2} and set(out["item"]) == {10, 11}


def test_save_load_roundtrip(synth, synth_dir):
    ds = RecDataset.load(synth_dir)
    assert (ds.n_users, ds.n_items) == (synth.n_users, synth.n_items)
    assert np.array_equal(ds.train, synth.train) and np.array_equal(ds.test, synth.test)
    assert ds.modalities == sorted(synth.modalities)
    assert RecDataset.load(synth_dir, modalities=["text"]).modalities == ["text"]
    df = pd.read_csv(synth_dir / "interactions.tsv", sep="\t")
    assert list(df.columns) == ["userID", "itemID", "x_label"]


def test_load_errors_name_the_problem(tmp_path, synth_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "interactions.tsv").write_text("userID\titemID\tx_label\n0\t1\t0\n1\tx\t0\n")
    with pytest.raises(RecDataError, match=r"line 3, column 'itemID'"):
        RecDataset.load(bad)
    (bad / "interactions.tsv").write_text("userID\titemID\tx_label\n0\t1\t0\n1\t0\t7\n")
    with pytest.raises(RecDataError, match=r"line 3, column 'x_label'"):
        RecDataset.load(bad)
    (bad / "interactions.tsv").write_text("user\titemID\tx_label\n0\t1\t0\n")
    with pytest.raises(RecDataError, match="missing column 'userID'"):
        RecDataset.load(bad)
    with pytest.raises(RecDataError, match="modality 'audio' not found"):
        RecDataset.load(synth_dir, modalities=["audio"])
    with pytest.raises(RecDataError, match="not found"):
        RecDataset.load(tmp_path / "nope")
    (bad / "interactions.tsv").write_text("userID\titemID\tx_label\n0\t1\t0\n1\t0\t1\n")
    np.save(bad / "feat_image.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(RecDataError, match=r"shape \(5, 3\), expected \(2, d\)"):
        RecDataset.load(bad)


def test_convert_movielens(tmp_path):
    ds = convert_movielens(FIXTURES / "ml", tmp_path / "ml", seed=0, k_core=3)
    # user 12 has 2 ratings -> removed by the 3-core filter
    users = pd.read_csv(tmp_path / "ml" / "users.csv")
    assert 12 not in set(users["source_id"])
    assert ds.n_users == 11
    items = pd.read_csv(tmp_path / "ml" / "items.csv", keep_default_na=False)
    assert list(items["itemID"]) == list(range(ds.n_items))
    assert items["source_id"].is_unique  # the duplicated TMDB row was dropped
    assert "genre:" in items["attributes"].iloc[0]
    assert (items.loc[items["source_id"] == 5, "image"] == "").all()  # no poster
    meta = json.loads((tmp_path / "ml" / "meta.json").read_text())
    assert meta["train"] + meta["valid"] + meta["test"] == len(pd.read_csv(tmp_path / "ml" / "interactions.tsv", sep="\t"))
    # every user has >= 1 valid and >= 1 test item (n >= 3)
    re = RecDataset.load(tmp_path / "ml")
    assert set(re.valid[:, 0]) == set(range(ds.n_users)) == set(re.test[:, 0])


def test_convert_hm(tmp_path):
    ds = convert_hm(FIXTURES / "hm", tmp_path / "hm", seed=0, min_user=3)
    items = pd.read_csv(tmp_path / "hm" / "items.csv", dtype=str, keep_default_na=False)
    assert all(items["image"] != "")  # only articles with a photo are kept
    assert ds.n_items <= 6
    assert items["source_id"].str.len().eq(10).all()
    assert "product type: t-shirt" in items["attributes"].iloc[0]
    # repeated purchases count once
    df = pd.read_csv(tmp_path / "hm" / "interactions.tsv", sep="\t")
    assert not df.duplicated(["userID", "itemID"]).any()


def test_convert_amazon_baby_keeps_split(tmp_path):
    ds = convert_amazon_baby(FIXTURES / "baby", tmp_path / "baby")
    assert (ds.n_users, ds.n_items) == (7, 9)
    assert len(ds.train) == 21 and len(ds.valid) == 7 and len(ds.test) == 7
    assert set(map(tuple, ds.test)) == {(u, (u + 5) % 9) for u in range(7)}
    with pytest.raises(RecDataError, match="not found"):
        convert_amazon_baby(tmp_path / "missing", tmp_path / "x")
