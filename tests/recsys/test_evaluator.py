import numpy as np
import pytest
import scipy.sparse as sp
import torch

from itemrep.recsys.evaluator import TopKEvaluator, metrics_from_hits


def test_metrics_hand_computed():
    # one user, 2 relevant items, hits at ranks 1 and 3 (of 5)
    hits = np.array([[1, 0, 1, 0, 0]])
    m = metrics_from_hits(hits, np.array([2]), ks=(1, 3, 5))
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["precision@5"] == pytest.approx(2 / 5)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)
    assert m["ndcg@1"] == pytest.approx(1.0)
    # AP@3 = (P@1 * 1 + P@3 * 1) / min(2, 3) = (1 + 2/3) / 2
    assert m["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["map@1"] == pytest.approx(1.0)  # divided by min(P, K) = 1


def test_metrics_average_over_users_and_errors():
    hits = np.array([[0, 0], [1, 1]])
    m = metrics_from_hits(hits, np.array([1, 4]), ks=(2,))
    assert m["recall@2"] == pytest.approx((0 + 0.5) / 2)
    with pytest.raises(ValueError, match="exceeds"):
        metrics_from_hits(hits, np.array([1, 1]), ks=(3,))
    with pytest.raises(ValueError, match="relevant"):
        metrics_from_hits(hits, np.array([0, 1]), ks=(2,))


def test_evaluator_masks_training_items_and_returns_topk():
    n_users, n_items = 3, 8
    train = sp.csr_matrix((np.ones(3), ([0, 1, 2], [7, 7, 6])), shape=(n_users, n_items))
    truth = sp.csr_matrix((np.ones(2), ([0, 1], [6, 0])), shape=(n_users, n_items))  # user 2 has no truth

    def score(users):
        # every user prefers higher item ids: item 7 (train for users 0,1) must be masked
        return torch.arange(n_items, dtype=torch.float32).repeat(len(users), 1)

    ev = TopKEvaluator(train, truth, ks=(1, 2, 5))
    res, top = ev.evaluate(score, return_topk=True)
    assert list(ev.users_) == [0, 1]
    assert top[0, 0] == 6 and 7 not in top[0] and 7 not in top[1]
    assert res["recall@1"] == pytest.approx(0.5)  # user 0 hits item 6 at rank 1, user 1 misses
    assert res["recall@5"] == pytest.approx(0.5)  # item 0 is ranked 7th for user 1
