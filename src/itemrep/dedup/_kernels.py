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


# ---------------------------------------------------------------------------- top-k selection
@numba.njit(cache=True, nogil=True, inline="always")
def _push(dr, ir, s, idv):  # pragma: no cover - compiled
    """Insert (s, idv) into the row (dr, ir), sorted by score descending then id ascending, when
    it beats the last entry (so the kept set does not depend on the order of the pushes)."""
    k = len(dr)
    last = k - 1
    if s < dr[last] or (s == dr[last] and (ir[last] >= 0 and idv >= ir[last])):
        return
    p = last
    while p > 0 and (s > dr[p - 1] or (s == dr[p - 1] and (ir[p - 1] < 0 or idv < ir[p - 1]))):
        dr[p] = dr[p - 1]
        ir[p] = ir[p - 1]
        p -= 1
    dr[p] = s
    ir[p] = idv


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _ivf_scan(q, q_of, qptr, vecs, vptr, vids, nt, dbuf, ibuf):  # pragma: no cover - compiled
    nl = len(qptr) - 1
    d = q.shape[1]
    for t in numba.prange(nt):
        dt, it = dbuf[t], ibuf[t]
        for lst in range(t, nl, nt):
            va, vb = vptr[lst], vptr[lst + 1]
            if va == vb:
                continue
            e, end = qptr[lst], qptr[lst + 1]
            # four queries per pass: each loaded vector element feeds four products (measured
            # 1.5x faster than one query at a time)
            while e + 4 <= end:
                m0, m1, m2, m3 = q_of[e], q_of[e + 1], q_of[e + 2], q_of[e + 3]
                a0, a1, a2, a3 = q[m0], q[m1], q[m2], q[m3]
                for v in range(va, vb):
                    x = vecs[v]
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    s2 = np.float32(0.0)
                    s3 = np.float32(0.0)
                    for c in range(d):
                        xc = x[c]
                        s0 += a0[c] * xc
                        s1 += a1[c] * xc
                        s2 += a2[c] * xc
                        s3 += a3[c] * xc
                    idv = vids[v]
                    _push(dt[m0], it[m0], s0, idv)
                    _push(dt[m1], it[m1], s1, idv)
                    _push(dt[m2], it[m2], s2, idv)
                    _push(dt[m3], it[m3], s3, idv)
                e += 4
            while e < end:
                m = q_of[e]
                qm = q[m]
                for v in range(va, vb):
                    x = vecs[v]
                    s = np.float32(0.0)
                    for c in range(d):
                        s += qm[c] * x[c]
                    _push(dt[m], it[m], s, vids[v])
                e += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _merge_topk(dbuf, ibuf, dout, iout):  # pragma: no cover - compiled
    for m in numba.prange(dout.shape[0]):
        for t in range(dbuf.shape[0]):
            for j in range(dbuf.shape[2]):
                if ibuf[t, m, j] < 0:
                    break
                _push(dout[m], iout[m], dbuf[t, m, j], ibuf[t, m, j])


