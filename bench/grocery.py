"""Grocery Store photos: do the photos of one product form one cluster? phash vs black box vs FITRep.

    .venv/bin/python bench/grocery.py [--methods saliency_crop,saliency,cam,center] [--limit N]

Data: ``$ITEMREP_DATA/grocery`` (Klasson et al., WACV 2019, MIT): train (2,640) and val (296)
in-store photos of 81 products; the test split is held back and never read. Labels are the fine
product classes. Thresholds and slot weights are tuned on **train** (best pairwise F1), then the
same settings cluster **val** and the table reports val.

Methods (each a set of unit-norm slot vectors fused as z = ⊕ √α_k c_k, FITRep Eq. for attention
fusion, so cos(z, z') = Σ α_k cos(c_k, c'_k)):

* ``phash``: pHash bits only (cosine = 1 - 2·Hamming/64);
* ``black box``: whole-image pooled EfficientNet-Lite0 feature (one vector per photo);
* ``FITRep <method>``: image_primary (main-object region by <method>) and image_context
  (whole frame), plus the pHash slot, with α tuned on train.

Clustering (local helper until ``itemrep.dedup.cluster`` is on main): exact faiss inner-product kNN
(k = 30), edges with similarity >= τ, connected components (union-find). Metrics: pairwise
precision/recall/F1 and adjusted Rand index (Hubert & Arabie 1985) via scikit-learn.

Features are cached in ``$ITEMREP_CACHE/bench`` (``.npz`` keyed by split and methods) so re-runs
only redo the clustering.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import product as iproduct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


# ------------------------------------------------------------------ shared helpers (used by other benches)
def data_dir() -> Path:
    """``$ITEMREP_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("ITEMREP_DATA", REPO.parent / "shared" / "data"))


def bench_cache() -> Path:
    from itemrep.encoders.image import default_cache_dir

    p = default_cache_dir() / "bench"
    p.mkdir(parents=True, exist_ok=True)
    return p


def cluster(z: np.ndarray, tau: float, k: int = 30, knn: tuple | None = None) -> np.ndarray:
    """Cluster ids: faiss exact IP kNN graph, edges with sim >= tau, connected components.

    Args:
        z: (N, d) float32 fused vectors (unit slots scaled by √α, so IP = weighted cosine).
        tau: similarity threshold.
        k: neighbours per item.
        knn: precomputed ``(sims, idx)`` from :func:`knn_graph` (to sweep tau cheaply).

    Returns:
        (N,) int64 component ids.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    sims, idx = knn if knn is not None else knn_graph(z, k)
    n = len(idx)
    rows = np.repeat(np.arange(n), idx.shape[1])
    keep = (sims.ravel() >= tau) & (idx.ravel() >= 0)
    g = coo_matrix((np.ones(keep.sum()), (rows[keep], idx.ravel()[keep])), shape=(n, n))
    return connected_components(g, directed=False)[1].astype(np.int64)


def knn_graph(z: np.ndarray, k: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product kNN with faiss: (sims (N, k), idx (N, k))."""
    import faiss

    z = np.ascontiguousarray(z, dtype=np.float32)
    index = faiss.IndexFlatIP(z.shape[1])
    index.add(z)
    return index.search(z, min(k, len(z)))


def pair_metrics(true, pred) -> dict[str, float]:
    """Pairwise precision/recall/F1 and ARI of a clustering against true groups."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.metrics.cluster import pair_confusion_matrix

    _, t = np.unique(np.asarray(true).astype(str), return_inverse=True)
    _, p = np.unique(np.asarray(pred).astype(str), return_inverse=True)
    m = pair_confusion_matrix(t, p)
    tp, fp, fn = float(m[1, 1]), float(m[0, 1]), float(m[1, 0])
    pr = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
    return {"P": pr, "R": rc, "F1": f1, "ARI": float(adjusted_rand_score(t, p))}


def fuse(slots: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """z = ⊕ √α_k c_k with α normalised to sum 1 (zero-weight slots dropped)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    parts = [np.sqrt(a) * s for a, s in zip(w, slots) if a > 0]
    return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)


def tune(slots: list[np.ndarray], labels, weight_grid: list[tuple], taus: np.ndarray, k: int = 30):
    """Best (weights, tau, metrics) by pairwise F1 over a grid (one kNN per weight setting)."""
    best = None
    for w in weight_grid:
        z = fuse(slots, list(w))
        kn = knn_graph(z, k)
        for tau in taus:
            m = pair_metrics(labels, cluster(z, tau, k, kn))
            if best is None or m["F1"] > best[2]["F1"]:
                best = (tuple(w), float(tau), m)
    return best


