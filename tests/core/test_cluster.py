"""FBC: candidate search (exact and IVF), candidate recall, vectorised clustering vs the old
union-find implementation, identical-item groups, stable ids."""

import json

import numpy as np
import pytest

from itemrep.dedup.cluster import (CandidateSearch, NearDuplicateClusterer, candidate_recall, cluster_edges,
                                   exact_duplicate_groups, knn_graph, stable_cluster_id)


# ---------------------------------------------------------------- reference oracle (the old code)
class UnionFind:
    """Disjoint-set forest with path halving and union by size over items 0..n-1."""

    def __init__(self, n):
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, a):
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return int(a)

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def components(self):
        return np.array([self.find(a) for a in range(len(self.parent))], dtype=np.int64)


def oracle_cluster_edges(n, i, j, score, tau, ids, pair_score=None, guard_tau=None, max_rounds=5):
    """``cluster_edges`` before vectorisation (pure-Python union-find), kept verbatim as the oracle."""
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    score = np.asarray(score, np.float32)
    keep = score >= tau
    ei, ej, es = i[keep], j[keep], score[keep]
    guard_tau = tau if guard_tau is None else guard_tau
    ids_arr = np.asarray(ids, dtype=object)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(ids_arr.astype(str), kind="stable")] = np.arange(n)
    active = np.ones(len(ei), dtype=bool)
    n_split = 0
    for _round in range(max_rounds + 1):
        uf = UnionFind(n)
        for a, b in zip(ei[active], ej[active]):
            uf.union(int(a), int(b))
        roots = uf.components()
        strength = np.zeros(n, dtype=np.float64)
        np.add.at(strength, ei[active], es[active])
        np.add.at(strength, ej[active], es[active])
        order = np.lexsort((id_rank, -strength, roots))
        first = np.ones(n, dtype=bool)
        first[1:] = roots[order][1:] != roots[order][:-1]
        rep_of_root = dict(zip(roots[order][first].tolist(), order[first].tolist()))
        rep = np.array([rep_of_root[r] for r in roots], dtype=np.int64)
        if pair_score is None or _round == max_rounds:
            break
        members = np.nonzero(rep != np.arange(n))[0]
        if len(members) == 0:
            break
        sim_to_rep = np.asarray(pair_score(members, rep[members]), dtype=np.float32)
        far = members[sim_to_rep < guard_tau]
        if len(far) == 0:
            break
        n_split += len(far)
        is_far = np.zeros(n, dtype=bool)
        is_far[far] = True
        active &= is_far[ei] == is_far[ej]
    sim = np.ones(n, dtype=np.float32)
    members = np.nonzero(rep != np.arange(n))[0]
    if len(members):
        if pair_score is not None:
            sim[members] = np.asarray(pair_score(members, rep[members]), dtype=np.float32)
        else:
            sim[members] = np.nan
    cluster_id = [stable_cluster_id(str(ids_arr[r])) for r in rep]
    return cluster_id, rep, sim, int(active.sum()), int(n_split)


# ---------------------------------------------------------------- helpers
def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dup_data(n_centres, copies, d=16, noise=0.05, seed=0):
    """Clusters of near-identical unit vectors (what the dedup sees), shuffled."""
    rng = np.random.default_rng(seed)
    c = unit(rng.normal(size=(n_centres, d)))
    x = unit(np.repeat(c, copies, axis=0) + rng.normal(scale=noise, size=(n_centres * copies, d)))
    return x[rng.permutation(len(x))]


def random_graph(rng, n):
    e = int(rng.integers(0, 3 * n))
    i = rng.integers(0, n, e)
    j = rng.integers(0, n, e)
    ok = i != j
    i, j = np.minimum(i[ok], j[ok]), np.maximum(i[ok], j[ok])
    # coarse scores make ties in the representative choice frequent
    s = rng.choice([0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], size=len(i)).astype(np.float32)
    return i, j, s


def pair_table(rng, n):
    """A deterministic symmetric pair scorer backed by a random matrix."""
    m = rng.choice([0.2, 0.4, 0.45, 0.5, 0.55, 0.7, 0.9], size=(n, n)).astype(np.float32)
    m = np.triu(m) + np.triu(m, 1).T
    return lambda a, b: m[np.asarray(a), np.asarray(b)]


