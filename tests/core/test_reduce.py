"""SPDR reducers: shapes, unit rows, determinism, neighbourhoods kept."""

import numpy as np
import pytest

from itemrep.dedup.reduce import IdentityReducer, PCAReducer, UMAPReducer, kept_neighbour_ratio, make_reducer


def _data(n=400, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, d))
    x = centers[rng.integers(0, 40, n)] + rng.normal(scale=0.1, size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_pca_and_identity():
    x = _data()
    y = PCAReducer(n_components=16).fit_transform(x)
    assert y.shape == (400, 16) and y.dtype == np.float32
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert kept_neighbour_ratio(x, y) > 0.5
    assert IdentityReducer().fit_transform(x).shape == x.shape


@pytest.mark.slow
def test_umap_adaptive_fit_on_sample_and_deterministic():
    x = _data(n=600)
    r = UMAPReducer(sample_size=400, random_state=0)
    y = r.fit_transform(x)
    st = r.stats()
    assert y.shape == (600, st["n_components"]) and st["fit_sample"] == 400
    assert 0 <= st["kept_neighbours"] <= 1
    y2 = UMAPReducer(sample_size=400, random_state=0).fit_transform(x)
    assert np.allclose(y, y2, atol=1e-5)


def test_make_reducer_rejects_unknown():
    with pytest.raises(ValueError, match="unknown reducer"):
        make_reducer("tsne")