def ivf_scan(q: np.ndarray, coarse: np.ndarray, vecs: np.ndarray, vptr: np.ndarray, vids: np.ndarray,
             k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query among the vectors of the inverted lists it probes,
    list by list (each list's vectors are read once for all the queries that probe it, as in
    ``faiss.contrib.big_batch_search``), on ``threads`` threads, each owning every other list.

    Args:
        q: float32 (M, d) queries.
        coarse: int (M, p) lists probed by each query (-1 = none).
        vecs: float32 (N, d) indexed vectors grouped by list; list ``l`` is rows
            ``vptr[l]:vptr[l+1]``. vids: int64 (N,) their ids.
        k: neighbours per query. threads: worker threads.

    Returns:
        ``(sims float32 (M, k), ids int64 (M, k))`` sorted by similarity descending then id
        ascending (so the result does not depend on the thread split); id -1 / sim -inf where
        fewer were found.
    """
    m, p = coarse.shape
    nl = len(vptr) - 1
    flat = np.asarray(coarse, dtype=np.int64).reshape(-1)
    ok = flat >= 0
    lists = flat[ok]
    qidx = np.repeat(np.arange(m, dtype=np.int64), p)[ok]
    order = np.argsort(lists, kind="stable")
    q_of = qidx[order]
    qptr = np.zeros(nl + 1, dtype=np.int64)
    np.cumsum(np.bincount(lists, minlength=nl), out=qptr[1:])
    nt = int(max(1, threads))
    dbuf = np.full((nt, m, k), -np.inf, dtype=np.float32)
    ibuf = np.full((nt, m, k), -1, dtype=np.int64)
    _ivf_scan(np.ascontiguousarray(q, dtype=np.float32), q_of, qptr, vecs, np.asarray(vptr, np.int64),
              np.asarray(vids, np.int64), nt, dbuf, ibuf)
    if nt == 1:
        return dbuf[0], ibuf[0]
    return merge_topk(dbuf, ibuf)


def merge_topk(d: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge top-k lists: ``d`` float32 (T, M, k) and ``i`` int64 (T, M, k) (each sorted, id -1 =
    empty) into the best k per row, ``(float32 (M, k), int64 (M, k))`` sorted by similarity
    descending then id ascending."""
    t, m, k = d.shape
    dout = np.full((m, k), -np.inf, dtype=np.float32)
    iout = np.full((m, k), -1, dtype=np.int64)
    _merge_topk(np.ascontiguousarray(d, dtype=np.float32), np.ascontiguousarray(i, dtype=np.int64), dout, iout)
    return dout, iout


@numba.njit(cache=True, nogil=True)
def topk_rows(s, dout, iout):  # pragma: no cover - compiled
    """Push every column of each row of ``s`` (float32 (B, C)) into the rows of ``dout``/``iout``
    (float32 / int64 (B, k), sorted by score descending then column ascending; start them at
    -inf / -1): afterwards they hold each row's top k columns. Serial (callers parallelise)."""
    last = dout.shape[1] - 1
    for r in range(s.shape[0]):
        dr, ir = dout[r], iout[r]
        sr = s[r]
        thr = dr[last]
        for c in range(s.shape[1]):
            if sr[c] >= thr:  # columns come in ascending order: a tie with the last never enters
                _push(dr, ir, sr[c], c)
                thr = dr[last]


#: Rows from which :func:`csr_take` uses its compiled copy.
TAKE_COMPILED_MIN = 256


@numba.njit(cache=True, nogil=True)
def _csr_take(indptr, indices, data, rows, out_ptr, out_ind, out_dat):  # pragma: no cover - compiled
    for r in range(len(rows)):
        a, b = indptr[rows[r]], indptr[rows[r] + 1]
        o = out_ptr[r]
        for e in range(b - a):
            out_ind[o + e] = indices[a + e]
            out_dat[o + e] = data[a + e]


def csr_take(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``rows`` (int64, any order) of a CSR matrix given by its arrays (memory-mapped ones
    included): ``(indptr int64 (len(rows) + 1,), indices int32, data float32)``. From
    :data:`TAKE_COMPILED_MIN` rows a compiled copy; below, numpy fancy indexing (the compiled
    call's fixed overhead exceeds the copy for the few rows of a lookup)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    ptr = np.asarray(indptr)
    lens = np.asarray(ptr[rows + 1], dtype=np.int64) - np.asarray(ptr[rows], dtype=np.int64)
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=out_ptr[1:])
    if len(rows) < TAKE_COMPILED_MIN:
        offs = np.repeat(np.asarray(ptr[rows], dtype=np.int64) - out_ptr[:-1], lens) + np.arange(int(out_ptr[-1]), dtype=np.int64)
        return out_ptr, np.asarray(indices[offs], dtype=np.int32), np.asarray(data[offs], dtype=np.float32)
    out_ind = np.empty(int(out_ptr[-1]), dtype=np.int32)
    out_dat = np.empty(int(out_ptr[-1]), dtype=np.float32)
    _csr_take(ptr, np.asarray(indices), np.asarray(data), rows, out_ptr, out_ind, out_dat)
    return out_ptr, out_ind, out_dat
