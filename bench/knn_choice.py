"""Choose the candidate-search index and its parameters by measurement (FBC kNN graph).

    python bench/knn_choice.py --n 100000 --configs ivf:auto exact@10000 hnsw:32:40:64@10000
    python bench/knn_choice.py --n 1000000 --configs ivf:auto ivf1:2048:4

Data: what the dedup sees — ``n / copies`` random unit centres in d=128, each copied ``copies``
times with Gaussian noise (``--noise`` per coordinate) and renormalised, shuffled. With the default
noise 0.03 two copies have cosine ≈ 0.90; with 0.06 ≈ 0.68.

For every configuration: wall and CPU seconds of building the index plus the whole kNN graph
(``CandidateSearch.fit(x).knn_pairs()``, k=10), and on a sample of 1000 items (brute force,
``faiss.knn``) the recall of their exact top-10 (share of exact top-10 pairs present in the graph)
and of the exact top-10 pairs with inner product ≥ τ (0.55, the pipeline default). Configurations:

* ``exact``                       IndexFlatIP (``exact_max`` above N);
* ``ivf:NLIST[:NPROBE[:QNPROBE[:ITER[:PTS]]]]`` CandidateSearch's IVF-Flat (NLIST may be ``auto``;
  then lists visited, top cells visited by the two-level quantizer, k-means iterations, training
  rows per list; omitted values are CandidateSearch's defaults); ``ivf1:...`` the same with a
  one-level (flat) quantizer;
* ``hnsw:M:EFC:EFS``              faiss IndexHNSWFlat (inner product) for comparison;
* ``exact@Q`` / ``hnsw...@Q``     time only Q queries and extrapolate to N (flagged ``est``).

``--cluster N`` times ``cluster_edges`` instead (N items, ~6 candidate pairs each, with and without
the chaining guard).

The machine is shared: the load average is printed with every row; CPU seconds are the steadier
figure (wall ≈ CPU / 2 on an idle 2-core machine). Results are appended to
``bench/results/knn_choice.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def dup_vectors(n: int, d: int = 128, copies: int = 40, noise: float = 0.03, seed: int = 0) -> np.ndarray:
    """float32 (n, d) unit rows: n/copies random centres, each ``copies`` noisy copies, shuffled."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((-(-n // copies), d), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.repeat(c, copies, axis=0)[:n]
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[rng.permutation(n)]


