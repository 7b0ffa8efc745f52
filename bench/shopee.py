"""Shopee near-duplicate benchmark: FITRep vs baselines on a group-wise 70/30 split, one table.

    python bench/shopee.py                 # seed 0 split, all methods
    python bench/shopee.py --seeds 0 1 2   # several splits (mean of each method over splits)
    python bench/shopee.py --quick         # 30 % of the groups, for a smoke run

Every threshold (baselines' and FITRep's α and τ) is fitted on the 70 % part; the table reports the
30 % part, whose groups were never seen while tuning. All methods are turned into clusters the same
way (kNN candidate pairs -> edges at or above the threshold -> union-find), so the numbers compare.
Data: ``$ITEMREP_DATA/shopee/train.csv`` (see the data README); the script exits with a message
when it is absent.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from itemrep.catalog import Catalog
from itemrep.dedup.cluster import NearDuplicateClusterer, cluster_edges, knn_graph
from itemrep.encoders.text import TfidfTextEncoder, USETextEncoder
from itemrep.dedup.metrics import dedup_metrics, mean_item_f1
from itemrep.dedup.fusion import AttentionFusion
from itemrep.paths import dataset
from itemrep.dedup.pipeline import FITRep
from itemrep.runinfo import peak_rss_mb
from itemrep.dedup.slots import DEFAULT_SLOT_SPECS, phash_bits

K = 20  # candidate neighbours per item for the baselines


def sparse_topk(x, k: int, chunk: int = 2048):
    """Exact top-k cosine neighbours of CSR rows (unit-norm): pairs i<j and their scores."""
    n = x.shape[0]
    xt = x.T.tocsr()
    rows, cols, vals = [], [], []
    for s in range(0, n, chunk):
        sim = (x[s : s + chunk] @ xt).toarray()
        kk = min(k + 1, n)
        part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        r = np.repeat(np.arange(s, s + sim.shape[0]), kk)
        c = part.ravel()
        rows.append(r)
        cols.append(c)
        vals.append(sim[np.arange(sim.shape[0])[:, None], part].ravel())
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    keep = r != c
    a, b, v = np.minimum(r[keep], c[keep]), np.maximum(r[keep], c[keep]), v[keep]
    key, first = np.unique(a * n + b, return_index=True)
    return key // n, key % n, v[first].astype(np.float32)


def dense_topk(x: np.ndarray, k: int):
    i, j, _ = knn_graph(x, k)
    return i, j, np.einsum("ij,ij->i", x[i], x[j]).astype(np.float32)


def clusters_at(n, i, j, s, t, ids):
    return cluster_edges(n, i, j, s, t, ids).cluster_id


def tune(n, i, j, s, labels, ids, grid):
    scores = {t: mean_item_f1(labels, clusters_at(n, i, j, s, t, ids)) for t in grid}
    best = max(scores, key=lambda t: (scores[t], t))
    return best, scores[best]


def phash_exact(cat: Catalog):
    return [it.phash or f"none:{it.item_id}" for it in cat.items]


class Baseline:
    """A threshold method: ``pairs(cat)`` -> candidate pairs with scores; threshold tuned on train."""

    def __init__(self, name, pairs_fn, grid):
        self.name, self.pairs_fn, self.grid = name, pairs_fn, grid

    def fit(self, cat):
        i, j, s = self.pairs_fn(cat)
        self.t_, self.train_f1_ = tune(len(cat), i, j, s, cat.labels, cat.ids, self.grid)
        return self

    def predict(self, cat):
        i, j, s = self.pairs_fn(cat)
        return clusters_at(len(cat), i, j, s, self.t_, cat.ids)


def tfidf_pairs(cat):
    x = TfidfTextEncoder("word", (1, 1)).fit_transform(cat.titles)
    return sparse_topk(x, K)


def phash_pairs(cat):
    return dense_topk(phash_bits([it.phash for it in cat.items]), K)


_use = None


def use_pairs(cat):
    global _use
    _use = _use or USETextEncoder()
    return dense_topk(_use.encode(cat.titles), K)


class Union:
    """TF-IDF ∪ phash: an edge when either the TF-IDF cosine or the phash similarity passes its threshold."""

    name = "TF-IDF ∪ phash"

    def _pairs(self, cat):
        ti, tj, ts = tfidf_pairs(cat)
        pi, pj, ps = phash_pairs(cat)
        return (ti, tj, ts), (pi, pj, ps)

    def _clusters(self, cat, parts, t1, t2):
        (ti, tj, ts), (pi, pj, ps) = parts
        i = np.concatenate([ti[ts >= t1], pi[ps >= t2]])
        j = np.concatenate([tj[ts >= t1], pj[ps >= t2]])
        return cluster_edges(len(cat), i, j, np.ones(len(i), np.float32), 0.5, cat.ids).cluster_id

    def fit(self, cat):
        parts = self._pairs(cat)
        grid = [(t1, t2) for t1 in np.arange(0.3, 0.91, 0.05) for t2 in (1 - np.arange(0, 13, 2) / 32)]
        scores = {g: mean_item_f1(cat.labels, self._clusters(cat, parts, *g)) for g in grid}
        self.t_ = max(scores, key=lambda g: (scores[g], g))
        self.train_f1_ = scores[self.t_]
        return self

    def predict(self, cat):
        return self._clusters(cat, self._pairs(cat), *self.t_)


def run_split(cat: Catalog, seed: int, args) -> list[dict]:
    labels = np.asarray(cat.labels)
    tr, te = next(GroupShuffleSplit(n_splits=1, train_size=0.7, random_state=seed).split(np.zeros(len(cat)), groups=labels))
    train, test = cat.subset(np.sort(tr)), cat.subset(np.sort(te))
    print(f"split seed {seed}: fit on {len(train)} listings ({len(set(train.labels))} groups), "
          f"report on {len(test)} ({len(set(test.labels))} groups)", file=sys.stderr)
    rows = []

    def record(name, pred, seconds, extra=None):
        m = dedup_metrics(test.labels, pred)
        rows.append({"seed": seed, "method": name, "mean_item_f1": m["mean_item_f1"], "pairwise_precision": m["pairwise_precision"],
                     "pairwise_recall": m["pairwise_recall"], "pairwise_f1": m["pairwise_f1"], "ari": m["adjusted_rand_index"],
                     "seconds": seconds, **(extra or {})})
        print(f"  {name:<28} F1 {m['mean_item_f1']:.4f}  ({seconds:.1f} s)", file=sys.stderr)

    t = time.perf_counter()
    record("phash exact match", phash_exact(test), time.perf_counter() - t)
    grid_h = list(1 - np.arange(0, 21, 1) / 32)
    for b in (Baseline("phash Hamming threshold", phash_pairs, grid_h),
              Baseline("TF-IDF title threshold", tfidf_pairs, list(np.arange(0.2, 0.96, 0.025))),
              Union(),
              Baseline("black box (USE whole title)", use_pairs, list(np.arange(0.3, 0.99, 0.02)))):
        b.fit(train)
        t = time.perf_counter()
        pred = b.predict(test)
        record(b.name, pred, time.perf_counter() - t, {"threshold": str(np.round(b.t_, 4).tolist())})

    variants = [("FITRep", {}, True)]
    if not args.no_ablations:
        variants += [("FITRep, uniform α", {"fusion": "uniform"}, False),
                     ("FITRep, no SPDR (reducer none)", {"reducer": "none"}, True),
                     ("FITRep, SPDR = UMAP", {"reducer": "umap"}, True),
                     ("FITRep, no chaining guard", {"guard": False}, True),
                     ("FITRep, no attribute conflicts", {"slot_specs": tuple(replace(sp_, conflict=False) for sp_ in DEFAULT_SLOT_SPECS)}, True),
                     ("FITRep + USE dense text slot", {"text_encoder": "use"}, True),
                     ("FITRep, USE instead of TF-IDF text slots", {"text_encoder": "use", "slot_specs": tuple(
                         sp_ for sp_ in DEFAULT_SLOT_SPECS if sp_.name not in ("primary_words", "primary_chars"))}, True)]
    for name, kw, learn in variants:
        if args.only and name not in args.only:
            continue
        kw = dict(kw)
        fusion = None
        if kw.pop("fusion", None) == "uniform":
            fusion = AttentionFusion(alpha={sp_.name: 1.0 for sp_ in DEFAULT_SLOT_SPECS})
        guard = kw.pop("guard", True)
        model = FITRep(fusion=fusion, images="off", clusterer=NearDuplicateClusterer(guard=guard), **kw)
        t0 = time.perf_counter()
        model.fit(train, learn_alpha=learn)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = model.dedup(test)
        secs = time.perf_counter() - t0
        record(name, res.clusters["cluster_id"].tolist(), secs,
               {"threshold": f"{model.tau:.3f}", "fit_seconds": round(fit_s, 1),
                "stages": {k: v["seconds"] for k, v in res.run["stages"].items()},
                "alpha": {k: round(v, 3) for k, v in res.run["alpha"].items()}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--quick", action="store_true", help="use 30%% of the groups (smoke run)")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--only", nargs="*", help="run only the FITRep variants with these exact names, e.g. FITRep \"FITRep, uniform α\"")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    root = dataset("shopee")
    if root is None:
        print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README)", file=sys.stderr)
        return 2
    cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None, phash_col="image_phash")
    if args.quick:
        groups = np.array(sorted(set(cat.labels)))
        keep = set(np.random.default_rng(0).choice(groups, size=len(groups) * 3 // 10, replace=False))
        cat = cat.subset([k for k, it in enumerate(cat.items) if it.label in keep])
    rows = []
    for seed in args.seeds:
        rows.extend(run_split(cat, seed, args))
    df = pd.DataFrame(rows)
    table = df.groupby("method", sort=False).agg(
        mean_item_f1=("mean_item_f1", "mean"), pairwise_precision=("pairwise_precision", "mean"),
        pairwise_recall=("pairwise_recall", "mean"), pairwise_f1=("pairwise_f1", "mean"), ari=("ari", "mean"),
        seconds=("seconds", "mean"), threshold=("threshold", "first"))
    print(f"\nShopee, {len(cat)} listings, group split 70/30, seeds {args.seeds}; metrics on the 30 % never tuned on")
    print(table.to_markdown(floatfmt=".4f"))
    fit_rows = df[df["method"].str.startswith("FITRep")]
    if "stages" in fit_rows:
        print("\nFITRep dedup seconds per stage (30 % part):")
        print(pd.DataFrame(list(fit_rows["stages"]), index=fit_rows["method"]).to_markdown(floatfmt=".2f"))
        print("\nLearned α (FITRep):", json.dumps(fit_rows.iloc[0]["alpha"]))
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MiB")
    if args.json:
        args.json.write_text(df.to_json(orient="records", indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
