"""Top-K lists over near-duplicate clusters: de-duplicated and MMR lists, cluster-level metrics.

A *cluster map* is an int64 array ``cluster_of`` (n_items,) with contiguous cluster ids
``0 .. n_clusters-1`` (:class:`itemrep.recsys.clusters.ItemClusters`). Three list policies:

* ``none`` -- the plain top-K by score;
* ``dedup`` -- walk the ranking from the top and skip every item whose cluster is already shown,
  so each cluster appears once, through its best-scored member. This equals taking the K clusters
  with the highest *best member* score, in that order, each shown by that member, which is how it
  is computed (one scatter-max over the items, no Python loop);
* ``mmr`` -- Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998): greedily pick
  ``argmax_i lambda * rel(i) - (1 - lambda) * max_{j in S} sim(i, j)`` over the items not yet
  picked, with ``S`` the items already in the list, ``sim(i, j) = 1`` when ``i`` and ``j`` share a
  cluster and 0 otherwise, and ``rel`` the score min-max normalised to [0, 1] over the user's
  candidate pool (the top ``pool`` items by score). ``lambda = 1`` is the plain list; with
  ``lambda <= 0.5`` a repeat of a shown cluster never beats an unshown one (the ``dedup`` list,
  up to ties); in between, a repeat is shown only when its normalised relevance exceeds the best
  unshown cluster's by more than ``(1 - lambda) / lambda``.

Items with a score of ``-inf`` (the user's training items, masked by the evaluator) rank last in
every policy, as in the plain list.
"""

from __future__ import annotations

import numpy as np
import torch

RERANKS: tuple[str, ...] = ("none", "dedup", "mmr")
#: Default MMR trade-off lambda (relevance weight).
DEFAULT_MMR_LAMBDA = 0.7


def check_rerank(method: str, mmr_lambda: float = DEFAULT_MMR_LAMBDA, have_clusters: bool = True) -> str:
    """Validate a list policy and its lambda; returns the lower-cased method.

    Raises:
        ValueError: unknown method, ``dedup``/``mmr`` without a cluster map, or ``mmr_lambda``
            outside (0, 1].
    """
    m = str(method).lower()
    if m not in RERANKS:
        raise ValueError(f"unknown rerank {method!r}; choose one of {list(RERANKS)}")
    if m != "none" and not have_clusters:
        raise ValueError(f"rerank={m} needs item clusters (`itemrep rec train --clusters clusters.parquet`)")
    if m == "mmr" and not 0.0 < float(mmr_lambda) <= 1.0:
        raise ValueError(f"mmr_lambda must be in (0, 1], got {mmr_lambda}")
    return m


def dedup_topk(scores: torch.Tensor, cluster_of: torch.Tensor, n_clusters: int, k: int) -> torch.Tensor:
    """De-duplicated top-K: the best-scored member of each of the K best clusters.

    Args:
        scores: float (b, n_items); ``-inf`` marks excluded items (they rank last).
        cluster_of: int64 (n_items,) cluster of each item, values in ``[0, n_clusters)``.
        n_clusters: number of clusters.
        k: list length.

    Returns:
        int64 (b, k) item ids, best first; the cluster order is by best member score, ties broken
        by ``torch.topk``; among members tied for a cluster's best score, the lowest item id. When
        ``k > n_clusters`` the last ``k - n_clusters`` columns are ``-1`` (no item).
    """
    b, n = scores.shape
    cl = cluster_of.view(1, n).expand(b, n)
    best = torch.full((b, n_clusters), -torch.inf, dtype=scores.dtype).scatter_reduce(1, cl, scores, "amax", include_self=True)
    is_best = scores >= best.gather(1, cl)
    idx = torch.where(is_best, torch.arange(n, dtype=torch.int32).view(1, n).expand(b, n), torch.tensor(n, dtype=torch.int32))
    rep = torch.full((b, n_clusters), n, dtype=torch.int32).scatter_reduce(1, cl, idx, "amin", include_self=True)
    kk = min(k, n_clusters)
    top_c = torch.topk(best, kk, dim=1).indices
    items = rep.gather(1, top_c).long()
    if kk < k:
        items = torch.cat([items, torch.full((b, k - kk), -1, dtype=torch.long)], dim=1)
    return items


