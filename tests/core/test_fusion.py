"""Slot encoding and attention-guided fusion: cos(z, z') = Σ α_k cos(c_k, c'_k)."""

import numpy as np
import pytest
import scipy.sparse as sp

from itemrep.dedup.fusion import AttentionFusion
from itemrep.dedup.slots import SlotSet, phash_bits


def _slots():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    a[5] = 0  # absent slot
    b = sp.random(6, 40, density=0.3, random_state=1, format="csr", dtype=np.float32)
    b = sp.diags(1 / np.sqrt(b.multiply(b).sum(1).A.ravel() + 1e-12)) @ b
    return SlotSet(matrices={"dense": a, "sparse": b.tocsr(), "phash": phash_bits(["0" * 16, "f" * 16, "0" * 15 + "1", None, "0" * 16, "0" * 16])},
                   levels={"dense": "primary", "sparse": "primary", "phash": "auxiliary"})


def test_phash_bits_hamming():
    v = phash_bits(["0000000000000000", "000000000000000f", None])
    assert v[0] @ v[1] == pytest.approx(1 - 4 / 32)
    assert v[0] @ v[0] == pytest.approx(1.0)
    assert not v[2].any()


def test_fused_inner_product_equals_weighted_slot_cosines():
    s = _slots()
    f = AttentionFusion(alpha={"dense": 0.5, "sparse": 0.3, "phash": 0.2})
    views = {k: (m.toarray() if sp.issparse(m) else m) for k, m in s.matrices.items()}
    z = f.fuse(views, s)
    i, j = np.array([0, 1, 2, 0]), np.array([1, 2, 3, 5])
    sim, terms = f.pair_similarity(s, i, j)
    assert np.allclose(np.einsum("ij,ij->i", z[i], z[j]), sim, atol=1e-5)
    assert np.allclose(terms.sum(1), sim)
    assert terms[3, 0] == 0.0  # absent slot contributes nothing


def test_default_alpha_favours_primary():
    s = _slots()
    a = AttentionFusion(primary_share=0.9).alpha_for(s)
    assert a["dense"] == pytest.approx(0.45) and a["phash"] == pytest.approx(0.1)
    assert sum(a.values()) == pytest.approx(1.0)


def test_fit_learns_informative_slot():
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    good = np.clip(0.3 + 0.5 * y + rng.normal(0, 0.1, n), -1, 1)
    noise = rng.uniform(0, 1, n)
    f = AttentionFusion().fit(np.c_[good, noise], y, ["good", "noise"])
    assert f.alpha_["good"] > 0.8
    assert 0.4 < f.tau_logistic_ < 0.8
    with pytest.raises(ValueError, match="both duplicate and non-duplicate"):
        AttentionFusion().fit(np.c_[good, noise], np.ones(n), ["good", "noise"])