# ---------------------------------------------------------------- clustering
def test_threshold_and_representative():
    ids = ["a", "b", "c", "d"]
    i, j = np.array([0, 1, 2]), np.array([1, 2, 3])
    s = np.array([0.9, 0.8, 0.2], dtype=np.float32)
    c = cluster_edges(4, i, j, s, 0.5, ids)
    assert c.cluster_id[0] == c.cluster_id[1] == c.cluster_id[2] != c.cluster_id[3]
    # b has the largest sum of edge scores (0.9 + 0.8)
    assert c.representative[0] == 1 and c.cluster_id[0] == stable_cluster_id("b")
    assert c.n_edges == 2 and c.n_split == 0 and np.isnan(c.similarity[0]) and c.similarity[1] == 1.0


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


@pytest.mark.parametrize("guard", [False, True])
def test_vectorised_clustering_matches_union_find_oracle(guard):
    rng = np.random.default_rng(7 + guard)
    for trial in range(60):
        n = int(rng.integers(1, 40))
        i, j, s = random_graph(rng, n)
        ids = [f"id{v:03d}" for v in rng.permutation(n)]
        tau = float(rng.choice([0.5, 0.6, 0.8]))
        ps = pair_table(rng, n) if guard else None
        gt = float(rng.choice([0.45, 0.5, 0.6])) if guard else None
        rounds = int(rng.integers(0, 6))
        want = oracle_cluster_edges(n, i, j, s, tau, ids, pair_score=ps, guard_tau=gt, max_rounds=rounds)
        got = cluster_edges(n, i, j, s, tau, ids, pair_score=ps, guard_tau=gt, max_rounds=rounds)
        assert got.cluster_id == want[0], trial
        np.testing.assert_array_equal(got.representative, want[1])
        np.testing.assert_array_equal(got.similarity, want[2])
        assert (got.n_edges, got.n_split) == (want[3], want[4]), trial


def test_oracle_equivalence_on_a_larger_guarded_graph():
    rng = np.random.default_rng(3)
    x = dup_data(30, 8, d=8, noise=0.3, seed=3)
    n = len(x)
    i, j, _ = knn_graph(x, k=6)
    s = np.einsum("ij,ij->i", x[i], x[j])

    def ps(a, b):
        return np.einsum("ij,ij->i", x[a], x[b])

    ids = [f"p{v}" for v in rng.permutation(n)]
    want = oracle_cluster_edges(n, i, j, s, 0.7, ids, pair_score=ps, guard_tau=0.75)
    got = cluster_edges(n, i, j, s, 0.7, ids, pair_score=ps, guard_tau=0.75)
    assert want[4] > 0  # the guard did split something
    assert got.cluster_id == want[0] and (got.n_edges, got.n_split) == (want[3], want[4])
    np.testing.assert_array_equal(got.similarity, want[2])


def test_identical_items_always_share_a_cluster():
    # 50 identical listings whose kNN edges form two separate cliques, plus two other items
    n = 52
    ids = [f"x{v:02d}" for v in range(n)]
    a = np.array([(u, v) for u in range(25) for v in range(u + 1, 25)] + [(u, v) for u in range(25, 50) for v in range(u + 1, 50)])
    i, j = a[:, 0], a[:, 1]
    s = np.full(len(i), 0.99, np.float32)
    plain = cluster_edges(n, i, j, s, 0.5, ids)
    assert len(set(plain.cluster_id[:50])) == 2
    groups = np.r_[np.zeros(50, np.int64), -1, -1]
    c = cluster_edges(n, i, j, s, 0.5, ids, groups=groups)
    assert len(set(c.cluster_id[:50])) == 1 and c.cluster_id[50] != c.cluster_id[0] != c.cluster_id[51]
    # groups without any edge are linked too
    c = cluster_edges(4, [], [], [], 0.5, list("abcd"), groups=np.array([3, -1, 3, -1]))
    assert c.cluster_id[0] == c.cluster_id[2] != c.cluster_id[1] != c.cluster_id[3]


def test_guard_never_splits_a_group():
    # chain a-b-c-d-e, c representative; a and e far from c, but a and e are identical to b
    ids = list("abcde")
    i, j = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4])
    s = np.array([0.9, 0.95, 0.95, 0.9], np.float32)
    sims = {(0, 2): 0.3, (4, 2): 0.3, (1, 2): 0.9, (3, 2): 0.9}

    def pair_score(a, b):
        return np.array([sims.get((int(x), int(y)), sims.get((int(y), int(x)), 0.0)) for x, y in zip(a, b)])

    c = cluster_edges(5, i, j, s, 0.5, ids, pair_score=pair_score, groups=np.array([0, 0, -1, -1, -1]))
    # a is far but grouped with b (near): it stays; e is split off
    assert c.cluster_id[0] == c.cluster_id[1] == c.cluster_id[2] == c.cluster_id[3] != c.cluster_id[4]
    assert c.n_split == 1
    with pytest.raises(ValueError, match="groups"):
        cluster_edges(5, i, j, s, 0.5, ids, groups=np.zeros(4, np.int64))


