"""Per-item features for CTR models from a dedup result: ``item_features.parquet``.

FITRep's online gains come from what the cluster ids do downstream; one of those uses is a CTR
model that takes the cluster id as a feature, so a new listing inherits what its near-duplicates
have learned. ``itemrep dedup CATALOG --out DIR --features`` writes, beside ``clusters.parquet``,
one row per catalog item, in catalog order (:data:`FEATURE_COLUMNS`):

* ``item_id`` (string), ``cluster_id`` (string): as in ``clusters.parquet``;
* ``cluster_size`` (int64): number of items of this catalog in the item's cluster (1 for a singleton);
* ``is_representative`` (bool): the item is its cluster's representative (one per cluster);
* ``score_to_representative`` (float32): the item's edge score to its representative (1.0 for the
  representative; can exceed 1, see ``clusters.parquet``);
* one string column per primary concept slot, :data:`FEATURE_SLOTS` (``category, brand, model,
  spec, color, variant, pack``): the normalised values the concept extractor found in the item's
  title, image or OCR text (the concepts the dedup slots use; those read only from the description
  are left out, as in the slot view), distinct values in extraction order joined by
  :data:`VALUE_SEP`; null when the item has none;
* ``failed`` (bool): the item has at least one per-item failure in ``failures.csv`` (extraction,
  image, ...); it is still clustered and listed, with null slot values where its concepts are missing.

docs/dedup.md ("Features for CTR models") shows how to join the table into a feature pipeline.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from itemrep.dedup.slots import concept_level

#: Primary concept slots written as feature columns (slot names of :mod:`itemrep.concepts.schema`).
FEATURE_SLOTS: tuple[str, ...] = ("category", "brand", "model", "spec", "color", "variant", "pack")
#: Columns of ``item_features.parquet``, in order.
FEATURE_COLUMNS: list[str] = ["item_id", "cluster_id", "cluster_size", "is_representative", "score_to_representative",
                              *FEATURE_SLOTS, "failed"]
#: Separator of several values of one slot (``"red|blue"``).
VALUE_SEP = "|"
#: File name written by ``itemrep dedup --features``.
FEATURES_FILE = "item_features.parquet"


def build_item_features(clusters: pd.DataFrame, concepts: pa.Table | pd.DataFrame | None,
                        failed_ids: Iterable[str] = ()) -> pd.DataFrame:
    """The feature table from the parts of a dedup result.

    Args:
        clusters: ``clusters.parquet`` as a DataFrame: ``item_id, cluster_id, representative_id``
            and the score to the representative, ``score`` (or ``similarity``, its older name);
            one row per item, in catalog order.
        concepts: ``concepts.parquet`` (Arrow table or DataFrame with ``item_id, slot, value,
            level, source``), or ``None`` (slot columns all null).
        failed_ids: ids of the items with a per-item failure.

    Returns:
        DataFrame with :data:`FEATURE_COLUMNS`, one row per row of ``clusters``, same order; dtypes
        as in the module docstring (slot columns: strings, null where absent).

    Raises:
        ValueError: ``clusters`` lacks a column (the message lists those present) or repeats an item id.
    """
    score_col = "similarity" if "similarity" in clusters.columns and "score" not in clusters.columns else "score"
    need = ["item_id", "cluster_id", "representative_id", score_col]
    lacking = [c for c in need if c not in clusters.columns]
    if lacking:
        raise ValueError(f"clusters table lacks column(s) {', '.join(lacking)} (has {', '.join(map(str, clusters.columns))}); "
                         "expected the clusters.parquet of `itemrep dedup`")
    ids = clusters["item_id"].astype(str).to_numpy(dtype=object)
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise ValueError(f"clusters table repeats item id {dup!r}; expected one row per item")
    cid = clusters["cluster_id"].astype(str).to_numpy(dtype=object)
    out = pd.DataFrame({
        "item_id": ids,
        "cluster_id": cid,
        "cluster_size": pd.Series(cid).map(pd.Series(cid).value_counts()).to_numpy(np.int64),
        "is_representative": ids == clusters["representative_id"].astype(str).to_numpy(dtype=object),
        "score_to_representative": clusters[score_col].to_numpy(np.float32),
    })
    values = _slot_values(concepts)
    for slot in FEATURE_SLOTS:
        found = pd.Series(ids).map(values[slot]) if slot in values else pd.Series([None] * len(ids), dtype=object)
        out[slot] = np.array([v if isinstance(v, str) else None for v in found], dtype=object)
    failed = set(map(str, failed_ids))
    out["failed"] = np.fromiter((i in failed for i in ids), dtype=bool, count=len(ids))
    return out[FEATURE_COLUMNS]


def _slot_values(concepts: pa.Table | pd.DataFrame | None) -> dict[str, pd.Series]:
    """slot -> Series item_id -> ``"v1|v2"`` over the primary, non-description concepts."""
    if concepts is None:
        return {}
    cols = ["item_id", "slot", "value", "level", "source"]
    df = concepts.select(cols).to_pandas() if isinstance(concepts, pa.Table) else concepts[cols]
    df = df[df["slot"].isin(FEATURE_SLOTS) & df["value"].notna()]
    level = [concept_level(lv, src) for lv, src in zip(df["level"], df["source"])]
    df = df[np.asarray(level, dtype=object) == "primary"]
    df = df.assign(item_id=df["item_id"].astype(str), value=df["value"].astype(str))
    df = df.drop_duplicates(["item_id", "slot", "value"])
    joined = df.groupby(["slot", "item_id"], sort=False)["value"].agg(VALUE_SEP.join)
    return {slot: joined.xs(slot, level="slot") for slot in joined.index.get_level_values("slot").unique()}


def item_features(result) -> pd.DataFrame:
    """The feature table of a :class:`~itemrep.dedup.pipeline.DedupResult` (see :func:`build_item_features`).

    Returns:
        DataFrame with :data:`FEATURE_COLUMNS`, one row per catalog item, in catalog order.
    """
    return build_item_features(result.clusters, result.concepts, {f.item_id for f in result.failures})


def read_item_features(out_dir: str | Path) -> pd.DataFrame:
    """The feature table of an ``itemrep dedup --out`` folder written earlier (``clusters.parquet``,
    ``concepts.parquet`` and ``failures.csv``), without running dedup again.

    Raises:
        FileNotFoundError: the folder has no ``clusters.parquet`` (the message names it).
        ValueError: as :func:`build_item_features`.
    """
    out_dir = Path(out_dir)
    f = out_dir / "clusters.parquet"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: not found; run `itemrep dedup CATALOG --out {out_dir}` first")
    import pyarrow.parquet as pq

    concepts = pq.read_table(out_dir / "concepts.parquet") if (out_dir / "concepts.parquet").is_file() else None
    failed: set[str] = set()
    if (out_dir / "failures.csv").is_file():
        fail = pd.read_csv(out_dir / "failures.csv", dtype=str, keep_default_na=False)
        failed = set(fail["item_id"]) if "item_id" in fail.columns else set()
    return build_item_features(pd.read_parquet(f), concepts, failed)


def write_item_features(features: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as Parquet to ``path`` (a file, or a folder: ``<folder>/item_features.parquet``),
    through a temporary file beside it, so a failed write leaves no partial file.

    Returns:
        The written path.

    Raises:
        OSError: the path cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FEATURES_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        schema = pa.schema([("item_id", pa.string()), ("cluster_id", pa.string()), ("cluster_size", pa.int64()),
                            ("is_representative", pa.bool_()), ("score_to_representative", pa.float32()),
                            *[(s, pa.string()) for s in FEATURE_SLOTS], ("failed", pa.bool_())])
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(features[FEATURE_COLUMNS], schema=schema, preserve_index=False), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
