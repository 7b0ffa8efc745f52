"""The review loop on Shopee: start from the built-in model, label borderline pairs, refit, repeat
(GitHub issue #12, part 3). One table: mean per-item F1 after each round, beside TF-IDF ∪ phash.

    python bench/review_loop.py                          # seed 0, 3 rounds of 200 pairs (~10 min on 2 cores)
    python bench/review_loop.py --rounds 1 --quick       # a smoke run on 30 % of the groups
    python bench/review_loop.py --json bench/results/review-loop.json

Protocol (blind, ``bench/protocol.py``): the label groups are split fit / select / report (50 / 20 /
30 %, seed 0), the split the built-in model was made on (``scripts/make_default_model.sh``: α, β,
γ fitted on *fit*, τ chosen on the *select* items inside fit + select). The *report* split is
read only to compute the numbers below.

* Round 0: the built-in model (``FITRep.default()``).
* Round r: the current model deduplicates the loop catalog (``--pool``: the *select* split, whose
  labels are hidden from the model; or fit + select); ``borderline_pairs`` picks ``--n`` candidate
  pairs not labelled before, half scoring in [τ, τ + 0.1), half in [τ − 0.1, τ), spread over the
  band (``itemrep review-pairs OUT --n 200``); they are labelled from the ground truth (same
  ``label_group``: 1), the oracle standing in for a person; the labels accumulate, and a model is
  fitted on the loop catalog with all of them, no group column, the built-in model as prior
  (``itemrep fit LOOP.csv --pairs LABELS.csv --model-dir M``: same code).
* After each round the model deduplicates the report split alone, and the whole catalog (fit and
  select groups as distractors; F1 counted on the report items, :func:`protocol.item_f1_on`).
  "F1 loop catalog" is the F1 on the catalog the pairs were labelled in, with all its labels: what
  the person reviewing it gets (in-sample for the labelled pairs).
* TF-IDF ∪ phash (``bench/shopee.py``'s strongest simple baseline) with its two thresholds tuned on
  fit + select with every label, on the same split, in the same run.

Nothing is chosen on the report split. The stdout table is the result; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/protocol.py, bench/shopee.py

from protocol import DEFAULT_FRACTIONS, item_f1_on, load_shopee, split_groups  # noqa: E402
from shopee import UNION, Union  # noqa: E402

from itemrep.catalog import Catalog  # noqa: E402
from itemrep.dedup.metrics import mean_item_f1  # noqa: E402
from itemrep.dedup.pipeline import DEFAULT_PRIOR_STRENGTH, FITRep  # noqa: E402
from itemrep.dedup.review import DEFAULT_BAND, borderline_pairs, label_from_groups  # noqa: E402


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def unlabelled(cat: Catalog) -> Catalog:
    """``cat`` with its labels hidden (what ``itemrep fit`` sees without --label-col)."""
    return dataclasses.replace(cat, items=[dataclasses.replace(it, label=None) for it in cat.items],
                               columns=dict(cat.columns, label=None))


def evaluate(cat: Catalog, report: Catalog, loop: Catalog, rep_idx: np.ndarray, alone, whole, on_loop) -> dict:
    """F1 of one method: report split alone, report items inside the whole catalog, the loop catalog."""
    return {"f1_report": mean_item_f1(report.labels, alone), "f1_report_in_pool": item_f1_on(cat.labels, whole, rep_idx),
            "f1_loop": None if on_loop is None else mean_item_f1(loop.labels, on_loop)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="split seed (0: the split the built-in model was made on)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=200, help="pairs labelled per round")
    ap.add_argument("--pool", choices=("select", "fit+select"), default="select",
                    help="the catalog deduplicated and labelled in the loop (default: the select split)")
    ap.add_argument("--band", type=float, default=DEFAULT_BAND, help="half-width of the score band around τ the pairs come from")
    ap.add_argument("--prior-strength", type=float, default=DEFAULT_PRIOR_STRENGTH)
    ap.add_argument("--tau-only", action="store_true", help="keep the built-in α, β, γ; learn τ only from the pairs")
    ap.add_argument("--quick", action="store_true", help="30 %% of the groups (smoke run)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    cat = load_shopee(args.quick)
    if cat is None:
        return 2
    fit_idx, sel_idx, rep_idx = split_groups(cat.labels, args.seed, DEFAULT_FRACTIONS)
    report = cat.subset(rep_idx)
    fit_select = cat.subset(np.sort(np.concatenate([fit_idx, sel_idx])))
    loop = cat.subset(sel_idx) if args.pool == "select" else fit_select
    loop_hidden = unlabelled(loop)
    log(f"{len(cat)} listings; loop catalog ({args.pool}) {len(loop)}, report {len(report)}")

    rows = []
    log("baseline: " + UNION)
    union = Union().fit(fit_select)
    rows.append({"method": f"{UNION} (thresholds tuned on fit + select, all labels)", "round": None, "labels": None,
                 "duplicates": None, "tau": str(np.round(union.t_, 4).tolist()),
                 **evaluate(cat, report, loop, rep_idx, union.predict(report), union.predict(cat), union.predict(loop))})

    builtin = FITRep.default()
    model, labels = builtin, None
    for r in range(args.rounds + 1):
        t0 = time.perf_counter()
        if r > 0:
            todo = borderline_pairs(model, loop_hidden, n=args.n, exclude=labels, band=args.band)
            got = label_from_groups(todo, loop)[["item_a", "item_b", "label"]]
            labels = got if labels is None else pd.concat([labels, got], ignore_index=True)
            log(f"round {r}: {len(got)} pairs (scores {todo['score'].min():.3f}..{todo['score'].max():.3f}), "
                f"{int(got['label'].sum())} duplicates")
            model = FITRep()
            if args.tau_only:
                model = FITRep.default()
                model.fit(loop_hidden, pairs=labels, learn_alpha=False)
            else:
                model.fit(loop_hidden, pairs=labels, prior=builtin, prior_strength=args.prior_strength)
        alone = model.dedup(report).clusters["cluster_id"].tolist()
        whole = model.dedup(cat).clusters["cluster_id"].tolist()
        on_loop = model.dedup(loop).clusters["cluster_id"].tolist()
        alpha = model.fusion_.to_dict()["alpha"]
        rows.append({"method": "built-in model" if r == 0 else f"after round {r}", "round": r,
                     "labels": 0 if labels is None else len(labels), "duplicates": 0 if labels is None else int(labels["label"].sum()),
                     "tau": f"{model.tau:.3f}", **evaluate(cat, report, loop, rep_idx, alone, whole, on_loop),
                     "alpha": {k: round(v, 3) for k, v in sorted(alpha.items(), key=lambda kv: -kv[1]) if v >= 0.005},
                     "seconds": round(time.perf_counter() - t0, 1)})
        log(f"  {rows[-1]['method']}: τ {model.tau:.3f}, F1 report {rows[-1]['f1_report']:.4f}, in pool "
            f"{rows[-1]['f1_report_in_pool']:.4f}, loop {rows[-1]['f1_loop']:.4f} ({rows[-1]['seconds']} s)")

    df = pd.DataFrame(rows)
    table = df[["method", "labels", "duplicates", "tau", "f1_loop", "f1_report", "f1_report_in_pool"]].rename(columns={
        "labels": "labelled pairs", "duplicates": "of which duplicates", "tau": "τ",
        "f1_loop": f"F1 {args.pool} (loop catalog)", "f1_report": "F1 report alone",
        "f1_report_in_pool": f"F1 report in the {len(cat):,} pool"})
    for c in ("labelled pairs", "of which duplicates"):
        table[c] = table[c].astype("Int64")
    f = [round(100 * x) for x in DEFAULT_FRACTIONS]
    print(f"Review loop on Shopee ({len(cat)} listings{', --quick' if args.quick else ''}), split seed {args.seed} "
          f"(fit {f[0]} % / select {f[1]} % / report {f[2]} % of the groups; report {len(report)} listings).")
    print(f"Loop catalog: {args.pool} ({len(loop)} listings, labels hidden); {args.rounds} rounds of {args.n} pairs "
          f"in τ ± {args.band:g}, labelled from the ground truth and accumulated; each round refits on all labels "
          + ("(τ only, α, β, γ of the built-in model kept)." if args.tau_only
             else f"with the built-in model as prior (strength {args.prior_strength:g})."))
    print(table.astype(object).where(table.notna(), "").to_markdown(index=False, floatfmt=".4f", intfmt="d"))
    print("\nα per round: " + "; ".join(f"{r['method']}: {json.dumps(r['alpha'])}" for r in rows if r.get("alpha")))
    print(f"\n{time.perf_counter() - t_start:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
