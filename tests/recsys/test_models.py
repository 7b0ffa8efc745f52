import numpy as np
import pytest
import scipy.fft
import torch

from itemrep.recsys.models import MODELS, build_model
from itemrep.recsys.models.lirdrec import LIRDRec, dct_features
from itemrep.recsys.trainer import NegativeSampler, Trainer

FAST = {"epochs": 30, "stopping_step": 30, "train_batch_size": 256, "learning_rate": 0.01, "threads": 1}


def test_negative_sampler_avoids_positives():
    train = np.array([[0, 0], [0, 1], [0, 2], [1, 3]])
    s = NegativeSampler(train, n_items=4, seed=0, max_tries=100)
    neg = s.sample(np.zeros(500, np.int64))
    assert (neg == 3).all()  # the only non-interacted item of user 0
    neg1 = s.sample(np.ones(500, np.int64))
    assert not (neg1 == 3).any()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_learn_planted_structure(synth, name):
    res = Trainer(name, FAST, seed=0, progress=False).fit(synth)
    # random ranking gives recall@20 ~ 20/60 = 0.33 here; the planted groups make ~0.6+ reachable
    assert res.valid["recall@20"] > 0.45, res.valid
    assert res.test["recall@20"] > 0.4, res.test
    assert 1 <= res.best_epoch <= res.epochs_run
    assert set(res.test) >= {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)}


def test_same_seed_same_result(synth):
    cfg = {**FAST, "epochs": 3}
    a = Trainer("lirdrec", cfg, seed=1, progress=False).fit(synth)
    b = Trainer("lirdrec", cfg, seed=1, progress=False).fit(synth)
    assert a.test == b.test and a.valid == b.valid


def test_early_stopping_uses_validation(synth):
    res = Trainer("bpr", {**FAST, "epochs": 200, "stopping_step": 3, "learning_rate": 0.05}, seed=0, progress=False).fit(synth)
    assert res.epochs_run < 200
    assert res.epochs_run - res.best_epoch == 3
    best_hist = max(h["valid_metric"] for h in res.history)
    assert res.valid["recall@20"] == pytest.approx(best_hist)


def test_dct_is_orthonormal_dct2():
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    y = dct_features(x)
    assert np.allclose(y, scipy.fft.dct(x, type=2, norm="ortho", axis=1), atol=1e-5)
    assert np.allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), atol=1e-4)


def test_lirdrec_structure_any_number_of_modalities(synth):
    for mods in (["image"], ["image", "text"], ["image", "text", "concept"]):
        m = build_model("lirdrec", synth, {"modalities": mods, "knn_k": 5})
        assert m.n_branches == len(mods) + 1
        u, i = m.compute_embeddings()
        assert u.shape == (synth.n_users, 64 * (len(mods) + 1)) and i.shape == (synth.n_items, 64 * (len(mods) + 1))
        # no item-ID embedding: no parameter has one row per item
        assert all(p.shape[0] != synth.n_items for p in m.parameters())
        assert m.item_graph.nnz <= synth.n_items * 5 * len(mods)
        # each branch of the pre-propagation item representation is unit-norm
        h = m.item_branches().view(synth.n_items, -1, 64)
        assert torch.allclose(h.norm(dim=2), torch.ones(synth.n_items, len(mods) + 1), atol=1e-5)
    with pytest.raises(ValueError, match="missing"):
        build_model("lirdrec", synth, {"modalities": ["audio"]})


def test_lirdrec_weight_copying_schedule(synth):
    m: LIRDRec = build_model("lirdrec", synth, {"knn_k": 5})
    assert m.w1 == pytest.approx(0.5) and m.w2 == pytest.approx(0.5)
    with torch.no_grad():
        m.scorer.normal_()
    m.on_epoch_end(1)
    w1 = 0.5 * 0.9
    assert m.w1 == pytest.approx(w1 / (w1 + 0.5)) and m.w1 + m.w2 == pytest.approx(1.0)
    # Theta now holds the epoch's beta: rows on the simplex, no longer uniform
    assert torch.allclose(m.theta.sum(1), torch.ones(synth.n_users))
    assert not torch.allclose(m.theta, torch.full_like(m.theta, 1 / m.n_branches))
    prev = m.w1
    m.on_epoch_end(2)
    assert m.w1 < prev
    # the fusion scalars are part of the checkpoint
    m2: LIRDRec = build_model("lirdrec", synth, {"knn_k": 5})
    m2.load_state_dict(m.state_dict())
    assert m2.w1 == pytest.approx(m.w1) and torch.equal(m2.theta, m.theta)


def test_vbpr_requires_features(synth):
    from itemrep.recsys.data import RecDataset

    bare = RecDataset(synth.n_users, synth.n_items, synth.train, synth.valid, synth.test, {}, name="bare")
    with pytest.raises(ValueError, match="needs item features"):
        build_model("vbpr", bare, {})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", bare, {})
