"""Measure the rule-based concept extractor on the Shopee listings (speed and quality).

Not a test (pytest does not collect it). Run from the repository root:

    .venv/bin/python tests/concepts/bench_concepts.py [--data PATH] [--seed 0]

It prints, in one run:

1. speed: wall and CPU seconds to extract all listings (with and without the brand guess);
2. auxiliary vs primary: per slot, how often it fires and its *lift* -- P(two listings that share a
   value of the slot are the same product) / P(two random listings are the same product). Auxiliary
   values should be common across groups (low lift); primary values should be specific (high lift);
3. pair separation: mean Jaccard similarity of token sets for same-product pairs, random pairs and
   hard negatives (the most TF-IDF-similar listing of another product), for raw title tokens and for
   primary-concept tokens, with the ROC AUC of each score at separating positives from negatives;
4. dedup proxy: TF-IDF cosine threshold clustering (the Shopee mean per-item F1) with the title text
   replaced by the text of the primary concepts; threshold tuned on one half of the groups, reported
   on the other half (split by group, seeded).

The data are never copied: they are read from ``$ITEMREP_DATA/shopee/train.csv``
(default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from itemrep.catalog import Catalog
from itemrep.concepts.rules import RuleBasedExtractor

TOKEN = re.compile(r"[0-9a-z\u00c0-\u024f]+|[\u3400-\u9fff]+")


def data_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    root = Path(os.environ.get("ITEMREP_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
    return root / "shopee" / "train.csv"


def tokens(s: str) -> set[str]:
    return set(TOKEN.findall(s.lower()))


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC = P(score(pos) > score(neg)) + 0.5 P(tie) (Mann-Whitney U)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def lift_table(values_per_item: list[dict[str, set[str]]], labels: list[str]) -> list[tuple[str, int, int, float]]:
    """Per slot: items with the slot, distinct values, df-weighted mean lift of its values."""
    n = len(labels)
    gs = Counter(labels)
    base = sum(k * (k - 1) for k in gs.values()) / (n * (n - 1))
    post: dict[tuple[str, str], list[int]] = defaultdict(list)
    has = Counter()
    for i, d in enumerate(values_per_item):
        for slot, vals in d.items():
            has[slot] += 1
            for v in vals:
                post[(slot, v)].append(i)
    out = []
    for slot in sorted(has, key=lambda s: -has[s]):
        num = den = 0.0
        nvals = 0
        for (s, v), ids in post.items():
            if s != slot:
                continue
            nvals += 1
            k = len(ids)
            if k < 2:
                continue
            c = Counter(labels[i] for i in ids)
            same = sum(x * (x - 1) for x in c.values()) / (k * (k - 1))
            num += k * same / base
            den += k
        out.append((slot, has[slot], nvals, num / den if den else float("nan")))
    return out


def mean_f1_threshold(texts: list[str], labels: list[str], thresholds: np.ndarray, k: int = 50) -> np.ndarray:
    """Mean per-item F1 (Shopee metric) of 'match if TF-IDF cosine >= t' for each t (top-k neighbours)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    X = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, min_df=1).fit_transform(texts)
    lab = np.asarray(labels)
    gsize = Counter(labels)
    f1 = np.zeros(len(thresholds))
    n = X.shape[0]
    for s in range(0, n, 2000):
        S = (X[s : s + 2000] @ X.T).toarray()
        kk = min(k, n)
        idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        sims = np.take_along_axis(S, idx, axis=1)
        same = lab[idx] == lab[s : s + 2000, None]
        for r in range(S.shape[0]):
            i = s + r
            true = gsize[lab[i]]
            self_mask = idx[r] != i
            for ti, t in enumerate(thresholds):
                sel = (sims[r] >= t) & self_mask
                tp = 1 + int((same[r] & sel).sum())
                pred = 1 + int(sel.sum())
                f1[ti] += 2 * tp / (pred + true)
    return f1 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--words", action="store_true", help="print the candidate generic words (lexicon/common/words.txt) and stop")
    args = ap.parse_args()
    path = data_path(args.data)
    if not path.exists():
        sys.exit(f"{path}: not found (set ITEMREP_DATA)")
    cat = Catalog.load(path, label_col="label_group", check_images=False)
    items, labels = cat.items, [str(x) for x in cat.labels]
    print(f"# {len(items)} listings, {len(set(labels))} groups from {path}")
    if args.words:
        known = RuleBasedExtractor().lexicon.words
        groups_of: dict[str, set[str]] = defaultdict(set)
        for it, g in zip(items, labels):
            for w in re.findall(r"[A-Za-z]+", it.title):
                groups_of[w.lower()].add(g)
        cands = sorted(w for w, gs in groups_of.items() if len(gs) >= 10 and len(w) >= 3 and w not in known)
        print("\n".join(cands))
        return

    # ---- 1. speed (3 runs each; the box is shared, so report min and median)
    rows = []
    hs_by = {}
    for guess in (False, True):
        t_init = time.perf_counter()
        ex = RuleBasedExtractor(brand_guess=guess)
        init = time.perf_counter() - t_init
        walls, cpus = [], []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            hs = ex.extract(items)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        rows.append((guess, init, sorted(walls), sorted(cpus)))
        hs_by[guess] = hs
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"\n## 1. speed (all listings, one process, 3 runs; load average {load:.1f} on {os.cpu_count()} CPUs)\n")
    print("| brand guess | init s | extract CPU s (min / median) | extract wall s (min / median) | listings/s (min CPU) |")
    print("|---|---|---|---|---|")
    for g, ti, w, c in rows:
        print(f"| {'on' if g else 'off (default)'} | {ti:.2f} | {c[0]:.2f} / {c[1]:.2f} | {w[0]:.2f} / {w[1]:.2f} | {len(items) / c[0]:,.0f} |")

    hs = hs_by[False]  # the default extractor
    # ---- 2. lift per slot
    per_item = []
    for h in hs:
        d: dict[str, set[str]] = defaultdict(set)
        for c in h.concepts:
            d[f"{c.level[:3]}:{c.slot}"].add(c.value)
        per_item.append(d)
    raw_items = [{"raw:token": tokens(it.title)} for it in items]
    print("\n## 2. how specific is each slot? (lift = P(same product | share a value) / P(same product))\n")
    print("| slot | listings with it | distinct values | mean lift (df-weighted) |")
    print("|---|---|---|---|")
    for slot, n_items, nvals, lift in lift_table(raw_items, labels) + lift_table(per_item, labels):
        print(f"| {slot} | {n_items} ({n_items / len(items):.0%}) | {nvals} | {lift:.0f} |")

    # ---- 2b. the most frequent auxiliary values: common across many products
    n_all = len(labels)
    base = sum(k * (k - 1) for k in Counter(labels).values()) / (n_all * (n_all - 1))
    post: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, h in enumerate(hs):
        for c in h.concepts:
            if c.level == "auxiliary":
                post[(c.slot, c.value)].append(i)
    top = sorted(post.items(), key=lambda kv: -len(set(kv[1])))[:20]
    print("\n## 2b. most frequent auxiliary values\n")
    print("| slot | value | kind | listings | product groups | lift |")
    print("|---|---|---|---|---|---|")
    kinds = {(c.slot, c.value): c.kind for h in hs for c in h.concepts if c.level == "auxiliary"}
    for (slot, value), ids in top:
        ids = sorted(set(ids))
        c = Counter(labels[i] for i in ids)
        k = len(ids)
        same = sum(x * (x - 1) for x in c.values()) / (k * (k - 1)) if k > 1 else float("nan")
        print(f"| {slot} | {value} | {kinds[(slot, value)]} | {k} | {len(c)} | {same / base:.0f} |")

    # ---- 3. pair separation
    rng = random.Random(args.seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(labels):
        groups[g].append(i)
    pos = [tuple(rng.sample(m, 2)) for m in groups.values() if len(m) >= 2]
    pos = (pos * (args.pairs // max(len(pos), 1) + 1))[: args.pairs]
    neg = []
    while len(neg) < len(pos):
        i, j = rng.randrange(len(items)), rng.randrange(len(items))
        if labels[i] != labels[j]:
            neg.append((i, j))
    # hard negatives: most similar listing (raw-title TF-IDF) from another group
    from sklearn.feature_extraction.text import TfidfVectorizer

    X = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True).fit_transform([it.title for it in items])
    sample = rng.sample(range(len(items)), min(5000, len(items)))
    S = (X[sample] @ X.T).toarray()
    lab = np.asarray(labels)
    hard = []
    for r, i in enumerate(sample):
        S[r, lab == lab[i]] = -1
        hard.append((i, int(S[r].argmax())))
    del S

    def views(guess: bool):
        hh = hs_by[guess]
        prim = [set().union(*[tokens(c.value) for c in h.concepts if c.level == "primary"] or [set()]) for h in hh]
        aux = [set().union(*[tokens(c.value) for c in h.concepts if c.level == "auxiliary"] or [set()]) for h in hh]
        return prim, aux

    raw = [tokens(it.title) for it in items]
    prim, aux = views(False)
    prim_g, _ = views(True)
    print("\n## 3. pair separation (Jaccard of token sets)\n")
    print(f"{len(pos)} same-product pairs, {len(neg)} random pairs, {len(hard)} hard negatives (nearest other-product title)\n")
    print("| tokens | mean J same | mean J random | mean J hard neg | AUC vs random | AUC vs hard neg |")
    print("|---|---|---|---|---|---|")
    for name, toks in [("raw title", raw), ("primary concepts", prim), ("primary, brand guess on", prim_g), ("auxiliary concepts", aux)]:
        jp = np.array([jaccard(toks[i], toks[j]) for i, j in pos])
        jn = np.array([jaccard(toks[i], toks[j]) for i, j in neg])
        jh = np.array([jaccard(toks[i], toks[j]) for i, j in hard])
        print(f"| {name} | {jp.mean():.3f} | {jn.mean():.3f} | {jh.mean():.3f} | {auc(jp, jn):.3f} | {auc(jp, jh):.3f} |")

    # ---- 3b. per-slot agreement (does the slot separate same product from hard negatives?)
    print("\n## 3b. per-slot agreement: P(the two listings share a value | both have the slot)\n")
    print("| slot | brand guess | listings with slot | same-product pairs | hard negatives | random pairs |")
    print("|---|---|---|---|---|---|")
    for slot in ("brand", "category", "model", "spec", "color", "variant", "pack", "name"):
        for guess in (False, True):
            if slot != "brand" and guess:
                continue
            vals = [set(h.slot_values(slot)) for h in hs_by[guess]]
            cov = sum(1 for v in vals if v) / len(vals)

            def agree(pairs):
                both = [(vals[i], vals[j]) for i, j in pairs if vals[i] and vals[j]]
                return (sum(1 for a, b in both if a & b) / len(both)) if both else float("nan"), len(both)

            (ap_, np_), (ah, nh), (ar, nr) = agree(pos), agree(hard), agree(neg)
            g_txt = ("on" if guess else "off (default)") if slot == "brand" else "-"
            print(f"| {slot} | {g_txt} | {cov:.0%} | {ap_:.3f} (n={np_}) | {ah:.3f} (n={nh}) | {ar:.3f} (n={nr}) |")

    # ---- 4. dedup proxy
    gl = sorted(groups)
    rng.shuffle(gl)
    half = set(gl[: len(gl) // 2])
    tune = [i for i, g in enumerate(labels) if g in half]
    test = [i for i, g in enumerate(labels) if g not in half]
    ths = np.round(np.arange(0.3, 0.91, 0.05), 2)

    def primary_text(h, slots=None):
        return " ".join(c.value for c in h.concepts if c.level == "primary" and (slots is None or c.slot in slots))

    def tagged(h):
        # primary text plus one extra token per structured value ("brand=wardah"), a crude stand-in
        # for slot-wise fusion: agreeing on a structured slot counts more than sharing a word
        extra = [f"{c.slot}_{re.sub(r'[^0-9a-z]+', '_', c.value)}" for c in h.concepts if c.slot in ("brand", "model", "spec", "pack", "color", "category")]
        return primary_text(h) + " " + " ".join(extra)

    variants = {
        "raw title": [it.title for it in items],
        "all concept values (normalised, aux kept)": [" ".join(c.value for c in h.concepts) for h in hs],
        "primary concepts only": [primary_text(h) for h in hs],
        "primary concepts, brand guess on": [primary_text(h) for h in hs_by[True]],
        "primary + slot-tagged tokens": [tagged(h) for h in hs],
        "primary + slot-tagged tokens, brand guess on": [tagged(h) for h in hs_by[True]],
    }
    print("\n## 4. dedup proxy: TF-IDF cosine >= t on the text, mean per-item F1 (Shopee metric)\n")
    print(f"groups split 50/50 (seed {args.seed}): tune {len(tune)} listings, test {len(test)} listings\n")
    print("| text | best t (tune) | F1 tune | F1 test |")
    print("|---|---|---|---|")
    for name, texts in variants.items():
        f_tune = mean_f1_threshold([texts[i] for i in tune], [labels[i] for i in tune], ths)
        b = int(f_tune.argmax())
        f_test = mean_f1_threshold([texts[i] for i in test], [labels[i] for i in test], ths[b : b + 1])
        print(f"| {name} | {ths[b]:.2f} | {f_tune[b]:.3f} | {f_test[0]:.3f} |")


if __name__ == "__main__":
    main()
