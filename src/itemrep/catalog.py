"""Catalog loading and validation: CSV, JSONL and Parquet tables of items.

A catalog is a table with one row per item: an id, a title, optional free text, an optional image
(a path relative to the catalog file, or an ``http(s)://`` URL), an optional 64-bit perceptual hash
(16 hex digits) and an optional ground-truth group label (used by ``itemrep fit`` and for metrics).

Formats: ``.csv`` (delimiter sniffed from the header unless ``sep`` is given), ``.tsv``, ``.jsonl`` /
``.ndjson`` / ``.json`` (one object per line, or one JSON array), ``.parquet``; the text formats
may be compressed (``.csv.gz``, ``.jsonl.gz``, ``.bz2``, ``.xz``).

What is an error and what is a per-item failure:

* whole-file problems raise :class:`~itemrep.errors.CatalogError` with the file, line or row and
  column named, and what to do: a missing or unreadable file, 0 rows, an undecodable line (offer
  ``--encoding``), a wrong delimiter (``--sep``), a missing column, empty, duplicate or non-scalar
  ids, a non-scalar label;
* per-item problems are recorded as :class:`~itemrep.errors.ItemFailure` and the item is kept with
  the remaining fields: a malformed phash, a missing image file, an image path that cannot be used
  (too long, NUL byte), outside ``image_root``, or an image URL that cannot be fetched;
* a catalog whose image files are *all* absent gets one message in :attr:`Catalog.warnings`
  instead of one failure per item.

Cell values in :data:`DEFAULT_MISSING_VALUES` (``NaN``, ``null``, ``N/A`` ...; case-insensitive,
configurable with ``missing_values``) are read as missing in every column but the id.
"""

from __future__ import annotations

import codecs
import html
import json
import os
import re
import stat as _statmod
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from itemrep.errors import CatalogError, ItemFailure

#: Column names tried, in order, when a column flag is not given.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("item_id", "id", "posting_id", "article_id", "sku"),
    "title": ("title", "name", "prod_name", "product_name"),
    "text": ("text", "description", "detail_desc", "desc"),
    "image": ("image", "image_path", "img", "photo"),
    "phash": ("image_phash", "phash"),
    "label": (),  # never guessed: a label column is given explicitly with --label-col
}

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq",
                      ".csv.gz", ".tsv.gz", ".jsonl.gz", ".ndjson.gz", ".json.gz")
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
_TEXT_FORMATS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")

#: Cell values read as missing (compared case-insensitively after trimming), every column but the id.
DEFAULT_MISSING_VALUES: tuple[str, ...] = ("NaN", "nan", "-nan", "+nan", "null", "None", "N/A", "#N/A")

#: ``images`` modes: check and use image files when there are some / always / never look at them.
IMAGE_MODES = ("auto", "on", "off")

_BYTE_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_PHASH_RE = re.compile(r"^[0-9a-fA-F]{16}$")
_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SEP_CANDIDATES = (",", ";", "\t", "|")
_SEP_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def clean_text(s: str | None) -> str:
    """Clean one seller-written string.

    * literal byte escapes written as text (``"Nescafe \\xc3\\x89clair"``) are decoded as UTF-8
      (``"Nescafe Éclair"``); a run that is not valid UTF-8 is decoded as Latin-1;
    * HTML entities (``&amp;``, ``&#39;``) are unescaped;
    * Unicode is NFKC-normalised (full-width letters and digits become ASCII) and whitespace collapsed.

    Args:
        s: the raw string, or ``None``.

    Returns:
        The cleaned string (``""`` for ``None`` or NaN).
    """
    if s is None or (isinstance(s, float) and s != s):
        return ""
    s = str(s)

    def _decode(m: re.Match) -> str:
        raw = bytes(int(h, 16) for h in m.group(0).split("\\x")[1:])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    if "\\x" in s:
        s = _BYTE_ESCAPES.sub(_decode, s)
    if "&" in s:
        s = html.unescape(html.unescape(s))
    s = unicodedata.normalize("NFKC", s)
    return _WS.sub(" ", s).strip()


