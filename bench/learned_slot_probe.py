"""Probe for issue #10 item 2 (learned slot encoders): does a contrastively learned linear
projection of the primary text slots add discriminative power to FITRep's pair score?

    python bench/learned_slot_probe.py      # ~2 min on 2 cores; needs $ITEMREP_DATA/shopee

Protocol (bench/protocol.py, seed 0): α, β, γ and the slot encoders fitted on the *fit* split. A
linear map W (512 -> 256) of the two primary text slots' dense views (word and character TF-IDF
through their sparse random projections) is trained with an in-batch InfoNCE loss (temperature
0.05) on same-group pairs of the even-numbered fit groups; a logistic combination of the FITRep
score and the learned cosine is fitted on candidate pairs of the odd-numbered fit groups (never
seen by W); ROC AUC and best pair F1 are read on the candidate pairs of the *select* split. The
report split is not read.
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import numpy as np, torch
from protocol import split_groups
from sklearn.metrics import roc_auc_score, precision_recall_curve
from sklearn.linear_model import LogisticRegression
from itemrep.catalog import Catalog
from itemrep.paths import dataset
from itemrep.dedup.pipeline import FITRep
torch.manual_seed(0); torch.set_num_threads(2)
root = dataset("shopee")
cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None, phash_col="image_phash")
fit_i, sel_i, _ = split_groups(cat.labels, seed=0)
fit, sel = cat.subset(fit_i), cat.subset(sel_i)
m = FITRep(images="off").fit(fit)
def views(c):
    enc = m.transform(c)
    v = m.slot_encoder_.dense_views(enc.slots, ["primary_words", "primary_chars"])
    lab = dict(zip(c.ids, c.labels))
    y = np.array([lab[x] for x in enc.ids])
    return enc, np.hstack([v["primary_words"], v["primary_chars"]]).astype(np.float32), y
ef, xf, yf = views(fit)
es, xs, ys = views(sel)
print("views", xf.shape, xs.shape, flush=True)
# training pairs: all positive pairs within fit groups (capped per group)
codes = np.unique(yf, return_inverse=True)[1]
order = np.argsort(codes, kind="stable"); cs = codes[order]
starts = np.r_[0, np.flatnonzero(cs[1:] != cs[:-1]) + 1, len(cs)]
pa, pb = [], []
for a, b in zip(starts[:-1], starts[1:]):
    g = order[a:b]
    for u in range(len(g)):
        for w in range(u + 1, min(len(g), u + 6)):
            pa.append(g[u]); pb.append(g[w])
pa, pb = np.array(pa), np.array(pb)
half = (codes[pa] % 2) == 0
pa, pb = pa[half], pb[half]
print("train pairs", len(pa), flush=True)
d = xf.shape[1]
W = torch.nn.Linear(d, 256, bias=False)
with torch.no_grad():
    W.weight.copy_(torch.randn(256, d) / np.sqrt(d))
opt = torch.optim.Adam(W.parameters(), lr=1e-3)
X = torch.from_numpy(xf)
t0 = time.perf_counter()
for ep in range(15):
    perm = np.random.default_rng(ep).permutation(len(pa))
    tot = 0.0
    for s in range(0, len(perm), 256):
        b = perm[s:s + 256]
        za = torch.nn.functional.normalize(W(X[pa[b]]), dim=1)
        zb = torch.nn.functional.normalize(W(X[pb[b]]), dim=1)
        logits = za @ zb.T / 0.05
        # in-batch negatives; pairs of the same group in one batch are rare, ignored
        tgt = torch.arange(len(b))
        loss = (torch.nn.functional.cross_entropy(logits, tgt) + torch.nn.functional.cross_entropy(logits.T, tgt)) / 2
        opt.zero_grad(); loss.backward(); opt.step(); tot += float(loss) * len(b)
    print(f"epoch {ep} loss {tot / len(pa):.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
def learned(x):
    with torch.no_grad():
        return torch.nn.functional.normalize(W(torch.from_numpy(x)), dim=1).numpy()
def pair_data(enc, x, y):
    i, j = m.clusterer_.candidates(enc.vectors)
    full = m.score_pairs(enc.slots, i, j)[0]
    raw = np.einsum("ij,ij->i", x[i], x[j]) / 2  # mean of the two views' cosines
    z = learned(x)
    lc = np.einsum("ij,ij->i", z[i], z[j])
    return np.c_[full, lc, raw], (y[i] == y[j]).astype(int)
Ff, lf = pair_data(ef, xf, yf)
# the logistic combination is fitted on pairs that touch no training group of W
cf = np.unique(yf, return_inverse=True)[1]
i_f, j_f = m.clusterer_.candidates(ef.vectors)
held = ((cf[i_f] % 2) == 1) & ((cf[j_f] % 2) == 1)
Ff, lf = Ff[held], lf[held]
Fs, ls = pair_data(es, xs, ys)
def best_f1(s, l):
    p, r, _ = precision_recall_curve(l, s); f = 2 * p * r / np.maximum(p + r, 1e-9); return f.max()
print("select pairs", len(ls), "positives", ls.sum())
for k, name in enumerate(["FITRep exact score", "learned text cosine", "raw text view cosine"]):
    print(f"{name:<28} AUC {roc_auc_score(ls, Fs[:, k]):.4f}  best pair F1 {best_f1(Fs[:, k], ls):.4f}")
for cols, name in (([0], "score only (logistic)"), ([0, 1], "score + learned cosine"), ([0, 2], "score + raw view cosine")):
    lr = LogisticRegression(max_iter=1000).fit(Ff[:, cols], lf)
    s = lr.decision_function(Fs[:, cols])
    print(f"{name:<28} AUC {roc_auc_score(ls, s):.4f}  best pair F1 {best_f1(s, ls):.4f}  coef {np.round(lr.coef_[0], 2)}")
