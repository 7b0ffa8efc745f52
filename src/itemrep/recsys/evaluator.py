"""Full-ranking top-K evaluation with MMRec's metric definitions.

For every user with at least one ground-truth item in the evaluated split, all items are scored,
the user's *training* items are masked (score -inf), the top ``max(K)`` are taken, and with
``hit[j] = 1`` when the item at rank ``j`` (1-based) is a ground-truth item and ``P = |truth|``:

* Recall@K    = sum_{j<=K} hit[j] / P
* Precision@K = sum_{j<=K} hit[j] / K
* NDCG@K      = DCG / IDCG, DCG = sum_{j<=K} hit[j] / log2(j+1), IDCG = sum_{j<=min(P,K)} 1 / log2(j+1)
* MAP@K       = sum_{j<=K} hit[j] * Precision@j / min(P, K)

each averaged over the evaluated users (MMRec ``utils/metrics.py``, which follows RecBole; the
definitions are re-written here from the formulas, not copied).

With an item cluster map (near-duplicate groups, :mod:`itemrep.recsys.clusters`) the list can be
de-duplicated or MMR-diversified before the metrics (:mod:`itemrep.recsys.rerank`; the item-level
metrics above are then those of the re-ranked list), and three more figures are reported:
``distinct_clusters@K`` (mean over users of the number of distinct clusters in the top K),
``min_distinct_clusters@K`` (its minimum over users) and ``cluster_recall@K`` (Recall@K where a
relevant item counts as found when any member of its cluster is in the top K).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from itemrep.recsys.rerank import DEFAULT_MMR_LAMBDA, check_rerank, cluster_list_stats, rank_topk

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "map")


def metrics_from_hits(hits: np.ndarray, n_truth: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Metrics from a hit matrix.

    Args:
        hits: bool/0-1 array (n_users, max_k); ``hits[u, j]`` is 1 when user ``u``'s item at rank
            ``j+1`` is relevant.
        n_truth: int array (n_users,) number of relevant items per user (> 0).
        ks: cut-offs; each must be <= ``hits.shape[1]``.

    Returns:
        ``{"recall@5": ..., "ndcg@5": ..., "precision@5": ..., "map@5": ..., ...}`` (floats).

    Raises:
        ValueError: if a cut-off exceeds the hit matrix width or a user has no relevant item.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n_truth = np.asarray(n_truth, dtype=np.float64)
    if len(hits) == 0:
        return {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    if (n_truth <= 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    max_k = hits.shape[1]
    if max(ks) > max_k:
        raise ValueError(f"cut-off {max(ks)} exceeds the {max_k} ranked items")
    ranks = np.arange(1, max_k + 1, dtype=np.float64)
    cum = np.cumsum(hits, axis=1)
    disc = 1.0 / np.log2(ranks + 1.0)
    dcg = np.cumsum(hits * disc, axis=1)
    idcg_table = np.cumsum(disc)
    ap_num = np.cumsum(hits * cum / ranks, axis=1)
    out: dict[str, float] = {}
    for k in ks:
        c = cum[:, k - 1]
        ideal_len = np.minimum(n_truth, k).astype(int)
        out[f"recall@{k}"] = float(np.mean(c / n_truth))
        out[f"ndcg@{k}"] = float(np.mean(dcg[:, k - 1] / idcg_table[ideal_len - 1]))
        out[f"precision@{k}"] = float(np.mean(c / k))
        out[f"map@{k}"] = float(np.mean(ap_num[:, k - 1] / ideal_len))
    return out


class TopKEvaluator:
    """Full-ranking evaluator over all items with training items masked.

    Args:
        train: CSR (n_users, n_items) of training interactions (masked when ranking).
        truth: CSR (n_users, n_items) of the evaluated split (valid or test).
        ks: cut-offs (default 5, 10, 20, 50).
        user_batch: users scored per call of the score function (memory: user_batch x n_items floats).
        clusters: optional int64 (n_items,) cluster map with contiguous ids; adds
            ``distinct_clusters@K``, ``min_distinct_clusters@K`` and ``cluster_recall@K``.
        rerank: list policy ``none`` | ``dedup`` | ``mmr`` (the last two need ``clusters``).
        mmr_lambda: MMR relevance weight in (0, 1].

    Attributes:
        users_: int64 array of the evaluated users (those with >= 1 relevant item), ascending.

    Raises:
        ValueError: a cluster map whose length is not n_items or whose ids are negative; an unknown
            rerank, or one that needs clusters without them; ``mmr_lambda`` outside (0, 1].
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        truth: sp.csr_matrix,
        ks: Sequence[int] = DEFAULT_KS,
        user_batch: int = 2048,
        *,
        clusters: np.ndarray | None = None,
        rerank: str = "none",
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
    ) -> None:
        self.train = train.tocsr()
        self.truth = truth.tocsr()
        self.ks = tuple(sorted(ks))
        self.user_batch = user_batch
        self.users_ = np.flatnonzero(np.diff(self.truth.indptr) > 0).astype(np.int64)
        self.rerank = check_rerank(rerank, mmr_lambda, clusters is not None)
        self.mmr_lambda = float(mmr_lambda)
        self.clusters = None
        if clusters is not None:
            c = np.asarray(clusters, dtype=np.int64)
            if c.shape != (self.truth.shape[1],) or (len(c) and c.min() < 0):
                raise ValueError(f"clusters must be a non-negative int array of one cluster id per item ({self.truth.shape[1]}), got shape {c.shape}")
            self.clusters = c
            self._clusters_t = torch.from_numpy(c)
            self._n_clusters = int(c.max()) + 1 if len(c) else 0

    @torch.no_grad()
    def evaluate(self, score_fn: Callable[[torch.Tensor], torch.Tensor], return_topk: bool = False) -> tuple[dict[str, float], np.ndarray | None]:
        """Rank all items for every evaluated user.

        Args:
            score_fn: maps an int64 tensor of user ids (b,) to float scores (b, n_items).
            return_topk: also return the top-``max(ks)`` item ids.

        Returns:
            (metrics dict, topk int64 array (n_eval_users, max_k) aligned with ``users_`` or None;
            ``-1`` marks an empty slot: fewer items, or fewer clusters under ``dedup``, than max_k).
        """
        max_k = max(self.ks)
        hits_all, topk_all, cstats = [], [], []
        n_truth_all = np.diff(self.truth.indptr)
        for s in range(0, len(self.users_), self.user_batch):
            users = self.users_[s : s + self.user_batch]
            scores = score_fn(torch.from_numpy(users)).float()
            tr = self.train[users]
            rows = np.repeat(np.arange(len(users)), np.diff(tr.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(tr.indices.astype(np.int64))] = -torch.inf
            top = rank_topk(scores, max_k, self.rerank, self._clusters_t if self.clusters is not None else None,
                            self._n_clusters if self.clusters is not None else 0, self.mmr_lambda).numpy()  # fmt: skip
            tt = self.truth[users]
            # hits via a sorted lookup of (row, item) keys; empty slots (-1) never hit
            n_items = scores.shape[1]
            truth_keys = np.repeat(np.arange(len(users)), np.diff(tt.indptr)) * n_items + tt.indices
            truth_keys.sort()
            top_keys = np.arange(len(users))[:, None] * n_items + top
            pos = np.minimum(np.searchsorted(truth_keys, top_keys), len(truth_keys) - 1)
            hits_all.append((truth_keys[pos] == top_keys) & (top >= 0))
            if self.clusters is not None:
                truth_rows = np.split(tt.indices.astype(np.int64), tt.indptr[1:-1])
                cstats.append(cluster_list_stats(top, truth_rows, self.clusters, self.ks))
            if return_topk:
                topk_all.append(top)
        n_truth = n_truth_all[self.users_]
        hits = np.concatenate(hits_all) if hits_all else np.zeros((0, max_k), bool)
        res = metrics_from_hits(hits, n_truth, self.ks)
        if self.clusters is not None:
            for k in self.ks:
                d = np.concatenate([c[f"distinct_clusters@{k}"] for c in cstats]) if cstats else np.zeros(0)
                r = np.concatenate([c[f"cluster_recall@{k}"] for c in cstats]) if cstats else np.zeros(0)
                res[f"distinct_clusters@{k}"] = float(d.mean()) if len(d) else 0.0
                res[f"min_distinct_clusters@{k}"] = float(d.min()) if len(d) else 0.0
                res[f"cluster_recall@{k}"] = float(r.mean()) if len(r) else 0.0
        return res, (np.concatenate(topk_all) if return_topk and topk_all else None)