@dataclass
class Item:
    """One catalog item after validation.

    Attributes:
        item_id: the id, always a string.
        title: cleaned title (may be ``""``).
        text: cleaned free text (may be ``""``).
        image: path of the image file (a downloaded copy for an ``http(s)://`` URL), or ``None``
            when absent, missing or unusable.
        phash: 16 lower-case hex digits (64-bit perceptual hash), or ``None``.
        label: ground-truth group label as a string, or ``None``.
        row: 1-based data row in the catalog file.
    """

    item_id: str
    title: str = ""
    text: str = ""
    image: Path | None = None
    phash: str | None = None
    label: str | None = None
    row: int = 0


@dataclass
class Catalog:
    """A validated catalog: items in file order plus the per-item failures found while loading.

    Use :meth:`load` to read a file or :meth:`from_frame` for an in-memory table.

    Attributes:
        items: the items, in file order.
        failures: per-item problems found while loading (the items are kept).
        path: the catalog file, when read from one.
        columns: the column used for each role (``id``, ``title``, ...), ``None`` where absent.
        warnings: catalog-wide messages to show once (e.g. "none of the 10,313 images exists
            under DIR"); callers print them and record them in ``run.json``.
    """

    items: list[Item]
    failures: list[ItemFailure] = field(default_factory=list)
    path: Path | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]

    @property
    def ids(self) -> list[str]:
        """Item ids in catalog order."""
        return [it.item_id for it in self.items]

    @property
    def titles(self) -> list[str]:
        """Cleaned titles in catalog order."""
        return [it.title for it in self.items]

    @property
    def labels(self) -> list[str | None]:
        """Ground-truth labels in catalog order (``None`` where absent)."""
        return [it.label for it in self.items]

    @property
    def has_labels(self) -> bool:
        """True when every item has a label."""
        return bool(self.items) and all(it.label is not None for it in self.items)

    def require_labels(self, what: str = "fit") -> None:
        """Raise unless every item has a label; the message names the column and the rows without one.

        Args:
            what: the command that needs labels, for the message.

        Raises:
            CatalogError: no label column, or rows with an empty (or placeholder) label.
        """
        src = str(self.path) if self.path else "catalog"
        col = self.columns.get("label")
        if col is None:
            raise CatalogError(f"{src}: {what} needs a label for every item: pass --label-col with a column of group labels")
        if not self.items:
            raise CatalogError(f"{src}: {what} needs labelled items; the catalog has 0 rows")
        missing = [it.row for it in self.items if it.label is None]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise CatalogError(
                f"{src}: column {col!r} (--label-col) is empty on {len(missing)} of {len(self.items)} rows "
                f"(data rows {shown}); {what} needs a label for every item: fill them in or drop those rows")

    def subset(self, idx) -> "Catalog":
        """A new catalog with the items at positions ``idx`` (failures of those items kept)."""
        items = [self.items[i] for i in idx]
        keep = {it.item_id for it in items}
        return Catalog(
            items=items,
            failures=[f for f in self.failures if f.item_id in keep],
            path=self.path,
            columns=dict(self.columns),
            warnings=list(self.warnings),
        )

    def batches(self, size: int) -> list["Catalog"]:
        """The catalog cut into consecutive catalogs of at most ``size`` items, in file order
        (each keeps its items' failures). An empty catalog gives no batch.

        Raises:
            ValueError: ``size < 1``.
        """
        size = int(size)
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        return [self.subset(range(s, min(len(self), s + size))) for s in range(0, len(self), size)]

    def to_frame(self) -> pd.DataFrame:
        """The items as a table with columns ``item_id, title, text, image, phash, label, row``."""
        return pd.DataFrame(
            {
                "item_id": self.ids,
                "title": self.titles,
                "text": [it.text for it in self.items],
                "image": [str(it.image) if it.image else None for it in self.items],
                "phash": [it.phash for it in self.items],
                "label": self.labels,
                "row": [it.row for it in self.items],
            }
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        id_col: str | None = None,
        title_col: str | None = None,
        text_col: str | None = None,
        image_col: str | None = None,
        phash_col: str | None = None,
        label_col: str | None = None,
        images: str | None = "auto",
        check_images: bool = True,
        image_root: str | Path | None = None,
        sep: str | None = None,
        encoding: str | None = None,
        missing_values: Iterable[str] | str | None = None,
        cache_dir: str | Path | None = None,
        url_concurrency: int | None = None,
        url_timeout_s: float | None = None,
        url_max_bytes: int | None = None,
    ) -> "Catalog":
        """Read and validate a catalog file; the format is chosen by extension.

        Args:
            path: ``.csv``/``.tsv``, ``.jsonl``/``.ndjson``/``.json`` (one object per line, or a
                JSON array of objects) or ``.parquet``; the text formats may end in ``.gz``,
                ``.bz2`` or ``.xz``.
            id_col, title_col, text_col, image_col, phash_col, label_col: column names; when
                ``None`` the first present name of :data:`DEFAULT_COLUMNS` is used (the label
                column is never guessed).
            images: ``"auto"`` (default): check the image files, and when none of them exists say
                so once in :attr:`warnings` instead of one failure per item; ``"on"``: also record
                one failure per missing file; ``"off"``: never look at image files or URLs (paths
                are kept as written, URLs dropped). ``None`` means ``"auto"``.
            check_images: ``False`` is the same as ``images="off"`` (kept for old callers).
            image_root: when given, relative image paths resolve under this directory (instead of
                the catalog's folder) and a path that resolves outside it (``../``, an absolute
                path, a symlink) is a per-item failure and is not read. Default: paths resolve
                against the catalog's folder and may point anywhere.
            sep: CSV delimiter (``"\\t"``/``"tab"`` accepted); default: sniffed from the header
                (``,`` ``;`` tab ``|``), tab for ``.tsv``.
            encoding: text encoding of CSV/JSONL files (default UTF-8, with or without BOM).
            missing_values: cell values read as missing (case-insensitive), as a list or a
                comma-separated string; ``None`` for :data:`DEFAULT_MISSING_VALUES`, ``""`` or
                ``[]`` for none.
            cache_dir: itemrep cache directory; image URLs are downloaded into
                ``cache_dir/url-images`` (default ``$ITEMREP_CACHE`` or ``~/.cache/itemrep``).
            url_concurrency, url_timeout_s, url_max_bytes: bounds of the URL downloads (defaults
                in :mod:`itemrep.fetch`: 8 at a time, 20 s per URL in total, 64 MiB).

        Returns:
            The validated :class:`Catalog`.

        Raises:
            CatalogError: the file is missing, has an unknown extension, cannot be decoded or
                parsed, has 0 rows, lacks a requested column, has empty, duplicate or non-scalar
                ids, or ``image_root`` is not a directory (the message names file, line or rows).
        """
        path = Path(path)
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except (OSError, ValueError) as e:
            raise CatalogError(f"{_short(str(path))}: cannot use this catalog file path ({_os_reason(e)})") from None
        if not exists:
            raise CatalogError(f"{path}: catalog file not found (check the path; formats: {', '.join(SUPPORTED_SUFFIXES)})")
        if is_dir:
            raise CatalogError(f"{path}: is a directory, expected a catalog file ({', '.join(SUPPORTED_SUFFIXES)})")
        df = read_table(path, sep=sep, encoding=encoding)
        if len(df) == 0:
            what = f"only a header with columns {', '.join(map(str, df.columns))}" if len(df.columns) else "the file is empty"
            raise CatalogError(f"{path}: 0 rows ({what}); nothing to do")
        return cls.from_frame(
            df,
            base_dir=path.parent,
            source=str(path),
            id_col=id_col,
            title_col=title_col,
            text_col=text_col,
            image_col=image_col,
            phash_col=phash_col,
            label_col=label_col,
            images=images,
            check_images=check_images,
            image_root=image_root,
            missing_values=missing_values,
            cache_dir=cache_dir,
            url_concurrency=url_concurrency,
            url_timeout_s=url_timeout_s,
            url_max_bytes=url_max_bytes,
            path=path,
        )

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        base_dir: str | Path = ".",
        source: str = "<table>",
        id_col: str | None = None,
        title_col: str | None = None,
        text_col: str | None = None,
        image_col: str | None = None,
        phash_col: str | None = None,
        label_col: str | None = None,
        images: str | None = "auto",
        check_images: bool = True,
        image_root: str | Path | None = None,
        missing_values: Iterable[str] | str | None = None,
        cache_dir: str | Path | None = None,
        url_concurrency: int | None = None,
        url_timeout_s: float | None = None,
        url_max_bytes: int | None = None,
        path: Path | None = None,
    ) -> "Catalog":
        """Validate an in-memory table (see :meth:`load` for the arguments and errors)."""
        mode = "auto" if images is None else str(images).lower()
        if mode not in IMAGE_MODES:
            raise CatalogError(f"--images must be one of {', '.join(IMAGE_MODES)}; got {images!r}")
        if not check_images:
            mode = "off"
        base_dir = Path(base_dir)
        missing = missing_set(missing_values)
        given = {"id": id_col, "title": title_col, "text": text_col, "image": image_col, "phash": phash_col, "label": label_col}
        cols: dict[str, str | None] = {}
        available = [str(c) for c in df.columns]
        for role, name in given.items():
            if name is not None:
                if name not in df.columns:
                    raise CatalogError(
                        f"{source}: column {name!r} (--{role}-col) not found; the file has columns: {', '.join(available)}"
                        + delimiter_hint(available)
                    )
                cols[role] = name
            else:
                cols[role] = next((c for c in DEFAULT_COLUMNS[role] if c in df.columns), None)
        if cols["id"] is None:
            raise CatalogError(
                f"{source}: no id column found (tried {', '.join(DEFAULT_COLUMNS['id'])}); "
                f"pass --id-col, the file has columns: {', '.join(available)}" + delimiter_hint(available)
            )
        if cols["title"] is None and cols["text"] is None and cols["image"] is None and cols["phash"] is None:
            raise CatalogError(
                f"{source}: no title, text, image or phash column found; pass --title-col/--text-col/--image-col/--phash-col "
                f"(the file has columns: {', '.join(available)})" + delimiter_hint(available)
            )

        def col(role: str) -> list:
            c = cols[role]
            return [None] * len(df) if c is None else df[c].tolist()

        raw_ids = col("id")
        _reject_nonscalar(raw_ids, cols["id"], "id", source)
        ids: list[str] = []
        empty_rows = []
        for i, v in enumerate(raw_ids):
            if isinstance(v, (bytes, bytearray)):
                v = bytes(v).decode("utf-8", "replace")
            s = "" if v is None or (isinstance(v, float) and v != v) else str(v).strip()
            if s.endswith(".0") and isinstance(v, (float, np.floating)):
                s = s[:-2]
            if not s:
                empty_rows.append(i + 1)
            ids.append(s)
        if empty_rows:
            shown = ", ".join(map(str, empty_rows[:10])) + (" ..." if len(empty_rows) > 10 else "")
            raise CatalogError(f"{source}: empty id in column {cols['id']!r} at data row(s) {shown} ({len(empty_rows)} in all)")
        seen: dict[str, int] = {}
        dups: list[str] = []
        for i, s in enumerate(ids):
            if s in seen:
                dups.append(f"{s!r} (rows {seen[s]} and {i + 1})")
            else:
                seen[s] = i + 1
        if dups:
            shown = "; ".join(dups[:5]) + (" ..." if len(dups) > 5 else "")
            raise CatalogError(f"{source}: duplicate ids in column {cols['id']!r}: {shown} ({len(dups)} in all); ids must be unique")

        titles, texts, imgs, phashes, labels = col("title"), col("text"), col("image"), col("phash"), col("label")
        _reject_nonscalar(labels, cols["label"], "label", source)
        failures: list[ItemFailure] = []
        warnings: list[str] = []
        image_paths, img_failures, img_warnings = _resolve_images(
            ids, imgs, col=cols["image"] or "image", base_dir=base_dir, image_root=image_root, mode=mode,
            missing=missing, source=source, cache_dir=cache_dir,
            url_opts={"concurrency": url_concurrency, "timeout_s": url_timeout_s, "max_bytes": url_max_bytes},
        )
        items: list[Item] = []
        for i, item_id in enumerate(ids):
            row = i + 1
            ph = cell_value(phashes[i], missing)
            if ph is not None:
                ph = ph.lower()
                if ph.startswith("0x"):
                    ph = ph[2:]
                if not _PHASH_RE.match(ph):
                    failures.append(
                        ItemFailure(item_id, "catalog", cols["phash"] or "phash",
                                    f"malformed phash {_short(str(phashes[i]), 60)!r} (expected 16 hex digits); phash ignored for this item", row)
                    )
                    ph = None
            lab = cell_value(labels[i], missing)
            if lab is not None and lab.endswith(".0") and isinstance(labels[i], (float, np.floating)):
                lab = lab[:-2]
            items.append(
                Item(
                    item_id=item_id,
                    title=_text(titles[i], missing),
                    text=_text(texts[i], missing),
                    image=image_paths[i],
                    phash=ph,
                    label=lab,
                    row=row,
                )
            )
        failures.extend(img_failures)
        failures.sort(key=lambda f: f.row or 0)  # file order; stable: phash before image per row
        warnings.extend(img_warnings)
        if cols["label"] is not None:
            missing_rows = [it.row for it in items if it.label is None]
            if missing_rows:
                failures.extend(
                    ItemFailure(items[r - 1].item_id, "catalog", cols["label"], "empty label", r) for r in missing_rows
                )
        return cls(items=items, failures=failures, path=path, columns=cols, warnings=warnings)


