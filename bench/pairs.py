"""Cross-domain check on WDC product pairs (pair protocol): the built-in Shopee model vs TF-IDF baselines.

    python bench/pairs.py                                   # computers, cameras, watches, shoes, all (small)
    python bench/pairs.py --categories computers --json bench/results/pairs_wdc.json

Data: ``$ITEMREP_DATA/wdc-pairs/<category>/{train,valid}.txt.small`` (English web offers, serialised
Ditto form, see the data README); the script exits with a message when they are absent.

Protocol of product-matching papers: score every pair, choose the threshold τ on the *train* pairs
(best match-class F1), report precision / recall / F1 of the match class on the *valid* pairs. Methods:

* ``itemrep built-in, model pair τ``: ``FITRep.default()`` (α, γ, β, τ_logistic and τ fitted on
  Shopee, Indonesian marketplace titles) applied unchanged: its unsupervised stages (document
  frequencies) are fitted on each pair file's titles, as ``itemrep pairs`` does, and a pair matches
  when its score ≥ the model's pair-decision point ``FITRep.pair_tau`` (τ_logistic: P(duplicate) =
  0.5 under the class-balanced logistic model fitted on Shopee); what ``itemrep pairs`` does;
* ``itemrep built-in, model clustering τ``: the same scores at the clustering τ (too strict for a
  pair decision: it is set high because connected components turn one false edge into a merge);
* ``itemrep built-in, τ from train``: the same scores, τ chosen on train;
* ``TF-IDF words``: cosine of word 1-gram TF-IDF title vectors (scikit-learn ``TfidfVectorizer`` fitted on
  the pair file's titles), τ from train;
* ``TF-IDF char 3-5``: the same with character 3–5-grams (``char_wb``), τ from train.

All methods see the same titles (the catalog's cleaning: byte escapes, HTML entities, NFKC). "train F1"
is the F1 on train at the τ used (for τ from train it is the optimistic in-sample figure). Valid is not
used for any choice. Published pair classifiers (Ditto and others) are *trained* on the train pairs and
report on the WDC gold-standard *test* pairs, which are held back here, so they are context, not a
like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from itemrep.dedup.cluster import cluster_edges
from itemrep.dedup.pairs import best_threshold, pair_metrics, read_wdc_pairs, score_pairs, wdc_catalog
from itemrep.dedup.pipeline import FITRep
from itemrep.paths import dataset

CATEGORIES = ("computers", "cameras", "watches", "shoes", "all")

#: Reference figures (F1 of the match class on the WDC gold-standard test pairs, small training sets),
#: filled in only where checked against a source; None = not verified here.
REFERENCE: dict[str, dict[str, float | None]] = {"Ditto (Li et al., VLDB 2021)": {c: None for c in CATEGORIES}}


def load(path: Path):
    frame, pairs = read_wdc_pairs(path)
    cat = wdc_catalog(frame, source=path)
    return cat, pairs


def itemrep_scores(cat, pairs) -> tuple[np.ndarray, float, float]:
    """Scores of the built-in model, its pair-decision τ and its clustering τ."""
    model = FITRep.default()
    s = score_pairs(model, cat, pairs)
    return s["score"].to_numpy(), float(s.attrs["tau"]), float(s.attrs["cluster_tau"])


def tfidf_scores(cat, pairs, analyzer: str, ngram: tuple[int, int]) -> np.ndarray:
    """Cosine of TF-IDF title vectors (fitted on this file's titles) for each pair."""
    title = dict(zip(cat.ids, cat.titles))
    vec = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram, lowercase=True, dtype=np.float32)
    vec.fit(cat.titles)
    a = vec.transform([title[x] for x in pairs["item_a"]])
    b = vec.transform([title[x] for x in pairs["item_b"]])
    return np.asarray(a.multiply(b).sum(axis=1)).ravel().astype(np.float64)


