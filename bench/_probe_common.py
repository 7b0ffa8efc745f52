"""Shared parts of the learned-slot probes (bench/learned_slot_probe.py, bench/learned_ngram_probe.py).

Protocol (bench/protocol.py, seed 0): the FITRep model is fitted on the *fit* split; a text
embedding is trained with an in-batch InfoNCE loss on same-group pairs of the even-numbered fit
groups; a logistic combination with FITRep's score is fitted on candidate pairs of the
odd-numbered fit groups (never seen by the embedding); ROC AUC and best pair F1 are read on the
candidate pairs of the *select* split. The report split is not read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protocol import split_groups  # noqa: E402

from itemrep.catalog import Catalog  # noqa: E402
from itemrep.dedup.pipeline import FITRep  # noqa: E402
from itemrep.paths import dataset  # noqa: E402


def fit_and_select(seed: int = 0):
    """``(fit catalog, select catalog, FITRep fitted on fit)`` of the Shopee split ``seed``;
    exits with a message when the data is absent."""
    root = dataset("shopee")
    if root is None:
        raise SystemExit("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README)")
    cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None,
                       phash_col="image_phash")
    fit_i, sel_i, _ = split_groups(cat.labels, seed=seed)
    fit, sel = cat.subset(fit_i), cat.subset(sel_i)
    return fit, sel, FITRep(images="off").fit(fit, nn_rule="off")  # the probes score pairs; no clustering rule


def labels_of(catalog: Catalog, ids: Sequence[str]) -> np.ndarray:
    """Labels of ``catalog`` in the order of ``ids`` (e.g. an encoding's canonical order)."""
    lab = dict(zip(catalog.ids, catalog.labels))
    return np.array([lab[x] for x in ids])


def training_pairs(codes: np.ndarray, ahead: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Same-group pairs (each item with up to ``ahead`` later members of its group) of the
    even-numbered groups (``codes``: int group code per item)."""
    order = np.argsort(codes, kind="stable")
    cs = codes[order]
    starts = np.r_[0, np.flatnonzero(cs[1:] != cs[:-1]) + 1, len(cs)]
    pa, pb = [], []
    for a, b in zip(starts[:-1], starts[1:]):
        g = order[a:b]
        for u in range(len(g)):
            for w in range(u + 1, min(len(g), u + ahead + 1)):
                pa.append(g[u])
                pb.append(g[w])
    pa, pb = np.array(pa), np.array(pb)
    half = (codes[pa] % 2) == 0
    return pa[half], pb[half]


def train_info_nce(embed: Callable, params, pa: np.ndarray, pb: np.ndarray, epochs: int, lr: float,
                   batch: int = 256, temperature: float = 0.05) -> None:
    """Adam on the symmetric in-batch InfoNCE loss of the pairs (pa, pb); ``embed(rows)`` returns
    unit-norm torch embeddings of those rows (pairs of one group in one batch are rare, ignored)."""
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    t0 = time.perf_counter()
    for ep in range(epochs):
        perm = np.random.default_rng(ep).permutation(len(pa))
        tot = 0.0
        for s in range(0, len(perm), batch):
            b = perm[s:s + batch]
            logits = embed(pa[b]) @ embed(pb[b]).T / temperature
            tgt = torch.arange(len(b))
            loss = (torch.nn.functional.cross_entropy(logits, tgt) + torch.nn.functional.cross_entropy(logits.T, tgt)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
        print(f"epoch {ep} loss {tot / len(pa):.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)


def candidate_features(model: FITRep, enc, y: np.ndarray, cosines: Sequence[Callable]):
    """``(i, j, features, labels)`` of the model's candidate pairs: column 0 the FITRep score, then
    one column per ``cosines`` entry (a function of (i, j))."""
    i, j = model.clusterer_.candidates(enc.vectors)
    cols = [model.score_pairs(enc.slots, i, j)[0]] + [f(i, j) for f in cosines]
    return i, j, np.column_stack(cols), (y[i] == y[j]).astype(int)


def held_out(codes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pairs of two odd-numbered groups' items (never seen by :func:`training_pairs`)."""
    return ((codes[i] % 2) == 1) & ((codes[j] % 2) == 1)


def report(ff: np.ndarray, lf: np.ndarray, fs: np.ndarray, ls: np.ndarray, names: Sequence[str],
           combos: Sequence[tuple[Sequence[int], str]], width: int = 28) -> None:
    """Print AUC and best pair F1 on select of each feature, then of logistic combinations fitted on (ff, lf)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    def best_f1(s, lab):
        p, r, _ = precision_recall_curve(lab, s)
        return (2 * p * r / np.maximum(p + r, 1e-9)).max()

    for k, name in enumerate(names):
        print(f"{name:<{width}} AUC {roc_auc_score(ls, fs[:, k]):.4f}  best pair F1 {best_f1(fs[:, k], ls):.4f}")
    for cols, name in combos:
        lr = LogisticRegression(max_iter=1000).fit(ff[:, cols], lf)
        s = lr.decision_function(fs[:, cols])
        print(f"{name:<{width}} AUC {roc_auc_score(ls, s):.4f}  best pair F1 {best_f1(s, ls):.4f}  coef {np.round(lr.coef_[0], 2)}")