# ---------------------------------------------------------------------------- cell values
def missing_set(values: Iterable[str] | str | None) -> frozenset[str]:
    """Casefolded missing-value placeholders: ``values`` (an iterable or a comma-separated string)
    or, for None, :data:`DEFAULT_MISSING_VALUES`."""
    if values is None:
        values = DEFAULT_MISSING_VALUES
    elif isinstance(values, str):
        values = values.split(",")
    return frozenset(str(v).strip().casefold() for v in values if str(v).strip())


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and v != v)


def _is_nonscalar(v) -> bool:
    return isinstance(v, (list, tuple, dict, set, frozenset, np.ndarray, pd.Series))


def _reject_nonscalar(values: list, col: str | None, role: str, source: str) -> None:
    """Raise when a column meant to hold single values (ids, labels) holds lists, arrays or objects."""
    if col is None:
        return
    bad = [i for i, v in enumerate(values) if _is_nonscalar(v)]
    if bad:
        v = values[bad[0]]
        kind = "objects" if isinstance(v, dict) else "lists/arrays"
        shown = _short(repr(v.tolist() if isinstance(v, np.ndarray) else v), 80)
        raise CatalogError(
            f"{source}: column {col!r} (--{role}-col) holds {kind}, not single values "
            f"(row {bad[0] + 1}: {shown}; {len(bad)} row(s) in all); {role}s must be single strings or numbers: "
            f"pick another column with --{role}-col or flatten this one")