def mmr_topk(scores: torch.Tensor, cluster_of: torch.Tensor, n_clusters: int, k: int, mmr_lambda: float = DEFAULT_MMR_LAMBDA, pool: int | None = None) -> torch.Tensor:
    """MMR top-K with cluster co-membership as the similarity (module docstring for the formula).

    Args:
        scores: float (b, n_items); ``-inf`` marks excluded items.
        cluster_of: int64 (n_items,) cluster of each item.
        n_clusters: number of clusters.
        k: list length.
        mmr_lambda: relevance weight lambda in (0, 1].
        pool: candidates per user (the top ``pool`` by score; default ``max(10 k, 100)``, at most
            n_items); relevance is min-max normalised over the finite scores of this pool.

    Returns:
        int64 (b, k) item ids in pick order (``-1`` pads when ``k > n_items``). Ties go to the
        higher-scored candidate.

    Raises:
        ValueError: ``mmr_lambda`` outside (0, 1].
    """
    check_rerank("mmr", mmr_lambda)
    b, n = scores.shape
    m = min(n, pool or max(10 * k, 100))
    cand_s, cand = torch.topk(scores, m, dim=1)
    finite = torch.isfinite(cand_s)
    hi = cand_s[:, :1]
    lo = torch.where(finite, cand_s, torch.inf).amin(dim=1, keepdim=True)
    rel = ((cand_s - lo) / (hi - lo).clamp_min(1e-12)).masked_fill(~finite, -1e9)
    cc = cluster_of[cand]
    shown = torch.zeros((b, n_clusters), dtype=torch.bool)
    taken = torch.zeros((b, m), dtype=torch.bool)
    kk = min(k, m)
    out = torch.full((b, k), -1, dtype=torch.long)
    lam = float(mmr_lambda)
    rows = torch.arange(b)
    for step in range(kk):
        val = lam * rel - (1.0 - lam) * shown.gather(1, cc).to(rel.dtype)
        j = val.masked_fill(taken, -torch.inf).argmax(dim=1)
        out[:, step] = cand[rows, j]
        taken[rows, j] = True
        shown[rows, cc[rows, j]] = True
    return out


def rank_topk(scores: torch.Tensor, k: int, method: str = "none", cluster_of: torch.Tensor | None = None, n_clusters: int = 0, mmr_lambda: float = DEFAULT_MMR_LAMBDA) -> torch.Tensor:
    """Top-K item ids (b, k) under a list policy (``none``, ``dedup`` or ``mmr``).

    ``none`` is ``torch.topk`` (``-1`` pads when ``k > n_items``); the others call
    :func:`dedup_topk` / :func:`mmr_topk`.

    Raises:
        ValueError: as :func:`check_rerank`.
    """
    method = check_rerank(method, mmr_lambda, cluster_of is not None)
    if method == "dedup":
        return dedup_topk(scores, cluster_of, n_clusters, k)
    if method == "mmr":
        return mmr_topk(scores, cluster_of, n_clusters, k, mmr_lambda)
    top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1).indices
    if top.shape[1] < k:
        top = torch.cat([top, torch.full((len(top), k - top.shape[1]), -1, dtype=torch.long)], dim=1)
    return top


def cluster_list_stats(top: np.ndarray, truth_rows: list[np.ndarray], cluster_of: np.ndarray, ks) -> dict[str, np.ndarray]:
    """Per-user cluster statistics of top-K lists.

    Args:
        top: int (n_users, max_k) item ids, ``-1`` = empty slot.
        truth_rows: per user the int array of its relevant items (non-empty).
        cluster_of: int64 (n_items,) cluster map.
        ks: cut-offs (each <= max_k).

    Returns:
        ``{"distinct_clusters@K": float (n_users,), "cluster_recall@K": float (n_users,)}`` for
        every K: the number of distinct clusters among the first K (non-empty) slots, and the
        share of the user's relevant items whose cluster is among them (a hit on any member of the
        item's cluster counts; >= item-level Recall@K by construction).
    """
    n_users = len(top)
    n_clusters = int(cluster_of.max()) + 1 if len(cluster_of) else 1
    tc = np.where(top >= 0, cluster_of[np.maximum(top, 0)], -1)
    t_users = np.repeat(np.arange(n_users), [len(t) for t in truth_rows])
    t_items = np.concatenate(truth_rows) if n_users else np.zeros(0, np.int64)
    t_keys = t_users * n_clusters + cluster_of[t_items]
    n_truth = np.array([len(t) for t in truth_rows], dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        s = np.sort(tc[:, :k], axis=1)
        valid = s >= 0
        new = valid.copy()
        new[:, 1:] &= s[:, 1:] != s[:, :-1]
        out[f"distinct_clusters@{k}"] = new.sum(axis=1).astype(np.float64)
        keys = np.where(valid, np.arange(n_users)[:, None] * n_clusters + s, -1)
        keys = np.unique(keys[keys >= 0])
        pos = np.minimum(np.searchsorted(keys, t_keys), max(len(keys) - 1, 0))
        hit = keys[pos] == t_keys if len(keys) else np.zeros(len(t_keys), bool)
        out[f"cluster_recall@{k}"] = np.bincount(t_users, weights=hit.astype(np.float64), minlength=n_users) / n_truth
    return out
