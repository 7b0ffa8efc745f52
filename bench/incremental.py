"""The persistent index, incrementally: build on 80 % of the Shopee listings, add the rest in batches.

    python bench/incremental.py                       # Shopee: build on 80 %, add 20 % in 10 batches
    python bench/incremental.py --batches 10 --seed 1
    python bench/incremental.py --synthetic 1000000 --batch-size 10000 --batches 3

**Shopee mode** (default; ``$ITEMREP_DATA/shopee/train.csv``, title + phash, built-in model): the
listings are split by row with a seeded permutation; ``ClusterIndex.build`` runs on 80 % and
``ClusterIndex.add`` takes the other 20 % in ``--batches`` equal batches. Reported:

* mean per-item F1 (``itemrep.dedup.metrics``, against ``label_group``) of the final assignment of
  all listings, against one batch ``FITRep.dedup`` of all of them (target: within 0.01);
* the share of items indexed at build whose cluster id is unchanged, or changed only by a merge
  recorded in the change log (their build id is a logged alias of the final one), and the share of
  the build's cluster ids still live (target: 100 % unchanged apart from logged merges);
* ``add`` throughput (items/s per batch: transform + assignment + write + commit);
* one-item ``lookup`` latency once the index is loaded (median and p90 of 100 lookups of listings
  under fresh ids, so each one is encoded, searched and scored; target < 20 ms).

**Synthetic mode** (``--synthetic N``): builds on ``bench/synth_catalog.make_catalog(N, seed)``
(perturbed copies of the real listings, ``source_group`` known) and adds ``--batches`` batches of
``--batch-size`` new synthetic listings (another seed), for the throughput target (>= 2,000 items/s
for batches of 10,000 into an index of 1,000,000) and the lookup latency at that size.

Prints a markdown table and writes ``bench/results/incremental[-synthetic-N].{txt,json}``.
The index is written under ``--work`` (default ``out/incremental``) and kept; in synthetic mode the
batches are added to a copy (``synthetic-N-adds``), so the build is reused by the next run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.catalog import Catalog
from itemrep.dedup.index import ClusterIndex
from itemrep.dedup.metrics import dedup_metrics, mean_item_f1
from itemrep.dedup.pipeline import FITRep
from itemrep.paths import dataset
from itemrep.runinfo import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TARGETS = {"f1_delta": 0.01, "ids_unchanged": 1.0, "items_per_s": 2000.0, "lookup_ms": 20.0}
COLS = {"id_col": "posting_id", "title_col": "title", "phash_col": "image_phash", "image_col": None}


def _catalog(df: pd.DataFrame, label_col: str | None) -> Catalog:
    return Catalog.from_frame(df, label_col=label_col, **COLS)


def _id_stability(build: pd.Series, final: pd.Series, changes: pd.DataFrame, resolve) -> dict:
    """``build``/``final``: item -> cluster id after build / at the end (items indexed at build)."""
    aliases = changes[changes["kind"] == "alias"]
    logged = set(aliases["cluster_id"])
    same = final.loc[build.index].to_numpy() == build.to_numpy()
    moved = ~same
    old_ids = build.to_numpy()[moved]
    live = np.asarray(resolve(list(old_ids)), dtype=object) if moved.any() else np.zeros(0, object)
    explained = np.asarray([o in logged for o in old_ids], bool) & (live == final.loc[build.index].to_numpy()[moved])
    build_ids = pd.unique(build)
    n_aliased = int(np.isin(build_ids, list(logged)).sum())
    return {
        "items_at_build": int(len(build)),
        "items_same_id": int(same.sum()),
        "items_moved_by_logged_merge": int(explained.sum()),
        "items_moved_unexplained": int(moved.sum() - explained.sum()),
        "share_items_unchanged_or_logged": float((same.sum() + explained.sum()) / max(len(build), 1)),
        "build_cluster_ids": int(len(build_ids)),
        "build_cluster_ids_aliased_by_logged_merge": n_aliased,
        "share_build_ids_live": float(1 - n_aliased / max(len(build_ids), 1)),
        "merges_logged": int((changes["kind"] == "merge").sum()),
        "bridges_rejected": int((changes["kind"] == "bridge_rejected").sum()),
        "new_clusters_logged_after_build": int(((changes["kind"] == "new") & (changes["batch"] > 1)).sum()),
    }


def _lookup_latency(index_dir: Path, queries: pd.DataFrame, n: int = 100) -> dict:
    """Open the index read-only (timed), then ``n`` one-item lookups (each a fresh catalog of one row)."""
    t0 = time.perf_counter()
    idx = ClusterIndex.open(index_dir, readonly=True)
    open_s = time.perf_counter() - t0
    cats = [_catalog(queries.iloc[[k]], None) for k in range(min(n, len(queries)))]
    idx.lookup(cats[0])  # warm-up (first numba / BLAS call)
    times, matched = [], 0
    for c in cats:
        t = time.perf_counter()
        r = idx.lookup(c)
        times.append(time.perf_counter() - t)
        matched += int(r["match"].iloc[0] == "existing")
    idx.close()
    ms = np.asarray(times) * 1000
    return {"open_seconds": round(open_s, 2), "n": len(times), "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)), "max_ms": float(ms.max()), "share_matched": matched / len(times)}


def _fresh_ids(df: pd.DataFrame, prefix: str) -> pd.DataFrame:
    q = df.copy()
    q["posting_id"] = [f"{prefix}{k}" for k in range(len(q))]
    return q


def run_shopee(args) -> dict:
    root = dataset("shopee")
    if root is None:
        print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README)", file=sys.stderr)
        raise SystemExit(2)
    df = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(df))
    n_build = int(round(0.8 * len(df)))
    build_df, rest = df.iloc[np.sort(perm[:n_build])], df.iloc[perm[n_build:]]
    batches = np.array_split(np.arange(len(rest)), args.batches)
    work = Path(args.work)
    idx_dir = work / f"shopee-s{args.seed}"
    if idx_dir.exists():
        shutil.rmtree(idx_dir)
    print(f"Shopee: {len(df)} listings; build on {len(build_df)}, add {len(rest)} in {args.batches} batches", file=sys.stderr)

    t0 = time.perf_counter()
    idx = ClusterIndex.build(_catalog(build_df, None), FITRep.default(progress=not args.quiet), idx_dir,
                             tau_merge=args.tau_merge)
    build_s = time.perf_counter() - t0
    at_build = idx.assignments().set_index("item_id")["cluster_id"]
    print(f"  build: {build_s:.1f} s, {at_build.nunique()} clusters", file=sys.stderr)
    # the build is one batch dedup of its part: the same cluster ids
    ref = FITRep.default().dedup(_catalog(build_df, None)).clusters.set_index("item_id")["cluster_id"]
    build_equals_dedup = bool((ref.loc[at_build.index] == at_build).all())
    rows = []
    for b, pos in enumerate(batches, 1):
        cat = _catalog(rest.iloc[pos], None)
        t = time.perf_counter()
        res = idx.add(cat)
        s = time.perf_counter() - t
        st = res.stats
        rows.append({"batch": b + 1, "items": len(pos), "seconds": round(s, 3), "items_per_s": len(pos) / s,
                     "joined_existing": st["n_joined_existing"], "new_clusters": st["n_new_clusters"], "merges": st["n_merges"],
                     "encode_s": st["encode_seconds"], "plan_s": st["plan_seconds"], "write_commit_s": st["write_commit_seconds"]})
        print(f"  batch {b + 1}: {len(pos)} items in {s:.2f} s ({len(pos) / s:.0f}/s), joined {st['n_joined_existing']}, "
              f"new clusters {st['n_new_clusters']}, merges {st['n_merges']}", file=sys.stderr)
    final = idx.assignments().set_index("item_id")["cluster_id"]
    stab = _id_stability(at_build, final, idx.changes(), idx.registry.resolve)
    idx.close()

    labels = df.set_index("posting_id")["label_group"]
    f1_incr = mean_item_f1(labels.loc[final.index].tolist(), final.tolist())
    m_incr = dedup_metrics(labels.loc[final.index].tolist(), final.tolist())
    t = time.perf_counter()
    full = FITRep.default(progress=not args.quiet).dedup(_catalog(df, "label_group"))
    dedup_s = time.perf_counter() - t
    f1_batch = full.metrics["mean_item_f1"]
    # the same batch dedup with exact kNN candidates: the method's own answer, whatever the ANN recall
    exact = copy.deepcopy(FITRep.default().clusterer_)
    exact.exact_max = max(int(getattr(exact, "exact_max", 0)), len(df) + 1)
    full_exact = FITRep.default(clusterer=exact).dedup(_catalog(df, "label_group"))
    f1_exact = full_exact.metrics["mean_item_f1"]
    # the batch dedup of only the build part, for reference (same as the index at generation 1)
    lat = _lookup_latency(idx_dir, _fresh_ids(df.iloc[rng.choice(len(df), 101, replace=False)], "lookup-"))
    return {"mode": "shopee", "seed": args.seed, "n_listings": len(df), "n_build": len(build_df), "n_added": len(rest),
            "batches": rows, "build_seconds": round(build_s, 2), "batch_dedup_seconds": round(dedup_s, 2),
            "f1_incremental": f1_incr, "f1_batch_dedup": f1_batch, "f1_delta": f1_incr - f1_batch,
            "batch_dedup_index": full.run.get("index"), "batch_dedup_candidate_recall": (full.run.get("candidate_recall") or {}).get("recall"),
            "f1_batch_dedup_exact": f1_exact, "f1_delta_exact": f1_incr - f1_exact,
            "batch_dedup_exact_candidate_recall": (full_exact.run.get("candidate_recall") or {}).get("recall"),
            "pairwise_precision_incremental": m_incr["pairwise_precision"], "pairwise_recall_incremental": m_incr["pairwise_recall"],
            "pairwise_precision_batch": full.metrics["pairwise_precision"], "pairwise_recall_batch": full.metrics["pairwise_recall"],
            "build_equals_dedup_of_build_part": build_equals_dedup, "tau": idx.tau, "tau_merge": idx.tau_merge,
            "id_stability": stab, "lookup": lat, "peak_rss_mb": round(peak_rss_mb())}


def _add_recall(index_dir: Path, sample: pd.DataFrame, nprobes: list[int]) -> dict:
    """Recall of the exact candidate edges above τ of new items, per nprobe: the sampled new items'
    exact top-k neighbours among all indexed vectors (brute force, ``faiss.knn``), scored exactly with
    the model; recall = share of those scoring >= τ that the IVF search at that nprobe returns."""
    import faiss

    from itemrep.dedup.slots import SlotSet

    idx = ClusterIndex.open(index_dir, readonly=True)
    try:
        enc = idx.model.transform(_catalog(sample, None))
        k = idx.k
        segs = idx.segment_dirs()
        x = np.concatenate([np.load(d / "vectors.npy") for d in segs])
        ids = np.concatenate([pd.read_parquet(d / "ids.parquet", columns=["item_id"])["item_id"].to_numpy(object) for d in segs])
        _, nn = faiss.knn(np.ascontiguousarray(enc.vectors), x, k, metric=faiss.METRIC_INNER_PRODUCT)
        del x
        qi = np.repeat(np.arange(len(enc.ids)), k)
        nb = ids[nn.reshape(-1)]
        uniq, inv = np.unique(nb.astype(str), return_inverse=True)
        S = SlotSet.concat([enc.slots, idx.slot_rows(list(uniq))])
        sc, _ = idx.model.score_pairs(S, qi, len(enc.ids) + inv.reshape(-1))
        above = sc >= idx.tau
        exact = set(zip(qi[above].tolist(), nb[above].tolist()))
        out = {"sample": len(enc.ids), "k": k, "exact_edges_above_tau": len(exact)}
        for p in nprobes:
            idx.nprobe = p
            t = time.perf_counter()
            _, got = idx.search(enc.vectors, k)
            found = {(i, x) for i in range(len(enc.ids)) for x in got[i] if x is not None}
            out[f"recall_nprobe{p}"] = (len(exact & found) / len(exact)) if exact else 1.0
            out[f"search_seconds_nprobe{p}"] = round(time.perf_counter() - t, 3)
        return out
    finally:
        idx.close()


def _run_adds(idx_dir: Path, work: Path, new: pd.DataFrame, args, nprobe: int | None, streamed: bool):
    """Add the batches to a fresh copy of the build; one row per batch."""
    add_dir = work / f"{idx_dir.name}-adds"
    if add_dir.exists():
        shutil.rmtree(add_dir)
    shutil.copytree(idx_dir, add_dir)
    os.sync()  # flush the copy now, or its writeback slows the batches' fsyncs
    idx = ClusterIndex.open(add_dir, nprobe=nprobe)
    if idx.generation != 1:
        idx.close()
        raise SystemExit(f"{idx_dir}: generation {idx.generation}, expected a fresh build; pass --rebuild")
    parts = [_catalog(new.iloc[b * args.batch_size:(b + 1) * args.batch_size], None) for b in range(args.batches)]
    rows = []
    label = f"{'add_batches' if streamed else 'add() per batch'}, nprobe {idx.nprobe}"
    try:
        t = time.perf_counter()
        results = idx.add_batches(parts) if streamed else (idx.add(p) for p in parts)
        for part, res in zip(parts, results):
            s = time.perf_counter() - t
            st = res.stats
            rows.append({"run": label, "batch": res.batch, "items": len(part), "index_rows_before": idx.n_rows - len(part),
                         "seconds": round(s, 3), "items_per_s": len(part) / s, "joined_existing": st["n_joined_existing"],
                         "new_clusters": st["n_new_clusters"], "merges": st["n_merges"], "encode_s": st["encode_seconds"],
                         "plan_s": st["plan_seconds"], "write_commit_s": st["write_commit_seconds"]})
            print(f"  {label}: batch {res.batch}: {len(part)} items in {s:.2f} s ({len(part) / s:.0f}/s)", file=sys.stderr)
            t = time.perf_counter()
        final = idx.assignments().set_index("item_id")["cluster_id"]
    finally:
        idx.close()
    return rows, final, add_dir


def run_synthetic(args) -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    import synth_catalog

    n = args.synthetic
    work = Path(args.work)
    idx_dir = work / f"synthetic-{n}"
    t = time.perf_counter()
    base = synth_catalog.make_catalog(n, seed=0)
    new = synth_catalog.make_catalog(args.batch_size * args.batches, seed=1)
    print(f"synthetic: made {n} + {len(new)} listings in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if idx_dir.exists() and not args.rebuild and (idx_dir / "index.json").exists():
        print(f"  reusing the index built at {idx_dir} (--rebuild to rebuild)", file=sys.stderr)
        build_s = None
    else:
        if idx_dir.exists():
            shutil.rmtree(idx_dir)
        t0 = time.perf_counter()
        ClusterIndex.build(_catalog(base, None), FITRep.default(progress=not args.quiet), idx_dir,
                           tau_merge=args.tau_merge).close()
        build_s = time.perf_counter() - t0
        print(f"  build: {build_s:.1f} s", file=sys.stderr)
    nprobes = [int(x) for x in args.nprobes.split(",")]
    recall = _add_recall(idx_dir, new.iloc[:args.recall_sample], sorted(set(nprobes)))
    print(f"  candidate recall of new items: {recall}", file=sys.stderr)
    # each run adds the same batches to a fresh copy of the build: one add() call per batch at each
    # nprobe, then add_batches (the next batch encoded while the current one commits) at the default
    rows, final = [], None
    runs = [(p, False) for p in nprobes] + ([(None, True)] if args.streamed else [])
    for p, streamed in runs:
        r, final, add_dir = _run_adds(idx_dir, work, new, args, p, streamed)
        rows += r
    labels = pd.concat([base.set_index("posting_id")["source_group"], new.set_index("posting_id")["source_group"]])
    m = dedup_metrics(labels.loc[final.index].tolist(), final.tolist())
    lat = _lookup_latency(add_dir, _fresh_ids(synth_catalog.make_catalog(101, seed=2), "lookup-"))
    return {"mode": "synthetic", "n_index": n, "batch_size": args.batch_size, "batches": rows,
            "build_seconds": None if build_s is None else round(build_s, 2), "add_recall": recall,
            "pairwise_precision": m["pairwise_precision"], "pairwise_recall": m["pairwise_recall"],
            "mean_item_f1_vs_source_group": m["mean_item_f1"], "lookup": lat, "peak_rss_mb": round(peak_rss_mb())}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _table(res: dict) -> str:
    lines = []
    b = pd.DataFrame(res["batches"])
    tp = b["items_per_s"]
    lat = res["lookup"]
    if res["mode"] == "shopee":
        st = res["id_stability"]
        lines.append(f"Incremental index on Shopee ({res['n_listings']} listings, title + phash, built-in model, split seed "
                     f"{res['seed']}): build on {res['n_build']}, add {res['n_added']} in {len(b)} batches\n")
        rows = [
            ("mean per-item F1, index (build + adds)", f"{res['f1_incremental']:.4f}", ""),
            (f"mean per-item F1, one batch dedup of all (default search: {res['batch_dedup_index']}, "
             f"candidate recall {_fmt(res['batch_dedup_candidate_recall'])})", f"{res['f1_batch_dedup']:.4f}", ""),
            (f"mean per-item F1, one batch dedup of all, exact kNN (candidate recall "
             f"{_fmt(res['batch_dedup_exact_candidate_recall'])})", f"{res['f1_batch_dedup_exact']:.4f}", ""),
            ("F1 difference, index - exact batch dedup", f"{res['f1_delta_exact']:+.4f}", f"within ±{TARGETS['f1_delta']}"),
            ("F1 difference, index - default batch dedup", f"{res['f1_delta']:+.4f}", f"within ±{TARGETS['f1_delta']}"),
            ("build = batch dedup of the build part (same ids)", str(res["build_equals_dedup_of_build_part"]), "True"),
            ("τ / τ_merge", f"{res['tau']:.3f} / {res['tau_merge']:.3f}", ""),
            ("pairwise precision / recall, index", f"{res['pairwise_precision_incremental']:.4f} / {res['pairwise_recall_incremental']:.4f}", ""),
            ("pairwise precision / recall, default batch dedup", f"{res['pairwise_precision_batch']:.4f} / {res['pairwise_recall_batch']:.4f}", ""),
            ("build items with an unchanged id or a logged merge", f"{100 * st['share_items_unchanged_or_logged']:.2f} % "
             f"({st['items_same_id']} same, {st['items_moved_by_logged_merge']} by logged merges, "
             f"{st['items_moved_unexplained']} unexplained)", "100 %"),
            ("build cluster ids still live", f"{100 * st['share_build_ids_live']:.2f} % of {st['build_cluster_ids']} "
             f"({st['build_cluster_ids_aliased_by_logged_merge']} aliased by logged merges)", ""),
            ("merges / rejected bridges / new clusters logged", f"{st['merges_logged']} / {st['bridges_rejected']} / "
             f"{st['new_clusters_logged_after_build']}", ""),
        ]
    else:
        runs = b["run"].nunique() if "run" in b.columns else 1
        lines.append(f"Incremental index, synthetic: {res['n_index']} listings indexed; {runs} runs, each adding "
                     f"{len(b) // runs} batches of {res['batch_size']} to a fresh copy of the build\n")
        rows = [("pairwise precision / recall vs source groups", f"{res['pairwise_precision']:.4f} / {res['pairwise_recall']:.4f}", "")]
    if "run" in b.columns:  # synthetic mode: one row per way of adding
        rec = res["add_recall"]
        for p in sorted(int(k.rsplit("nprobe", 1)[1]) for k in rec if k.startswith("recall_nprobe")):
            rows.append((f"recall of exact candidate edges >= τ of new items, nprobe {p} ({rec['sample']} sampled, "
                         f"{rec['exact_edges_above_tau']} edges)", f"{rec[f'recall_nprobe{p}']:.4f}", ">= 0.99"))
        for run, g in b.groupby("run", sort=False):
            later = g["items_per_s"].iloc[1:] if len(g) > 1 else g["items_per_s"]
            rows.append((f"add throughput, {run}: items/s per batch, median / min (after the first batch) / first batch",
                         f"{g['items_per_s'].median():.0f} / {later.min():.0f} / {g['items_per_s'].iloc[0]:.0f}",
                         f">= {TARGETS['items_per_s']:.0f} for 10k into 1M"))
    else:
        rows.append(("add throughput, items/s per batch (median, min)", f"{tp.median():.0f}, {tp.min():.0f}",
                     f">= {TARGETS['items_per_s']:.0f} for 10k into 1M"))
    rows += [
        ("one-item lookup, median / p90 (ms)", f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}", f"< {TARGETS['lookup_ms']:.0f}"),
        ("index open (s)", f"{lat['open_seconds']:.2f}", ""),
        ("build (s)" + (", batch dedup of all (s)" if res["mode"] == "shopee" else ""),
         f"{res['build_seconds']}" + (f", {res['batch_dedup_seconds']}" if res["mode"] == "shopee" else ""), ""),
        ("peak RSS (MiB)", f"{res['peak_rss_mb']}", ""),
    ]
    lines.append(pd.DataFrame(rows, columns=["measure", "value", "target"]).to_markdown(index=False))
    lines.append("\nPer batch (seconds: encode = transform, plan = search + exact scores + assignment, write = segment + commit):\n")
    lines.append(b.to_markdown(index=False, floatfmt=".2f"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="row split seed (Shopee mode)")
    ap.add_argument("--synthetic", type=int, default=None, metavar="N", help="index N synthetic listings instead")
    ap.add_argument("--batch-size", type=int, default=10_000, help="items per batch (synthetic mode)")
    ap.add_argument("--rebuild", action="store_true", help="synthetic mode: rebuild the index even if one exists")
    ap.add_argument("--tau-merge", type=float, default=None, help="merge threshold of the index (default τ + 0.1)")
    ap.add_argument("--work", default=str(REPO / "out" / "incremental"), help="where the indexes are written")
    ap.add_argument("--nprobes", default="64,32", help="synthetic mode: nprobe of the add() runs (comma-separated)")
    ap.add_argument("--no-streamed", dest="streamed", action="store_false",
                    help="synthetic mode: skip the add_batches run (next batch encoded while the current one commits)")
    ap.add_argument("--recall-sample", type=int, default=1000, help="synthetic mode: new items whose candidate recall is measured")
    ap.add_argument("--quiet", action="store_true", default=True)
    args = ap.parse_args(argv)
    res = run_synthetic(args) if args.synthetic else run_shopee(args)
    text = _table(res)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "incremental" if not args.synthetic else f"incremental-synthetic-{args.synthetic}"
    if args.tau_merge is not None:
        name += f"-taumerge{args.tau_merge:g}"
    cmd = "python bench/incremental.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (RESULTS / f"{name}.txt").write_text(f"$ {cmd.strip()}\n\n{text}\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
