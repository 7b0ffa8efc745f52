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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

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

    Attributes:
        users_: int64 array of the evaluated users (those with >= 1 relevant item), ascending.
    """

    def __init__(self, train: sp.csr_matrix, truth: sp.csr_matrix, ks: Sequence[int] = DEFAULT_KS, user_batch: int = 2048) -> None:
        self.train = train.tocsr()
        self.truth = truth.tocsr()
        self.ks = tuple(sorted(ks))
        self.user_batch = user_batch
        self.users_ = np.flatnonzero(np.diff(self.truth.indptr) > 0).astype(np.int64)

    @torch.no_grad()
    def evaluate(self, score_fn: Callable[[torch.Tensor], torch.Tensor], return_topk: bool = False) -> tuple[dict[str, float], np.ndarray | None]:
        """Rank all items for every evaluated user.

        Args:
            score_fn: maps an int64 tensor of user ids (b,) to float scores (b, n_items).
            return_topk: also return the top-``max(ks)`` item ids.

        Returns:
            (metrics dict, topk int64 array (n_eval_users, max_k) aligned with ``users_`` or None).
        """
        max_k = max(self.ks)
        hits_all, topk_all = [], []
        for s in range(0, len(self.users_), self.user_batch):
            users = self.users_[s : s + self.user_batch]
            scores = score_fn(torch.from_numpy(users)).float()
            tr = self.train[users]
            rows = np.repeat(np.arange(len(users)), np.diff(tr.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(tr.indices.astype(np.int64))] = -torch.inf
            top = torch.topk(scores, k=min(max_k, scores.shape[1]), dim=1).indices.numpy()
            tt = self.truth[users]
            # hits via a sorted lookup of (row, item) keys
            truth_keys = np.repeat(np.arange(len(users)), np.diff(tt.indptr)) * scores.shape[1] + tt.indices
            truth_keys.sort()
            top_keys = np.arange(len(users))[:, None] * scores.shape[1] + top
            pos = np.searchsorted(truth_keys, top_keys)
            pos = np.minimum(pos, len(truth_keys) - 1)
            hits_all.append(truth_keys[pos] == top_keys)
            if return_topk:
                topk_all.append(top)
        n_truth = np.diff(self.truth.indptr)[self.users_]
        hits = np.concatenate(hits_all) if hits_all else np.zeros((0, max_k), bool)
        if hits.shape[1] < max_k:  # fewer items than the largest cut-off
            hits = np.pad(hits, ((0, 0), (0, max_k - hits.shape[1])))
        res = metrics_from_hits(hits, n_truth, self.ks)
        return res, (np.concatenate(topk_all) if return_topk and topk_all else None)
