"""Catalog loading and validation: CSV, JSONL and Parquet tables of items.

A catalog is a table with one row per item: an id, a title, optional free text, an optional image
path (relative to the catalog file), an optional 64-bit perceptual hash (16 hex digits) and an
optional ground-truth group label (used by ``itemrep fit`` and for metrics).

Whole-file problems raise :class:`~itemrep.errors.CatalogError` with the file, row and column named.
Per-item problems (a malformed phash, a missing image file) are recorded as
:class:`~itemrep.errors.ItemFailure` and the item is kept with the remaining fields.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

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

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")

_BYTE_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_PHASH_RE = re.compile(r"^[0-9a-fA-F]{16}$")
_WS = re.compile(r"\s+")


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
        image: absolute path of the image file, or ``None`` when absent/missing.
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
    """

    items: list[Item]
    failures: list[ItemFailure] = field(default_factory=list)
    path: Path | None = None
    columns: dict[str, str | None] = field(default_factory=dict)

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

    def subset(self, idx) -> "Catalog":
        """A new catalog with the items at positions ``idx`` (failures of those items kept)."""
        items = [self.items[i] for i in idx]
        keep = {it.item_id for it in items}
        return Catalog(
            items=items,
            failures=[f for f in self.failures if f.item_id in keep],
            path=self.path,
            columns=dict(self.columns),
        )

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
        check_images: bool = True,
    ) -> "Catalog":
        """Read and validate a catalog file; the format is chosen by extension.

        Args:
            path: ``.csv``/``.tsv``, ``.jsonl``/``.ndjson``/``.json`` (one object per line) or
                ``.parquet``.
            id_col, title_col, text_col, image_col, phash_col, label_col: column names; when
                ``None`` the first present name of :data:`DEFAULT_COLUMNS` is used (the label
                column is never guessed).
            check_images: record a failure for image paths that do not exist.

        Returns:
            The validated :class:`Catalog`.

        Raises:
            CatalogError: the file is missing, has an unknown extension, cannot be parsed, lacks a
                requested column, or has empty or duplicate ids (the message names file and rows).
        """
        path = Path(path)
        if not path.exists():
            raise CatalogError(f"{path}: catalog file not found (check the path; formats: {', '.join(SUPPORTED_SUFFIXES)})")
        if path.is_dir():
            raise CatalogError(f"{path}: is a directory, expected a catalog file ({', '.join(SUPPORTED_SUFFIXES)})")
        df = read_table(path)
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
            check_images=check_images,
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
        check_images: bool = True,
        path: Path | None = None,
    ) -> "Catalog":
        """Validate an in-memory table (see :meth:`load` for the arguments and errors)."""
        base_dir = Path(base_dir)
        given = {"id": id_col, "title": title_col, "text": text_col, "image": image_col, "phash": phash_col, "label": label_col}
        cols: dict[str, str | None] = {}
        available = [str(c) for c in df.columns]
        for role, name in given.items():
            if name is not None:
                if name not in df.columns:
                    raise CatalogError(
                        f"{source}: column {name!r} (--{role}-col) not found; the file has columns: {', '.join(available)}"
                    )
                cols[role] = name
            else:
                cols[role] = next((c for c in DEFAULT_COLUMNS[role] if c in df.columns), None)
        if cols["id"] is None:
            raise CatalogError(
                f"{source}: no id column found (tried {', '.join(DEFAULT_COLUMNS['id'])}); "
                f"pass --id-col, the file has columns: {', '.join(available)}"
            )
        if cols["title"] is None and cols["text"] is None and cols["image"] is None and cols["phash"] is None:
            raise CatalogError(
                f"{source}: no title, text, image or phash column found; pass --title-col/--text-col/--image-col/--phash-col "
                f"(the file has columns: {', '.join(available)})"
            )

        def col(role: str) -> list:
            c = cols[role]
            return [None] * len(df) if c is None else df[c].tolist()

        raw_ids = col("id")
        ids: list[str] = []
        empty_rows = []
        for i, v in enumerate(raw_ids):
            s = "" if v is None or (isinstance(v, float) and v != v) else str(v).strip()
            if s.endswith(".0") and isinstance(v, float):
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

        titles, texts, images, phashes, labels = col("title"), col("text"), col("image"), col("phash"), col("label")
        items: list[Item] = []
        failures: list[ItemFailure] = []
        for i, item_id in enumerate(ids):
            row = i + 1
            ph = _nonempty(phashes[i])
            if ph is not None:
                ph = ph.lower()
                if ph.startswith("0x"):
                    ph = ph[2:]
                if not _PHASH_RE.match(ph):
                    failures.append(
                        ItemFailure(item_id, "catalog", cols["phash"] or "phash",
                                    f"malformed phash {phashes[i]!r} (expected 16 hex digits); phash ignored for this item", row)
                    )
                    ph = None
            img = _nonempty(images[i])
            img_path: Path | None = None
            if img is not None:
                p = Path(img)
                img_path = p if p.is_absolute() else (base_dir / p)
                if check_images and not img_path.is_file():
                    failures.append(
                        ItemFailure(item_id, "catalog", cols["image"] or "image",
                                    f"image file not found: {img_path}; the item is kept without its image", row)
                    )
                    img_path = None
            lab = _nonempty(labels[i])
            if lab is not None and lab.endswith(".0") and isinstance(labels[i], float):
                lab = lab[:-2]
            items.append(
                Item(
                    item_id=item_id,
                    title=clean_text(titles[i]),
                    text=clean_text(texts[i]),
                    image=img_path,
                    phash=ph,
                    label=lab,
                    row=row,
                )
            )
        if cols["label"] is not None:
            missing = [it.row for it in items if it.label is None]
            if missing:
                failures.extend(
                    ItemFailure(items[r - 1].item_id, "catalog", cols["label"], "empty label", r) for r in missing
                )
        return cls(items=items, failures=failures, path=path, columns=cols)


def _nonempty(v) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = str(v).strip()
    return s or None


def read_table(path: Path) -> pd.DataFrame:
    """Read a table file into a DataFrame of strings (no type guessing: ids stay ``"0012"``).

    Raises:
        CatalogError: unknown extension or a parse error (with the line when the parser gives one).
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_jsonl(path)
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            return df
    except CatalogError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        raise CatalogError(f"{path}: cannot parse as {suffix[1:]}: {e}") from None
    raise CatalogError(f"{path}: unknown catalog extension {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def _read_jsonl(path: Path) -> pd.DataFrame:
    import json

    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CatalogError(f"{path}:{lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise CatalogError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            rows.append({k: (None if v is None else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v))) for k, v in obj.items()})
    return pd.DataFrame(rows)