def _flatten(v) -> str | None:
    """A non-scalar cell as text: list elements joined by spaces, an object as JSON."""
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, default=str)
    if isinstance(v, (np.ndarray, pd.Series)):
        v = v.tolist()
    parts = [p for p in (_flatten(x) if _is_nonscalar(x) else (None if _is_nan(x) else str(x)) for x in v) if p]
    return " ".join(parts) or None


def cell_value(v, missing: frozenset[str]) -> str | None:
    """A cell as a trimmed string, or ``None`` when empty, NaN or a missing-value placeholder."""
    if _is_nan(v):
        return None
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("utf-8", "replace")
    s = _flatten(v) if _is_nonscalar(v) else str(v)
    s = (s or "").strip()
    if not s or s.casefold() in missing:
        return None
    return s


def _text(v, missing: frozenset[str]) -> str:
    s = cell_value(v, missing)
    if s is None:
        return ""
    s = clean_text(s)
    return "" if s.casefold() in missing else s



def _short(s: str, limit: int = 120) -> str:
    s = s.replace("\0", "\\0")
    return s if len(s) <= limit else s[: limit // 2 - 1] + "…" + s[-(limit // 2 - 1):] + f" ({len(s)} characters)"


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, ValueError) and "null" in str(e).lower():
        return "the path contains a NUL byte"
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------------- images
def default_cache_dir() -> Path:
    """``$ITEMREP_CACHE`` or ``~/.cache/itemrep`` (the default of ``cache_dir``)."""
    return Path(os.environ.get("ITEMREP_CACHE", Path.home() / ".cache" / "itemrep"))


