"""Recommendation datasets in the MMRec convention, and converters for the shared data sets.

A prepared dataset is a directory holding

* ``interactions.tsv`` -- tab-separated, header ``userID  itemID  x_label``; ids are contiguous and
  0-based; ``x_label`` is 0 (train), 1 (valid) or 2 (test) -- the MMRec ``.inter`` convention
  (Zhou et al., "A Comprehensive Survey on Multimodal Recommender Systems"/MMRec toolbox);
* ``feat_<modality>.npy`` -- one float32 matrix per modality, row ``i`` describes item ``i``
  (``image``, ``text``, ``concept`` or any other name);
* ``items.csv`` -- ``itemID, source_id, title, text, image`` (what the feature builder reads);
* ``users.csv`` -- ``userID, source_id``;
* ``meta.json`` -- name, source, counts, split seed and how the split was made.

:class:`RecDataset` loads and validates such a directory. :func:`prepare_custom` builds one from
any interactions table and item catalog (``itemrep rec prepare custom``); the ``convert_*``
functions build one from ``../shared/data/{amazon-baby,movielens-100k,hm}``. MovieLens and H&M go
through the same steps as a custom data set: :func:`read_interactions` (columns, ratings, times),
:func:`catalog_items` (the dedup catalog loader: titles, texts, images), :func:`build_dataset`
(catalog join, de-duplication, k-core, per-user random or temporal split, files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.catalog import DEFAULT_COLUMNS, SUPPORTED_SUFFIXES, Catalog, cell_value, delimiter_hint, missing_set, read_table
from itemrep.errors import CatalogError, ItemrepError

INTERACTIONS_FILE = "interactions.tsv"
META_FILE = "meta.json"
ITEMS_FILE = "items.csv"
USERS_FILE = "users.csv"
FEATURE_PREFIX = "feat_"

#: Default k-core of :func:`prepare_custom` and the MovieLens converter (users and items).
DEFAULT_K_CORE = 5
#: Train / valid / test fractions of every per-user split, random or temporal.
SPLIT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
#: ``--split`` values -> the description written to ``meta.json``.
SPLITS: dict[str, str] = {
    "random": "per-user random 8:1:1 (n<10: n-2/1/1)",
    "time": "per-user temporal 8:1:1 (n<10: n-2/1/1): each user's latest interactions to test, the ones before to valid; equal times ordered by the seed",
}


class RecDataError(ItemrepError, ValueError):
    """A recommendation dataset directory or a raw source file cannot be used (message names it)."""


def data_root() -> Path:
    """The shared data directory: ``$ITEMREP_DATA`` or ``<repo>/../shared/data``."""
    import os

    env = os.environ.get("ITEMREP_DATA")
    if env:
        return Path(env)
    try:
        from itemrep import paths  # type: ignore[attr-defined]

        return Path(paths.data_root())  # pragma: no cover - depends on the lead's module
    except Exception:
        return Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@dataclass
class RecDataset:
    """An implicit-feedback dataset with a fixed train / valid / test split and item features.

    Attributes:
        n_users: number of users (ids ``0 .. n_users-1``).
        n_items: number of items (ids ``0 .. n_items-1``).
        train: int64 array (n_train, 2) of (user, item) pairs, x_label 0.
        valid: int64 array (n_valid, 2), x_label 1.
        test: int64 array (n_test, 2), x_label 2.
        features: modality name -> float32 array (n_items, d_m).
        name: dataset name.
        path: directory it was loaded from, if any.
    """

    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "dataset"
    path: Path | None = None

    def __post_init__(self) -> None:
        for split in ("train", "valid", "test"):
            arr = np.asarray(getattr(self, split), dtype=np.int64).reshape(-1, 2)
            if len(arr) and (arr[:, 0].min() < 0 or arr[:, 0].max() >= self.n_users):
                raise RecDataError(f"{self.name}: {split} has user ids outside [0, {self.n_users})")
            if len(arr) and (arr[:, 1].min() < 0 or arr[:, 1].max() >= self.n_items):
                raise RecDataError(f"{self.name}: {split} has item ids outside [0, {self.n_items})")
            setattr(self, split, arr)
        for m, x in list(self.features.items()):
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[0] != self.n_items:
                raise RecDataError(
                    f"{self.name}: feature '{m}' has shape {x.shape}, expected ({self.n_items}, d)"
                )
            if not np.isfinite(x).all():
                bad = int(np.where(~np.isfinite(x).all(axis=1))[0][0])
                raise RecDataError(f"{self.name}: feature '{m}' has NaN/inf values (first at item row {bad})")
            self.features[m] = x

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | Path, modalities: list[str] | None = None) -> "RecDataset":
        """Load a prepared dataset directory.

        Args:
            path: directory with ``interactions.tsv`` and optional ``feat_<m>.npy`` files.
            modalities: feature names to load; ``None`` loads every ``feat_*.npy`` present.

        Raises:
            RecDataError: missing directory/file, missing column, non-integer ids (with the line
                number), bad ``x_label`` values, a requested modality that does not exist, or a
                feature matrix whose row count differs from the number of items.
        """
        path = Path(path)
        inter = path / INTERACTIONS_FILE
        if not inter.is_file():
            raise RecDataError(f"{inter}: not found (run `itemrep rec prepare ...` first)")
        try:
            df = pd.read_csv(inter, sep="\t")
        except Exception as e:  # pragma: no cover - pandas message is wrapped
            raise RecDataError(f"{inter}: cannot read: {e}") from e
        for col in ("userID", "itemID", "x_label"):
            if col not in df.columns:
                raise RecDataError(f"{inter}: missing column '{col}' (have {list(df.columns)})")
            num = pd.to_numeric(df[col], errors="coerce")
            bad = num.isna() | (num != num.round())
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise RecDataError(
                    f"{inter}: line {i + 2}, column '{col}': expected an integer, got {df[col].iloc[i]!r}"
                )
            df[col] = num.astype(np.int64)
        bad = ~df["x_label"].isin([0, 1, 2])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecDataError(f"{inter}: line {i + 2}, column 'x_label': must be 0, 1 or 2, got {df['x_label'].iloc[i]}")
        meta = {}
        if (path / META_FILE).is_file():
            meta = json.loads((path / META_FILE).read_text())
        n_users = int(meta.get("n_users", df["userID"].max() + 1))
        n_items = int(meta.get("n_items", df["itemID"].max() + 1))
        for col, n in (("userID", n_users), ("itemID", n_items)):
            bad = (df[col] < 0) | (df[col] >= n)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise RecDataError(f"{inter}: line {i + 2}, column '{col}': id {df[col].iloc[i]} outside [0, {n})")
        available = sorted(p.stem[len(FEATURE_PREFIX):] for p in path.glob(f"{FEATURE_PREFIX}*.npy"))
        wanted = available if modalities is None else list(modalities)
        feats = {}
        for m in wanted:
            f = path / f"{FEATURE_PREFIX}{m}.npy"
            if not f.is_file():
                raise RecDataError(f"{f}: modality '{m}' not found (available: {available or 'none'})")
            x = np.load(f)
            if x.ndim != 2 or x.shape[0] != n_items:
                raise RecDataError(f"{f}: shape {x.shape}, expected ({n_items}, d) -- one row per item")
            feats[m] = x
        arr = df[["userID", "itemID"]].to_numpy(np.int64)
        lab = df["x_label"].to_numpy()
        return cls(
            n_users=n_users,
            n_items=n_items,
            train=arr[lab == 0],
            valid=arr[lab == 1],
            test=arr[lab == 2],
            features=feats,
            name=str(meta.get("name", path.name)),
            path=path,
        )

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        """Write ``interactions.tsv``, ``feat_*.npy`` and ``meta.json`` to ``path`` (created)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_interactions(path, self.train, self.valid, self.test)
        for m, x in self.features.items():
            np.save(path / f"{FEATURE_PREFIX}{m}.npy", x.astype(np.float32))
        m = {"name": self.name, "n_users": self.n_users, "n_items": self.n_items}
        m.update(meta or {})
        _write_meta(path, m, self)
        return path

    # ------------------------------------------------------------------ helpers
    @property
    def modalities(self) -> list[str]:
        """Names of the loaded feature matrices, in insertion order."""
        return list(self.features)

    def user_items(self, split: str = "train"):
        """CSR matrix (n_users, n_items) of one split, scipy.sparse, float32 ones."""
        import scipy.sparse as sp

        arr = getattr(self, split)
        m = sp.csr_matrix(
            (np.ones(len(arr), np.float32), (arr[:, 0], arr[:, 1])), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def stats(self) -> dict:
        """Counts and density, for logs and docs."""
        n = len(self.train) + len(self.valid) + len(self.test)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "density": n / max(1, self.n_users * self.n_items),
            "modalities": {m: list(x.shape) for m, x in self.features.items()},
        }


