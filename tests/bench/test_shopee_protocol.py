"""bench/protocol.py (the fit / select / report protocol of bench/shopee.py) on toy labels: no shared data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from itemrep.dedup.metrics import mean_item_f1

_PATH = Path(__file__).resolve().parents[2] / "bench" / "protocol.py"
_spec = importlib.util.spec_from_file_location("itemrep_bench_protocol", _PATH)
protocol = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(protocol)


def toy_labels(n_groups: int = 400, seed: int = 7) -> list[str]:
    """Groups of 1-6 items, rows shuffled (a tiny synthetic catalog's label column)."""
    rng = np.random.default_rng(seed)
    labels = [f"g{g}" for g in range(n_groups) for _ in range(int(rng.integers(1, 7)))]
    return [labels[k] for k in rng.permutation(len(labels))]


def test_split_is_a_partition_of_whole_groups():
    labels = toy_labels()
    parts = protocol.split_groups(labels, seed=0)
    assert len(parts) == 3
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels) and len(set(allidx.tolist())) == len(labels)  # disjoint and covering
    assert sorted(allidx.tolist()) == list(range(len(labels)))
    groups = [{labels[k] for k in p} for p in parts]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    for p in parts:  # sorted positions, whole groups: every item of a group is in the group's part
        assert np.all(np.diff(p) > 0)
        g = {labels[k] for k in p}
        assert sum(lab in g for lab in labels) == len(p)


def test_split_fractions_and_determinism():
    labels = toy_labels()
    n_groups = len(set(labels))
    a = protocol.split_groups(labels, seed=0)
    b = protocol.split_groups(list(labels), seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = protocol.split_groups(labels, seed=1)
    assert not np.array_equal(a[2], c[2])
    shares = [len({labels[k] for k in p}) / n_groups for p in a]
    assert shares == pytest.approx([0.5, 0.2, 0.3], abs=1.0 / n_groups)
    items = [len(p) / len(labels) for p in a]
    assert items == pytest.approx([0.5, 0.2, 0.3], abs=0.06)  # by groups, so items only roughly
    d = protocol.split_groups(labels, seed=0, fractions=(0.6, 0.1, 0.3))
    assert len({labels[k] for k in d[1]}) == round(0.1 * n_groups)


def test_split_ignores_row_order():
    labels = toy_labels(60)
    perm = np.random.default_rng(3).permutation(len(labels))
    shuffled = [labels[k] for k in perm]
    a = protocol.split_groups(labels, seed=5)
    b = protocol.split_groups(shuffled, seed=5)
    for x, y in zip(a, b):
        assert {labels[k] for k in x} == {shuffled[k] for k in y}


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (0.7, 0.3, 0.0), (1.0, 0.0)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        protocol.split_groups(toy_labels(20), seed=0, fractions=fractions)


def test_split_needs_three_groups():
    with pytest.raises(ValueError, match="3 label groups"):
        protocol.split_groups(["a", "a", "b"], seed=0)
    fit, sel, rep = protocol.split_groups(["a", "b", "c"], seed=0)
    assert len(fit) == len(sel) == len(rep) == 1


def test_per_item_f1_mean_is_the_shopee_metric():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 30, 300)
    p = rng.integers(0, 40, 300)
    assert protocol.per_item_f1(t, p).mean() == pytest.approx(mean_item_f1(t, p))
    assert protocol.item_f1_on(t, p, np.arange(300)) == pytest.approx(mean_item_f1(t, p))


def test_report_f1_inside_a_bigger_pool_pays_for_distractors():
    # report items r1..r4: groups A = {r1, r2}, B = {r3, r4}; distractors d1, d2 (group D) come from other splits
    labels = ["A", "A", "B", "B", "D", "D"]
    report = np.array([0, 1, 2, 3])
    alone = ["x", "x", "y", "y"]  # perfect on the report split alone
    assert mean_item_f1(labels[:4], alone) == 1.0
    in_pool_clean = ["x", "x", "y", "y", "z", "z"]  # the pool adds nothing to report clusters
    assert protocol.item_f1_on(labels, in_pool_clean, report) == 1.0
    merged = ["x", "x", "y", "y", "x", "z"]  # d1 merged into A's cluster: a false positive for r1 and r2
    f1 = protocol.item_f1_on(labels, merged, report)
    assert f1 == pytest.approx((2 * (2 * 2 / (3 + 2)) + 2 * 1.0) / 4)  # 0.9
    assert f1 < 1.0
    # the report-only view of the same clustering would hide the distractor
    assert mean_item_f1(labels[:4], merged[:4]) == 1.0
    # a boolean mask selects the same items
    assert protocol.item_f1_on(labels, merged, np.array([1, 1, 1, 1, 0, 0], bool)) == pytest.approx(f1)


def test_choose_and_tau_grid():
    assert protocol.choose({0.3: 0.5, 0.4: 0.7, 0.5: 0.7}) == 0.5  # ties: largest key by default
    assert protocol.choose({0.3: 0.5, 0.4: 0.7, 0.5: 0.7}, prefer=lambda t: -abs(t - 0.42)) == 0.4
    g = protocol.tau_grid(0.45)
    assert len(g) == 21 and g[0] == pytest.approx(0.35) and g[-1] == pytest.approx(0.55) and 0.45 in g
    assert min(protocol.tau_grid(0.05)) >= 0.01