def _stat(p: Path) -> os.stat_result:
    return os.stat(p)


def _inside(p: Path, root_real: str) -> bool | None:
    """True when ``p`` (symlinks resolved) lies under ``root_real``; ``None`` when it cannot be resolved."""
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError):
        return None
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _resolve_images(ids, raw, *, col, base_dir: Path, image_root, mode: str, missing, source: str,
                    cache_dir, url_opts: dict) -> tuple[list[Path | None], list[ItemFailure], list[str]]:
    """Turn the image column into local paths (``None`` where absent) plus failures and warnings."""
    n = len(ids)
    paths: list[Path | None] = [None] * n
    failures: list[ItemFailure] = []
    warnings: list[str] = []

    def fail(i: int, msg: str) -> None:
        failures.append(ItemFailure(ids[i], "catalog", col, msg, i + 1))

    root: Path | None = None
    root_real = ""
    if image_root is not None:
        root = Path(image_root).expanduser()
        try:
            ok = root.is_dir()
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise CatalogError(f"--image-root {_short(str(root))}: not a directory")
        root = root.absolute()
        root_real = os.path.realpath(root)
    base = root if root is not None else base_dir

    values: list[str | None] = []
    for v in raw:
        if _is_nonscalar(v) and not isinstance(v, dict):  # a list of images: the first one
            v = next((x for x in (v.tolist() if isinstance(v, (np.ndarray, pd.Series)) else list(v))
                      if cell_value(x, missing) is not None), None)
        values.append(cell_value(v, missing))

    from itemrep.fetch import display_url, is_url

    urls: dict[int, str] = {}
    checked: list[int] = []
    absent: list[tuple[int, Path]] = []
    for i, v in enumerate(values):
        if v is None:
            continue
        if is_url(v):
            scheme = v.split(":", 1)[0].lower()
            if mode == "off":
                continue
            if scheme in ("http", "https"):
                urls[i] = v
            else:
                fail(i, f"unsupported URL scheme {scheme!r} ({_short(display_url(v))}): only http:// and https:// "
                        "images are fetched; the item is kept without its image")
            continue
        p = Path(v)
        full = p if p.is_absolute() else base / p
        if mode == "off":  # never touch the file system: keep the path as written
            paths[i] = full
            continue
        if "\0" in v:
            fail(i, f"cannot use image path {_short(v)!r}: it contains a NUL byte; the item is kept without its image")
            continue
        if root is not None:
            inside = _inside(full, root_real)
            if inside is False:
                fail(i, f"image path {_short(v)!r} is outside --image-root {root}; not read, the item is kept without its image")
                continue
        try:
            st = _stat(full)
        except (FileNotFoundError, NotADirectoryError):
            checked.append(i)
            absent.append((i, full))
            continue
        except (OSError, ValueError) as e:
            fail(i, f"cannot use image path {_short(str(full))!r} ({_os_reason(e)}); the item is kept without its image")
            continue
        checked.append(i)
        if _statmod.S_ISDIR(st.st_mode):
            fail(i, f"image path {_short(str(full))} is a directory, not an image file; the item is kept without its image")
        else:
            paths[i] = full

    if absent:
        if len(checked) >= 2 and len(absent) == len(checked):
            rel = [f for i, f in absent if not Path(values[i]).is_absolute()]
            if root is not None or rel:
                where = str(base.absolute())
            else:
                try:
                    where = os.path.commonpath([str(f.parent) for _, f in absent])
                except ValueError:
                    where = str(absent[0][1].parent)
            warnings.append(
                f"none of the {len(absent):,} images exists under {where} (column {col!r} of {source}); "
                "going on without those images. If they live elsewhere, pass --image-root DIR"
                + ("" if mode == "on" else "; --images off skips this check"))
            if mode == "on":
                for i, f in absent:
                    fail(i, f"image file not found: {_short(str(f))}; the item is kept without its image")
        else:
            for i, f in absent:
                fail(i, f"image file not found: {_short(str(f))}; the item is kept without its image")

    if urls:
        _fetch_urls(urls, paths, failures, warnings, ids=ids, col=col, mode=mode, cache_dir=cache_dir, url_opts=url_opts)
    return paths, failures, warnings