def write_interactions(path: Path, train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> Path:
    """Write the MMRec-style interactions table (``userID  itemID  x_label``) to ``path``."""
    parts = [
        pd.DataFrame({"userID": a[:, 0], "itemID": a[:, 1], "x_label": lab})
        for a, lab in ((train, 0), (valid, 1), (test, 2))
    ]
    df = pd.concat(parts, ignore_index=True)
    out = Path(path) / INTERACTIONS_FILE
    df.to_csv(out, sep="\t", index=False)
    return out


def _write_meta(path: Path, meta: dict, ds: RecDataset | None = None) -> None:
    if ds is not None:
        meta = {**meta, "train": len(ds.train), "valid": len(ds.valid), "test": len(ds.test)}
    (Path(path) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


# ---------------------------------------------------------------------- filtering and splitting
def kcore_filter(df: pd.DataFrame, k_user: int, k_item: int, user_col: str = "user", item_col: str = "item") -> pd.DataFrame:
    """Iteratively drop users with < ``k_user`` and items with < ``k_item`` interactions.

    Args:
        df: one row per (user, item) interaction (duplicates should already be removed).
        k_user, k_item: minimum counts (1 disables that side).

    Returns:
        The filtered frame (a copy), which may be empty.
    """
    df = df.copy()
    while True:
        uc = df[user_col].map(df[user_col].value_counts())
        ic = df[item_col].map(df[item_col].value_counts())
        keep = (uc >= k_user) & (ic >= k_item)
        if keep.all():
            return df
        df = df[keep]


def _n_held_out(n: int, ratios: tuple[float, float, float]) -> tuple[int, int] | None:
    """``(n_valid, n_test)`` of a user with ``n`` interactions; ``None`` when ``n < 3`` (all train)."""
    if n < 3:
        return None
    if n < 10:
        return 1, 1
    return max(1, int(np.floor(n * ratios[1]))), max(1, int(np.floor(n * ratios[2])))


def _user_groups(users: np.ndarray) -> list[np.ndarray]:
    """Row indices of each user's interactions, users in increasing order, rows in file order."""
    order = np.argsort(users, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(users[order])) + 1) if len(users) else []


def split_per_user(users: np.ndarray, seed: int, ratios: tuple[float, float, float] = SPLIT_RATIOS) -> np.ndarray:
    """Per-user random split into train / valid / test labels.

    For each user with ``n`` interactions, a random permutation (``numpy.random.default_rng(seed)``)
    assigns ``floor(n * r_valid)`` to valid and ``floor(n * r_test)`` to test (at least one each),
    the rest to train. Users with fewer than 10 interactions get ``n-2 / 1 / 1`` (the issue's rule);
    users with fewer than 3 get everything in train (they cannot be evaluated).

    Args:
        users: int array (n,) of the user of each interaction.
        seed: random seed; same input + seed => same labels.
        ratios: train / valid / test fractions.

    Returns:
        int8 array (n,) of x_labels (0 train, 1 valid, 2 test), aligned with ``users``.
    """
    return _label_users(np.asarray(users), ratios, np.random.default_rng(seed).permutation)


def split_temporal(users: np.ndarray, times: np.ndarray, seed: int, ratios: tuple[float, float, float] = SPLIT_RATIOS) -> np.ndarray:
    """Per-user temporal split into train / valid / test labels.

    Each user's interactions are ordered by time; the latest ``n_test`` go to test, the ``n_valid``
    before them to valid, the rest to train, with the counts of :func:`split_per_user` (``floor(n
    * r)``, at least one; ``n-2 / 1 / 1`` below 10 interactions; everything in train below 3).
    Interactions of one user at the same time are ordered by ``numpy.random.default_rng(seed)``.
    The split is per user, not a global cut-off: one user's training interactions can be later
    than another user's test interactions.

    Args:
        users: int array (n,) of the user of each interaction.
        times: float array (n,) of interaction times (any monotone unit, e.g. Unix seconds).
        seed: random seed of the tie-break; same input + seed => same labels.
        ratios: train / valid / test fractions.

    Returns:
        int8 array (n,) of x_labels (0 train, 1 valid, 2 test), aligned with ``users``.
    """
    times = np.asarray(times, dtype=np.float64)
    rng = np.random.default_rng(seed)

    def latest_first(grp: np.ndarray) -> np.ndarray:
        return grp[np.lexsort((rng.random(len(grp)), -times[grp]))]

    return _label_users(np.asarray(users), ratios, latest_first)


def _label_users(users: np.ndarray, ratios: tuple[float, float, float], rank) -> np.ndarray:
    """x_labels of a per-user split: ``rank(rows)`` orders each user's rows (of users with >= 3),
    the first ``n_test`` go to test, the next ``n_valid`` to valid (:func:`_n_held_out`)."""
    labels = np.zeros(len(users), dtype=np.int8)
    for grp in _user_groups(users):
        held = _n_held_out(len(grp), ratios)
        if held is None:
            continue
        n_val, n_test = held
        ranked = rank(grp)
        labels[ranked[:n_test]] = 2
        labels[ranked[n_test : n_test + n_val]] = 1
    return labels


def _finish(
    df: pd.DataFrame,
    out: Path,
    name: str,
    items: pd.DataFrame,
    meta: dict,
    label_col: str | None = None,
    seed: int = 0,
    split: str = "random",
) -> RecDataset:
    """Re-index users/items to contiguous ids (:func:`_sorted_ids` order), split (unless labels
    given; ``split="time"`` needs a ``time`` column), write everything."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    user_src = _sorted_ids(df["user"])
    user_codes = df["user"].map({s: i for i, s in enumerate(user_src)}).to_numpy(np.int64)
    item_src = _sorted_ids(df["item"])
    item_index = {s: i for i, s in enumerate(item_src)}
    item_codes = df["item"].map(item_index).to_numpy(np.int64)
    if label_col is None:
        if split == "time":
            labels = split_temporal(user_codes, df["time"].to_numpy(np.float64), seed)
        else:
            labels = split_per_user(user_codes, seed)
    else:
        labels = df[label_col].to_numpy()
    arr = np.stack([user_codes.astype(np.int64), item_codes], axis=1)
    ds = RecDataset(
        n_users=len(user_src),
        n_items=len(item_src),
        train=arr[labels == 0],
        valid=arr[labels == 1],
        test=arr[labels == 2],
        name=name,
        path=out,
    )
    write_interactions(out, ds.train, ds.valid, ds.test)
    pd.DataFrame({"userID": np.arange(len(user_src)), "source_id": user_src}).to_csv(out / USERS_FILE, index=False)
    it = items.set_index("source_id").reindex(item_src)
    it = it.reset_index().rename(columns={"index": "source_id"})
    it.insert(0, "itemID", np.arange(len(item_src)))
    for col in ("title", "text", "image", "attributes"):
        if col not in it.columns:
            it[col] = ""
    it[["itemID", "source_id", "title", "text", "image", "attributes"]].to_csv(out / ITEMS_FILE, index=False)
    _write_meta(out, {"name": name, "n_users": ds.n_users, "n_items": ds.n_items, "split_seed": seed, **meta}, ds)
    return ds


_INT_ID = r"[+-]?\d+"


def _sorted_ids(values: pd.Series) -> np.ndarray:
    """The distinct ids of ``values`` in the order that numbers them ``0 .. n-1``.

    Integer ids, and strings that all spell integers, sort numerically (``"2"`` before ``"10"``,
    so an id read as text gets the number it gets when read as an integer); other ids sort as
    strings.

    Returns:
        object array (n,) of the distinct values.
    """
    uniq = pd.unique(values)
    if len(uniq) and all(isinstance(v, str) for v in uniq) and pd.Series(uniq).str.fullmatch(_INT_ID).all():
        return np.array(sorted(uniq, key=lambda v: (int(v), v)), dtype=object)
    return np.array(sorted(uniq), dtype=object)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise RecDataError(f"{path}: {what} not found (set ITEMREP_DATA to the shared data directory)")
    return path


# ---------------------------------------------------------------------- bring your own data
def _loc(path: Path, i: int) -> str:
    """Where data row ``i`` (0-based) of a table file is: ``line N`` for CSV/TSV, else ``row N``."""
    name = path.name.lower()
    return f"line {i + 2}" if any(name.endswith(s) for s in (".csv", ".tsv", ".csv.gz", ".tsv.gz")) else f"row {i + 1}"


def _shown(values, limit: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:limit])


def _id_column(s: pd.Series, path: Path, col: str, flag: str) -> pd.Series:
    """A column of ids as stripped strings (a float column of whole numbers loses its ``.0``)."""
    if pd.api.types.is_float_dtype(s) and s.notna().all() and (s == s.round()).all():
        s = s.astype(np.int64)
    missing = s.isna().to_numpy()
    v = s.astype(str).str.strip()
    bad = missing | (v == "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RecDataError(f"{path}: {_loc(path, i)}: empty id in column {col!r} ({flag}); {int(bad.sum())} row(s) in all. "
                           "Every interaction needs a user and an item")
    return v.reset_index(drop=True)


def _number_column(s: pd.Series, path: Path, col: str, flag: str) -> np.ndarray:
    num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(num)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RecDataError(f"{path}: {_loc(path, i)}, column {col!r} ({flag}): expected a number, got {s.iloc[i]!r} "
                           f"({int(bad.sum())} such row(s) in all)")
    return num


def _time_column(s: pd.Series, path: Path, col: str, flag: str) -> np.ndarray:
    """Interaction times as float64 seconds: numbers (e.g. Unix time) as they are, dates and
    date-times (ISO 8601 or other formats pandas reads) as seconds since 1970-01-01 UTC."""
    num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    if np.isfinite(num).all():
        return num
    dt = pd.to_datetime(s.astype(str).str.strip(), errors="coerce", format="mixed", utc=True)
    bad = dt.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RecDataError(f"{path}: {_loc(path, i)}, column {col!r} ({flag}): expected a number (e.g. Unix time) or a date "
                           f"such as 2020-09-22, got {s.iloc[i]!r} ({int(bad.sum())} such row(s) in all)")
    return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def read_interactions(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read an interactions table (one row per user-item event) and check it.

    Args:
        path: ``.csv``/``.tsv``/``.jsonl``/``.parquet`` file (the formats of the dedup catalog
            loader, :func:`itemrep.catalog.read_table`).
        user_col, item_col: columns of the user and the item id.
        time_col: optional column of interaction times: numbers (e.g. Unix seconds) or dates.
        rating_col: optional column of numeric ratings.
        min_rating: keep only rows whose rating is ``>= min_rating`` (needs ``rating_col``);
            ``None`` keeps every row.
        sep, encoding: CSV delimiter and text encoding (default: sniffed, UTF-8).

    Returns:
        DataFrame in file order (rows below ``min_rating`` dropped, index 0..n-1) with columns
        ``user`` and ``item`` (stripped strings), and ``time`` (float64) when ``time_col`` is
        given. Repeated (user, item) rows are kept (:func:`build_dataset` drops them).

    Raises:
        RecDataError: missing file, ``min_rating`` without ``rating_col``, 0 rows, a missing column
            (naming it and listing the columns present), an empty id, a rating that is not a
            number or a time that is neither a number nor a date (naming the line), or no row left
            after ``min_rating``.
        CatalogError: the file cannot be decoded or parsed (from :func:`~itemrep.catalog.read_table`).
    """
    path = Path(path)
    if not path.is_file():
        raise RecDataError(f"{path}: interactions file not found" + (" (it is a directory)" if path.is_dir() else "")
                           + f" (formats: {', '.join(SUPPORTED_SUFFIXES)})")
    if min_rating is not None and rating_col is None:
        raise RecDataError("--min-rating needs --rating-col, the column of ratings to compare with it")
    raw = read_table(path, sep=sep, encoding=encoding)
    available = [str(c) for c in raw.columns]
    if len(raw) == 0:
        raise RecDataError(f"{path}: 0 rows (only a header with columns {', '.join(available)}); nothing to do")
    for flag, col in (("--user-col", user_col), ("--item-col", item_col), ("--time-col", time_col), ("--rating-col", rating_col)):
        if col is not None and col not in raw.columns:
            raise RecDataError(f"{path}: column {col!r} ({flag}) not found; the file has columns: {', '.join(available)}"
                               + delimiter_hint(available))
    df = pd.DataFrame({"user": _id_column(raw[user_col], path, user_col, "--user-col"),
                       "item": _id_column(raw[item_col], path, item_col, "--item-col")})
    if time_col is not None:
        df["time"] = _time_column(raw[time_col], path, time_col, "--time-col")
    if rating_col is not None:
        rating = _number_column(raw[rating_col], path, rating_col, "--rating-col")
        if min_rating is not None:
            df = df[rating >= min_rating].reset_index(drop=True)
            if not len(df):
                raise RecDataError(f"{path}: no rating in column {rating_col!r} is >= {min_rating} (--min-rating); "
                                   f"the ratings run from {rating.min():g} to {rating.max():g}")
    return df


AttributeSpec = Callable[[pd.DataFrame], Sequence[str]] | Mapping[str, str] | Sequence[str] | None


def _attribute_texts(frame: pd.DataFrame, attributes: AttributeSpec, source: str) -> list[str]:
    """``"label: value; ..."`` per row (values lower-cased, empty cells left out)."""
    if attributes is None or (not callable(attributes) and not len(attributes)):
        return [""] * len(frame)
    if callable(attributes):
        return [str(a) for a in attributes(frame)]
    labels = dict(attributes) if isinstance(attributes, Mapping) else {c: c.replace("_", " ") for c in attributes}
    available = [str(c) for c in frame.columns]
    for c in labels:
        if c not in frame.columns:
            raise CatalogError(f"{source}: column {c!r} (--attr-cols) not found; the file has columns: {', '.join(available)}")
    missing = missing_set(None)
    cols = [(labels[c], frame[c].tolist()) for c in labels]
    out = []
    for i in range(len(frame)):
        parts = []
        for label, vals in cols:
            v = cell_value(vals[i], missing)
            if v is not None:
                parts.append(f"{label}: {v.lower()}")
        out.append("; ".join(parts))
    return out


def catalog_items(
    frame: pd.DataFrame,
    *,
    source: str,
    base_dir: str | Path,
    id_col: str | None = None,
    title_col: str | None = None,
    text_col: str | None = None,
    image_col: str | None = None,
    image_template: str | None = None,
    attributes: AttributeSpec = None,
    images: str = "auto",
) -> tuple[pd.DataFrame, list[str]]:
    """The item table of a prepared dataset from a catalog frame, through the dedup catalog loader.

    :meth:`itemrep.catalog.Catalog.from_frame` validates ids and cleans titles and texts; image
    paths resolve against ``base_dir`` (missing files are kept as items without image). Rows that
    repeat an id are dropped, keeping the first (reported in the notes).

    Args:
        frame: the catalog table, one row per item (e.g. from :func:`~itemrep.catalog.read_table`).
        source: its file name, for messages.
        base_dir: folder relative image paths resolve against (the catalog's folder).
        id_col, title_col, text_col, image_col: columns (``None``: the dedup loader's defaults,
            :data:`itemrep.catalog.DEFAULT_COLUMNS`).
        image_template: instead of ``image_col``, an image path made from the id with
            :meth:`str.format`, e.g. ``"posters/{id}.jpg"`` or ``"images/{id:.3}/{id}.jpg"``
            (``{id:.3}``: the id's first 3 characters).
        attributes: structured attributes written to ``items.csv`` (they feed the concept
            modality, :mod:`itemrep.recsys.features`): a list of columns (labelled by their names),
            a mapping column -> label, or a function of the de-duplicated frame returning one
            string per row.
        images: the loader's image mode (``auto``, ``on``, ``off``).

    Returns:
        ``(items, notes)``: DataFrame ``source_id, title, text, image, attributes`` (all strings,
        ``image`` ``""`` when absent) in catalog order, and the warnings to report.

    Raises:
        CatalogError: a missing column (named, with the columns present), empty or non-scalar ids
            (naming the rows), an unusable ``image_template``, both ``image_col`` and
            ``image_template``.
    """
    notes: list[str] = []
    idc = id_col if id_col is not None else next((c for c in DEFAULT_COLUMNS["id"] if c in frame.columns), None)
    if idc is not None and idc in frame.columns:
        keys = frame[idc].astype(str).str.strip()
        dup = keys.duplicated().to_numpy()
        if dup.any():
            first = keys[dup].iloc[0]
            rows = np.flatnonzero((keys == first).to_numpy())[:2] + 1
            notes.append(f"{source}: {int(dup.sum())} row(s) repeat an id of column {idc!r} (e.g. {first!r} at data rows "
                         f"{rows[0]} and {rows[1]}); kept the first row of each id")
            frame = frame[~dup]
    frame = frame.reset_index(drop=True)
    if image_template is not None:
        if image_col is not None:
            raise CatalogError("give --image-col or --image-template, not both")
        if idc is None or idc not in frame.columns:
            raise CatalogError(f"{source}: --image-template needs the id column; pass --id-col "
                               f"(the file has columns: {', '.join(map(str, frame.columns))})")
        try:
            paths = [image_template.format(id=str(k).strip()) for k in frame[idc]]
        except (KeyError, IndexError, ValueError) as e:
            raise CatalogError(f"--image-template {image_template!r}: cannot fill it in ({type(e).__name__}: {e}); "
                               "use {id} for the item id, e.g. 'images/{id}.jpg'") from None
        image_col = "image (--image-template)"
        frame = frame.assign(**{image_col: paths})
    cat = Catalog.from_frame(frame, base_dir=base_dir, source=source, id_col=idc, title_col=title_col, text_col=text_col,
                             image_col=image_col, images=images)
    notes.extend(cat.warnings)
    if cat.failures:
        f = cat.failures[0]
        notes.append(f"{source}: {len(cat.failures)} per-item problem(s) while loading the catalog "
                     f"(first: data row {f.row}, id {f.item_id!r}: {f.message})")
    items = pd.DataFrame({
        "source_id": cat.ids,
        "title": cat.titles,
        "text": [it.text for it in cat.items],
        "image": [str(it.image) if it.image is not None else "" for it in cat.items],
        "attributes": _attribute_texts(frame, attributes, source),
    })
    return items, notes


def _check_options(split: str, has_time: bool, k_user: int, k_item: int) -> None:
    """Raise :class:`RecDataError` for an unknown split, ``time`` without times, or a k below 1."""
    if split not in SPLITS:
        raise RecDataError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    if split == "time" and not has_time:
        raise RecDataError("--split time needs --time-col, the column of interaction times")
    if k_user < 1 or k_item < 1:
        raise RecDataError(f"--k-core must be at least 1 (1 keeps everything); got {min(k_user, k_item)}")


def build_dataset(
    df: pd.DataFrame,
    items: pd.DataFrame,
    out: str | Path,
    *,
    name: str,
    k_user: int = DEFAULT_K_CORE,
    k_item: int = DEFAULT_K_CORE,
    split: str = "random",
    seed: int = 0,
    meta: dict | None = None,
    notes: Sequence[str] = (),
    source: str = "interactions",
    catalog_source: str = "the catalog",
) -> RecDataset:
    """Join, filter, split and write a prepared dataset (the common tail of every converter).

    Steps: interactions whose item is not in ``items`` are dropped (counted in the notes);
    repeated (user, item) pairs count once (the first row is kept, with the earliest time);
    iterative k-core filter (:func:`kcore_filter`); ids renumbered ``0 .. n-1`` (:func:`_sorted_ids`
    order); per-user split (:func:`split_per_user` or :func:`split_temporal`, ratios
    :data:`SPLIT_RATIOS`); ``interactions.tsv``, ``users.csv``, ``items.csv`` and ``meta.json``
    written (``meta["warnings"]`` holds the notes).

    Args:
        df: interactions in file order, columns ``user``, ``item`` (strings) and ``time``
            (float64, needed by ``split="time"``), as :func:`read_interactions` returns them.
        items: item table of :func:`catalog_items` (``source_id, title, text, image, attributes``).
        out: output directory (created).
        name: dataset name (``meta.json``).
        k_user, k_item: minimum interactions per user / per item (1 disables that side).
        split: ``"random"`` or ``"time"`` (:data:`SPLITS`).
        seed: split seed; same input + seed => same files.
        meta: extra ``meta.json`` entries.
        notes: warnings gathered so far (e.g. from :func:`catalog_items`).
        source, catalog_source: names of the two inputs, for messages.

    Returns:
        The written :class:`RecDataset` (no features: build them with
        :func:`itemrep.recsys.features.build_features`).

    Raises:
        RecDataError: an unknown split, ``split="time"`` without times, k below 1, no item of the
            interactions in the catalog, or nothing left after the k-core filter.
    """
    _check_options(split, "time" in df.columns, k_user, k_item)
    notes = list(notes)
    inside = df["item"].isin(set(items["source_id"])).to_numpy()
    if not inside.all():
        if not inside.any():
            raise RecDataError(
                f"{source}: none of the {df['item'].nunique():,} item ids is in {catalog_source} (interaction ids look like "
                f"{_shown(pd.unique(df['item']))}; catalog ids like {_shown(items['source_id'])}); check --item-col and --id-col")
        gone = pd.unique(df.loc[~inside, "item"])
        notes.append(f"{source}: {len(gone):,} item id(s) are not in {catalog_source} (e.g. {_shown(gone)}); "
                     f"their {int((~inside).sum()):,} interaction(s) are dropped")
        df = df[inside]
    if "time" in df.columns:
        df = df.assign(time=df.groupby(["user", "item"], sort=False)["time"].transform("min"))
    df = df.drop_duplicates(["user", "item"])
    n_distinct = len(df)
    df = kcore_filter(df, k_user, k_item)
    if not len(df):
        raise RecDataError(f"{source}: nothing left after the k-core filter (users need >= {k_user} and items >= {k_item} "
                           f"interactions; {n_distinct:,} distinct interactions before it); lower --k-core")
    meta = dict(meta or {})
    meta.setdefault("split", SPLITS[split])
    if notes:
        meta["warnings"] = notes
    return _finish(df, Path(out), name, items, meta, seed=seed, split=split)


def _read_catalog_frame(path: Path) -> pd.DataFrame:
    """The raw catalog table, with the dedup loader's checks (missing file, directory, 0 rows)."""
    if not path.exists():
        raise CatalogError(f"{path}: catalog file not found (check the path; formats: {', '.join(SUPPORTED_SUFFIXES)})")
    if path.is_dir():
        raise CatalogError(f"{path}: is a directory, expected a catalog file ({', '.join(SUPPORTED_SUFFIXES)})")
    frame = read_table(path)
    if len(frame) == 0:
        raise CatalogError(f"{path}: 0 rows (only a header with columns {', '.join(map(str, frame.columns))}); nothing to do")
    return frame


def convert_amazon_baby(src: str | Path, out: str | Path) -> RecDataset:
    """Convert MMRec's Amazon "Baby" 5-core (``5-core/{train,val,test}.json``), keeping its split.

    The JSON files map a user index (string) to a list of item indices; indices are already
    contiguous and 0-based (``user2id.json`` / ``item2id.json``). No features are available.

    Raises:
        RecDataError: a missing file, or a non-integer id (naming the file and user).
    """
    src = Path(src)
    rows = []
    for fname, lab in (("train.json", 0), ("val.json", 1), ("test.json", 2)):
        f = _require(src / "5-core" / fname, "Amazon Baby split file")
        for u, its in json.loads(f.read_text()).items():
            try:
                uu = int(u)
                rows.extend((uu, int(i), lab) for i in its)
            except (TypeError, ValueError) as e:
                raise RecDataError(f"{f}: user {u!r}: ids must be integers ({e})") from e
    arr = np.array(rows, dtype=np.int64)
    item2id = json.loads(_require(src / "item2id.json", "item2id.json").read_text())
    user2id = json.loads(_require(src / "user2id.json", "user2id.json").read_text())
    n_users = max(len(user2id), int(arr[:, 0].max()) + 1)
    n_items = max(len(item2id), int(arr[:, 1].max()) + 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = RecDataset(n_users, n_items, arr[arr[:, 2] == 0, :2], arr[arr[:, 2] == 1, :2], arr[arr[:, 2] == 2, :2], name="amazon-baby", path=out)
    write_interactions(out, ds.train, ds.valid, ds.test)
    id2asin = {v: k for k, v in item2id.items()}
    pd.DataFrame(
        {
            "itemID": np.arange(n_items),
            "source_id": [id2asin.get(i, "") for i in range(n_items)],
            "title": "",
            "text": "",
            "image": "",
            "attributes": "",
        }
    ).to_csv(out / ITEMS_FILE, index=False)
    id2user = {v: k for k, v in user2id.items()}
    pd.DataFrame({"userID": np.arange(n_users), "source_id": [id2user.get(i, "") for i in range(n_users)]}).to_csv(out / USERS_FILE, index=False)
    _write_meta(out, {"name": "amazon-baby", "n_users": n_users, "n_items": n_items, "source": str(src), "split": "MMRec original"}, ds)
    return ds


def convert_movielens(
    src: str | Path, out: str | Path, seed: int = 0, k_core: int = DEFAULT_K_CORE, min_rating: float = 0.0, split: str = "random"
) -> RecDataset:
    """Convert MovieLens-100k (+ TMDB overviews and posters) to implicit feedback.

    Every rating ``>= min_rating`` is an interaction (default: all ratings); duplicates are
    removed; ``k_core``-core filtering (users and items); per-user 8:1:1 split, random
    (:func:`split_per_user`) or by ``unix_timestamp`` (``split="time"``, :func:`split_temporal`).
    Items get title, TMDB overview, poster path and genre/year/language attributes (the concept
    stand-in, see :mod:`itemrep.recsys.features`). The same steps as :func:`prepare_custom` on
    ``ratings.csv`` and ``items.csv`` (docs/recsys.md).

    Raises:
        RecDataError, CatalogError: a missing file or column, or a bad value (naming the line).
    """
    src = Path(src)
    rf = _require(src / "ratings.csv", "MovieLens ratings.csv")
    itf = _require(src / "items.csv", "MovieLens items.csv")
    df = read_interactions(rf, user_col="user_id", item_col="movie_id", rating_col="rating", min_rating=min_rating,
                           time_col="unix_timestamp" if split == "time" else None)
    raw = read_table(itf)

    def _attrs(frame: pd.DataFrame) -> list[str]:
        genres = list(frame.columns[2:21])
        out = []
        for _, r in frame.iterrows():
            g = [c for c in genres if str(r[c]).strip() == "1"]
            parts = [f"genre: {', '.join(g).lower()}" if g else ""]
            year = pd.to_numeric(r.get("year"), errors="coerce")
            if pd.notna(year):
                parts.append(f"year: {int(year)}")
            lang = str(r.get("original_language") or "").strip()
            if lang and lang.lower() != "nan":
                parts.append(f"language: {lang}")
            out.append("; ".join(p for p in parts if p))
        return out

    items, notes = catalog_items(raw, source=str(itf), base_dir=src, id_col="movie_id", title_col="title", text_col="overview",
                                 image_template="posters/{id}.jpg", attributes=_attrs)
    meta = {"source": str(src), "k_core": k_core, "min_rating": min_rating, "split": SPLITS[split]}
    return build_dataset(df, items, out, name="movielens-100k", k_user=k_core, k_item=k_core, split=split, seed=seed,
                         meta=meta, notes=notes, source=str(rf), catalog_source=str(itf))


def convert_hm(src: str | Path, out: str | Path, seed: int = 0, min_user: int = 5, imaged_only: bool = True, split: str = "random") -> RecDataset:
    """Convert the H&M sample (purchases) to implicit feedback.

    Repeated purchases of an article by a customer count once. With ``imaged_only`` only the
    articles that have a photo are kept (4,116 articles, all of them in the article table). A
    full 5-core filter empties this sparse sample, so only users are filtered (at least
    ``min_user`` distinct articles, so that every user has train, valid and test items); items are
    not filtered (many appear once: a cold-ish, feature-driven setting). Per-user 8:1:1 split,
    random or by ``t_dat`` (``split="time"``).

    Raises:
        RecDataError, CatalogError: a missing file or column, or a bad value (naming the line).
    """
    src = Path(src)
    tf = _require(src / "transactions_train_sample.csv", "H&M transactions")
    af = _require(src / "articles_sample.csv", "H&M articles")
    t = read_interactions(tf, user_col="customer_id", item_col="article_id", time_col="t_dat" if split == "time" else None)
    t["item"] = t["item"].str.zfill(10)
    arts = read_table(af)
    if "article_id" not in arts.columns:
        raise RecDataError(f"{af}: missing column 'article_id' (have {list(arts.columns)})")
    arts["article_id"] = arts["article_id"].str.strip().str.zfill(10)
    arts = arts[arts["article_id"].isin(set(t["item"]))]
    attr_cols = {c: c.replace("_name", "").replace("_", " ") for c in ("product_type_name", "product_group_name", "colour_group_name",
                                                                          "graphical_appearance_name", "department_name", "index_group_name")
                 if c in arts.columns}
    items, notes = catalog_items(arts, source=str(af), base_dir=src, id_col="article_id", title_col="prod_name", text_col="detail_desc",
                                 image_template="images/{id:.3}/{id}.jpg", attributes=attr_cols)
    if imaged_only and (items["image"] == "").any():
        notes.append(f"{af}: {int((items['image'] == '').sum())} purchased article(s) without a photo left out (imaged_only)")
        items = items[items["image"] != ""]
    t = t[t["item"].isin(set(items["source_id"]))]
    meta = {"source": str(src), "min_user": min_user, "imaged_only": imaged_only, "split": SPLITS[split]}
    return build_dataset(t, items, out, name="hm", k_user=min_user, k_item=1, split=split, seed=seed, meta=meta, notes=notes,
                         source=str(tf), catalog_source=str(af))


def prepare_custom(
    interactions: str | Path,
    items: str | Path,
    out: str | Path,
    *,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    id_col: str | None = None,
    title_col: str | None = None,
    text_col: str | None = None,
    image_col: str | None = None,
    image_template: str | None = None,
    attr_cols: Sequence[str] = (),
    k_core: int = DEFAULT_K_CORE,
    item_k_core: int | None = None,
    split: str = "random",
    seed: int = 0,
    name: str | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    images: str = "auto",
) -> RecDataset:
    """Prepare a dataset of your own: an interactions table and an item catalog -> MMRec layout.

    ``itemrep rec prepare custom`` calls this. Steps (the MovieLens and H&M converters run the
    same ones): :func:`read_interactions` (ratings below ``min_rating`` dropped), the catalog through
    :func:`catalog_items` (the dedup catalog loader), :func:`build_dataset` (interactions of items
    missing from the catalog dropped and counted, repeats counted once, k-core filter, per-user
    random or temporal 8:1:1 split). Build the features afterwards with
    :func:`itemrep.recsys.features.build_features` (or ``--features``).

    Args:
        interactions: table of user-item events (``.csv``/``.tsv``/``.jsonl``/``.parquet``).
        items: the item catalog (same formats); one row per item.
        out: output directory.
        user_col, item_col: id columns of the interactions.
        time_col: interaction time column (numbers or dates); needed by ``split="time"``.
        rating_col, min_rating: keep only interactions rated ``>= min_rating``.
        id_col: the catalog's item id column (default: ``item_col`` when the catalog has it,
            else the dedup loader's defaults: item_id, id, posting_id, article_id, sku).
        title_col, text_col, image_col: catalog columns (the dedup loader's defaults when ``None``).
        image_template: image path from the id, e.g. ``"posters/{id}.jpg"`` (relative to the
            catalog's folder), for catalogs without an image column.
        attr_cols: catalog columns written as structured attributes (``"col: value; ..."``), used
            by the concept feature.
        k_core: minimum interactions per user (and per item unless ``item_k_core``); default 5.
        item_k_core: minimum interactions per item (default ``k_core``).
        split: ``"random"`` (per user, seeded) or ``"time"`` (per user, latest to test).
        seed: split seed; same inputs + seed => same files.
        name: dataset name (default: the output folder's name).
        sep, encoding: CSV delimiter and encoding of the interactions file.
        images: the catalog loader's image mode (``auto``, ``on``, ``off``).

    Returns:
        The written :class:`RecDataset`; warnings (dropped interactions, repeated catalog ids,
        missing images) are in ``meta.json`` under ``warnings``.

    Raises:
        RecDataError: a bad option (split, k-core, ``split="time"`` without ``time_col``,
            ``min_rating`` without ``rating_col``), or a problem of the interactions file (see
            :func:`read_interactions`, :func:`build_dataset`).
        CatalogError: a problem of the catalog file (missing, unreadable, missing column, empty
            ids: the dedup catalog loader's messages).
    """
    k_item = k_core if item_k_core is None else item_k_core
    _check_options(split, time_col is not None, k_core, k_item)  # before reading anything
    interactions, items, out = Path(interactions), Path(items), Path(out)
    df = read_interactions(interactions, user_col=user_col, item_col=item_col, time_col=time_col, rating_col=rating_col,
                           min_rating=min_rating, sep=sep, encoding=encoding)
    frame = _read_catalog_frame(items)
    if id_col is None and item_col in frame.columns:
        id_col = item_col
    cat_items, notes = catalog_items(frame, source=str(items), base_dir=items.parent, id_col=id_col, title_col=title_col,
                                     text_col=text_col, image_col=image_col, image_template=image_template,
                                     attributes=list(attr_cols), images=images)
    meta = {
        "source": {"interactions": str(interactions), "items": str(items)},
        "columns": {"user": user_col, "item": item_col, "time": time_col, "rating": rating_col, "catalog_id": id_col,
                    "title": title_col, "text": text_col, "image": image_col, "image_template": image_template,
                    "attributes": list(attr_cols)},
        "min_rating": min_rating,
        "k_core": k_core,
        "item_k_core": k_item,
        "split": SPLITS[split],
    }
    return build_dataset(df, cat_items, out, name=name or out.name, k_user=k_core, k_item=k_item, split=split, seed=seed,
                         meta=meta, notes=notes, source=str(interactions), catalog_source=str(items))
