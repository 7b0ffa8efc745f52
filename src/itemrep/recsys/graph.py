"""Graphs used by the graph recommenders: the user-item bipartite graph and the item-item kNN graph.

Nothing here materialises a dense items x items (or users x items) matrix: the kNN search is done
by FAISS in batches and every graph is a sparse tensor.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class SparseMatrix:
    """A frozen sparse matrix usable in autograd: ``S @ x`` for a dense torch tensor ``x``.

    The product runs in SciPy's CSR kernel (several times faster than torch's sparse CPU kernels
    on this machine, forward and especially backward); the backward pass is ``S^T @ grad``.

    Args:
        m: any SciPy sparse matrix (n, p); stored as float32 CSR together with its transpose.
    """

    def __init__(self, m: sp.spmatrix) -> None:
        self.csr = m.tocsr().astype(np.float32)
        self.csr.sort_indices()
        self.csr_t = self.csr.T.tocsr()
        self.shape = self.csr.shape

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.csr.nnz)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """``S @ x`` for x float32 (p, d) -> (n, d), differentiable w.r.t. ``x``."""
        return _SparseMM.apply(x, self)


class _SparseMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, s: SparseMatrix) -> torch.Tensor:  # type: ignore[override]
        ctx.s = s
        return torch.from_numpy(np.ascontiguousarray(s.csr @ x.detach().float().numpy()))

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return torch.from_numpy(np.ascontiguousarray(ctx.s.csr_t @ g.contiguous().numpy())), None


def _to_torch_sparse(m: sp.spmatrix) -> SparseMatrix:
    return SparseMatrix(m)


def symmetric_normalized(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> SparseMatrix:
    """``D^-1/2 A D^-1/2`` of the undirected graph with edges ``src[k] -- dst[k]`` (binary ``A``).

    Args:
        n_nodes: number of nodes.
        src, dst: int arrays (n_edges,) of node ids; repeated edges count once.

    Returns:
        :class:`SparseMatrix` (n_nodes, n_nodes); nodes with degree 0 get a zero row.
    """
    a = sp.coo_matrix((np.ones(2 * len(src), np.float32), (np.r_[src, dst], np.r_[dst, src])), shape=(n_nodes, n_nodes)).tocsr()
    a.sum_duplicates()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        dinv = np.where(deg > 0, deg ** -0.5, 0.0).astype(np.float32)
    d = sp.diags(dinv)
    return _to_torch_sparse(d @ a @ d)


def normalized_adjacency(n_users: int, n_items: int, train: np.ndarray) -> SparseMatrix:
    """Symmetric-normalised adjacency of the user-item graph, ``D^-1/2 A D^-1/2``.

    ``A = [[0, R], [R^T, 0]]`` with ``R`` the (n_users, n_items) binary training matrix (LightGCN,
    He et al. 2020, Eq. 7). Nodes with degree 0 get a zero row.

    Args:
        n_users, n_items: graph sizes.
        train: int64 (n, 2) array of (user, item) training pairs (duplicates count once).

    Returns:
        :class:`SparseMatrix` of shape (n_users + n_items, n_users + n_items).
    """
    return symmetric_normalized(n_users + n_items, train[:, 0], train[:, 1] + n_users)


def cluster_adjacency(n_users: int, n_items: int, train: np.ndarray, cluster_of: np.ndarray, mode: str) -> SparseMatrix:
    """Normalised user-item graph with near-duplicate clusters as nodes (issue 13, shared cluster representations).

    * ``mode="merge"``: every item is replaced by its cluster, ``A = [[0, R M], [(R M)^T, 0]]``
      with ``M`` the (n_items, n_clusters) membership matrix (binarised): nodes ``users +
      clusters``. A cluster node gathers the interactions of all its members, so an item without
      any has its cluster's history.
    * ``mode="attach"``: the user-item graph plus one node per cluster linked to each of its
      member items: nodes ``users + items + clusters``. An item without interactions is linked to
      its cluster node, and through it to its cluster mates and their users.

    Args:
        n_users, n_items: graph sizes.
        train: int64 (n, 2) (user, item) training pairs.
        cluster_of: int64 (n_items,) contiguous cluster ids.
        mode: ``merge`` or ``attach``.

    Returns:
        :class:`SparseMatrix`, ``D^-1/2 A D^-1/2`` (:func:`symmetric_normalized`).

    Raises:
        ValueError: unknown ``mode``.
    """
    c = np.asarray(cluster_of, dtype=np.int64)
    n_clusters = int(c.max()) + 1
    if mode == "merge":
        return symmetric_normalized(n_users + n_clusters, train[:, 0], n_users + c[train[:, 1]])
    if mode == "attach":
        items = np.arange(n_items)
        return symmetric_normalized(n_users + n_items + n_clusters, np.r_[train[:, 0], n_users + items],
                                    np.r_[n_users + train[:, 1], n_users + n_items + c])  # fmt: skip
    raise ValueError(f"unknown cluster graph mode {mode!r}; use 'merge' or 'attach'")


def knn_graph(features: np.ndarray, k: int = 10, batch_size: int = 16384) -> sp.csr_matrix:
    """Item-item kNN graph on cosine similarity of raw features, each row a mean over neighbours.

    For every item the ``k`` most cosine-similar *other* items are found with an exact FAISS
    inner-product search on L2-normalised features (``faiss.IndexFlatIP``, queried in batches so
    memory is O(batch x k), never N x N). Row ``i`` of the result holds ``1/k`` at its neighbours
    (LIRDRec / FREEDOM's frozen item-item graph, Zhou et al. 2023 Sec. 3.1; the row-mean
    normalisation of the issue). Items whose feature vector is all zeros get neighbours by index
    tie-breaking like everyone else; an item set with fewer than ``k + 1`` items uses
    ``n_items - 1`` neighbours.

    Args:
        features: float array (n_items, d).
        k: neighbours per item (>= 1).
        batch_size: query batch size.

    Returns:
        scipy CSR float32 matrix (n_items, n_items) with ``min(k, n-1)`` non-zeros per row.

    Raises:
        ValueError: if ``features`` is not 2-D or ``k < 1``.
    """
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_items, d), got shape {x.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = x.shape[0]
    if n < 2:
        return sp.csr_matrix((n, n), dtype=np.float32)
    kk = min(k, n - 1)
    x = x.copy()
    faiss.normalize_L2(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    nbrs = np.empty((n, kk), dtype=np.int64)
    for s in range(0, n, batch_size):
        q = x[s : s + batch_size]
        _, idx = index.search(q, kk + 1)
        self_ids = np.arange(s, s + len(q))[:, None]
        is_self = idx == self_ids
        # drop the item itself when found; otherwise drop the last (weakest) neighbour
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk)
        keep = np.ones_like(idx, dtype=bool)
        keep[np.arange(len(q)), drop] = False
        nbrs[s : s + len(q)] = idx[keep].reshape(len(q), kk)
    rows = np.repeat(np.arange(n), kk)
    g = sp.csr_matrix((np.full(n * kk, 1.0 / kk, np.float32), (rows, nbrs.ravel())), shape=(n, n))
    return g


def mixed_knn_graph(features: dict[str, np.ndarray], weights: dict[str, float] | None = None, k: int = 10) -> SparseMatrix:
    """Weighted mix ``S = sum_m w_m S_m`` of per-modality kNN graphs (:func:`knn_graph`).

    Args:
        features: modality -> (n_items, d_m) raw features.
        weights: modality -> weight; default uniform ``1/M``. Weights are renormalised to sum to 1
            so every row of ``S`` still sums to 1.
        k: neighbours per item and modality.

    Returns:
        :class:`SparseMatrix` (n_items, n_items), CSR with at most ``M * k`` non-zeros per row.

    Raises:
        ValueError: if ``features`` is empty or a weight names an unknown modality.
    """
    if not features:
        raise ValueError("mixed_knn_graph needs at least one modality")
    names = list(features)
    w = {m: 1.0 for m in names} if weights is None else dict(weights)
    unknown = set(w) - set(names)
    if unknown:
        raise ValueError(f"knn weights name unknown modalities {sorted(unknown)}; have {names}")
    tot = sum(w.get(m, 0.0) for m in names)
    if tot <= 0:
        raise ValueError("knn weights must have a positive sum")
    s = None
    for m in names:
        if w.get(m, 0.0) == 0:
            continue
        g = knn_graph(features[m], k=k) * (w[m] / tot)
        s = g if s is None else s + g
    return _to_torch_sparse(s)
