"""The evaluation protocol of ``bench/shopee.py``: a seeded three-way split by label group, the
choice of a threshold on a grid, and per-item F1 counted on some items of a larger clustered pool.

* :func:`split_groups` cuts the label groups (never single items) into **fit / select / report**
  parts (default 50 / 20 / 30 % of the groups). Learned weights come from *fit*, thresholds are
  chosen on *select* (or on fit + select for methods with nothing to learn), and the metrics are read
  on *report* once, after every choice is made.
* :func:`per_item_f1` / :func:`item_f1_on`: the Shopee competition metric (F1 between an item's
  predicted cluster and its true group) per item, and its mean over a subset of the items. With the
  report split clustered *inside* the whole catalog, a report item's predicted set is its whole
  cluster, distractors from the other splits included (each one is a false positive), and its true
  set is its label group, which lies inside the report split because the split is by group.

Pure numpy, no shared data: ``tests/bench/test_shopee_protocol.py`` checks it on toy labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.5, 0.2, 0.3)
PART_NAMES = ("fit", "select", "report")


def _str_codes(labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct labels as str, int64 code of every item)."""
    uniq, inv = np.unique(np.asarray([str(x) for x in labels], dtype=object), return_inverse=True)
    return uniq, inv.astype(np.int64).ravel()


def split_groups(labels: Sequence, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split items into fit / select / report parts by whole label group.

    The distinct labels (compared as strings, sorted) are permuted with
    ``numpy.random.default_rng(seed)``; the first ``round(f_fit * G)`` groups go to *fit*, the next
    ``round(f_select * G)`` to *select*, the rest to *report*. The result depends only on the set of
    labels and the seed, not on the row order, and is the same on every run.

    Args:
        labels: group label of every item, length N (any hashable; read as strings).
        seed: the split's seed.
        fractions: shares of the **groups** (not items) for fit, select, report; three numbers > 0
            summing to 1.

    Returns:
        ``(fit_idx, select_idx, report_idx)``: sorted int64 item positions, disjoint, covering
        ``range(N)``.

    Raises:
        ValueError: for bad fractions, or fewer than 3 groups (each part needs one).
    """
    fr = np.asarray(list(fractions), dtype=float)
    if fr.shape != (3,) or (fr <= 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be three numbers > 0 summing to 1 (fit, select, report); got {tuple(fractions)}")
    uniq, codes = _str_codes(labels)
    g = len(uniq)
    if g < 3:
        raise ValueError(f"need at least 3 label groups to split three ways; got {g}")
    n_fit = int(min(max(round(fr[0] * g), 1), g - 2))
    n_sel = int(min(max(round(fr[1] * g), 1), g - n_fit - 1))
    perm = np.random.default_rng(seed).permutation(g)
    part = np.empty(g, dtype=np.int8)
    part[perm[:n_fit]] = 0
    part[perm[n_fit:n_fit + n_sel]] = 1
    part[perm[n_fit + n_sel:]] = 2
    item_part = part[codes]
    return tuple(np.flatnonzero(item_part == k).astype(np.int64) for k in range(3))  # type: ignore[return-value]


def per_item_f1(true_labels: Sequence, pred_labels: Sequence) -> np.ndarray:
    """float64 (N,): F1_i = 2|P_i ∩ T_i| / (|P_i| + |T_i|), P_i the items sharing i's predicted
    cluster, T_i those sharing its true group (i in both). Its mean is
    :func:`itemrep.dedup.metrics.mean_item_f1`.

    Raises:
        ValueError: when the lengths differ.
    """
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"label lengths differ: {len(true_labels)} true vs {len(pred_labels)} predicted")
    if len(true_labels) == 0:
        return np.zeros(0)
    _, t = _str_codes(true_labels)
    _, p = _str_codes(pred_labels)
    _, pair = np.unique(t * (int(p.max()) + 1) + p, return_inverse=True)
    pair = pair.ravel()
    inter = np.bincount(pair)[pair]
    return 2.0 * inter / (np.bincount(t)[t] + np.bincount(p)[p])


def item_f1_on(true_labels: Sequence, pred_labels: Sequence, items: Iterable[int] | np.ndarray) -> float:
    """Mean per-item F1 over ``items`` only (positions, or a boolean mask of length N), with the
    clusters and groups of the **whole** pool: a report item merged with distractors from the rest
    of the catalog pays for each one in precision.

    ``true_labels`` may hold anything for items whose group does not touch ``items`` (e.g. the
    distractors' own labels); only the groups of ``items`` are read as truth.
    """
    f1 = per_item_f1(true_labels, pred_labels)
    idx = np.asarray(items if isinstance(items, np.ndarray) else list(items))
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
    return float(f1[idx].mean()) if len(idx) else 0.0


def choose(scores: dict, prefer: Callable[[object], float] | None = None):
    """The key of the best score; ties go to the key with the largest ``prefer(key)`` (default: the
    key itself, as ``bench/shopee.py`` always did for baseline thresholds)."""
    prefer = prefer or (lambda k: k)
    return max(scores, key=lambda k: (scores[k], prefer(k)))


def tau_grid(center: float, half_width: float = 0.10, step: float = 0.01, low: float = 0.01, high: float = 2.0) -> list[float]:
    """Thresholds ``center ± half_width`` by ``step`` (rounded to 4 decimals), within [low, high]."""
    n = int(round(half_width / step))
    return sorted({round(center + k * step, 4) for k in range(-n, n + 1) if low <= center + k * step <= high})


def load_shopee(quick: bool = False):
    """The shared Shopee listings (``train.csv``: title + phash, ``label_group`` as labels) as a
    :class:`~itemrep.catalog.Catalog`, or None when the data are not found (a message on stderr
    says where to put them). ``quick``: a seeded 30 % of the groups, for smoke runs."""
    import sys

    from itemrep.catalog import Catalog
    from itemrep.paths import dataset

    root = dataset("shopee")
    if root is None:
        print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README)", file=sys.stderr)
        return None
    cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None, phash_col="image_phash")
    if quick:
        groups = np.array(sorted(set(cat.labels)))
        keep = set(np.random.default_rng(0).choice(groups, size=len(groups) * 3 // 10, replace=False))
        cat = cat.subset([k for k, it in enumerate(cat.items) if it.label in keep])
    return cat
