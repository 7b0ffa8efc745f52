"""FBC: FAISS kNN graph, thresholded edges, union-find, chaining guard, stable cluster ids
(FITRep Sec. 3.3).

1. **kNN graph.** Every item's k nearest neighbours by inner product (= cosine on unit rows) from a
   FAISS index: exact ``IndexFlatIP`` up to ``exact_max`` items, HNSW (``IndexHNSWFlat``, inner
   product) above. Self-matches are removed; each undirected pair is kept once.
2. **Edges.** A pair becomes an edge when its score ≥ τ. The score is either given by the caller
   (e.g. the exact slot-decomposed similarity Σ α_k cos_k) or the index's inner product.
3. **Union-find** over the edges gives connected components.
4. **Chaining guard.** In a component the *representative* is the member with the largest sum of
   edge scores (ties: smallest item id). Members whose similarity to the representative is below
   ``guard_tau`` are split off and clustered again among themselves, so a chain a–b–c–…–z of
   pairwise-similar items cannot merge a and z when they are far apart.
5. **Stable ids.** ``cluster_id`` is a hash of the representative's item id, so it depends neither
   on row order nor on the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


class UnionFind:
    """Disjoint-set forest with path halving and union by size over items 0..n-1."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return int(a)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def components(self) -> np.ndarray:
        """Root of every item, int64 (n,)."""
        return np.array([self.find(a) for a in range(len(self.parent))], dtype=np.int64)


def knn_graph(x: np.ndarray, k: int, exact_max: int = 200_000, random_state: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Undirected kNN candidate pairs by inner product.

    Args:
        x: float32 (N, d), unit-norm rows.
        k: neighbours per item (self excluded).
        exact_max: above this many items an HNSW index replaces the exact one.

    Returns:
        ``(i, j, index_name)`` with int64 arrays (E,), i < j, each pair once, sorted.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), "none"
    kk = int(min(k + 1, n))
    if n <= exact_max:
        index = faiss.IndexFlatIP(d)
        name = "IndexFlatIP"
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(64, 2 * kk)
        name = "IndexHNSWFlat"
    index.add(x)
    _, nn = index.search(x, kk)
    rows = np.repeat(np.arange(n, dtype=np.int64), kk)
    cols = nn.reshape(-1).astype(np.int64)
    keep = (cols >= 0) & (cols != rows)
    a, b = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    pairs = np.unique(a * n + b)
    return pairs // n, pairs % n, name


def stable_cluster_id(representative_id: str) -> str:
    """Cluster id derived from the representative's item id: ``"c" + 15 hex digits`` of BLAKE2b."""
    return "c" + hashlib.blake2b(representative_id.encode("utf-8"), digest_size=8).hexdigest()[:15]


@dataclass
class Clustering:
    """Clustering result, aligned with the input items.

    Attributes:
        cluster_id: N stable cluster ids (strings).
        representative: int64 (N,) position of each item's representative.
        similarity: float32 (N,) similarity of each item to its representative (1.0 for itself).
        n_edges: edges at or above τ.
        n_split: items moved out of their component by the chaining guard.
    """

    cluster_id: list[str]
    representative: np.ndarray
    similarity: np.ndarray
    n_edges: int
    n_split: int


def cluster_edges(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    tau: float,
    ids: Sequence[str],
    pair_score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    guard_tau: float | None = None,
    max_rounds: int = 5,
) -> Clustering:
    """Union-find clustering of scored candidate pairs with a chaining guard.

    Args:
        n: number of items.
        i, j: int64 (E,) candidate pairs.
        score: float (E,) similarity of each pair.
        tau: edges with ``score >= tau`` are kept.
        ids: N item ids (strings; they break ties and derive cluster ids).
        pair_score: callable (a, b) -> (len(a),) similarities of arbitrary pairs, used by the
            chaining guard; ``None`` disables the guard.
        guard_tau: minimum similarity to the representative (default ``tau``).
        max_rounds: guard rounds (each may split components further).

    Returns:
        :class:`Clustering`.
    """
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    score = np.asarray(score, np.float32)
    keep = score >= tau
    ei, ej, es = i[keep], j[keep], score[keep]
    guard_tau = tau if guard_tau is None else guard_tau
    ids_arr = np.asarray(ids, dtype=object)
    # rank of each id in sorted order: an order-independent tie-breaker
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(ids_arr.astype(str), kind="stable")] = np.arange(n)

    active = np.ones(len(ei), dtype=bool)
    n_split = 0
    for _round in range(max_rounds + 1):
        uf = UnionFind(n)
        for a, b in zip(ei[active], ej[active]):
            uf.union(int(a), int(b))
        roots = uf.components()
        # representative: max sum of active edge scores, ties by smallest id rank
        strength = np.zeros(n, dtype=np.float64)
        np.add.at(strength, ei[active], es[active])
        np.add.at(strength, ej[active], es[active])
        order = np.lexsort((id_rank, -strength, roots))  # group by root, best first
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
        # detach far members from everything not equally far: drop edges between far and near items
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
    return Clustering(cluster_id=cluster_id, representative=rep, similarity=sim,
                      n_edges=int(active.sum()), n_split=int(n_split))


class NearDuplicateClusterer:
    """FBC stage: kNN graph + threshold + union-find + chaining guard + stable ids.

    Args:
        threshold: τ, the minimum edge similarity.
        k: neighbours per item in the kNN graph.
        guard: enable the chaining guard.
        guard_margin: the guard's minimum similarity to the representative is ``τ - guard_margin``.
        exact_max: largest catalog searched with an exact index (HNSW above).
    """

    def __init__(self, threshold: float = 0.5, k: int = 10, guard: bool = True, guard_margin: float = 0.1,
                 exact_max: int = 200_000) -> None:
        self.threshold = threshold
        self.k = k
        self.guard = guard
        self.guard_margin = guard_margin
        self.exact_max = exact_max

    def candidates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """kNN candidate pairs (i < j) of the (N, d) float32 unit-row matrix ``x``."""
        i, j, self.index_name_ = knn_graph(x, self.k, self.exact_max)
        return i, j

    def cluster(self, n: int, i, j, score, ids: Sequence[str], pair_score=None) -> Clustering:
        """Cluster scored candidate pairs (see :func:`cluster_edges`)."""
        return cluster_edges(n, i, j, score, self.threshold, ids,
                             pair_score=pair_score if self.guard else None,
                             guard_tau=self.threshold - self.guard_margin)