def run_config(cfg: str, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict]:
    import faiss

    from itemrep.dedup.cluster import CandidateSearch, _pairs_from_knn

    n = len(x)
    name, _, q = cfg.partition("@")
    parts = name.split(":")
    info: dict = {"config": cfg}
    t0, c0 = time.perf_counter(), time.process_time()
    if parts[0] == "exact" and not q:
        cs = CandidateSearch(k=k, exact_max=n).fit(x)
        i, j = cs.knn_pairs()
    elif parts[0] in ("ivf", "ivf1"):
        import itemrep.dedup.cluster as C

        if parts[0] == "ivf1":  # one-level: a flat IndexFlatIP quantizer over all list centroids
            C.TWO_LEVEL_MIN = 10**9
        nlist = parts[1] if parts[1] == "auto" else int(parts[1])
        kw = dict(zip(["nprobe", "quantizer_nprobe", "kmeans_iter", "kmeans_points"], map(int, parts[2:])))
        cs = CandidateSearch(k=k, exact_max=0, nlist=nlist, **kw).fit(x)
        info["nlist_"] = cs.nlist_
        info["fit_s"] = round(time.perf_counter() - t0, 2)
        i, j = cs.knn_pairs()
        C.TWO_LEVEL_MIN = 256
        info["params"] = {p: v for p, v in cs.get_params().items() if p not in ("k", "exact_max", "batch_min", "random_state")}
    else:  # exact@Q or hnsw (optionally @Q): plain faiss index, search timed on Q queries
        if parts[0] == "exact":  # CandidateSearch's exact path: blocks of numpy BLAS + faiss heaps
            from itemrep.dedup.cluster import _knn_ip
            ts, cs_ = time.perf_counter(), time.process_time()
            _knn_ip(x[:int(q)], x, k + 1)
            scale = n / int(q)
            t0 -= (time.perf_counter() - ts) * (scale - 1)
            c0 -= (time.process_time() - cs_) * (scale - 1)
            return None, None, info | {"est": True, "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        else:
            index = faiss.IndexHNSWFlat(x.shape[1], int(parts[1]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(parts[2])
            index.hnsw.efSearch = int(parts[3])
        index.add(x)
        info["fit_s"] = round(time.perf_counter() - t0, 2)
        nq = int(q) if q else n
        ts, cs_ = time.perf_counter(), time.process_time()
        _, nn = index.search(x[:nq], k + 1)
        if nq < n:
            info["est"] = True
            scale = n / nq
            t0 -= (time.perf_counter() - ts) * (scale - 1)
            c0 -= (time.process_time() - cs_) * (scale - 1)
            return None, None, info | {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        i, j = _pairs_from_knn(nn)
    info["wall_s"] = round(time.perf_counter() - t0, 2)
    info["cpu_s"] = round(time.process_time() - c0, 2)
    info["pairs"] = int(len(i))
    return i, j, info


def exact_sample(x: np.ndarray, sample: int, k: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded sample of items with their exact top-k other items and similarities (brute force),
    cached in ``cache`` (the same data and sample give the same file)."""
    import faiss

    if cache is not None and cache.exists():
        z = np.load(cache)
        return z["s"], z["nn"], z["sim"]
    n = len(x)
    s = np.sort(np.random.default_rng(0).choice(n, min(sample, n), replace=False))
    sim, nn = faiss.knn(x[s], x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    keep = nn != s[:, None]
    keep &= np.cumsum(keep, axis=1) <= k
    nn = np.where(keep, nn, -1)
    if cache is not None:
        np.savez(cache, s=s, nn=nn, sim=sim)
    return s, nn, sim


def recall(i: np.ndarray, j: np.ndarray, n: int, s: np.ndarray, nn: np.ndarray, sim: np.ndarray, tau: float) -> tuple[float, int]:
    """Share of the exact pairs (sample item, neighbour) with similarity >= tau present in (i, j)."""
    ok = (nn >= 0) & (sim >= tau)
    a = np.repeat(s[:, None], nn.shape[1], axis=1)[ok]
    b = nn[ok]
    key = np.minimum(a, b) * n + np.maximum(a, b)
    cand = np.sort(np.minimum(i, j) * n + np.maximum(i, j))
    pos = np.clip(np.searchsorted(cand, key), 0, len(cand) - 1)
    return float(np.mean(cand[pos] == key)) if len(key) else 1.0, int(len(key))


def cluster_speed(n: int, deg: int = 6, seed: int = 0) -> list[dict]:
    """Seconds of ``cluster_edges`` on n items in true clusters of 40, each item with ``deg``
    candidate pairs (90 % inside its cluster, score 0.6-1.0; 10 % random, score < 0.5), without
    and with the chaining guard (2 % of the items are far from everyone)."""
    from itemrep.dedup.cluster import _unique, cluster_edges

    rng = np.random.default_rng(seed)
    grp = rng.permutation(n) // 40
    order = np.argsort(grp, kind="stable")
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    a = np.repeat(np.arange(n), deg)
    b = order[np.clip((pos[a] // 40) * 40 + rng.integers(0, 40, len(a)), 0, n - 1)]
    cross = rng.random(len(a)) < 0.1
    b[cross] = rng.integers(0, n, int(cross.sum()))
    ok = a != b
    key = _unique(np.minimum(a[ok], b[ok]) * n + np.maximum(a[ok], b[ok]))
    i, j = key // n, key % n
    s = np.where(grp[i] == grp[j], rng.uniform(0.6, 1.0, len(i)), rng.uniform(0.0, 0.5, len(i))).astype(np.float32)
    far = rng.random(n) < 0.02
    ids = [f"item{v:07d}" for v in range(n)]
    rows = []
    for guard in (False, True):
        calls: list[int] = []

        def pair_score(u, v):
            calls.append(len(u))
            return np.where((grp[u] == grp[v]) & ~far[u] & ~far[v], 0.8, 0.3).astype(np.float32)

        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        cl = cluster_edges(n, i, j, s, 0.55, ids, pair_score=pair_score if guard else None, guard_tau=0.45)
        rows.append({"cluster_n": n, "pairs": int(len(i)), "guard": guard, "load1": round(load, 2),
                     "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                     "clusters": len(set(cl.cluster_id)), "n_edges": cl.n_edges, "n_split": cl.n_split,
                     "pair_score_rows_per_round": calls})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tau", type=float, default=0.55)
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--configs", nargs="*", default=["ivf:auto:4"])
    ap.add_argument("--cache", default="/tmp", help="folder for the exact neighbours of the sample ('' = none)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "knn_choice.jsonl"))
    ap.add_argument("--cluster", type=int, default=0, help="time cluster_edges on this many items instead")
    a = ap.parse_args(argv)
    if a.cluster:
        for row in cluster_speed(a.cluster):
            print(json.dumps(row), flush=True)
            with open(a.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return 0
    x = dup_vectors(a.n, a.d, a.copies, a.noise)
    cache = (Path(a.cache) / f"knn_choice_exact_{a.n}_{a.d}_{a.copies}_{a.noise}_{a.sample}_{a.k}.npz") if a.cache else None
    s, nn, sim = exact_sample(x, a.sample, a.k, cache)
    for cfg in a.configs:
        load = os.getloadavg()[0]
        i, j, info = run_config(cfg, x, a.k)
        row = {"n": a.n, "d": a.d, "copies": a.copies, "noise": a.noise, "k": a.k, "load1": round(load, 2), **info}
        if i is not None:
            row["recall_top10"] = round(recall(i, j, a.n, s, nn, sim, -np.inf)[0], 4)
            row[f"recall_tau{a.tau}"], row["exact_edges_above_tau"] = recall(i, j, a.n, s, nn, sim, a.tau)
            row[f"recall_tau{a.tau}"] = round(row[f"recall_tau{a.tau}"], 4)
        print(json.dumps(row), flush=True)
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