def row(category: str, method: str, tau: float, s_valid, y_valid, s_train, y_train, seconds: float) -> dict:
    m = pair_metrics(y_valid, s_valid >= tau)
    mt = pair_metrics(y_train, s_train >= tau)
    return {"category": category, "method": method, "tau": float(tau), "precision": m["precision"],
            "recall": m["recall"], "f1": m["f1"], "train_f1": mt["f1"], "valid_pairs": m["n_pairs"],
            "valid_positive": m["n_positive"], "train_pairs": mt["n_pairs"], "seconds": round(seconds, 1)}


def run_category(root: Path, category: str, size: str) -> list[dict]:
    tr_path, va_path = root / category / f"train.txt.{size}", root / category / f"valid.txt.{size}"
    tr_cat, tr_pairs = load(tr_path)
    va_cat, va_pairs = load(va_path)
    ytr, yva = tr_pairs["label"].to_numpy(), va_pairs["label"].to_numpy()
    rows = []
    t0 = time.perf_counter()
    s_tr, tau_pair, tau_cluster = itemrep_scores(tr_cat, tr_pairs)
    s_va, _, _ = itemrep_scores(va_cat, va_pairs)
    dt = time.perf_counter() - t0
    rows.append(row(category, "itemrep built-in (Shopee), model pair τ", tau_pair, s_va, yva, s_tr, ytr, dt))
    rows.append(row(category, "itemrep built-in (Shopee), model clustering τ", tau_cluster, s_va, yva, s_tr, ytr, dt))
    rows.append(row(category, "itemrep built-in (Shopee), τ from train", best_threshold(s_tr, ytr)[0], s_va, yva, s_tr, ytr, dt))
    for name, analyzer, ngram in (("TF-IDF words, τ from train", "word", (1, 1)), ("TF-IDF char 3-5, τ from train", "char_wb", (3, 5))):
        t0 = time.perf_counter()
        s_tr = tfidf_scores(tr_cat, tr_pairs, analyzer, ngram)
        s_va = tfidf_scores(va_cat, va_pairs, analyzer, ngram)
        rows.append(row(category, name, best_threshold(s_tr, ytr)[0], s_va, yva, s_tr, ytr, time.perf_counter() - t0))
    return rows


# ---------------------------------------------------------------- dedup of the offers (clustering)
def comembership(cat, pairs, cluster_ids) -> dict:
    """Pair P/R/F1 of the match class when "same cluster" is the prediction for each labelled pair."""
    by_id = dict(zip(cat.ids, cluster_ids))
    same = np.fromiter((by_id[a] == by_id[b] for a, b in zip(pairs["item_a"], pairs["item_b"])), bool, count=len(pairs))
    return pair_metrics(pairs["label"].to_numpy(), same)


def tfidf_graph(cat):
    """TF-IDF words (fitted on the catalog's titles), k = 10 kNN candidate pairs with their cosines."""
    from shopee import sparse_topk

    return sparse_topk(TfidfVectorizer(lowercase=True, dtype=np.float32).fit_transform(cat.titles), 10)


def tfidf_clusters(cat, graph, t: float) -> list:
    """Clusters of the TF-IDF kNN graph ``graph`` (:func:`tfidf_graph`): edges ≥ t, connected components."""
    return cluster_edges(len(cat), *graph, t, cat.ids).cluster_id


def model_clusters(cat, nn: bool) -> tuple[list, dict]:
    """The built-in model's ``dedup`` of the catalog (its defaults), or with the nearest-neighbour rule off."""
    model = FITRep.default()
    if not nn:
        model.clusterer_.nn_threshold = None
    res = model.dedup(cat)
    got = dict(zip(res.clusters["item_id"], res.clusters["cluster_id"]))
    return [got[x] for x in cat.ids], res.run.get("nn_rule") or {}


