"""Second probe for issue #10 item 2 (learned slot encoders): hashed character 3-4-gram and word
bags of the title embedded end to end (``torch.nn.EmbeddingBag``, 2^18 buckets x 128, mean
pooling), trained and evaluated by the protocol of bench/_probe_common.py.

    python bench/learned_ngram_probe.py     # ~3 min on 2 cores; needs $ITEMREP_DATA/shopee
"""
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import HashingVectorizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _probe_common as pc  # noqa: E402

B = 2 ** 18


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    fit, sel, m = pc.fit_and_select()
    hv_c = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 4), n_features=B, alternate_sign=False, norm=None)
    hv_w = HashingVectorizer(analyzer="word", ngram_range=(1, 1), n_features=B, alternate_sign=False, norm=None)

    def bags(c):
        enc = m.transform(c)
        t = dict(zip(c.ids, c.titles))
        titles = [t[x].lower() for x in enc.ids]
        x = (hv_c.transform(titles) + hv_w.transform(titles)).tocsr()
        x.data[:] = 1.0
        return enc, x, pc.labels_of(c, enc.ids)

    ef, xf, yf = bags(fit)
    es, xs, ys = bags(sel)
    codes = np.unique(yf, return_inverse=True)[1]
    pa, pb = pc.training_pairs(codes)
    emb = torch.nn.EmbeddingBag(B, 128, mode="mean")

    def embed(x, rows):
        sub = x[rows]
        idx = torch.from_numpy(sub.indices.astype(np.int64))
        off = torch.from_numpy(sub.indptr[:-1].astype(np.int64))
        return torch.nn.functional.normalize(emb(idx, off), dim=1)

    pc.train_info_nce(lambda rows: embed(xf, rows), emb.parameters(), pa, pb, epochs=8, lr=3e-3)

    def features(enc, x, y):
        with torch.no_grad():
            z = embed(x, np.arange(x.shape[0])).numpy()
        return pc.candidate_features(m, enc, y, [lambda i, j: np.einsum("ij,ij->i", z[i], z[j])])

    i_f, j_f, ff, lf = features(ef, xf, yf)
    held = pc.held_out(codes, i_f, j_f)
    _, _, fs, ls = features(es, xs, ys)
    pc.report(ff[held], lf[held], fs, ls, ["FITRep exact score", "learned n-gram bag cosine"],
              [([0], "score only (logistic)"), ([0, 1], "score + learned bag cosine")], width=30)


if __name__ == "__main__":
    main()
