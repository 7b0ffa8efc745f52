"""Neighbourhood blending of slot vectors (iterated query expansion), an option of the clustering
stage (issue #10, item 3).

The post-processing that won the Shopee competition replaces each item's embedding by a
similarity-weighted mean of its neighbours' (query expansion, "neighbourhood blending"):

    e_i ← normalise( Σ_{j ∈ N(i) ∪ {i}} w_ij e_j ),   w_ii = 1,  w_ij = max(s_ij, 0)^p

over the kNN candidate pairs (i, j) with edge score s_ij ≥ ``floor``, for one to three rounds.
itemrep applies it **per slot**: every slot matrix c_k is blended with the same weights, so a
blended pair score is still Σ_k α_k cos(c'_k(i), c'_k(j)) + bonuses − penalties and its per-term
breakdown adds up (the white-box property is kept: each term is the cosine of the two items'
neighbourhood-blended slot vectors). An item keeps a zero row where it has no value for the slot
(a neighbour's brand is not lent to an item that states none).

Reference: the 1st-place Shopee solution write-ups ("neighbourhood blending", "INB") and α-query
expansion (Radenović, Tolias, Chum, "Fine-tuning CNN image retrieval with no human annotation",
TPAMI 2018, Sec. 4.2).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from itemrep.dedup.slots import SlotSet
from itemrep.encoders.text import l2_normalize_rows


def blend_weights(n: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, power: float = 3.0,
                  floor: float = 0.0) -> sp.csr_matrix:
    """The (N, N) blending matrix W: 1 on the diagonal, ``max(s_ij, 0) ** power`` on both (i, j)
    and (j, i) for the candidate pairs with ``s_ij >= floor``; CSR float32.

    Args:
        n: items. i, j: int (E,) candidate pairs. score: float (E,) their edge scores.
        power: the exponent p (larger: the nearest neighbours dominate).
        floor: pairs scoring below it are not blended.
    """
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    s = np.asarray(score, np.float64)
    keep = s >= floor
    w = np.maximum(s[keep], 0.0) ** float(power)
    rows = np.concatenate([np.arange(n), i[keep], j[keep]])
    cols = np.concatenate([np.arange(n), j[keep], i[keep]])
    vals = np.concatenate([np.ones(n), w, w]).astype(np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)


def blend_slots(slots: SlotSet, w: sp.csr_matrix) -> SlotSet:
    """Every slot matrix c blended as ``normalise(W @ c)``, rows of items without the slot kept
    zero; levels, conflict slots, knots and modal slots unchanged.

    Args:
        slots: N items. w: (N, N) blending matrix (:func:`blend_weights`).

    Returns:
        A new in-memory :class:`SlotSet`; per-item salience is not carried over.
    """
    mats = {}
    for name, m in slots.matrices.items():
        pres = slots.presence(name)
        if sp.issparse(m):
            b = (w @ sp.csr_matrix(m)).tocsr()
            b = sp.diags(pres.astype(np.float32)) @ b
        else:
            b = np.asarray(w @ np.asarray(m, dtype=np.float32), dtype=np.float32)
            b[~pres] = 0.0
        b = l2_normalize_rows(b)
        if sp.issparse(b):
            b.sort_indices()  # the pair-cosine kernel merges sorted column indices
        mats[name] = b
    return SlotSet(matrices=mats, levels=dict(slots.levels), conflict_slots=list(slots.conflict_slots),
                   knots=dict(slots.knots), modal_slots=list(slots.modal_slots))


__all__ = ["blend_slots", "blend_weights"]
