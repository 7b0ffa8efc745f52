"""Issue 13 probe: which member of a near-duplicate cluster should a de-duplicated list show?

    .venv/bin/python bench/rec_member_choice.py [--model lirdrec] [--seed 0] [--work /tmp/itemrep-rec-dedup]

Needs the data prepared by ``bench/rec_dedup.py`` under ``--work`` (the H&M dataset and the
``itemrep dedup`` clusters). One model is trained with the harness (as in part A of
``bench/rec_dedup.py``); its scores are standardised per user (z). The de-duplicated top-20 keeps
the 20 clusters with the best member score, in that order (the ``dedup`` list policy), and shows
in each the member with the largest ``z + w_pop · log(1 + training purchases of the member) +
w_colour · (share of the user's training purchases in the member's colour group)``. The weights are
chosen on *validation* item-level Recall@20 (grid below); test is read for the chosen weights and
for the plain ``dedup`` choice (w = 0) only. The last line is an upper bound no member choice can
pass: the same clusters, each shown by a member the user bought in test whenever it holds one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rec_dedup import MODELS, _cfg  # noqa: E402

from itemrep.recsys.clusters import dataset_item_ids, load_clusters  # noqa: E402
from itemrep.recsys.data import RecDataset  # noqa: E402
from itemrep.recsys.trainer import Trainer  # noqa: E402

GRID = [(a, b) for a in (0.0, 0.3, 1.0) for b in (0.0, 1.0, 3.0, 10.0, 30.0)]
K = 20


def _sets(m) -> list[set]:
    m = m.tocsr()
    return [set(m.indices[m.indptr[u]:m.indptr[u + 1]].tolist()) for u in range(m.shape[0])]


def recall(lists: list[list[int]], truth: list[set]) -> float:
    """Mean over users with truth of |list ∩ truth| / |truth| (the evaluator's Recall@K)."""
    r = [len(t & set(lst)) / len(t) for lst, t in zip(lists, truth) if t]
    return float(np.mean(r))


def top_clusters(z: np.ndarray, cluster_of: np.ndarray, k: int = K) -> list[list[int]]:
    """Per user, the k clusters of the best-scored members, best first (the ``dedup`` policy)."""
    out = []
    for row in z:
        seen: dict[int, None] = {}
        for i in np.argsort(-row, kind="stable"):
            seen.setdefault(int(cluster_of[i]), None)
            if len(seen) == k:
                break
        out.append(list(seen))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lirdrec", choices=sorted(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/itemrep-rec-dedup"))
    args = ap.parse_args(argv)
    data = args.work / "hm"
    if not (data / "interactions.tsv").exists() or not (args.work / "dedup" / "clusters.parquet").exists():
        print(f"{args.work}: run bench/rec_dedup.py first (it prepares the data and clusters there)", file=sys.stderr)
        return 2
    ds = RecDataset.load(data, modalities=MODELS[args.model].get("modalities", []))
    tr = Trainer(args.model, _cfg(args.model, 100, 10, 2), seed=args.seed, progress=False)
    tr.fit(ds)
    tr.model_.eval()
    tr.model_.prepare_eval()
    with torch.no_grad():
        s = tr.model_.score_users(torch.arange(ds.n_users)).numpy().astype(np.float64)
    train = ds.user_items("train")
    valid, test = _sets(ds.user_items("valid")), _sets(ds.user_items("test"))
    cl = load_clusters(args.work / "dedup" / "clusters.parquet", dataset_item_ids(data)).cluster_of
    items = pd.read_csv(data / "items.csv")
    colour = items["attributes"].str.extract(r"colour group: ([^;]+)")[0].fillna("?").to_numpy()
    _, col = np.unique(colour, return_inverse=True)
    pop = np.log1p(np.asarray(train.sum(0)).ravel())
    tr_sets = _sets(train)
    share = np.zeros((ds.n_users, col.max() + 1))
    for u, its in enumerate(tr_sets):
        if its:
            share[u] = np.bincount(col[list(its)], minlength=col.max() + 1) / len(its)
    aff = share[:, col]
    z = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-9)
    z = np.where(train.toarray() > 0, -np.inf, z)  # training items are never recommended
    members = {c: np.nonzero(cl == c)[0] for c in np.unique(cl)}
    clusters = top_clusters(z, cl)

    def lists(w_pop: float, w_col: float) -> list[list[int]]:
        p = z + w_pop * pop[None, :] + w_col * aff
        return [[int(members[c][np.argmax(p[u, members[c]])]) for c in cs] for u, cs in enumerate(clusters)]

    plain = [list(np.argsort(-row, kind="stable")[:K]) for row in z]
    rows = [{"member choice": "plain list (no de-duplication)", "valid Recall@20": recall(plain, valid), "test Recall@20": recall(plain, test)}]
    val = {g: recall(lists(*g), valid) for g in GRID}
    best = max(val, key=lambda g: (val[g], -g[0] - g[1]))
    for g, name in (((0.0, 0.0), "dedup, best-scored member (w = 0)"), (best, f"dedup, chosen on validation (w_pop {best[0]}, w_colour {best[1]})")):
        rows.append({"member choice": name, "valid Recall@20": val[g], "test Recall@20": recall(lists(*g), test)})
    oracle = [min(sum(1 for c in cs if any(cl[x] == c for x in t)), len(t)) / len(t) for cs, t in zip(clusters, test) if t]
    rows.append({"member choice": "dedup, oracle member (upper bound)", "valid Recall@20": None, "test Recall@20": float(np.mean(oracle))})
    print(f"{args.model} seed {args.seed}, H&M, itemrep dedup clusters; validation grid {GRID}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    print("\nvalidation Recall@20 per (w_pop, w_colour): " + ", ".join(f"{g}: {v:.4f}" for g, v in val.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