def test_exact_duplicate_groups():
    x = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]], np.float32)
    g = exact_duplicate_groups(x)
    assert g[0] == g[2] == g[5] >= 0 and g[1] == g[4] >= 0 and g[0] != g[1] and g[3] == -1
    assert sorted(set(g.tolist()) - {-1}) == [0, 1]
    assert exact_duplicate_groups(np.zeros((0, 3), np.float32)).shape == (0,)


def test_clusterer_keeps_thousands_of_identical_listings_together():
    rng = np.random.default_rng(0)
    x = np.vstack([np.repeat(unit(rng.normal(size=(1, 16))), 2000, axis=0), dup_data(20, 3, seed=1)])
    ids = [f"i{v:05d}" for v in range(len(x))]
    cl = NearDuplicateClusterer(threshold=0.9, k=5)
    i, j = cl.candidates(x)
    s = np.einsum("ij,ij->i", x[i], x[j])
    c = cl.cluster(len(x), i, j, s, ids, pair_score=lambda a, b: np.einsum("ij,ij->i", x[a], x[b]))
    assert len(set(c.cluster_id[:2000])) == 1
    assert len(set(c.cluster_id)) == 21
    assert cl.search_info_["n_identical"] == 2000 and cl.search_info_["n_searched"] == 61
    # the identical-vector groups can also be passed on explicitly
    c2 = cl.cluster(len(x), i, j, s, ids, groups=cl.groups_)
    assert c2.cluster_id == c.cluster_id
    assert np.all(i < j) and len(np.unique(i * len(x) + j)) == len(i)


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


# ---------------------------------------------------------------- candidate search
def test_knn_graph_pairs_unique_and_ordered():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]] + 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, name = knn_graph(x, k=2)
    assert name == "IndexFlatIP"
    assert np.all(i < j)
    assert len(set(zip(i, j))) == len(i)
    assert (0, 1) in set(zip(i.tolist(), j.tolist())) and (2, 3) in set(zip(i.tolist(), j.tolist()))
    assert knn_graph(x[:1], k=2)[2] == "none"


def test_large_catalogs_switch_to_ivf():
    x = dup_data(60, 10, d=16, noise=0.05, seed=1)
    i_exact, j_exact, name_exact = knn_graph(x, k=5)
    i_ivf, j_ivf, name_ivf = knn_graph(x, k=5, exact_max=100)
    assert name_exact == "IndexFlatIP" and name_ivf == "IndexIVFFlat"
    exact = set(zip(i_exact.tolist(), j_exact.tolist()))
    approx = set(zip(i_ivf.tolist(), j_ivf.tolist()))
    assert np.all(i_ivf < j_ivf) and len(approx) == len(i_ivf)
    assert len(exact & approx) / len(exact) > 0.95  # approximate search keeps nearly all neighbours


def test_ivf_batch_search_equals_faiss_search():
    x = dup_data(40, 10, d=16, noise=0.1, seed=2)
    cs = CandidateSearch(k=5, exact_max=50, nlist=16, nprobe=3).fit(x)
    assert cs.index_name_ == "IndexIVFFlat" and cs.nlist_ == 16 and cs.nprobe_ == 3 and cs.n_items_ == 400
    q = x[:300]
    cs.batch_min = 10**9
    s_ref, i_ref = cs.search(q, 7)  # faiss IndexIVF.search
    cs.batch_min = 1
    s_bat, i_bat = cs.search(q, 7)  # list-by-list BLAS
    np.testing.assert_allclose(s_bat, s_ref, atol=1e-5)
    agree = np.mean([len(set(a) & set(b)) / 7 for a, b in zip(i_bat.tolist(), i_ref.tolist())])
    assert agree > 0.99  # only ties may differ
    assert s_bat.dtype == np.float32 and i_bat.dtype == np.int64 and s_bat.shape == (300, 7)


def test_candidate_search_add_and_unreachable_neighbours():
    x = dup_data(10, 3, d=8, seed=4)
    cs = CandidateSearch(k=3).fit(x[:20])
    cs.add(x[20:])
    assert cs.n_items_ == 30
    s, ids = cs.search(x[25:26], 1)
    assert ids[0, 0] == 25 and s[0, 0] == pytest.approx(1.0, abs=1e-5)
    s, ids = cs.search(x[:2], 40)  # more than indexed
    assert np.all(ids[:, 30:] == -1) and np.all(np.isneginf(s[:, 30:]))
    with pytest.raises(ValueError, match="d=4"):
        cs.search(np.zeros((1, 4), np.float32))
    with pytest.raises(RuntimeError, match="fit"):
        CandidateSearch().search(x)


