"""Near-duplicate clusters of a recommendation dataset's items, and a cold-start split over them.

* :func:`load_clusters` maps an ``itemrep dedup`` output (``clusters.parquet``: ``item_id,
  cluster_id, ...``) onto a prepared dataset's items (``items.csv`` ``source_id``); dataset items
  missing from the file become singleton clusters (counted in :class:`ItemClusters`).
* :func:`clusters_from_labels` builds the same map from any per-item group label (for example
  H&M's ``product_code``).
* :func:`hold_out_cluster_items` makes the cold-start variant of a dataset: a share of the items
  whose cluster has other items in training lose all their interactions to the test split.

The list policies and cluster metrics that use the map are in :mod:`itemrep.recsys.rerank` and
:mod:`itemrep.recsys.evaluator`; the shared cluster embeddings in :mod:`itemrep.recsys.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.recsys.data import ITEMS_FILE, RecDataError, RecDataset


@dataclass(frozen=True)
class ItemClusters:
    """A cluster id for every item of a dataset.

    Attributes:
        cluster_of: int64 (n_items,), contiguous ids ``0 .. n_clusters-1`` numbered in order of
            first appearance along the item ids (deterministic).
        n_clusters: number of clusters.
        n_missing: dataset items the source did not cover, each made a singleton cluster.
        n_unmatched: source rows naming no dataset item (ignored).
        source: where the map came from (file path or a label name).
    """

    cluster_of: np.ndarray
    n_clusters: int
    n_missing: int = 0
    n_unmatched: int = 0
    source: str = ""

    @property
    def sizes(self) -> np.ndarray:
        """int64 (n_clusters,) members per cluster."""
        return np.bincount(self.cluster_of, minlength=self.n_clusters)

    def summary(self) -> dict:
        """Counts for logs and ``metrics.json``: items, clusters, multi-item clusters, items in them, missing, unmatched."""
        sz = self.sizes
        return {
            "source": self.source,
            "items": int(len(self.cluster_of)),
            "clusters": int(self.n_clusters),
            "multi_item_clusters": int((sz > 1).sum()),
            "items_in_multi_item_clusters": int(sz[sz > 1].sum()),
            "missing_items_made_singletons": int(self.n_missing),
            "unmatched_rows": int(self.n_unmatched),
        }


def clusters_from_labels(labels: Sequence, source: str = "labels") -> ItemClusters:
    """Cluster map from one group label per item (row ``i`` = item ``i``).

    Args:
        labels: any hashable values; ``None``/NaN/empty string means "no group" and makes the item
            a singleton (counted in ``n_missing``).
        source: a name for :attr:`ItemClusters.source`.

    Returns:
        :class:`ItemClusters`; items with equal labels share a cluster.
    """
    lab = pd.Series(list(labels), dtype=object)
    missing = lab.isna() | (lab.astype(str).str.strip() == "")
    # a missing label becomes a key of its own that no real label can equal
    keys = [f"\0missing{i}" if miss else str(v) for i, (v, miss) in enumerate(zip(lab, missing))]
    codes, _ = pd.factorize(pd.Series(keys, dtype=object), sort=False)
    codes = codes.astype(np.int64)
    return ItemClusters(codes, int(codes.max()) + 1 if len(codes) else 0, int(missing.sum()), 0, source)


def dataset_item_ids(data_dir: str | Path) -> list[str]:
    """The source ids of a prepared dataset's items (``items.csv`` ``source_id``, row = itemID), as strings.

    Raises:
        RecDataError: ``items.csv`` missing, without ``itemID``/``source_id``, or not ordered 0..N-1.
    """
    f = Path(data_dir) / ITEMS_FILE
    if not f.is_file():
        raise RecDataError(f"{f}: not found; mapping clusters onto items needs the dataset's items.csv (`itemrep rec prepare` writes it)")
    items = pd.read_csv(f, dtype=str, keep_default_na=False)
    for col in ("itemID", "source_id"):
        if col not in items.columns:
            raise RecDataError(f"{f}: missing column '{col}' (have {list(items.columns)})")
    ids = pd.to_numeric(items["itemID"], errors="coerce").to_numpy()
    if not (ids == np.arange(len(items))).all():
        raise RecDataError(f"{f}: itemID must be 0..N-1 in order")
    return items["source_id"].str.strip().tolist()


def _digits_key(s: str) -> str:
    return (s.lstrip("0") or "0") if s.isdigit() else s


def load_clusters(path: str | Path, item_ids: Sequence[str], id_col: str = "item_id", cluster_col: str = "cluster_id") -> ItemClusters:
    """Map a cluster table onto a dataset's items.

    Ids are compared as stripped strings. When that matches fewer items than comparing all-digit
    ids without their leading zeros (a table whose numeric ids lost their zero padding, e.g.
    H&M article ids read as integers), the latter is used.

    Args:
        path: ``.parquet``, ``.csv``/``.tsv`` or ``.jsonl`` with columns ``id_col`` and
            ``cluster_col`` (an ``itemrep dedup`` ``clusters.parquet``).
        item_ids: the dataset's item source ids, row = itemID (:func:`dataset_item_ids`).
        id_col, cluster_col: column names.

    Returns:
        :class:`ItemClusters`; dataset items absent from the table (or with an empty cluster id)
        are singleton clusters, counted in ``n_missing``; table rows naming no dataset item are
        counted in ``n_unmatched``.

    Raises:
        RecDataError: unreadable file, missing column, an item given two different clusters, or
            no table row naming any dataset item.
    """
    path = Path(path)
    if not path.is_file():
        raise RecDataError(f"{path}: cluster file not found (an `itemrep dedup` output: OUT/clusters.parquet)")
    suf = path.suffix.lower()
    try:
        if suf == ".parquet":
            df = pd.read_parquet(path)
        elif suf in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suf == ".tsv" else ",", dtype=str, keep_default_na=False)
        elif suf == ".jsonl":
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            raise RecDataError(f"{path}: unsupported cluster file type {suf!r}; use .parquet, .csv, .tsv or .jsonl")
    except RecDataError:
        raise
    except Exception as e:
        raise RecDataError(f"{path}: cannot read: {e}") from e
    for col in (id_col, cluster_col):
        if col not in df.columns:
            raise RecDataError(f"{path}: missing column '{col}' (have {list(df.columns)})")
    fid = df[id_col].astype(str).str.strip()
    cid = df[cluster_col].where(df[cluster_col].notna(), None)
    cid = cid.map(lambda v: None if v is None or str(v).strip() == "" else str(v).strip())
    items = [str(s).strip() for s in item_ids]
    exact = set(items)
    n_exact = int(fid.isin(exact).sum())
    key = (lambda s: s)
    if n_exact < len(fid):
        n_digits = int(fid.map(_digits_key).isin({_digits_key(s) for s in items}).sum())
        if n_digits > n_exact:
            key = _digits_key
    table = pd.DataFrame({"k": fid.map(key), "c": cid})
    known = table.dropna().drop_duplicates()
    dup = known.duplicated("k", keep=False)
    if dup.any():
        bad = known[dup].sort_values("k").head(2)
        raise RecDataError(f"{path}: item {bad['k'].iloc[0]!r} has two cluster ids ({bad['c'].iloc[0]!r}, {bad['c'].iloc[1]!r})")
    lookup = dict(zip(known["k"], known["c"]))
    item_keys = [key(s) for s in items]
    n_unmatched = int((~table["k"].isin(set(item_keys))).sum())
    if n_unmatched == len(table):
        ex_file = ", ".join(repr(x) for x in fid.head(3))
        ex_items = ", ".join(repr(x) for x in items[:3])
        raise RecDataError(f"{path}: none of its {len(table)} '{id_col}' values names an item of the dataset (file: {ex_file} ...; dataset items.csv source_id: {ex_items} ...)")
    labels = [lookup.get(k) for k in item_keys]
    ic = clusters_from_labels(labels, source=str(path))
    return ItemClusters(ic.cluster_of, ic.n_clusters, ic.n_missing, n_unmatched, str(path))


def hold_out_cluster_items(dataset: RecDataset, cluster_of: np.ndarray, frac: float = 0.2, seed: int = 0) -> tuple[RecDataset, np.ndarray]:
    """Cold-start variant: move all interactions of a share of the items to the test split.

    Eligible items have at least one interaction and belong to a cluster with at least one *other*
    item that has training interactions. ``round(frac * n_eligible)`` of them are drawn in a
    random order (``numpy.random.default_rng(seed)``), skipping any whose removal would leave its
    cluster without another training item, so every held-out item keeps a cluster mate with
    training history. Then: train and valid lose the held-out items' interactions; test holds
    exactly all interactions (train, valid and test) of the held-out items -- the warm test
    interactions are left out of this variant, so its test metrics are cold-item metrics.

    Args:
        dataset: the warm dataset.
        cluster_of: int64 (n_items,) cluster map.
        frac: share of the eligible items to hold out, in (0, 1).
        seed: random seed (same input + seed => same held-out items).

    Returns:
        ``(cold dataset, held-out item ids int64 ascending)``; the dataset keeps the item ids,
        features and size of ``dataset`` and is named ``<name>-cold``.

    Raises:
        ValueError: ``frac`` outside (0, 1), a cluster map of the wrong length, or no eligible item.
    """
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    c = np.asarray(cluster_of, dtype=np.int64)
    if c.shape != (dataset.n_items,):
        raise ValueError(f"cluster_of must have one entry per item ({dataset.n_items}), got shape {c.shape}")
    n_cl = int(c.max()) + 1
    in_train = np.zeros(dataset.n_items, bool)
    in_train[dataset.train[:, 1]] = True
    seen = np.zeros(dataset.n_items, bool)
    for split in (dataset.train, dataset.valid, dataset.test):
        seen[split[:, 1]] = True
    active = np.bincount(c[in_train], minlength=n_cl)  # training items per cluster
    eligible = np.flatnonzero(seen & (active[c] - in_train >= 1))
    if len(eligible) == 0:
        raise ValueError(f"{dataset.name}: no item belongs to a cluster with another training item; nothing to hold out")
    n_hold = int(round(frac * len(eligible)))
    rng = np.random.default_rng(seed)
    left = active.copy()
    held: list[int] = []
    for i in rng.permutation(eligible):
        if len(held) >= n_hold:
            break
        if left[c[i]] - in_train[i] >= 1:
            held.append(int(i))
            left[c[i]] -= int(in_train[i])
    held_arr = np.sort(np.array(held, dtype=np.int64))
    is_held = np.zeros(dataset.n_items, bool)
    is_held[held_arr] = True
    test = np.concatenate([s[is_held[s[:, 1]]] for s in (dataset.train, dataset.valid, dataset.test)])
    cold = RecDataset(
        dataset.n_users,
        dataset.n_items,
        dataset.train[~is_held[dataset.train[:, 1]]],
        dataset.valid[~is_held[dataset.valid[:, 1]]],
        test,
        dict(dataset.features),
        name=f"{dataset.name}-cold",
    )
    return cold, held_arr
