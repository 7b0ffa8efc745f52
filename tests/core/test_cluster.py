"""FBC: kNN graph, union-find, chaining guard, stable ids."""

import numpy as np

from itemrep.dedup.cluster import NearDuplicateClusterer, UnionFind, cluster_edges, knn_graph, stable_cluster_id


def test_union_find():
    uf = UnionFind(5)
    uf.union(0, 1)
    uf.union(3, 4)
    uf.union(1, 4)
    r = uf.components()
    assert r[0] == r[1] == r[3] == r[4] != r[2]


def test_knn_graph_pairs_unique_and_ordered():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]] + 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, name = knn_graph(x, k=2)
    assert name == "IndexFlatIP"
    assert np.all(i < j)
    assert len(set(zip(i, j))) == len(i)
    assert (0, 1) in set(zip(i.tolist(), j.tolist())) and (2, 3) in set(zip(i.tolist(), j.tolist()))


def test_threshold_and_representative():
    ids = ["a", "b", "c", "d"]
    i, j = np.array([0, 1, 2]), np.array([1, 2, 3])
    s = np.array([0.9, 0.8, 0.2], dtype=np.float32)
    c = cluster_edges(4, i, j, s, 0.5, ids)
    assert c.cluster_id[0] == c.cluster_id[1] == c.cluster_id[2] != c.cluster_id[3]
    # b has the largest sum of edge scores (0.9 + 0.8)
    assert c.representative[0] == 1 and c.cluster_id[0] == stable_cluster_id("b")


def test_chaining_guard_splits_far_members():
    # a chain a-b-c-d-e of neighbours at 0.9, but the ends are far from the middle
    ids = list("abcde")
    i, j = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4])
    s = np.array([0.9, 0.95, 0.95, 0.9], np.float32)  # c is the strongest member -> representative
    sims = {(0, 2): 0.3, (4, 2): 0.3, (1, 2): 0.9, (3, 2): 0.9}

    def pair_score(a, b):
        return np.array([sims.get((int(x), int(y)), sims.get((int(y), int(x)), 0.0)) for x, y in zip(a, b)])

    no_guard = cluster_edges(5, i, j, s, 0.5, ids)
    assert len(set(no_guard.cluster_id)) == 1
    guarded = cluster_edges(5, i, j, s, 0.5, ids, pair_score=pair_score)
    assert guarded.n_split == 2
    assert guarded.cluster_id[1] == guarded.cluster_id[2] == guarded.cluster_id[3]
    assert guarded.cluster_id[0] != guarded.cluster_id[2] and guarded.cluster_id[4] != guarded.cluster_id[2]


def test_ids_do_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    x = np.repeat(centers, 3, axis=0) + rng.normal(scale=0.05, size=(60, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"item{k:03d}" for k in range(60)]
    cl = NearDuplicateClusterer(threshold=0.9, k=5)

    def run(order):
        xo = x[order]
        i, j = cl.candidates(xo)
        s = np.einsum("ij,ij->i", xo[i], xo[j])
        c = cl.cluster(60, i, j, s, [ids[o] for o in order], pair_score=lambda a, b: np.einsum("ij,ij->i", xo[a], xo[b]))
        return dict(zip([ids[o] for o in order], c.cluster_id))

    a = run(np.arange(60))
    b = run(rng.permutation(60))
    assert a == b
    assert len(set(a.values())) == 20


def test_large_catalogs_switch_to_hnsw():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i_exact, j_exact, name_exact = knn_graph(x, k=5)
    i_hnsw, j_hnsw, name_hnsw = knn_graph(x, k=5, exact_max=100)
    assert name_exact == "IndexFlatIP" and name_hnsw == "IndexHNSWFlat"
    exact = set(zip(i_exact.tolist(), j_exact.tolist()))
    approx = set(zip(i_hnsw.tolist(), j_hnsw.tolist()))
    assert len(exact & approx) / len(exact) > 0.9  # approximate search keeps nearly all neighbours
