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

:class:`RecDataset` loads and validates such a directory; the ``convert_*`` functions build one
from ``../shared/data/{amazon-baby,movielens-100k,hm}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.errors import ItemrepError

INTERACTIONS_FILE = "interactions.tsv"
META_FILE = "meta.json"
ITEMS_FILE = "items.csv"
USERS_FILE = "users.csv"
FEATURE_PREFIX = "feat_"


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


def split_per_user(users: np.ndarray, seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
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
    users = np.asarray(users)
    rng = np.random.default_rng(seed)
    labels = np.zeros(len(users), dtype=np.int8)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    for grp in np.split(order, bounds):
        n = len(grp)
        if n < 3:
            continue
        perm = rng.permutation(grp)
        if n < 10:
            n_val = n_test = 1
        else:
            n_val = max(1, int(np.floor(n * ratios[1])))
            n_test = max(1, int(np.floor(n * ratios[2])))
        labels[perm[:n_test]] = 2
        labels[perm[n_test : n_test + n_val]] = 1
    return labels


def _finish(
    df: pd.DataFrame,
    out: Path,
    name: str,
    items: pd.DataFrame,
    meta: dict,
    label_col: str | None = None,
    seed: int = 0,
) -> RecDataset:
    """Re-index users/items to contiguous ids, split (unless labels given), write everything."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    user_codes, user_src = pd.factorize(df["user"], sort=True)
    item_src = np.array(sorted(df["item"].unique()), dtype=object)
    item_index = {s: i for i, s in enumerate(item_src)}
    item_codes = df["item"].map(item_index).to_numpy(np.int64)
    if label_col is None:
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


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise RecDataError(f"{path}: {what} not found (set ITEMREP_DATA to the shared data directory)")
    return path


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


def convert_movielens(src: str | Path, out: str | Path, seed: int = 0, k_core: int = 5, min_rating: float = 0.0) -> RecDataset:
    """Convert MovieLens-100k (+ TMDB overviews and posters) to implicit feedback.

    Every rating ``>= min_rating`` is an interaction (default: all ratings); duplicates are
    removed; ``k_core``-core filtering (users and items); per-user random 8:1:1 split
    (:func:`split_per_user`). Items get title, TMDB overview, poster path and genre/year/language
    attributes (the concept stand-in, see :mod:`itemrep.recsys.features`).
    """
    src = Path(src)
    rf = _require(src / "ratings.csv", "MovieLens ratings.csv")
    ratings = pd.read_csv(rf)
    for col in ("user_id", "movie_id", "rating"):
        if col not in ratings.columns:
            raise RecDataError(f"{rf}: missing column '{col}'")
    ratings = ratings[ratings["rating"] >= min_rating]
    df = ratings.rename(columns={"user_id": "user", "movie_id": "item"})[["user", "item"]].drop_duplicates()
    df = kcore_filter(df, k_core, k_core)
    itf = _require(src / "items.csv", "MovieLens items.csv")
    items = pd.read_csv(itf).drop_duplicates("movie_id")
    genres = [c for c in items.columns[2:21]]
    posters = src / "posters"

    def _attrs(r) -> str:
        g = [c for c in genres if r.get(c, 0) == 1]
        parts = [f"genre: {', '.join(g).lower()}" if g else ""]
        if pd.notna(r.get("year")):
            parts.append(f"year: {int(r['year'])}")
        if isinstance(r.get("original_language"), str):
            parts.append(f"language: {r['original_language']}")
        return "; ".join(p for p in parts if p)

    items = pd.DataFrame(
        {
            "source_id": items["movie_id"].to_numpy(),
            "title": items["title"].fillna("").astype(str),
            "text": items["overview"].fillna("").astype(str),
            "image": [str(posters / f"{m}.jpg") if (posters / f"{m}.jpg").exists() else "" for m in items["movie_id"]],
            "attributes": [_attrs(r) for _, r in items.iterrows()],
        }
    )
    return _finish(df, Path(out), "movielens-100k", items, {"source": str(src), "k_core": k_core, "min_rating": min_rating, "split": "per-user random 8:1:1 (n<10: n-2/1/1)"}, seed=seed)


def convert_hm(src: str | Path, out: str | Path, seed: int = 0, min_user: int = 5, imaged_only: bool = True) -> RecDataset:
    """Convert the H&M sample (purchases) to implicit feedback.

    Repeated purchases of an article by a customer count once. With ``imaged_only`` only the
    articles that have a photo are kept (4,116 articles, all of them in the article table). A
    full 5-core filter empties this sparse sample, so only users are filtered (at least
    ``min_user`` distinct articles, so that every user has train, valid and test items); items are
    not filtered (many appear once: a cold-ish, feature-driven setting). Per-user 8:1:1 split.
    """
    src = Path(src)
    tf = _require(src / "transactions_train_sample.csv", "H&M transactions")
    af = _require(src / "articles_sample.csv", "H&M articles")
    t = pd.read_csv(tf, dtype={"article_id": str, "customer_id": str})
    for col in ("customer_id", "article_id"):
        if col not in t.columns:
            raise RecDataError(f"{tf}: missing column '{col}'")
    arts = pd.read_csv(af, dtype={"article_id": str})
    arts["article_id"] = arts["article_id"].str.zfill(10)
    t["article_id"] = t["article_id"].str.zfill(10)
    img_dir = src / "images"

    def _img(a: str) -> Path:
        return img_dir / a[:3] / f"{a}.jpg"

    arts = arts[arts["article_id"].isin(set(t["article_id"]))]
    if imaged_only:
        arts = arts[[_img(a).exists() for a in arts["article_id"]]]
    t = t[t["article_id"].isin(set(arts["article_id"]))]
    df = t.rename(columns={"customer_id": "user", "article_id": "item"})[["user", "item"]].drop_duplicates()
    df = kcore_filter(df, min_user, 1)
    attr_cols = [c for c in ("product_type_name", "product_group_name", "colour_group_name", "graphical_appearance_name", "department_name", "index_group_name") if c in arts.columns]

    def _attrs(r) -> str:
        return "; ".join(f"{c.replace('_name', '').replace('_', ' ')}: {str(r[c]).lower()}" for c in attr_cols if pd.notna(r[c]))

    items = pd.DataFrame(
        {
            "source_id": arts["article_id"].to_numpy(),
            "title": arts["prod_name"].fillna("").astype(str).to_numpy(),
            "text": arts["detail_desc"].fillna("").astype(str).to_numpy(),
            "image": [str(_img(a)) if _img(a).exists() else "" for a in arts["article_id"]],
            "attributes": [_attrs(r) for _, r in arts.iterrows()],
        }
    )
    return _finish(df, Path(out), "hm", items, {"source": str(src), "min_user": min_user, "imaged_only": imaged_only, "split": "per-user random 8:1:1 (n<10: n-2/1/1)"}, seed=seed)