def cluster_rows(root: Path, category: str, size: str) -> list[dict]:
    """Deduplicate each pair file's offers as a catalog and score its labelled pairs by co-membership.

    The pair files have no record ids, so there are no groups to compute a per-item F1 on; the
    labelled pairs are the evidence: a matching pair should share a cluster, a non-matching pair
    should not (chaining through other offers counts). TF-IDF's threshold is the best on train."""
    tr_cat, tr_pairs = load(root / category / f"train.txt.{size}")
    va_cat, va_pairs = load(root / category / f"valid.txt.{size}")
    out = []
    for name, nn in (("itemrep built-in (Shopee), model defaults", True), ("itemrep built-in, nearest-neighbour rule off", False)):
        cid, info = model_clusters(va_cat, nn)
        m = comembership(va_cat, va_pairs, cid)
        out.append({"category": category, "method": name, "threshold": "model", "precision": m["precision"], "recall": m["recall"],
                    "f1": m["f1"], "nn_rule_applied": info.get("applied"), "share_with_edge": info.get("share")})
    grid = [round(float(t), 3) for t in np.arange(0.1, 0.91, 0.025)]
    g_tr = tfidf_graph(tr_cat)  # built once, clustered at every threshold
    tr = {t: comembership(tr_cat, tr_pairs, tfidf_clusters(tr_cat, g_tr, t))["f1"] for t in grid}
    best = max(tr, key=lambda t: (tr[t], -t))
    m = comembership(va_cat, va_pairs, tfidf_clusters(va_cat, tfidf_graph(va_cat), best))
    out.append({"category": category, "method": "TF-IDF words, threshold from train", "threshold": f"{best:.3f}",
                "precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "nn_rule_applied": None, "share_with_edge": None})
    return out


def cluster_table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows).rename(columns={"precision": "P", "recall": "R", "f1": "F1 (valid)", "nn_rule_applied": "nn rule applied",
                                            "share_with_edge": "items with an edge ≥ τ"})
    return df.to_markdown(index=False, floatfmt=".3f")


def table(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)[["category", "method", "tau", "precision", "recall", "f1", "train_f1", "valid_pairs", "valid_positive"]]
    df = df.rename(columns={"tau": "τ", "precision": "P", "recall": "R", "f1": "F1 (valid)", "train_f1": "train F1",
                            "valid_pairs": "valid pairs", "valid_positive": "matches"})
    return df.to_markdown(index=False, floatfmt=".3f")


def reference_note() -> str:
    lines = ["Reference figures (published pair classifiers, trained on the train pairs, F1 on the held-back WDC test pairs):"]
    for who, figs in REFERENCE.items():
        shown = ", ".join(f"{c} {v:.2f}" if v is not None else f"{c} not verified" for c, v in figs.items())
        lines.append(f"* {who}: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    ap.add_argument("--size", default="small", choices=("small", "medium"), help="train/valid size (no medium train for 'all')")
    ap.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = ap.parse_args(argv)
    root = dataset("wdc-pairs")
    if root is None:
        print("wdc-pairs data not found (set ITEMREP_DATA or put it under ../shared/data/wdc-pairs); skipping", file=sys.stderr)
        return 0
    rows: list[dict] = []
    crows: list[dict] = []
    for c in args.categories:
        if not (root / c / f"train.txt.{args.size}").exists():
            print(f"{c}: no train.txt.{args.size}; skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        rows.extend(run_category(root, c, args.size))
        crows.extend(cluster_rows(root, c, args.size))
        print(f"{c}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"WDC product pairs ({args.size}): τ chosen on train, P/R/F1 of the match class on valid\n")
    print(table(rows))
    print()
    print(reference_note())
    print(f"\nDedup of each valid file's offers as a catalog ({args.size}): a labelled pair is predicted a match when "
          "both offers share a cluster; P/R/F1 of the match class\n")
    print(cluster_table(crows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": args.size, "rows": rows, "dedup_rows": crows, "reference": REFERENCE}, indent=2))
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