@pytest.mark.parametrize("exact_max", [10**6, 100])
def test_candidate_search_save_load_roundtrip(tmp_path, exact_max):
    x = dup_data(40, 10, d=16, noise=0.1, seed=5)
    cs = CandidateSearch(k=4, exact_max=exact_max, nlist=8, nprobe=2).fit(x)
    pairs = cs.knn_pairs()
    s1, i1 = cs.search(x[:50], 6)
    cs.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "search.json").read_text())
    assert meta["format"] == 1 and meta["params"]["k"] == 4 and (tmp_path / "s" / "faiss.index").exists()
    back = CandidateSearch.load(tmp_path / "s", k=4)
    assert back.index_name_ == cs.index_name_ and back.n_items_ == 400 and back.nprobe_ == cs.nprobe_
    s2, i2 = back.search(x[:50], 6)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    for a, b in zip(pairs, back.knn_pairs()):  # from the vectors read back out of the index
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'k'"):
        CandidateSearch.load(tmp_path / "s", k=10)
    meta["format"] = 99
    (tmp_path / "s" / "search.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format"):
        CandidateSearch.load(tmp_path / "s")
    meta["format"], meta["params"]["nlist"], meta["nlist"] = 1, 8, 99
    (tmp_path / "s" / "search.json").write_text(json.dumps(meta))
    if exact_max == 100:
        with pytest.raises(ValueError, match="'nlist'"):
            CandidateSearch.load(tmp_path / "s")


def test_candidate_recall_tiny_case():
    x = unit(np.array([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1], [0, 0, 1]], np.float32))

    def score(a, b):
        return np.einsum("ij,ij->i", x[a], x[b])

    full = candidate_recall(x, [0, 2], [1, 3], score, tau=0.9, k=1)
    assert full == {"sample": 5, "exact_edges_above_tau": 2, "recall": 1.0}
    half = candidate_recall(x, [0], [1], score, tau=0.9, k=1)
    assert half["exact_edges_above_tau"] == 2 and half["recall"] == 0.5
    assert candidate_recall(x, [], [], score, tau=1.5, k=1)["recall"] == 1.0  # nothing above tau
    assert candidate_recall(x, [], [], score, tau=0.9, k=1, groups=np.array([0, 0, 1, 1, -1]))["recall"] == 1.0


def test_ivf_candidates_have_high_recall_on_near_duplicates():
    x = dup_data(200, 10, d=32, noise=0.05, seed=6)
    cs = CandidateSearch(k=10, exact_max=100).fit(x)
    i, j = cs.knn_pairs()
    r = candidate_recall(x, i, j, lambda a, b: np.einsum("ij,ij->i", x[a], x[b]), tau=0.8, sample=300)
    assert r["sample"] == 300 and r["exact_edges_above_tau"] > 1000 and r["recall"] >= 0.99


def test_two_level_quantizer_path(tmp_path):
    x = dup_data(300, 10, d=16, noise=0.05, seed=8)
    cs = CandidateSearch(k=5, exact_max=100, nlist=256, nprobe=4).fit(x)
    assert cs.index_name_ == "IndexIVFFlat" and 200 <= cs.nlist_ <= 300
    i, j = cs.knn_pairs()
    r = candidate_recall(x, i, j, lambda a, b: np.einsum("ij,ij->i", x[a], x[b]), tau=0.8, sample=300, k=5)
    assert r["recall"] >= 0.98
    s_bat, i_bat = cs.search(x[:2000])
    cs.batch_min = 10**9
    s_ref, i_ref = cs.search(x[:2000])  # faiss IndexIVF.search through the nested quantizer
    np.testing.assert_allclose(s_bat, s_ref, atol=1e-5)
    back = CandidateSearch.load(cs.save(tmp_path / "two"))
    for a, b in zip((i, j), back.knn_pairs()):
        np.testing.assert_array_equal(a, b)


