"""The review loop: pick the borderline pairs of a deduplication for a person to label, read the
labels back, and fit a model on them (``itemrep fit CATALOG --pairs FILE``).

>>> model = FITRep.default()                                                   # doctest: +SKIP
>>> todo = borderline_pairs(model, catalog, n=200)                             # doctest: +SKIP
>>> write_review_csv(todo, "review_pairs.csv")   # a person fills in `label`   # doctest: +SKIP
>>> labels = read_pair_labels("review_pairs.csv")                             # doctest: +SKIP
>>> FITRep().fit(catalog, pairs=labels, prior=model)                          # doctest: +SKIP

A labelling file has columns ``item_a, item_b, label`` (label 1/0, true/false, yes/no; a row with
an empty label is not labelled yet and is skipped); other columns (scores, titles) are ignored.
``itemrep review-pairs OUT`` and the HTML report write such files with ``label`` empty.

The pairs are those the model is least sure of: candidate pairs (the same kNN graph and exact edge
scores ``itemrep dedup`` uses) whose score lies in a band just above and just below τ, spread over
the band. Labelling them moves τ and the weights where the decisions are made (uncertainty
sampling, as in the active learning of the dedupe library); :meth:`FITRep.fit` moves τ only within
the scores its labelled pairs cover.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.catalog import Catalog, csv_safe, read_table
from itemrep.dedup.pairs import LABEL_COLUMN, PAIR_COLUMNS, PairsError, check_pairs

#: Half-width of the score band around τ that :func:`borderline_pairs` samples (the chaining
#: guard's default margin: the scores where a decision can change).
DEFAULT_BAND = 0.1
#: Columns of a review file written by :func:`write_review_csv` (the first three are the contract).
REVIEW_COLUMNS = ["item_a", "item_b", "label", "score", "tau", "side", "title_a", "title_b"]


def read_pair_labels(path: str | Path, *, encoding: str | None = None) -> pd.DataFrame:
    """Read a labelling file (CSV/TSV/JSONL/Parquet, chosen by extension like a catalog).

    Args:
        path: the file; columns ``item_a, item_b, label`` (others ignored).
        encoding: text encoding of a CSV/JSONL file (default UTF-8).

    Returns:
        DataFrame ``item_a, item_b`` (str), ``label`` (int8 0/1) and ``line`` (the pair's line in
        a CSV/TSV file with its header on line 1, or in a JSONL file) or ``row`` (1-based data row
        of a Parquet file), for the labelled rows only; ``attrs["source"]`` is the path.

    Raises:
        PairsError: the file is missing, lacks a column, has an empty id or a label other than
            1/0, true/false, yes/no on a labelled row (the message names the file and the line), or
            no row is labelled.
    """
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"{path}: pair label file not found" + (" (it is a directory)" if path.is_dir() else ""))
    df = read_table(path, encoding=encoding)
    missing = [c for c in (*PAIR_COLUMNS, LABEL_COLUMN) if c not in df.columns]
    if missing:
        raise PairsError(f"{path}: missing column(s) {', '.join(missing)}; a pair label file needs item_a, item_b, label "
                         f"(the file has columns: {', '.join(map(str, df.columns))})")
    name = path.name.lower()
    offset = 1 if any(name.endswith(s) or name.endswith(s + ".gz") for s in (".csv", ".tsv")) else 0
    where = "row" if name.endswith((".parquet", ".pq")) else "line"
    df = df.reset_index(drop=True)
    df[where] = np.arange(1, len(df) + 1) + offset
    lab = df[LABEL_COLUMN]
    keep = ~(lab.isna() | (lab.astype(str).str.strip() == ""))
    if not keep.any():
        raise PairsError(f"{path}: no labelled pair (column label is empty on all {len(df)} rows); "
                         "fill in 1 (same product) or 0 (different) for the pairs you reviewed")
    out = check_pairs(df[keep].reset_index(drop=True), source=str(path))
    out.attrs["source"] = str(path)
    return out


def borderline_pairs(model, catalog: Catalog, n: int = 200, exclude: pd.DataFrame | None = None,
                     band: float = DEFAULT_BAND) -> pd.DataFrame:
    """``n`` candidate pairs of ``catalog`` scoring near τ: half of them (rounded down) with scores in
    [τ, τ + band), the rest in (τ − band, τ) (when one side runs short, the other fills in; when the
    band holds fewer than ``n`` pairs, the closest pairs outside it do).

    On each side the pairs are spread evenly over the side's pairs ranked by score (a stratified
    sample: every ``m/k``-th pair of the ``m`` in the band), so the labels describe the whole band
    the threshold may move in, not only its edge; ``band=0`` takes the pairs closest to τ instead.
    The catalog is encoded as :meth:`FITRep.dedup` does (:meth:`FITRep.dedup_encoding`: the
    unsupervised stages fitted on it, the kNN candidate pairs, blending when the model uses it), so
    the scores are those of ``edges.parquet``. Pairs of items with identical inputs (always merged)
    are never proposed.

    Args:
        model: a :class:`~itemrep.dedup.pipeline.FITRep`.
        catalog: the catalog deduplicated.
        n: number of pairs (≥ 1).
        exclude: pairs already labelled (``item_a, item_b``, either order), never proposed again.
        band: half-width of the score band around τ (≥ 0).

    Returns:
        DataFrame with columns :data:`REVIEW_COLUMNS` (``label`` empty, ``side`` ``"above"`` or
        ``"below"``), ordered by ``|score − τ|``, then by the ids: the same catalog, model and seed give
        the same pairs.

    Raises:
        ValueError: when ``n`` < 1 or ``band`` < 0.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1; got {n}")
    if not band >= 0:
        raise ValueError(f"band must be >= 0; got {band}")
    enc, i, j = model.dedup_encoding(catalog)
    tau = float(model.tau)
    ids = np.asarray(enc.ids, dtype=object)
    score = np.asarray(model.score_pairs(enc.slots, i, j)[0], dtype=np.float32)
    ok = enc.keys[i] != enc.keys[j]
    if exclude is not None and len(exclude):
        done = {frozenset(p) for p in zip(exclude["item_a"].astype(str), exclude["item_b"].astype(str))}
        ok &= np.fromiter((frozenset((a, b)) not in done for a, b in zip(ids[i], ids[j])), dtype=bool, count=len(i))
    dist = np.abs(score.astype(np.float64) - tau)
    near = ok & ((dist < band) if band > 0 else True)
    above, below = np.flatnonzero(near & (score >= tau)), np.flatnonzero(near & (score < tau))
    key = [ids[i].astype(str), ids[j].astype(str)]

    def by_distance(idx: np.ndarray) -> np.ndarray:
        return idx[np.lexsort((key[1][idx], key[0][idx], dist[idx]))]

    def spread(idx: np.ndarray, m: int) -> np.ndarray:
        idx = by_distance(idx)
        if band == 0 or m >= len(idx):
            return idx[:m]
        return idx[np.unique(np.linspace(0, len(idx) - 1, m).round().astype(np.int64))]

    n_above = min(len(above), max(n // 2, n - len(below)))
    pick = np.concatenate([spread(above, n_above), spread(below, n - n_above)])
    if len(pick) < n:  # the band holds too few pairs: the closest ones outside it fill in
        pick = np.concatenate([pick, by_distance(np.flatnonzero(ok & ~near))[: n - len(pick)]])
    pick = by_distance(pick)
    title = {it.item_id: it.title for it in catalog.items}
    a, b = ids[i[pick]], ids[j[pick]]
    return pd.DataFrame({"item_a": a, "item_b": b, "label": "", "score": score[pick].astype(np.float64), "tau": tau,
                         "side": np.where(score[pick] >= tau, "above", "below"),
                         "title_a": [title.get(x, "") for x in a], "title_b": [title.get(x, "") for x in b]},
                        columns=REVIEW_COLUMNS)


def has_labels(path: str | Path) -> bool:
    """True when ``path`` is a review file with at least one filled-in ``label``, or a file that
    cannot be read as one (then it is somebody's, not ours to replace); False when it is absent."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c == "label")
    except Exception:  # noqa: BLE001 - unreadable as a review file: keep it
        return True
    return "label" not in df.columns or bool((df["label"].str.strip() != "").any())


def write_review_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a review table (:func:`borderline_pairs`) as UTF-8 CSV; title cells that a spreadsheet
    would run as formulas are escaped (:func:`itemrep.catalog.csv_safe`), ids never (they must read
    back as written). Returns the path.

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    text = [c for c in ("title_a", "title_b") if c in out.columns]
    if text:
        out[text] = csv_safe(out[text])
    out.to_csv(path, index=False)
    return path


def label_from_groups(pairs: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Fill ``label`` from the catalog's ground-truth groups (1: same group): the oracle a benchmark
    uses in place of a person.

    Raises:
        ValueError: when an item of a pair has no label.
    """
    lab = {it.item_id: it.label for it in catalog.items}
    bad = [x for x in pd.concat([pairs["item_a"], pairs["item_b"]]) if lab.get(x) is None]
    if bad:
        raise ValueError(f"item {bad[0]!r} has no ground-truth label")
    out = pairs.copy()
    out["label"] = [int(lab[a] == lab[b]) for a, b in zip(pairs["item_a"], pairs["item_b"])]
    return out
