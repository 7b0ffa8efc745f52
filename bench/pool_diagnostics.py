"""Where the report split's F1 goes inside the whole Shopee pool, and three rules tried against it
(issue #10; docs/dedup.md "Where the pool drop comes from"). Choices are looked at on fit and
select only; the report split is used only for the descriptive edge counts.

    python bench/pool_diagnostics.py          # ~5 min on 2 cores

1. The τ-in-pool FITRep of ``bench/shopee.py`` (α on fit, τ by ``FITRep.tune`` on fit + select,
   F1 on select items), then: report alone and inside all 23,937 listings; report listings whose
   cluster holds listings of other splits; the scores of those cross-split edges against
   within-report same-label edges; the share of cross-split edges between identical photo hashes
   or identical normalised titles.
2. Rules, measured on select (alone, and its items inside the fit + select pool) and on fit:
   union with identical photo hashes; edges kept only within δ of both items' best edge.
3. τ from the catalog's own score histogram (Otsu, no labels) on Shopee kNN pair scores and on the
   WDC train pairs (F1 there against TF-IDF words at its best train threshold).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pairs as P  # noqa: E402
import shopee as S  # noqa: E402
from protocol import DEFAULT_FRACTIONS, item_f1_on, load_shopee, split_groups  # noqa: E402

from itemrep.dedup.metrics import mean_item_f1  # noqa: E402
from itemrep.dedup.pairs import best_threshold, pair_metrics  # noqa: E402
from itemrep.paths import dataset  # noqa: E402


def otsu(s: np.ndarray, bins: int = 200) -> float:
    """Otsu's threshold of the 1-D sample ``s`` (maximal between-class variance over a histogram)."""
    h, e = np.histogram(s, bins=bins)
    c = (e[:-1] + e[1:]) / 2
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * c) / np.maximum(w0, 1)
    m1 = (np.sum(h * c) - np.cumsum(h * c)) / np.maximum(w1, 1)
    return float(e[1:][np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def union_identical_phash(cat, cluster_of: dict) -> np.ndarray:
    """Cluster labels (catalog order) after joining every cluster with every identical photo hash."""
    n = len(cat)
    _, code = np.unique([cluster_of[x] for x in cat.ids], return_inverse=True)
    rows, cols = [np.arange(n)], [code + n]
    ph = pd.Series([it.phash for it in cat.items])
    for g in ph.groupby(ph).groups.values():
        g = np.asarray(list(g))
        if len(g) > 1:
            rows.append(g[1:])
            cols.append(np.repeat(g[0], len(g) - 1))
    r, cc = np.concatenate(rows), np.concatenate(cols)
    a = coo_matrix((np.ones(len(r)), (r, cc)), shape=(n + code.max() + 1,) * 2)
    return connected_components(a, directed=False)[1][:n]


def relative_rule(model, cat, deltas):
    """{δ: cluster ids aligned with the encoding} keeping only edges within δ of both items' best."""
    enc, i, j = model.dedup_encoding(cat)
    s = model.score_pairs(enc.slots, i, j)[0]
    best = np.full(len(enc.ids), -np.inf, np.float32)
    np.maximum.at(best, i, s)
    np.maximum.at(best, j, s)
    scorer = model._scorer(enc, model._fusion())
    out = {}
    for d in deltas:
        keep = np.ones(len(s), bool) if d is None else s >= np.minimum(best[i], best[j]) - d
        out[d] = np.asarray(model._cluster(enc, model._clusterer(), i[keep], j[keep], s[keep], scorer).cluster_id, object)
    return enc.ids, out, s


def main() -> int:
    cat = load_shopee()
    fit_idx, sel_idx, rep_idx = split_groups(cat.labels, 0, DEFAULT_FRACTIONS)
    fit, select, report = cat.subset(fit_idx), cat.subset(sel_idx), cat.subset(rep_idx)
    fs_idx = np.sort(np.concatenate([fit_idx, sel_idx]))
    fs = cat.subset(fs_idx)
    model = S.make_fitrep({})
    model.fit(fit)
    model.tune(fs, tau_grid=[round(float(x), 3) for x in np.arange(0.2, 0.8, 0.01)], nn_grid=[None], score_on=select.ids)
    print(f"model: α on fit, τ {model.tau:.2f} chosen in the fit + select pool\n")

    # 1. the report split alone and in the pool
    alone = model.dedup(report).clusters.set_index("item_id")["cluster_id"]
    whole = model.dedup(cat)
    wc = whole.clusters.set_index("item_id")["cluster_id"]
    split = {}
    for name, ix in (("fit", fit_idx), ("select", sel_idx), ("report", rep_idx)):
        for k in ix:
            split[cat.ids[k]] = name
    print(f"report alone F1 {mean_item_f1(report.labels, alone.loc[report.ids].tolist()):.4f}; "
          f"in the pool {item_f1_on(cat.labels, wc.loc[cat.ids].tolist(), rep_idx):.4f}")
    df = pd.DataFrame({"id": cat.ids, "cl": wc.loc[cat.ids].to_numpy(), "rep": [split[x] == "report" for x in cat.ids]})
    g = df.groupby("cl")
    foreign = (g["id"].transform("size") - g["rep"].transform("sum"))[df["rep"]]
    print(f"report listings sharing a cluster with other splits' listings: {int((foreign > 0).sum())} of {len(rep_idx)}; "
          f"foreign listings per report listing {foreign.mean():.2f}")
    e = whole.edges
    sa, sb = e.item_a.map(split), e.item_b.map(split)
    lab = dict(zip(cat.ids, cat.labels))
    touch = (sa == "report") | (sb == "report")
    cross = e[touch & (sa != sb)]
    inrep = e[(sa == "report") & (sb == "report")]
    same = inrep.item_a.map(lab) == inrep.item_b.map(lab)
    print(f"edges touching report listings: {int(touch.sum())}; cross-split {len(cross)}, median score "
          f"{cross.similarity.median():.3f}; within-report same-label median {inrep[same].similarity.median():.3f}")
    ph = {it.item_id: it.phash for it in cat.items}
    norm = {it.item_id: re.sub(r"\W+", " ", (it.title or "").lower()).strip() for it in cat.items}
    trivial = np.array([ph[a] == ph[b] or norm[a] == norm[b] for a, b in zip(cross.item_a, cross.item_b)])
    print(f"cross-split edges between identical photo hashes or identical normalised titles: {trivial.mean():.3f}\n")

    # 2. rules on select and fit
    for name, part in (("select", select), ("fit", fit)):
        cl = model.dedup(part).clusters.set_index("item_id")["cluster_id"]
        base = mean_item_f1(part.labels, cl.loc[part.ids].tolist())
        u = mean_item_f1(part.labels, union_identical_phash(part, cl.to_dict()).tolist())
        print(f"{name}: FITRep {base:.4f}, ∪ identical photo hash {u:.4f} ({u - base:+.4f})")
    deltas = [None, 0.3, 0.2, 0.15, 0.1]
    ids_a, a, _ = relative_rule(model, select, deltas)
    ids_b, b, s_fs = relative_rule(model, fs, deltas)
    la, lb = dict(zip(select.ids, select.labels)), dict(zip(fs.ids, fs.labels))
    sel_ids = set(select.ids)
    pos = [k for k, x in enumerate(ids_b) if x in sel_ids]
    for d in deltas:
        fa = mean_item_f1([la[x] for x in ids_a], a[d].tolist())
        fp = item_f1_on([lb[x] for x in ids_b], b[d].tolist(), pos)
        print(f"edges within δ {d} of both items' best: select alone {fa:.4f}, select in the fit + select pool {fp:.4f}, drop {fa - fp:.4f}")
    print(f"\nOtsu τ of the fit + select kNN pair scores: {otsu(s_fs):.3f} (τ chosen there: {model.tau:.2f})")

    # 3. Otsu on WDC train pairs (built-in model, as bench/pairs.py)
    root = dataset("wdc-pairs")
    for c in ("computers", "cameras", "watches", "shoes"):
        tc, tp = P.load(root / c / "train.txt.small")
        y = tp["label"].to_numpy()
        s, _ = P.itemrep_scores(tc, tp)
        st = P.tfidf_scores(tc, tp, "word", (1, 1))
        t = otsu(s)
        print(f"WDC {c} train: Otsu τ {t:.3f}, itemrep F1 {pair_metrics(y, s >= t)['f1']:.3f}; "
              f"TF-IDF words at its best train τ {pair_metrics(y, st >= best_threshold(st, y)[0])['f1']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
