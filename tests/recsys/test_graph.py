import numpy as np
import pytest
import scipy.sparse as sp
import torch

from itemrep.recsys.graph import SparseMatrix, knn_graph, mixed_knn_graph, normalized_adjacency


def test_normalized_adjacency_symmetric_and_scaled():
    train = np.array([[0, 0], [0, 1], [1, 1], [1, 1]])  # duplicate counts once
    a = normalized_adjacency(2, 2, train).csr.toarray()
    assert a.shape == (4, 4)
    assert np.allclose(a, a.T)
    # user 0 (deg 2) - item 0 (deg 1): 1/sqrt(2*1)
    assert a[0, 2] == pytest.approx(1 / np.sqrt(2))
    assert a[1, 3] == pytest.approx(1 / np.sqrt(1 * 2))
    assert a[0, 1] == 0 and a[2, 3] == 0


def test_sparse_matmul_gradient_matches_dense():
    rng = np.random.default_rng(0)
    m = sp.random(6, 5, density=0.5, random_state=0, dtype=np.float32)
    s = SparseMatrix(m)
    x = torch.tensor(rng.normal(size=(5, 3)), dtype=torch.float32, requires_grad=True)
    (s @ x).pow(2).sum().backward()
    xd = x.detach().clone().requires_grad_(True)
    (torch.tensor(m.toarray()) @ xd).pow(2).sum().backward()
    assert torch.allclose(x.grad, xd.grad, atol=1e-5)


def test_knn_graph_neighbours_rows_and_no_self_loops():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], np.float32)
    g = knn_graph(x, k=1)
    assert g.shape == (5, 5) and g.nnz == 5
    assert g[0, 1] == 1 and g[1, 0] == 1 and g[2, 3] == 1 and g[3, 2] == 1
    assert g.diagonal().sum() == 0
    g2 = knn_graph(x, k=10)  # more neighbours than items: n-1
    assert np.allclose(np.asarray(g2.sum(axis=1)).ravel(), 1.0)
    assert (np.diff(g2.indptr) == 4).all()
    with pytest.raises(ValueError, match="2-D"):
        knn_graph(np.zeros(3), k=1)


def test_knn_graph_duplicates_still_exclude_self():
    x = np.ones((4, 3), np.float32)  # all identical: self may not come first
    g = knn_graph(x, k=2)
    assert g.diagonal().sum() == 0 and (np.diff(g.indptr) == 2).all()


def test_mixed_graph_weights():
    rng = np.random.default_rng(0)
    feats = {"a": rng.normal(size=(20, 4)), "b": rng.normal(size=(20, 6))}
    s = mixed_knn_graph(feats, {"a": 3.0, "b": 1.0}, k=3).csr
    assert np.allclose(np.asarray(s.sum(axis=1)).ravel(), 1.0)
    ga = knn_graph(feats["a"], 3).toarray()
    gb = knn_graph(feats["b"], 3).toarray()
    assert np.allclose(s.toarray(), 0.75 * ga + 0.25 * gb)
    with pytest.raises(ValueError, match="unknown modalities"):
        mixed_knn_graph(feats, {"c": 1.0})


@pytest.mark.slow
def test_knn_graph_scales_to_100k_items():
    import resource

    x = np.random.default_rng(0).normal(size=(100_000, 32)).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = knn_graph(x, k=10)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert g.shape == (100_000, 100_000) and g.nnz == 1_000_000
    assert g.diagonal().sum() == 0
    assert grown_mb < 2000  # a dense 100k x 100k float32 matrix would need 40 GB
