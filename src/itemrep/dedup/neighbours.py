"""Each item's nearest candidates, kept beside the edges so a reader sees what τ cut off.

``edges.parquet`` holds only the kept edges (score ≥ τ, or kept by the nearest-neighbour rule). To draw the distribution of every item's
nearest-neighbour score with τ on it, and to show the pairs *just below* τ (the merges τ refused),
``itemrep dedup`` also writes ``neighbours.parquet``: for every item, its best-scoring candidate
pair (its nearest neighbour among the kNN candidates) and its best-scoring candidate pair that is
*not* an edge, each pair once, with the same ``term_*`` columns as ``edges.parquet``.

The neighbours are those of the candidate search (the k nearest by the reduced vectors, scored
exactly), not of an exhaustive search over all pairs.
"""

from __future__ import annotations

import numpy as np

from itemrep.dedup.cluster import _pair_ranks

#: Columns of ``neighbours.parquet`` before the ``term_<feature>`` columns.
NEIGHBOUR_COLUMNS = ("item_a", "item_b", "score", "edge")


def nearest_pairs(i: np.ndarray, j: np.ndarray, score: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Positions (sorted, each once) of the candidate pairs that are some item's best pair, or some
    item's best pair among the pairs that are not edges (ties: the earlier pair).

    Args:
        i, j: int64 (E,) candidate pairs.
        score: float (E,) their scores.
        edge: bool (E,) which pairs are edges.

    Returns:
        int64 positions into the candidate arrays.
    """
    i = np.asarray(i, np.int64).reshape(-1)
    j = np.asarray(j, np.int64).reshape(-1)
    score = np.asarray(score, np.float32).reshape(-1)
    edge = np.asarray(edge, bool).reshape(-1)
    if len(i) == 0:
        return np.zeros(0, np.int64)
    ra, rb = _pair_ranks(i, j, score)
    best = (ra == 0) | (rb == 0)
    ne = np.flatnonzero(~edge)
    if len(ne):
        na, nb = _pair_ranks(i[ne], j[ne], score[ne])
        best[ne[(na == 0) | (nb == 0)]] = True
    return np.flatnonzero(best)
