"""Shared fixtures: a tiny synthetic dataset with planted structure (users of group g like items of group g)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import numpy as np
import pytest

from itemrep.recsys.data import RecDataset, split_per_user

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recsys"


def make_synthetic(n_users: int = 80, n_items: int = 60, n_groups: int = 4, seed: int = 0, dims=(24, 16, 12)) -> RecDataset:
    """Users and items in ``n_groups`` groups; a user interacts mostly with items of its group.

    Features: per modality a noisy embedding of the item's group (so content predicts taste).
    """
    rng = np.random.default_rng(seed)
    ug = np.arange(n_users) % n_groups
    ig = np.arange(n_items) % n_groups
    pairs = []
    for u in range(n_users):
        same = np.flatnonzero(ig == ug[u])
        other = np.flatnonzero(ig != ug[u])
        k = rng.integers(8, 13)
        its = np.r_[rng.choice(same, size=k, replace=False), rng.choice(other, size=2, replace=False)]
        pairs += [(u, i) for i in its]
    arr = np.array(pairs, dtype=np.int64)
    lab = split_per_user(arr[:, 0], seed)
    feats = {}
    for name, d in zip(("image", "text", "concept"), dims):
        centers = rng.normal(size=(n_groups, d))
        feats[name] = (centers[ig] + 0.3 * rng.normal(size=(n_items, d))).astype(np.float32)
    return RecDataset(n_users, n_items, arr[lab == 0], arr[lab == 1], arr[lab == 2], feats, name="synthetic")


@pytest.fixture(scope="session")
def synth() -> RecDataset:
    return make_synthetic()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory, synth) -> Path:
    d = tmp_path_factory.mktemp("synth")
    synth.save(d)
    return d
