"""Deduplication metrics: mean per-item F1 (Shopee), pairwise precision/recall/F1, B-cubed, ARI.

All functions take two label sequences of equal length N (ground-truth groups and predicted cluster
ids; any hashable values) and count every item, singletons included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix


def _codes(labels: Sequence) -> np.ndarray:
    """Map arbitrary hashable labels to int codes, shape (N,), dtype int64."""
    _, codes = np.unique(np.asarray([str(x) for x in labels], dtype=object), return_inverse=True)
    return codes.astype(np.int64)


def mean_item_f1(true_labels: Sequence, pred_labels: Sequence, mask: np.ndarray | None = None) -> float:
    """Mean over items of the F1 between the item's predicted set and its true group.

    The predicted set of item i is every item sharing its cluster (i included), the true set every
    item sharing its group (i included): F1_i = 2|P∩T| / (|P| + |T|). This is the metric of the
    Kaggle "Shopee - Price Match Guarantee" competition (2021).

    Args:
        true_labels: ground-truth group per item, length N.
        pred_labels: predicted cluster id per item, length N.
        mask: optional bool (N,): average over these items only (their predicted sets still
            count every item of their cluster: the others act as distractors).

    Returns:
        Mean per-item F1 in [0, 1] (float). 0.0 for N = 0 (or an empty mask).

    Raises:
        ValueError: when the lengths differ.
    """
    t, p = _codes(true_labels), _codes(pred_labels)
    if len(t) != len(p):
        raise ValueError(f"label lengths differ: {len(t)} true vs {len(p)} predicted")
    if len(t) == 0:
        return 0.0
    c = contingency_matrix(t, p, sparse=True).tocsr()
    inter = np.asarray(c[t, p]).ravel()  # |P ∩ T| for each item
    t_size = np.bincount(t)[t]
    p_size = np.bincount(p)[p]
    f1 = 2.0 * inter / (t_size + p_size)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != f1.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected ({len(f1)},)")
        return float(f1[mask].mean()) if mask.any() else 0.0
    return float(np.mean(f1))


def pairwise_scores(true_labels: Sequence, pred_labels: Sequence) -> dict[str, float]:
    """Pairwise precision, recall and F1 over unordered item pairs.

    A pair is positive when both items share a true group; predicted positive when they share a
    cluster. Counts come from :func:`sklearn.metrics.cluster.pair_confusion_matrix`.

    Returns:
        ``{"precision", "recall", "f1"}`` floats (0.0 where undefined).
    """
    t, p = _codes(true_labels), _codes(pred_labels)
    if len(t) != len(p):
        raise ValueError(f"label lengths differ: {len(t)} true vs {len(p)} predicted")
    if len(t) < 2:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    m = pair_confusion_matrix(t, p)  # counts ordered pairs: [[tn, fp], [fn, tp]]
    tp, fp, fn = float(m[1, 1]), float(m[0, 1]), float(m[1, 0])
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


def bcubed_scores(true_labels: Sequence, pred_labels: Sequence) -> dict[str, float]:
    """B-cubed precision, recall and F1 (Bagga & Baldwin 1998), averaged over items."""
    t, p = _codes(true_labels), _codes(pred_labels)
    if len(t) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    c = contingency_matrix(t, p, sparse=True).tocsr()
    inter = np.asarray(c[t, p]).ravel()
    prec = float(np.mean(inter / np.bincount(p)[p]))
    rec = float(np.mean(inter / np.bincount(t)[t]))
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


def dedup_metrics(true_labels: Sequence, pred_labels: Sequence) -> dict[str, float]:
    """All dedup metrics in one dict, as written to ``metrics.json``.

    Keys: ``mean_item_f1``, ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f1``,
    ``bcubed_precision``, ``bcubed_recall``, ``bcubed_f1``, ``adjusted_rand_index``, ``n_items``,
    ``n_true_groups``, ``n_pred_clusters``.
    """
    pw = pairwise_scores(true_labels, pred_labels)
    bc = bcubed_scores(true_labels, pred_labels)
    return {
        "mean_item_f1": mean_item_f1(true_labels, pred_labels),
        "pairwise_precision": pw["precision"],
        "pairwise_recall": pw["recall"],
        "pairwise_f1": pw["f1"],
        "bcubed_precision": bc["precision"],
        "bcubed_recall": bc["recall"],
        "bcubed_f1": bc["f1"],
        "adjusted_rand_index": float(adjusted_rand_score(_codes(true_labels), _codes(pred_labels))) if len(true_labels) else 0.0,
        "n_items": len(true_labels),
        "n_true_groups": int(len(set(map(str, true_labels)))),
        "n_pred_clusters": int(len(set(map(str, pred_labels)))),
    }


def pair_comembership_f1(pred_labels: Sequence, i: np.ndarray, j: np.ndarray, y: np.ndarray) -> float:
    """F1 of labelled pairs read off a clustering: a pair is predicted a duplicate when both items
    share a cluster (so a chain of edges counts, not only a direct edge).

    Args:
        pred_labels: predicted cluster id per item, length N.
        i, j: int (E,) item positions of the labelled pairs.
        y: (E,) 1 for a duplicate pair, 0 for a distinct one.

    Returns:
        2 TP / (2 TP + FP + FN) in [0, 1]; 1.0 when there is no duplicate pair and no distinct pair
        shares a cluster (nothing to get wrong).

    Raises:
        ValueError: when i, j and y differ in length.
    """
    i, j, y = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64), np.asarray(y).astype(bool)
    if not (len(i) == len(j) == len(y)):
        raise ValueError(f"i, j and y must have one length; got {len(i)}, {len(j)}, {len(y)}")
    c = _codes(pred_labels)
    same = c[i] == c[j]
    tp, fp, fn = int(np.sum(same & y)), int(np.sum(same & ~y)), int(np.sum(~same & y))
    return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2 * tp + fp + fn)


def pair_comembership_accuracy(pred_labels: Sequence, i: np.ndarray, j: np.ndarray, y: np.ndarray) -> float:
    """Share of labelled pairs a clustering gets right: a duplicate pair in one cluster, a distinct
    pair in two (chains count, as in :func:`pair_comembership_f1`). A false merge and a missed
    duplicate cost the same, as they do (pair for pair) in the mean per-item F1.

    Args:
        pred_labels: predicted cluster id per item, length N.
        i, j: int (E,) item positions of the labelled pairs.
        y: (E,) 1 for a duplicate pair, 0 for a distinct one.

    Returns:
        Accuracy in [0, 1]; 1.0 for no pairs.

    Raises:
        ValueError: when i, j and y differ in length.
    """
    i, j, y = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64), np.asarray(y).astype(bool)
    if not (len(i) == len(j) == len(y)):
        raise ValueError(f"i, j and y must have one length; got {len(i)}, {len(j)}, {len(y)}")
    if len(y) == 0:
        return 1.0
    c = _codes(pred_labels)
    return float(np.mean((c[i] == c[j]) == y))
