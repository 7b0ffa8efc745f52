"""Compiled numeric kernels of the dedup stages (numba)."""

from __future__ import annotations

import numba
import numpy as np

#: Pairs below which the serial kernel is used.
PARALLEL_MIN_PAIRS = 50_000


@numba.njit(cache=True, nogil=True, inline="always")
def _row_dot(indptr, indices, data, r, q):  # pragma: no cover - compiled
    """Dot product of CSR rows r and q: a merge of their sorted column indices."""
    a, a_end = indptr[r], indptr[r + 1]
    b, b_end = indptr[q], indptr[q + 1]
    s = 0.0
    while a < a_end and b < b_end:
        ia = indices[a]
        ib = indices[b]
        if ia == ib:
            s += data[a] * data[b]
            a += 1
            b += 1
        elif ia < ib:
            a += 1
        else:
            b += 1
    return s


@numba.njit(cache=True, nogil=True)
def _csr_pair_dots_serial(indptr, indices, data, i, j, out):  # pragma: no cover - compiled
    for e in range(len(i)):
        out[e] = _row_dot(indptr, indices, data, i[e], j[e])


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_pair_dots(indptr, indices, data, i, j, out):  # pragma: no cover - compiled
    for e in numba.prange(len(i)):
        out[e] = _row_dot(indptr, indices, data, i[e], j[e])


def csr_pair_dots(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Dot products of CSR rows ``i[e]`` and ``j[e]`` for every pair e.

    Args:
        indptr, indices, data: a CSR matrix's arrays; column indices sorted within each row.
        i, j: int64 (E,) row positions.

    Returns:
        float32 (E,) dot products (a merge of the two sorted index lists per pair; in parallel
        threads from :data:`PARALLEL_MIN_PAIRS` pairs up).
    """
    out = np.zeros(len(i), dtype=np.float32)
    if len(i):
        # threads pay off only for many pairs (thread start-up dominates a lookup's few dozen)
        (_csr_pair_dots if len(i) >= PARALLEL_MIN_PAIRS else _csr_pair_dots_serial)(
            np.asarray(indptr), np.asarray(indices), np.asarray(data),
            np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64), out)
    return out
