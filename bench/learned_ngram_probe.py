"""Second probe for issue #10 item 2 (learned slot encoders): hashed character 3-4-gram and word
bags of the title embedded end to end (``torch.nn.EmbeddingBag``, 2^18 buckets x 128, mean pooling)
and trained with an in-batch InfoNCE loss on same-group pairs of the even-numbered fit groups;
a logistic combination with FITRep's score is fitted on candidate pairs of the odd-numbered fit
groups; ROC AUC and best pair F1 are read on the candidate pairs of the *select* split (protocol
of bench/protocol.py, seed 0). The report split is not read.

    python bench/learned_ngram_probe.py     # ~3 min on 2 cores; needs $ITEMREP_DATA/shopee
"""
import sys, time, zlib
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import numpy as np, torch
from protocol import split_groups
from sklearn.metrics import roc_auc_score, precision_recall_curve
from sklearn.linear_model import LogisticRegression
from sklearn.feature_extraction.text import HashingVectorizer
from itemrep.catalog import Catalog
from itemrep.paths import dataset
from itemrep.dedup.pipeline import FITRep
torch.manual_seed(0); torch.set_num_threads(2)
root = dataset("shopee")
cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None, phash_col="image_phash")
fit_i, sel_i, _ = split_groups(cat.labels, seed=0)
fit, sel = cat.subset(fit_i), cat.subset(sel_i)
m = FITRep(images="off").fit(fit)
B = 2 ** 18
hv_c = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 4), n_features=B, alternate_sign=False, norm=None)
hv_w = HashingVectorizer(analyzer="word", ngram_range=(1, 1), n_features=B, alternate_sign=False, norm=None)
def bags(c):
    enc = m.transform(c)
    t = dict(zip(c.ids, c.titles)); lab = dict(zip(c.ids, c.labels))
    titles = [t[x].lower() for x in enc.ids]
    X = (hv_c.transform(titles) + hv_w.transform(titles)).tocsr()
    X.data[:] = 1.0
    return enc, X, np.array([lab[x] for x in enc.ids])
ef, Xf, yf = bags(fit); es, Xs, ys = bags(sel)
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
emb = torch.nn.EmbeddingBag(B, 128, mode="mean")
opt = torch.optim.Adam(emb.parameters(), lr=3e-3)
def embed(X, rows):
    sub = X[rows]
    idx = torch.from_numpy(sub.indices.astype(np.int64)); off = torch.from_numpy(sub.indptr[:-1].astype(np.int64))
    return torch.nn.functional.normalize(emb(idx, off), dim=1)
t0 = time.perf_counter()
for ep in range(8):
    perm = np.random.default_rng(ep).permutation(len(pa)); tot = 0.0
    for s in range(0, len(perm), 256):
        b = perm[s:s + 256]
        za, zb = embed(Xf, pa[b]), embed(Xf, pb[b])
        logits = za @ zb.T / 0.05; tgt = torch.arange(len(b))
        loss = (torch.nn.functional.cross_entropy(logits, tgt) + torch.nn.functional.cross_entropy(logits.T, tgt)) / 2
        opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item() * len(b)
    print(f"epoch {ep} loss {tot / len(pa):.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
def pair_data(enc, X, y):
    i, j = m.clusterer_.candidates(enc.vectors)
    full = m.score_pairs(enc.slots, i, j)[0]
    with torch.no_grad():
        z = embed(X, np.arange(X.shape[0])).numpy()
    return i, j, np.c_[full, np.einsum("ij,ij->i", z[i], z[j])], (y[i] == y[j]).astype(int)
i_f, j_f, Ff, lf = pair_data(ef, Xf, yf)
cf = codes
held = ((cf[i_f] % 2) == 1) & ((cf[j_f] % 2) == 1)
Ff, lf = Ff[held], lf[held]
_, _, Fs, ls = pair_data(es, Xs, ys)
def best_f1(s, l):
    p, r, _ = precision_recall_curve(l, s); f = 2 * p * r / np.maximum(p + r, 1e-9); return f.max()
for k, name in enumerate(["FITRep exact score", "learned n-gram bag cosine"]):
    print(f"{name:<30} AUC {roc_auc_score(ls, Fs[:, k]):.4f}  best pair F1 {best_f1(Fs[:, k], ls):.4f}")
for cols, name in (([0], "score only (logistic)"), ([0, 1], "score + learned bag cosine")):
    lr = LogisticRegression(max_iter=1000).fit(Ff[:, cols], lf)
    s = lr.decision_function(Fs[:, cols])
    print(f"{name:<30} AUC {roc_auc_score(ls, s):.4f}  best pair F1 {best_f1(s, ls):.4f}  coef {np.round(lr.coef_[0], 2)}")
