"""Shopee near-duplicate benchmark: FITRep vs baselines on a fit / select / report split of the label
groups, one table (GitHub issue #10, "an honest protocol").

    python bench/shopee.py                          # seed 0 split, all methods and FITRep ablations
    python bench/shopee.py --no-ablations           # FITRep and the baselines only (a few minutes)
    python bench/shopee.py --seeds 0 1 2            # several splits (mean of each method over splits)
    python bench/shopee.py --quick --no-ablations   # 30 % of the groups, for a smoke run
    python bench/shopee.py --json bench/results/shopee_seed0.json

Protocol (``bench/protocol.py``):

1. **Split.** The label groups (never single listings) are permuted with the seed and cut into
   *fit* / *select* / *report* parts, 50 / 20 / 30 % of the groups by default (``--fractions``).
   :func:`protocol.split_groups` does it; it depends only on the labels and the seed.
2. **FITRep** (and each ablation): ``FITRep.fit(fit)`` learns α, β, γ and a first τ on *fit*. τ is
   then chosen on *select*: *select* is encoded once (``FITRep.fit_transform``: the unsupervised
   stages are fitted on the catalog being deduplicated, exactly as ``FITRep.dedup`` does; α, β, γ
   stay those learned on fit) and clustered with ``FITRep.cluster`` for every τ of a grid around the
   fitted one (fitted τ ± 0.10 by 0.01, widened while the best sits on the grid's edge), τ being set
   through the public ``FITRep.threshold`` override; the τ with the best mean per-item F1 on select is
   kept (ties: the one closest to the fitted τ). For the main FITRep row the script checks that
   ``FITRep.dedup(select)`` at that τ gives the same F1.
3. **Baselines** (phash exact, phash Hamming threshold, TF-IDF title threshold, TF-IDF ∪ phash,
   USE whole title): nothing to learn but thresholds, tuned on *fit + select* together
   (``--tune-baselines-on select``: on *select* only, the pool size FITRep's τ is chosen on).
4. **Report.** Every method then deduplicates *report* alone once; its mean per-item F1, pairwise
   P/R/F1 and ARI are the table. No choice is made after the report labels are read.
5. **Pool-size robustness.** FITRep and TF-IDF ∪ phash, with the thresholds chosen above, also
   deduplicate the whole catalog (every split together: the fit and select groups act as
   distractors); the mean per-item F1 is counted on the report items only, a report item's
   predicted set being its whole cluster (distractors merged into it are false positives,
   :func:`protocol.item_f1_on`). The pool table prints F1 alone, F1 in the whole pool, and the drop.

All baselines become clusters the same way (kNN candidate pairs -> edges at or above the threshold ->
union-find), so their numbers compare. Data: ``$ITEMREP_DATA/shopee/train.csv`` (see the data
README); the script exits with a message when it is absent. The stdout table is the result; progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/protocol.py, however the script is started

from protocol import DEFAULT_FRACTIONS, choose, item_f1_on, load_shopee, split_groups, tau_grid  # noqa: E402

from itemrep.catalog import Catalog  # noqa: E402
from itemrep.dedup.cluster import NearDuplicateClusterer, cluster_edges, knn_graph  # noqa: E402
from itemrep.dedup.fusion import AttentionFusion  # noqa: E402
from itemrep.dedup.metrics import dedup_metrics, mean_item_f1  # noqa: E402
from itemrep.dedup.pipeline import FITRep  # noqa: E402
from itemrep.dedup.slots import DEFAULT_SLOT_SPECS, phash_bits  # noqa: E402
from itemrep.encoders.text import TfidfTextEncoder, USETextEncoder  # noqa: E402
from itemrep.runinfo import peak_rss_mb  # noqa: E402

K = 20  # candidate neighbours per item for the baselines
UNION = "TF-IDF ∪ phash"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- baselines
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
    best = choose(scores)
    return best, scores[best]


def phash_exact(cat: Catalog):
    return [it.phash or f"none:{it.item_id}" for it in cat.items]


class Baseline:
    """A threshold method: ``pairs(cat)`` -> candidate pairs with scores; threshold tuned by ``fit``."""

    def __init__(self, name, pairs_fn, grid):
        self.name, self.pairs_fn, self.grid = name, pairs_fn, grid

    def fit(self, cat):
        i, j, s = self.pairs_fn(cat)
        self.t_, self.tune_f1_ = tune(len(cat), i, j, s, cat.labels, cat.ids, self.grid)
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

    name = UNION

    def _pairs(self, cat):
        return tfidf_pairs(cat), phash_pairs(cat)

    def _clusters(self, cat, parts, t1, t2):
        (ti, tj, ts), (pi, pj, ps) = parts
        i = np.concatenate([ti[ts >= t1], pi[ps >= t2]])
        j = np.concatenate([tj[ts >= t1], pj[ps >= t2]])
        return cluster_edges(len(cat), i, j, np.ones(len(i), np.float32), 0.5, cat.ids).cluster_id

    def fit(self, cat):
        parts = self._pairs(cat)
        grid = [(round(t1, 4), round(t2, 4)) for t1 in np.arange(0.3, 0.91, 0.05) for t2 in (1 - np.arange(0, 13, 2) / 32)]
        scores = {g: mean_item_f1(cat.labels, self._clusters(cat, parts, *g)) for g in grid}
        self.t_ = choose(scores)
        self.tune_f1_ = scores[self.t_]
        return self

    def predict(self, cat):
        return self._clusters(cat, self._pairs(cat), *self.t_)


# ---------------------------------------------------------------- FITRep
def select_tau(model: FITRep, select: Catalog, max_widen: int = 6) -> tuple[float, float, dict]:
    """Choose τ of a fitted ``model`` on the ``select`` catalog; sets ``model.threshold`` to it.

    ``select`` is encoded once with ``model.fit_transform`` (as ``model.dedup`` does: unsupervised
    stages fitted on the catalog deduplicated, α/β/γ from the fit), then clustered with
    ``model.cluster`` at each τ of ``tau_grid(fitted τ)``; the grid is widened by 0.05 steps while the
    best τ lies on its edge. Returns ``(τ, its mean per-item F1 on select, {τ: F1})``.
    """
    center = model.tau
    enc = model.fit_transform(select)
    by_id = dict(zip(select.ids, select.labels))
    y = [by_id[x] for x in enc.ids]
    curve: dict[float, float] = {}

    def run(grid):
        for t in grid:
            if t not in curve:
                model.threshold = t
                curve[t] = mean_item_f1(y, model.cluster(enc).cluster_id)

    def best():
        return choose(curve, prefer=lambda t: -abs(t - center))

    run(tau_grid(center))
    for _ in range(max_widen):
        b, lo, hi = best(), min(curve), max(curve)
        if b == lo and lo > 0.02:
            run(tau_grid(lo - 0.05, 0.05))
        elif b == hi and hi < 1.99:
            run(tau_grid(hi + 0.05, 0.05))
        else:
            break
    tau = best()
    model.threshold = tau
    return float(tau), float(curve[tau]), curve


POOL = "τ chosen inside the fit+select pool"


def fitrep_variants(no_ablations: bool, st_model: Path | None = None) -> list[tuple[str, dict, bool]]:
    """(name, FITRep keyword arguments, learn α). Keys starting with ``_`` steer the protocol:
    ``_tune="pool"`` chooses τ (and ``_nn``: the nearest-neighbour threshold) with
    ``FITRep.tune`` on the fit + select catalog, F1 counted on the select items only, so the
    threshold is chosen in a pool as large as the catalogs it will meet."""
    variants = [("FITRep", {}, True),
                (f"FITRep, {POOL}", {"_tune": "pool"}, True),
                (f"FITRep defaults (nearest-neighbour rule auto at τ_logistic), {POOL}", {"_tune": "pool", "_nn_rule": "auto"}, True),
                (f"FITRep + nearest-neighbour rule, {POOL}", {"_tune": "pool", "_nn": True}, True),
                (f"FITRep + neighbourhood blending (1 round), {POOL}", {"_tune": "pool", "blend_rounds": 1}, True),
                (f"FITRep + mutual-neighbour filter (m chosen on select), {POOL}", {"_tune": "pool", "_mutual": (2, 3, 5)}, True)]
    if st_model is not None:  # a sentence model fine-tuned on the fit split (bench/finetune_text.py)
        variants.append((f"FITRep + fine-tuned sentence slot ({Path(st_model).name}), {POOL}",
                         {"_tune": "pool", "text_encoder": f"st:{st_model}"}, True))
    if not no_ablations:
        variants += [("FITRep, uniform α", {"fusion": "uniform"}, False),
                     ("FITRep, no SPDR (reducer none)", {"reducer": "none"}, True),
                     ("FITRep, SPDR = UMAP", {"reducer": "umap"}, True),
                     ("FITRep, no chaining guard", {"guard": False}, True),
                     ("FITRep, no attribute conflicts", {"slot_specs": tuple(replace(sp_, conflict=False) for sp_ in DEFAULT_SLOT_SPECS)}, True),
                     ("FITRep + USE dense text slot", {"text_encoder": "use"}, True),
                     ("FITRep, USE instead of TF-IDF text slots", {"text_encoder": "use", "slot_specs": tuple(
                         sp_ for sp_ in DEFAULT_SLOT_SPECS if sp_.name not in ("primary_words", "primary_chars"))}, True)]
    return variants


def make_fitrep(kw: dict) -> FITRep:
    kw = {k: v for k, v in kw.items() if not k.startswith("_")}
    fusion = None
    if kw.pop("fusion", None) == "uniform":
        fusion = AttentionFusion(alpha={sp_.name: 1.0 for sp_ in DEFAULT_SLOT_SPECS})
    guard = kw.pop("guard", True)
    return FITRep(fusion=fusion, images="off", clusterer=NearDuplicateClusterer(guard=guard), **kw)


# ---------------------------------------------------------------- one split
def run_split(cat: Catalog, seed: int, args) -> tuple[list[dict], list[dict]]:
    fit_idx, sel_idx, rep_idx = split_groups(cat.labels, seed, args.fractions)
    fit, select, report = cat.subset(fit_idx), cat.subset(sel_idx), cat.subset(rep_idx)
    tune_on = args.tune_baselines_on
    tune_cat = select if tune_on == "select" else cat.subset(np.sort(np.concatenate([fit_idx, sel_idx])))
    for name, part in (("fit", fit), ("select", select), ("report", report)):
        log(f"split seed {seed}: {name:<6} {len(part):>6} listings, {len(set(part.labels)):>5} groups")
    rows: list[dict] = []
    pool: list[dict] = []

    def record(name, pred, seconds, tuned_on, extra=None):
        m = dedup_metrics(report.labels, pred)
        rows.append({"seed": seed, "method": name, "tuned_on": tuned_on, "mean_item_f1": m["mean_item_f1"],
                     "pairwise_precision": m["pairwise_precision"], "pairwise_recall": m["pairwise_recall"],
                     "pairwise_f1": m["pairwise_f1"], "ari": m["adjusted_rand_index"], "seconds": seconds,
                     "n_report": len(report), **(extra or {})})
        log(f"  {name:<40} report F1 {m['mean_item_f1']:.4f}  ({seconds:.1f} s)")
        return m["mean_item_f1"]

    def in_pool(name, threshold, alone, predict_whole):
        t = time.perf_counter()
        pred = predict_whole(cat)
        secs = time.perf_counter() - t
        f1 = item_f1_on(cat.labels, pred, rep_idx)
        pool.append({"seed": seed, "method": name, "threshold": threshold, "f1_alone": alone, "f1_in_pool": f1,
                     "drop": alone - f1, "n_report": len(rep_idx), "n_pool": len(cat), "seconds_pool": secs})
        log(f"  {name:<40} report F1 inside the whole pool of {len(cat)}: {f1:.4f} (alone {alone:.4f}; {secs:.1f} s)")

    t = time.perf_counter()
    record("phash exact match", phash_exact(report), time.perf_counter() - t, "—")
    grid_h = list(1 - np.arange(0, 21, 1) / 32)
    baselines = [Baseline("phash Hamming threshold", phash_pairs, grid_h),
                 Baseline("TF-IDF title threshold", tfidf_pairs, list(np.arange(0.2, 0.96, 0.025))),
                 Union()]
    if not args.no_use:
        baselines.append(Baseline("black box (USE whole title)", use_pairs, list(np.arange(0.3, 0.99, 0.02))))
    for b in baselines:
        b.fit(tune_cat)
        t = time.perf_counter()
        pred = b.predict(report)
        thr = str(np.round(b.t_, 4).tolist())
        alone = record(b.name, pred, time.perf_counter() - t, tune_on,
                       {"threshold": thr, "f1_fit_select" if tune_on == "fit+select" else "f1_select": b.tune_f1_})
        if b.name == UNION:
            in_pool(b.name, thr, alone, b.predict)

    for name, kw, learn in fitrep_variants(args.no_ablations, args.st_model):
        if args.only and name not in args.only:
            continue
        model = make_fitrep(kw)
        t0 = time.perf_counter()
        model.fit(fit, learn_alpha=learn, nn_rule=kw.get("_nn_rule", "off"))
        fit_s = time.perf_counter() - t0
        tau_fit, fit_f1 = model.tau, model.fit_info_["train_mean_item_f1"]
        t0 = time.perf_counter()
        nn = None
        if kw.get("_tune") == "pool":
            fit_select = cat.subset(np.sort(np.concatenate([fit_idx, sel_idx])))
            # the rule's threshold is chosen on select (_nn), else kept as fit set it (τ_logistic, or off)
            nn_grid = [None] + [round(float(x), 3) for x in np.arange(0.2, 0.5, 0.05)] if kw.get("_nn") else None
            grid = [round(float(x), 3) for x in np.arange(0.2, 0.8, 0.01)]
            best_m = None
            if kw.get("_mutual"):  # the filter's m is chosen on select too: one tune per m, the best kept
                tried = {}
                for m_k in kw["_mutual"]:
                    cand = copy.deepcopy(model)
                    cand.clusterer_.mutual_k = m_k
                    cand.tune(fit_select, tau_grid=grid, nn_grid=nn_grid, score_on=select.ids)
                    tried[m_k] = cand
                best_m = max(tried, key=lambda m_k: (tried[m_k].tune_info_["select_mean_item_f1"], -m_k))
                model = tried[best_m]
            else:
                model.tune(fit_select, tau_grid=grid, nn_grid=nn_grid, score_on=select.ids)
            info = model.tune_info_
            tau, sel_f1, nn = info["tau"], info["select_mean_item_f1"], info["nn_threshold"]
            curve = {r["tau"]: r["mean_item_f1"] for r in info["curve"] if r["nn_threshold"] == nn}
        else:
            tau, sel_f1, curve = select_tau(model, select)
        sel_s = time.perf_counter() - t0
        log(f"  {name:<40} τ fit {tau_fit:.3f} (F1 on fit {fit_f1:.4f}) -> τ select {tau:.3f} (F1 on select {sel_f1:.4f})")
        if name == "FITRep":  # the cheap path of select_tau must be what dedup gives
            check = model.dedup(select).metrics["mean_item_f1"]
            if abs(check - sel_f1) > 1e-9:
                log(f"  WARNING: FITRep.dedup(select) at τ {tau:.3f} gives F1 {check:.6f}, the τ search {sel_f1:.6f}")
        t0 = time.perf_counter()
        res = model.dedup(report)
        secs = time.perf_counter() - t0
        thr = (f"{tau:.3f} (fit {tau_fit:.3f})" + ("" if nn is None else f", nn {nn:.2f}")
               + ("" if kw.get("_tune") != "pool" or best_m is None else f", m {best_m}"))
        where = "select inside fit+select" if kw.get("_tune") == "pool" else "select"
        alone = record(name, res.clusters["cluster_id"].tolist(), secs,
                       f"fit (α, β, γ) + {where} (τ)" if learn else f"{where} (τ; α given)",
                       {"threshold": thr, "tau": tau, "tau_fit": tau_fit, "f1_fit": fit_f1, "f1_select": sel_f1,
                        "select_curve": {f"{k:.4f}": round(v, 5) for k, v in sorted(curve.items())},
                        "fit_seconds": round(fit_s, 1), "select_seconds": round(sel_s, 1),
                        "stages": {k: v["seconds"] for k, v in res.run["stages"].items()},
                        "alpha": {k: round(v, 3) for k, v in res.run["alpha"].items()}})
        if name == "FITRep" or kw.get("_tune") == "pool":
            in_pool(name, thr, alone, lambda c, m=model: m.dedup(c).clusters["cluster_id"].tolist())
    return rows, pool


# ---------------------------------------------------------------- main
def _joined(s: pd.Series) -> str:
    vals = [str(v) for v in s if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return " / ".join(dict.fromkeys(vals)) if vals else ""


def protocol_header(args, cat: Catalog) -> str:
    f = [round(100 * x) for x in args.fractions]
    return "\n".join([
        f"Shopee near-duplicates, {len(cat)} listings in {len(set(cat.labels))} label groups"
        + (" (--quick: a seeded 30 % of the groups)" if args.quick else "") + f"; split seeds {args.seeds}.",
        f"Protocol: label groups split by seed into fit {f[0]} % / select {f[1]} % / report {f[2]} % (whole groups, disjoint).",
        "  FITRep (and ablations): α, β, γ learned on fit (FITRep.fit also proposes τ there);"
        " τ chosen on select (grid around the fitted τ, best mean per-item F1).",
        f"  Baselines: thresholds tuned on {'fit + select together' if args.tune_baselines_on == 'fit+select' else 'select'}.",
        "  Report split: deduplicated once per method after every choice is made; its labels are read only"
        " to compute the numbers below (nothing is chosen on them).",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS), metavar=("FIT", "SELECT", "REPORT"),
                    help="shares of the label groups (default 0.5 0.2 0.3)")
    ap.add_argument("--quick", action="store_true", help="use 30%% of the groups (smoke run)")
    ap.add_argument("--no-ablations", action="store_true", help="FITRep itself only, no variants")
    ap.add_argument("--no-use", action="store_true", help="skip the USE black-box baseline")
    ap.add_argument("--tune-baselines-on", choices=("fit+select", "select"), default="fit+select",
                    help="split the baselines' thresholds are tuned on (default fit+select; 'select' tunes them on the same"
                         " pool FITRep's τ is chosen on)")
    ap.add_argument("--only", nargs="*", help="run only the FITRep variants with these exact names, e.g. FITRep \"FITRep, uniform α\"")
    ap.add_argument("--st-model", type=Path, default=None,
                    help="also run FITRep with this sentence-transformers model as the primary_sem slot "
                         "(fine-tuned on the fit split only: bench/finetune_text.py)")
    ap.add_argument("--json", type=Path, help="also write the rows (report and pool tables, per seed) as JSON here")
    args = ap.parse_args(argv)
    cat = load_shopee(args.quick)
    if cat is None:
        return 2
    header = protocol_header(args, cat)
    log(header)
    rows, pool = [], []
    for seed in args.seeds:
        r, p = run_split(cat, seed, args)
        rows.extend(r)
        pool.extend(p)
    df = pd.DataFrame(rows)
    for col in ("f1_fit_select", "f1_select", "threshold"):
        if col not in df:
            df[col] = np.nan
    table = df.groupby("method", sort=False).agg(
        tuned_on=("tuned_on", "first"), f1_fit_select=("f1_fit_select", "mean"), f1_select=("f1_select", "mean"),
        mean_item_f1=("mean_item_f1", "mean"), pairwise_precision=("pairwise_precision", "mean"),
        pairwise_recall=("pairwise_recall", "mean"), pairwise_f1=("pairwise_f1", "mean"),
        threshold=("threshold", _joined), seconds=("seconds", "mean"))
    table = table.rename(columns={"f1_fit_select": "F1 fit+select", "f1_select": "F1 select", "mean_item_f1": "F1 report",
                                  "pairwise_precision": "pair P", "pairwise_recall": "pair R", "pairwise_f1": "pair F1"})
    table = table.drop(columns=[c for c in ("F1 fit+select", "F1 select") if table[c].isna().all()])
    n_rep = int(df["n_report"].mean()) if len(df) else 0
    print(header)
    print(f"\nReport split (mean over seeds; ~{n_rep} listings): mean per-item F1 ('F1 report'), pairwise P/R/F1, "
          "threshold chosen, dedup seconds on report. 'F1 select' / 'F1 fit+select': the F1 on the split the threshold was chosen on.")
    print(table.astype(object).where(table.notna(), None).to_markdown(floatfmt=".4f", missingval=""))
    if pool:
        pdf = pd.DataFrame(pool)
        ptab = pdf.groupby("method", sort=False).agg(
            threshold=("threshold", _joined), f1_alone=("f1_alone", "mean"), f1_in_pool=("f1_in_pool", "mean"),
            drop=("drop", "mean"), n_report=("n_report", "mean"), n_pool=("n_pool", "first"), seconds_pool=("seconds_pool", "mean"))
        ptab["n_report"] = ptab["n_report"].round().astype(int)
        ptab = ptab.rename(columns={"f1_alone": "F1 report alone", "f1_in_pool": "F1 report in whole pool",
                                    "n_report": "report items", "n_pool": "pool items", "seconds_pool": "pool seconds"})
        print(f"\nPool-size robustness: the report split deduplicated alone and inside the whole catalog ({len(cat)} listings;"
              " fit and select groups as distractors), mean per-item F1 over the report items, a report item's predicted"
              " set being its whole cluster; same thresholds as above.")
        print(ptab.to_markdown(floatfmt=".4f"))
    fit_rows = df[df["method"].str.startswith("FITRep")]
    if len(fit_rows) and "stages" in fit_rows:
        print("\nFITRep dedup seconds per stage (report split):")
        index = fit_rows["method"] if len(args.seeds) == 1 else fit_rows["method"] + ", seed " + fit_rows["seed"].astype(str)
        print(pd.DataFrame(list(fit_rows["stages"]), index=index).to_markdown(floatfmt=".2f"))
        print(f"\nα of {fit_rows.iloc[0]['method']} (seed {fit_rows.iloc[0]['seed']}):", json.dumps(fit_rows.iloc[0]["alpha"]))
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MiB")
    if args.json:
        payload = {"protocol": {"fractions": list(args.fractions), "seeds": args.seeds, "quick": args.quick,
                                "n_listings": len(cat), "header": header},
                   "rows": json.loads(df.to_json(orient="records")), "pool": pool}
        args.json.write_text(json.dumps(payload, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
