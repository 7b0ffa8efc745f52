"""The stage contract: fit -> save -> load -> the same output; validated model files; outputs
that are all there or none; chunked and parallel runs give the same answer."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itemrep.catalog import Catalog
from itemrep.dedup.pipeline import FITRep, check_out_dir
from itemrep.dedup.reduce import PCAReducer, load_reducer
from itemrep.dedup.slots import SlotEncoder, SlotSet
from itemrep.errors import ModelDirError

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def cat():
    return Catalog.load(FIX / "catalog_small.csv", label_col="label")


def _concepts(cat):
    from itemrep.concepts.rules import RuleBasedExtractor

    return [[(c.slot, c.value, c.level) for c in h.concepts] for h in RuleBasedExtractor().extract(cat.items)]


def test_slot_encoder_save_load_same_rows(cat, tmp_path):
    cs, ph = _concepts(cat), [it.phash for it in cat.items]
    enc = SlotEncoder().fit(SlotEncoder().count(cs, ph))
    a = enc.transform(cs, ph)
    enc.save(tmp_path / "slots")
    b = SlotEncoder.load(tmp_path / "slots").transform(cs, ph)
    assert a.names == b.names and a.feature_names == b.feature_names
    i, j = np.triu_indices(len(cs), 1)
    assert np.allclose(a.pair_features(i, j), b.pair_features(i, j))
    va, vb = enc.dense_views(a), SlotEncoder.load(tmp_path / "slots").dense_views(b)
    assert all(np.allclose(va[k], vb[k]) for k in va)
    with pytest.raises(ModelDirError, match="n_features"):
        SlotEncoder.load(tmp_path / "slots", n_features=2**10)


def test_new_items_land_in_the_fitted_space(cat):
    """A fitted encoder encodes new items without refitting: one item alone gets the same row as in a batch."""
    cs, ph = _concepts(cat), [it.phash for it in cat.items]
    enc = SlotEncoder().fit(SlotEncoder().count(cs, ph))
    full = enc.transform(cs, ph)
    one = enc.transform(cs[3:4], ph[3:4])
    row = full.take([3])
    for k in full.names:
        a, b = row.matrices[k], one.matrices[k]
        a, b = (a.toarray(), b.toarray()) if hasattr(a, "toarray") else (a, b)
        assert np.allclose(a, b, atol=1e-6), k


def test_slotset_save_load_mmap(cat, tmp_path):
    cs, ph = _concepts(cat), [it.phash for it in cat.items]
    s = SlotEncoder().fit(SlotEncoder().count(cs, ph)).transform(cs, ph)
    s.save(tmp_path, "seg-0")
    t = SlotSet.load(tmp_path, "seg-0")
    i, j = np.triu_indices(len(cs), 1)
    assert np.allclose(s.pair_features(i, j), t.pair_features(i, j))


def test_pca_reducer_save_load(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 40)).astype(np.float32)
    r = PCAReducer(n_components=8).fit(x)
    r.save(tmp_path)
    assert np.allclose(r.transform(x), load_reducer(tmp_path).transform(x), atol=1e-6)
    with pytest.raises(ModelDirError, match="reducer"):
        load_reducer(tmp_path, expect="none")


def test_fitrep_save_load_transform_identical(cat, tmp_path):
    m = FITRep.default().fit_encoders(cat)
    m.save(tmp_path / "m")
    a, b = m.transform(cat), FITRep.load(tmp_path / "m").transform(cat)
    assert list(a.ids) == list(b.ids)
    assert np.allclose(a.vectors, b.vectors, atol=1e-6)
    i, j = np.triu_indices(len(cat), 1)
    assert np.allclose(m.score_pairs(a.slots, i, j)[0], FITRep.load(tmp_path / "m").score_pairs(b.slots, i, j)[0])


def test_stages_given_as_objects_are_not_mutated(cat):
    from itemrep.dedup.cluster import NearDuplicateClusterer
    from itemrep.dedup.fusion import AttentionFusion

    fus, cl = AttentionFusion(), NearDuplicateClusterer(threshold=0.5)
    FITRep(fusion=fus, clusterer=cl, images="off").fit(cat)
    assert not hasattr(fus, "alpha_") and cl.threshold == 0.5


def test_chunks_and_workers_give_the_same_clusters(cat):
    a = FITRep.default(images="off").dedup(cat).clusters
    b = FITRep.default(images="off", chunk_size=7, n_jobs=2).dedup(cat).clusters
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("bad, field", [
    ({"format": 2, "params": []}, "params"),
    ([1, 2], "JSON object"),
    ("drop:params.tau", "params.tau"),
    ("set:params.k=ten", "params.k"),
    ("set:fusion.alpha.primary_words=nan", "fusion.alpha"),
    ("set:fusion.alpha.nonexistent_slot=0.5", "nonexistent_slot"),
])
def test_malformed_model_json_names_the_field(tmp_path, bad, field):
    from importlib import resources

    good = json.loads((resources.files("itemrep") / "data" / "default_model.json").read_text())
    if isinstance(bad, str):
        op, path = bad.split(":", 1)
        keys, _, val = path.partition("=")
        *head, last = keys.split(".")
        d = good
        for k in head:
            d = d[k]
        if op == "drop":
            del d[last]
        else:
            d[last] = float(val) if val == "nan" or val.replace(".", "").isdigit() else val
        payload = good
    else:
        payload = bad
    (tmp_path / "model.json").write_text(json.dumps(payload))
    with pytest.raises(ModelDirError, match=field.replace(".", r"\.")):
        FITRep.load(tmp_path)


def test_out_dir_checked_before_work(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OSError, match="not a directory"):
        check_out_dir(f)
    with pytest.raises(OSError, match="cannot write"):
        check_out_dir(f / "under")


def test_reused_out_has_no_stale_files(cat, tmp_path):
    out = tmp_path / "out"
    FITRep.default(images="off").dedup(cat).write(out)
    assert (out / "metrics.json").exists()
    unlabelled = Catalog.load(FIX / "catalog_small.csv")
    FITRep.default(images="off").dedup(unlabelled).write(out)
    assert not (out / "metrics.json").exists() and (out / "clusters.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".itemrep-tmp")]


def test_identical_items_share_one_cluster(tmp_path):
    """100 identical listings (title and phash) gave 2 clusters before (#11 item 9)."""
    rows = [{"item_id": f"x{i:04d}", "title": "Botol Minum Tupperware Eco Bottle 500ml Biru", "phash": "c3d4e5f60718293a"}
            for i in range(100)]
    rows += [{"item_id": f"y{i:03d}", "title": f"Kaos polos cotton combed size {s} warna {c}", "phash": None}
             for i, (s, c) in enumerate([(s, c) for s in "SMLX" for c in ("merah", "biru", "hitam", "putih")])]
    p = tmp_path / "c.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    res = FITRep.default(images="off").dedup(Catalog.load(p))
    cl = res.clusters
    assert cl[cl.item_id.str.startswith("x")].cluster_id.nunique() == 1
    assert res.run["degenerate_extractor"] is None  # identical inputs, identical concepts: not a broken extractor


@pytest.mark.parametrize("analyzer,ngram", [("char_wb", (2, 4)), ("word", (1, 1)), ("word", (1, 2)), ("char", (2, 3))])
def test_hashed_counts_equal_sklearn_hashing_vectorizer(analyzer, ngram):
    """The per-word / per-document hashing shortcut gives scikit-learn's HashingVectorizer counts exactly."""
    from itemrep.encoders.text import HashedTfidfEncoder

    texts = list(pd.read_csv(FIX / "catalog_small.csv")["title"].astype(str)) * 3 + [
        "", None, "ΟΔΟΣ Σ", "İstanbul  çay\t\tx", "a", "  ", "ab-c/d.e f_g 500ml 500ML", "😀😀 x", "a a a a"]
    enc = HashedTfidfEncoder(analyzer, ngram)
    ref = enc._hasher().transform([t or "" for t in texts]).tocsr()
    ref.sort_indices()
    got = enc.counts(texts)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.array_equal(got.indptr, ref.indptr) and np.array_equal(got.indices, ref.indices)
    assert np.array_equal(got.data, ref.data)
    assert enc.counts([]).shape == (0, enc.n_features)
    # one or a few documents take the small-input path (terms hashed one by one): same rows
    for k, t in enumerate(texts[:60] + texts[-9:]):
        one = enc.counts([t])
        r = ref[texts.index(t)]
        assert np.array_equal(one.indices, r.indices) and np.array_equal(one.data, r.data), (k, t)
    few = enc.counts(texts[-9:-2])
    assert (few != ref[len(texts) - 9:len(texts) - 2]).nnz == 0


def test_kept_workers_give_the_same_rows_and_stop_on_close(cat):
    """FITRep.keep_workers: batches encoded by kept worker processes equal a fresh fork's output."""
    from itemrep.dedup import pipeline as pl

    m = FITRep(n_jobs=2, chunk_size=7).fit(cat)
    ref = m.transform(cat)
    m.keep_workers()
    try:
        a, b = m.transform(cat), m.transform(cat)
        pool = pl._KEPT[id(m)]["pool"]
        assert pool is not None
    finally:
        m.close()
    assert id(m) not in pl._KEPT
    for got in (a, b):
        assert list(got.ids) == list(ref.ids)
        np.testing.assert_array_equal(got.vectors, ref.vectors)


def test_no_worker_processes_with_a_dense_text_encoder():
    """A dense text encoder (torch, threads) runs in the one process: forked copies of a process
    that has used torch can deadlock (seen with a sentence-transformers slot on 17k items)."""
    from itemrep.dedup.pipeline import FITRep, default_extractor
    from itemrep.dedup.slots import SlotEncoder

    class Dense:
        def encode(self, texts):
            return np.ones((len(texts), 4), np.float32)

    m, ex = FITRep(), default_extractor()
    assert m._n_jobs(ex, 20_000, SlotEncoder()) == 2 or (os.cpu_count() or 1) < 2
    assert m._n_jobs(ex, 20_000, SlotEncoder(dense_encoder=Dense())) == 1