def features_for(paths: list[Path], methods: tuple[str, ...], tag: str) -> dict[str, np.ndarray]:
    """Pooled features per method + whole + phash vectors, cached as .npz in the bench cache."""
    from itemrep.encoders.image import compute_image_features, l2n
    from itemrep.encoders.phash import phash_similarity_vectors

    f = bench_cache() / f"{tag}-{'-'.join(sorted(methods))}.npz"
    if f.exists():
        z = np.load(f, allow_pickle=False)
        return {k: z[k] for k in z.files}
    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task(f"features {tag}", total=len(paths))
        t0 = time.perf_counter()
        res = compute_image_features(paths, methods=methods, progress=lambda k: prog.advance(task, k))
        secs = time.perf_counter() - t0
    out = {m: l2n(v) for m, v in res.pooled.items()}
    out["phash"] = phash_similarity_vectors(res.phash)
    out["colour"] = res.colour
    out["ok"] = np.array([e is None for e in res.errors])
    out["seconds"] = np.array(secs)
    np.savez(f, **out)
    return out


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """Print a rich table (also plain-text friendly for the docs)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r])
    Console(width=200).print(t)


# ------------------------------------------------------------------------------------------ bench
def load_split(root: Path, split: str, limit: int | None) -> tuple[list[Path], list[str]]:
    paths, labels = [], []
    for line in (root / f"{split}.txt").read_text().splitlines():
        if not line.strip():
            continue
        rel, fine, _coarse = [s.strip() for s in line.split(",")]
        paths.append(root / rel)
        labels.append(fine)
    if limit:
        rng = np.random.default_rng(0)
        sel = np.sort(rng.choice(len(paths), size=min(limit, len(paths)), replace=False))
        paths = [paths[i] for i in sel]
        labels = [labels[i] for i in sel]
    return paths, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="saliency_crop,saliency,cam,center")
    ap.add_argument("--limit", type=int, default=None, help="use a seeded sample of N train photos (quick runs)")
    args = ap.parse_args()
    root = data_dir() / "grocery"
    if not (root / "train.txt").exists():
        print(f"grocery data not found at {root} (set ITEMREP_DATA); skipping")
        return
    methods = tuple(m for m in args.methods.split(",") if m)
    tr_p, tr_y = load_split(root, "train", args.limit)
    va_p, va_y = load_split(root, "val", None)
    ftr = features_for(tr_p, methods, f"grocery-train{args.limit or ''}")
    fva = features_for(va_p, methods, "grocery-val")
    print(f"train {len(tr_p)} photos ({ftr['ok'].sum()} usable, {float(ftr['seconds']):.1f} s), val {len(va_p)} photos "
          f"({fva['ok'].sum()} usable), {len(set(tr_y))} products")

    taus = np.round(np.arange(0.30, 0.991, 0.01), 3)
    rows = []
    configs: list[tuple[str, list[str], list[tuple]]] = [
        ("phash only", ["phash"], [(1.0,)]),
        ("black box (whole-image CNN)", ["whole"], [(1.0,)]),
    ]
    grid3 = [(a, 1 - a - b, b) for a, b in iproduct([0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [0.0, 0.1]) if 1 - a - b >= -1e-9]
    for m in methods:
        configs.append((f"FITRep slots, primary={m}", [m, "whole", "phash"], grid3))
    from itemrep.encoders.image import COLOUR_WEIGHT

    for f_ in (ftr, fva):
        f_[f"{methods[0]}+colour"] = fuse([f_[methods[0]], f_["colour"]], [1 - COLOUR_WEIGHT, COLOUR_WEIGHT])
    configs.append((f"FITRep slots, primary={methods[0]}+colour (default)", [f"{methods[0]}+colour", "whole", "phash"], grid3))
    for name, keys, grid in configs:
        w, tau, mtr = tune([ftr[k] for k in keys], tr_y, grid, taus)
        zva = fuse([fva[k] for k in keys], list(w))
        mva = pair_metrics(va_y, cluster(zva, tau))
        wtxt = ", ".join(f"{k}={a / sum(w):.2f}" for k, a in zip(keys, w) if a > 0)
        rows.append([name, wtxt, tau, mtr["F1"], mva["P"], mva["R"], mva["F1"], mva["ARI"]])
    print_table("Grocery val (thresholds/weights tuned on train)",
                ["method", "α (tuned)", "τ", "train F1", "val P", "val R", "val F1", "val ARI"], rows)


if __name__ == "__main__":
    main()
