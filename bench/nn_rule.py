"""When does the nearest-neighbour rule pay? Its gain against the share of items that already have
a duplicate, on Shopee's *select* split thinned to more and more singletons (issue #10; the choice
of ``NN_MIN_SHARE`` in ``itemrep.dedup.pipeline``). Only fit and select are read.

    python bench/nn_rule.py            # ~4 min on 2 cores

1. The model as ``itemrep fit --nn-rule on --select`` makes it: α, β, γ on *fit*
   (``FITRep.fit(..., nn_rule="on")``: the rule's threshold is the fitted τ_logistic), τ by
   ``FITRep.tune`` inside the fit + select pool (F1 on the select items).
2. For each thinning d, the select split keeps every listing of a seeded share d of its groups and one
   listing of each other group (those become singletons). Each thinned catalog is deduplicated with
   the rule off and on (same encoding, same τ); printed: mean per-item F1 of both, the share of
   singletons, and the share of items with an edge ≥ τ, which is what ``nn_rule="auto"`` measures
   on a catalog nobody labelled.

The rule should be applied where it gains; ``NN_MIN_SHARE`` is the midpoint between the largest
measured share where it lost and the smallest where it gained, rounded to 0.05.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import DEFAULT_FRACTIONS, load_shopee, split_groups  # noqa: E402

from itemrep.dedup.metrics import mean_item_f1  # noqa: E402
from itemrep.dedup.pipeline import NN_MIN_SHARE, FITRep  # noqa: E402

THINNING = (1.0, 0.7, 0.5, 0.35, 0.2, 0.1, 0.05)


def thinned(labels: np.ndarray, keep_share: float, rng: np.random.Generator) -> np.ndarray:
    """Row positions: every row of a ``keep_share`` of the groups, the first row of each other group."""
    groups = np.unique(labels)
    full = set(rng.choice(groups, int(round(keep_share * len(groups))), replace=False).tolist())
    seen: set = set()
    out = []
    for k, g in enumerate(labels):
        if g in full or g not in seen:
            out.append(k)
            seen.add(g)
    return np.asarray(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="protocol split seed (default 0)")
    args = ap.parse_args(argv)
    cat = load_shopee()
    if cat is None:
        return 2
    fit_idx, sel_idx, _ = split_groups(cat.labels, args.seed, DEFAULT_FRACTIONS)
    fit, select = cat.subset(fit_idx), cat.subset(sel_idx)
    model = FITRep(images="off").fit(fit, nn_rule="on")
    pool = cat.subset(np.sort(np.concatenate([fit_idx, sel_idx])))
    model.tune(pool, tau_grid=[round(float(x), 3) for x in np.arange(0.2, 0.8, 0.01)], score_on=select.ids)
    c = model.clusterer_
    print(f"model: α, β, γ on fit ({len(fit)} listings); rule threshold τ_logistic {c.nn_threshold:.4f}; "
          f"τ {c.threshold:.2f} chosen in the fit + select pool with the rule on", file=sys.stderr)
    labels = np.asarray(select.labels, dtype=object)
    rng = np.random.default_rng(args.seed + 1)
    rows = []
    for d in THINNING:
        sub = select.subset(thinned(labels, d, rng))
        enc = model.fit_transform(sub)
        by_id = dict(zip(sub.ids, sub.labels))
        y = [by_id[x] for x in enc.ids]
        f1 = {}
        for name, nn in (("off", None), ("on", c.nn_threshold)):
            m = copy.deepcopy(model)
            m.clusterer_.nn_threshold, m.clusterer_.nn_min_share = nn, 0.0 if nn is not None else None
            f1[name] = mean_item_f1(y, m.cluster(enc).cluster_id)
            if nn is not None:
                share = m.clusterer_.nn_info_["share"]
        sizes = pd.Series(y).value_counts()
        rows.append({"groups kept whole": d, "listings": len(sub), "singletons": round(float((sizes == 1).sum() / len(y)), 3),
                     "items with an edge ≥ τ": share, "F1 rule off": round(f1["off"], 4), "F1 rule on": round(f1["on"], 4),
                     "gain": round(f1["on"] - f1["off"], 4), f"auto (≥ {NN_MIN_SHARE}) applies": share >= NN_MIN_SHARE})
        print(f"  d {d}: done", file=sys.stderr, flush=True)
    print(f"Nearest-neighbour rule on Shopee's select split (seed {args.seed}) thinned to singletons; same model, same τ\n")
    print(pd.DataFrame(rows).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
