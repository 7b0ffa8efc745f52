"""Dedup metrics against hand-computed values."""

import pytest

from itemrep.dedup.metrics import bcubed_scores, dedup_metrics, mean_item_f1, pairwise_scores


def test_mean_item_f1_hand_computed():
    true = ["a", "a", "b", "b"]
    pred = [1, 1, 1, 2]
    # item0: P={0,1,2} T={0,1} -> 2*2/5; item1 same; item2: P={0,1,2} T={2,3} -> 2/5; item3: P={3} T={2,3} -> 2/3
    expected = (0.8 + 0.8 + 0.4 + 2 / 3) / 4
    assert mean_item_f1(true, pred) == pytest.approx(expected)
    assert mean_item_f1(true, ["x", "x", "y", "y"]) == 1.0


def test_pairwise_scores():
    true = ["a", "a", "b", "b"]
    pred = [1, 1, 1, 2]
    s = pairwise_scores(true, pred)
    # predicted pairs: (0,1),(0,2),(1,2) -> tp=1; true pairs (0,1),(2,3)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(0.4)


def test_metrics_perfect_and_lengths():
    m = dedup_metrics(list("aabbc"), list("xxyyz"))
    assert m["mean_item_f1"] == 1.0 and m["pairwise_f1"] == 1.0 and m["adjusted_rand_index"] == 1.0
    assert bcubed_scores(list("aab"), list("xyz"))["precision"] == 1.0
    with pytest.raises(ValueError):
        mean_item_f1([1, 2], [1])