def _fetch_urls(urls: dict[int, str], paths, failures, warnings, *, ids, col, mode, cache_dir, url_opts) -> None:
    from itemrep import fetch

    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / "url-images"
    try:
        target.mkdir(parents=True, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        tmp = Path(tempfile.mkdtemp(prefix="itemrep-url-images-"))
        warnings.append(f"cannot write the image download cache {target} ({_os_reason(e)}); "
                        f"downloading into {tmp} for this run (pass --cache-dir to choose another)")
        target = tmp
    kw = {k: v for k, v in url_opts.items() if v is not None}
    results = fetch.fetch_images(list(urls.values()), target, **kw)
    bad = [(i, results[u].error) for i, u in urls.items() if results[u].path is None]
    for i, u in urls.items():
        paths[i] = results[u].path
    if len(urls) >= 2 and len(bad) == len(urls):
        warnings.append(f"none of the {len(urls):,} image URLs could be fetched (first: {bad[0][1]}); going on without those images")
        if mode != "on":
            return
    for i, err in bad:
        failures.append(ItemFailure(ids[i], "catalog", col, f"image URL not fetched: {err}; the item is kept without its image", i + 1))


# ---------------------------------------------------------------------------- CSV outputs
def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` safe to write as CSV for spreadsheets (no formula injection).

    A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return (after leading
    spaces) is prefixed with ``'`` so that Excel, LibreOffice and Google Sheets show it as text
    instead of running it (``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``). Plain numbers such as
    ``-5`` or ``+1.5e3`` are left as they are; numeric columns are untouched.

    Args:
        df: the table about to be written with ``to_csv``.

    Returns:
        A new DataFrame; ``df`` is not modified.
    """
    out = df.copy()

    def esc(v):
        if not isinstance(v, str):
            return v
        s = v.lstrip(" ")
        if s[:1] in _FORMULA_START and not _NUMBER.match(s.strip()):
            return "'" + v
        return v

    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c].dtype):
            out[c] = out[c].map(esc)
    if any(isinstance(c, str) and c != esc(c) for c in out.columns):
        out.columns = [esc(c) for c in out.columns]
    return out


# ---------------------------------------------------------------------------- reading files
def _format_of(path: Path) -> tuple[str, str | None]:
    """``(format suffix, compression)`` of a file name: ``c.csv.gz`` -> ``(".csv", "gzip")``."""
    name = path.name.lower()
    comp = None
    for ext, c in _COMPRESSIONS.items():
        if name.endswith(ext):
            comp, name = c, name[: -len(ext)]
            break
    return os.path.splitext(name)[1], comp


def _open_binary(path: Path, comp: str | None):
    if comp == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if comp == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if comp == "xz":
        import lzma

        return lzma.open(path, "rb")
    return open(path, "rb")


def _sep_arg(sep: str | None) -> str | None:
    if sep is None or sep == "":
        return None
    return _SEP_NAMES.get(sep, sep)


def _sniff_sep(path: Path, comp: str | None, encoding: str) -> str:
    """The delimiter of a CSV header line: ``,`` when present, else the most frequent of ``; tab |``."""
    with _open_binary(path, comp) as fh:
        head = fh.readline(65536)
    line = re.sub(r'"[^"]*"', "", head.decode(encoding, "replace"))
    if "," in line:
        return ","
    counts = {d: line.count(d) for d in _SEP_CANDIDATES[1:]}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def delimiter_hint(columns: list[str]) -> str:
    """A hint to append to a missing-column error when the header was read as one column that
    contains another delimiter (``" — ... pass --sep ';'"``), else ``""``."""
    if len(columns) == 1:
        name = columns[0]
        found = [d for d in _SEP_CANDIDATES if d in name]
        if found:
            shown = "\\t" if found[0] == "\t" else found[0]
            return (f" — the header was read as one column {_short(name, 80)!r}: the file seems to use {shown!r} "
                    f"as delimiter, pass --sep {shown!r}")
    return ""


def _encoding_error(path: Path, comp: str | None, encoding: str, err: UnicodeDecodeError) -> CatalogError:
    """A :class:`CatalogError` naming the first line that does not decode, offering ``--encoding``."""
    name = "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding
    hint = ("; if the file is Latin-1 or Windows-1252 (Excel on Windows), pass --encoding cp1252, "
            "else --encoding with the file's encoding")
    try:
        with _open_binary(path, comp) as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as e:
                    bad = raw[e.start:e.end]
                    snippet = _short(raw.decode(encoding, "backslashreplace").strip(), 80)
                    return CatalogError(
                        f"{path}: line {lineno} is not valid {name} (byte 0x{bad[:1].hex()} at column {e.start + 1}: "
                        f"{snippet}){hint}")
    except (OSError, EOFError):
        pass
    return CatalogError(f"{path}: not valid {name} ({err.reason} at byte {err.start}){hint}")


def read_table(path: Path, *, sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read a table file into a DataFrame (CSV: all strings, no type guessing, so ids stay ``"0012"``).

    Args:
        path: the file; ``.gz``/``.bz2``/``.xz`` compressed text formats are read transparently.
        sep: CSV delimiter (default: sniffed from the header line; tab for ``.tsv``).
        encoding: text encoding (default UTF-8, BOM allowed).

    Raises:
        CatalogError: unknown extension, unknown encoding, an undecodable line (named, with an
            ``--encoding`` hint), a parse error (with the line when the parser gives one and a
            ``--sep`` hint), or a damaged compressed file.
    """
    import zlib

    path = Path(path)
    fmt, comp = _format_of(path)
    enc = encoding or "utf-8"
    try:
        if codecs.lookup(enc).name == "utf-8":
            enc = "utf-8-sig"  # same as utf-8, and a leading BOM is dropped
    except LookupError:
        raise CatalogError(f"{path}: unknown encoding {encoding!r} (--encoding); try utf-8, cp1252 or latin-1") from None
    if fmt not in _TEXT_FORMATS + (".parquet", ".pq") or (comp and fmt in (".parquet", ".pq")):
        raise CatalogError(f"{path}: unknown catalog extension {''.join(path.suffixes[-2:]) or path.suffix!r}; "
                           f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
    delim = None
    try:
        if fmt in (".csv", ".tsv"):
            delim = _sep_arg(sep) or ("\t" if fmt == ".tsv" else _sniff_sep(path, comp, enc))
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=delim, encoding=enc, compression=comp)
        if fmt in (".jsonl", ".ndjson", ".json"):
            return _read_jsonl(path, comp, enc)
        return pd.read_parquet(path)
    except CatalogError:
        raise
    except UnicodeDecodeError as e:
        raise _encoding_error(path, comp, enc, e) from None
    except pd.errors.EmptyDataError:
        raise CatalogError(f"{path}: 0 rows (the file is empty); nothing to do") from None
    except pd.errors.ParserError as e:
        shown = "\\t" if delim == "\t" else delim
        raise CatalogError(
            f"{path}: cannot parse as {fmt[1:]}: {str(e).strip()} — with delimiter {shown!r}; a field that contains the "
            "delimiter must be in double quotes, or pass --sep with the file's delimiter") from None
    except (EOFError, zlib.error) as e:
        raise CatalogError(f"{path}: cannot read as {comp or fmt[1:]}: damaged or truncated file ({e})") from None
    except OSError as e:
        if comp and ("gzip" in str(e).lower() or "compressed" in str(e).lower() or "magic" in str(e).lower()):
            raise CatalogError(f"{path}: cannot read as {comp}: {e} (is it really {comp}-compressed?)") from None
        raise CatalogError(f"{path}: cannot read the file ({_os_reason(e)})") from None
    except (ValueError, TypeError) as e:
        raise CatalogError(f"{path}: cannot parse as {fmt[1:]}: {e}") from None


def _read_jsonl(path: Path, comp: str | None = None, encoding: str = "utf-8-sig") -> pd.DataFrame:
    """One JSON object per line (blank lines skipped), or a single JSON array of objects.

    Strings stay strings, numbers and booleans become strings, ``null`` stays missing; lists and
    objects are kept as they are (an id or label made of them is refused by :meth:`Catalog.from_frame`).
    """
    import io

    def conv(v):
        if v is None or isinstance(v, (str, list, dict)):
            return v
        return str(v)

    rows = []
    with _open_binary(path, comp) as bfh, io.TextIOWrapper(bfh, encoding=encoding) as fh:
        first = ""
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if not rows and not first and line.startswith("["):  # a JSON array of objects
                first = line + fh.read()
                break
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CatalogError(f"{path}:{lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise CatalogError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            rows.append({k: conv(v) for k, v in obj.items()})
    if first:
        try:
            arr = json.loads(first)
        except json.JSONDecodeError as e:
            raise CatalogError(f"{path}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
        if not isinstance(arr, list) or not all(isinstance(o, dict) for o in arr):
            raise CatalogError(f"{path}: expected a JSON array of objects (or one object per line)")
        rows = [{k: conv(v) for k, v in o.items()} for o in arr]
    return pd.DataFrame(rows)
