"""Feature cache and pHash helpers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from itemrep.cache import FeatureCache
from itemrep.encoders.phash import phash_bits, phash_hex, phash_similarity_vectors


def test_cache_roundtrip_and_namespaces(tmp_path):
    c = FeatureCache(tmp_path, "image/test-v1")
    c.put_many({"k1": {"v": np.arange(3, dtype=np.float32), "s": np.array("hello")}})
    got = c.get_many(["k1", "k2"])
    assert set(got) == {"k1"} and c.hits == 1 and c.misses == 1
    np.testing.assert_array_equal(got["k1"]["v"], [0, 1, 2])
    assert str(got["k1"]["s"]) == "hello"
    c.close()
    # another extractor version never sees these records; the same one does after reopening
    assert FeatureCache(tmp_path, "image/test-v2").get_many(["k1"]) == {}
    assert len(FeatureCache(tmp_path, "image/test-v1")) == 1


def test_cache_refuses_object_arrays(tmp_path):
    c = FeatureCache(tmp_path, "x")
    with pytest.raises(TypeError):
        c.put_many({"k": {"v": np.array([{"a": 1}], dtype=object)}})


def test_phash_format_and_similarity(fixtures_dir):
    a = phash_hex(Image.open(fixtures_dir / "ok.jpg").convert("RGB"))
    assert len(a) == 16 and a == a.lower() and int(a, 16) >= 0
    v = phash_similarity_vectors([a, a, None, "0" * 16, "f" * 16])
    assert v.shape == (5, 64) and v.dtype == np.float32
    assert v[0] @ v[1] == pytest.approx(1.0)
    assert not v[2].any()
    assert v[3] @ v[4] == pytest.approx(-1.0)  # all 64 bits differ
    bits, valid = phash_bits(["8000000000000001", None])
    assert bits[0, 0] == 1 and bits[0, 63] == 1 and bits[0, 1:63].sum() == 0 and list(valid) == [True, False]


@pytest.mark.shared_data
def test_phash_matches_shopee_column(shared_data):
    """Our pHash of the 20 published Shopee photos agrees with the dataset's image_phash column."""
    import pandas as pd

    from itemrep.images import load_image

    df = pd.read_csv(shared_data / "shopee" / "train.csv", dtype=str)
    imgs = {p.name: p for p in (shared_data / "shopee" / "images").glob("*.jpg")}
    rows = df[df["image"].isin(imgs)].drop_duplicates("image")
    if rows.empty:
        pytest.skip("no Shopee photos with a row in train.csv")
    dists = []
    for _, r in rows.iterrows():
        ours = int(phash_hex(load_image(imgs[r["image"]], max_side=0)), 16)
        dists.append(bin(ours ^ int(r["image_phash"], 16)).count("1"))
    assert np.median(dists) <= 4, dists