def test_compiled_ivf_scan_is_exact_within_probed_lists_and_thread_independent():
    from itemrep.dedup._kernels import ivf_scan

    rng = np.random.default_rng(3)
    vecs = rng.integers(-3, 4, (300, 8)).astype(np.float32)  # small integers: exact sums, many tied scores
    vecs[100:110] = vecs[0]  # identical rows: ties broken by id
    lists = rng.integers(0, 12, len(vecs))
    order = np.argsort(lists, kind="stable")
    ptr = np.r_[0, np.cumsum(np.bincount(lists, minlength=12))].astype(np.int64)
    q = vecs[:40].copy()
    coarse = np.stack([rng.permutation(12)[:5] for _ in range(40)]).astype(np.int64)
    coarse[3, 2:] = -1  # a query probing fewer lists
    ref = []
    for m in range(40):
        cand = np.nonzero(np.isin(lists, coarse[m][coarse[m] >= 0]))[0]
        s = vecs[cand] @ q[m]
        o = np.lexsort((cand, -s))[:7]
        ref.append(cand[o])
    for threads in (1, 2, 3):
        d, i = ivf_scan(q, coarse, vecs[order], ptr, order.astype(np.int64), 7, threads)
        for m in range(40):
            np.testing.assert_array_equal(i[m], ref[m])
        assert np.all(np.diff(d, axis=1) <= 0)


def test_batch_search_after_add_matches_faiss():
    x = dup_data(60, 10, d=16, noise=0.1, seed=9)
    cs = CandidateSearch(k=5, exact_max=100, nlist=16, nprobe=4, batch_min=1).fit(x[:400])
    cs.search(x[:50])  # builds the list-grouped copy
    cs.add(x[400:])  # ... which the add must extend
    q = x[::7]  # few queries per list: the compiled scan (many: one BLAS product per list)
    s_bat, i_bat = cs.search(q)
    cs.batch_min = 10**9
    s_ref, i_ref = cs.search(q)
    np.testing.assert_allclose(s_bat, s_ref, atol=1e-5)
    agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i_bat.tolist(), i_ref.tolist())])
    assert agree > 0.99 and i_bat.max() >= 400


def test_nearest_neighbour_rule_is_opt_in_and_keeps_each_items_best_pair():
    ids = ["a", "b", "c", "d", "e"]
    i = np.array([0, 0, 2, 3])
    j = np.array([1, 2, 3, 4])
    s = np.array([0.9, 0.3, 0.42, 0.2], np.float32)
    off = NearDuplicateClusterer(threshold=0.5, guard=False)
    assert off.nearest_edges(5, i, j, s) is None and off.min_edge_score == 0.5
    cl = off.cluster(5, i, j, s, ids)
    assert len(set(cl.cluster_id)) == 4  # only a-b merged
    on = NearDuplicateClusterer(threshold=0.5, guard=False, nn_threshold=0.4)
    assert on.min_edge_score == pytest.approx(0.4)
    np.testing.assert_array_equal(on.nearest_edges(5, i, j, s), [True, False, True, False])
    cl = on.cluster(5, i, j, s, ids)
    assert cl.cluster_id[2] == cl.cluster_id[3] != cl.cluster_id[0]  # c-d kept by the rule (0.42 >= 0.4)
    assert cl.cluster_id[4] not in cl.cluster_id[:4]  # e's best pair (0.2) is below the rule's threshold
    np.testing.assert_array_equal(on.edge_mask(5, i, j, s), [True, False, True, False])


def test_mutual_neighbour_filter_drops_one_sided_edges():
    ids = ["a", "b", "c", "d"]
    # d is a hub: every item's pair with d scores 0.6, but a-b, b-c are better for a, b, c
    i = np.array([0, 1, 0, 1, 2])
    j = np.array([1, 2, 3, 3, 3])
    s = np.array([0.9, 0.8, 0.6, 0.6, 0.6], np.float32)
    c = NearDuplicateClusterer(threshold=0.5, guard=False, mutual_k=1)
    # ranks: a: a-b 0, a-d 1; b: a-b 0, b-c 1, b-d 2; c: b-c 0, c-d 1; d (ties by pair order): a-d 0, b-d 1, c-d 2
    np.testing.assert_array_equal(c.mutual_pairs(4, i, j, s), [True, False, False, False, False])
    cl = c.cluster(4, i, j, s, ids)
    assert cl.cluster_id[0] == cl.cluster_id[1] and len({cl.cluster_id[0], cl.cluster_id[2], cl.cluster_id[3]}) == 3
    np.testing.assert_array_equal(c.edge_mask(4, i, j, s), [True, False, False, False, False])
    two = NearDuplicateClusterer(threshold=0.5, guard=False, mutual_k=2)
    np.testing.assert_array_equal(two.mutual_pairs(4, i, j, s), [True, True, True, False, False])
    assert NearDuplicateClusterer(threshold=0.5).mutual_pairs(4, i, j, s) is None
