"""Probe for issue #10 item 2 (learned slot encoders): does a contrastively learned linear
projection of the primary text slots add discriminative power to FITRep's pair score?

    python bench/learned_slot_probe.py      # ~2 min on 2 cores; needs $ITEMREP_DATA/shopee

A linear map W (512 -> 256) of the two primary text slots' dense views (word and character TF-IDF
through their sparse random projections), trained and evaluated by the protocol of
bench/_probe_common.py.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _probe_common as pc  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    fit, sel, m = pc.fit_and_select()

    def views(c):
        enc = m.transform(c)
        v = m.slot_encoder_.dense_views(enc.slots, ["primary_words", "primary_chars"])
        return enc, np.hstack([v["primary_words"], v["primary_chars"]]).astype(np.float32), pc.labels_of(c, enc.ids)

    ef, xf, yf = views(fit)
    es, xs, ys = views(sel)
    print("views", xf.shape, xs.shape, flush=True)
    codes = np.unique(yf, return_inverse=True)[1]
    pa, pb = pc.training_pairs(codes)
    print("train pairs", len(pa), flush=True)
    d = xf.shape[1]
    w = torch.nn.Linear(d, 256, bias=False)
    with torch.no_grad():
        w.weight.copy_(torch.randn(256, d) / np.sqrt(d))
    xt = torch.from_numpy(xf)
    pc.train_info_nce(lambda rows: torch.nn.functional.normalize(w(xt[rows]), dim=1), w.parameters(), pa, pb,
                      epochs=15, lr=1e-3)

    def features(enc, x, y):
        with torch.no_grad():
            z = torch.nn.functional.normalize(w(torch.from_numpy(x)), dim=1).numpy()
        return pc.candidate_features(m, enc, y, [lambda i, j: np.einsum("ij,ij->i", z[i], z[j]),
                                                 lambda i, j: np.einsum("ij,ij->i", x[i], x[j]) / 2])  # mean of the two views

    i_f, j_f, ff, lf = features(ef, xf, yf)
    held = pc.held_out(codes, i_f, j_f)
    _, _, fs, ls = features(es, xs, ys)
    print("select pairs", len(ls), "positives", ls.sum())
    pc.report(ff[held], lf[held], fs, ls, ["FITRep exact score", "learned text cosine", "raw text view cosine"],
              [([0], "score only (logistic)"), ([0, 1], "score + learned cosine"), ([0, 2], "score + raw view cosine")])


if __name__ == "__main__":
    main()
