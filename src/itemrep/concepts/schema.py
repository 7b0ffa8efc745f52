"""Typed concept hierarchy produced by CHIE (FITRep, Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1).

FITRep's Concept-Hierarchical Information Extraction describes every item as a set of *concepts*
organised along three axes:

* ``level``: **primary** elements (what the item *is*: the product head phrase, brand, model code,
  specification, colour, variant, pack size, the main object in the photo) versus **auxiliary**
  elements (decoration around it: promotional and shipping phrases, seller tags, emoji, stock words,
  background, template, price stickers, watermarks);
* ``facet``: **content** (what is shown or said) versus **form** (how it is presented: layout,
  template, background, typography);
* ``kind``: **objective** attributes (verifiable: ``500 ml``, ``red``, ``Samsung``) versus
  **subjective** ones (``best``, ``cheapest``, ``premium quality``).

Each concept belongs to a named *slot* (``category``, ``brand``, ``spec`` ...). Slots are what the
slot encoder embeds and what the attention-guided fusion weights (``α_k``); see
:mod:`itemrep.dedup.fusion`. Every extractor (rule-based, OpenAI-compatible LLM, local transformers VLM,
image features) returns this one schema, so the hierarchy written to ``concepts.parquet`` is the same
whichever back-end produced it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = "1"

Level = Literal["primary", "auxiliary"]
Facet = Literal["content", "form"]
Kind = Literal["objective", "subjective"]
Source = Literal["title", "text", "image", "ocr", "llm", "phash"]

#: Slots every extractor may fill, with their default level. Extractors may add other slot names;
#: the slot encoder treats unknown primary slots as extra primary text.
PRIMARY_SLOTS: tuple[str, ...] = (
    "category",  # product head / category phrase ("tas selempang", "保温杯", "t-shirt")
    "brand",
    "model",  # model or product code ("A52", "SM-G998", "XL-200")
    "spec",  # normalised quantities with units ("0.5 L", "64 GB", "2 kg")
    "color",
    "variant",  # flavour, size label, scent, material ...
    "pack",  # pack size / count ("x12", "isi 3", "3 pcs")
    "name",  # remaining primary words of the title that are not one of the above
    "visual_object",  # image: the main object (labels of the primary region)
    "ocr_primary",  # text read off the product itself (brand, product name, spec)
)
AUXILIARY_SLOTS: tuple[str, ...] = (
    "promo",  # "diskon", "promo", "sale", "特价", "free gift"
    "shipping",  # "free ongkir", "COD", "包邮"
    "seller",  # shop tags, "official store", "[READY]"
    "stock",  # "ready stock", "original", "termurah", "import"
    "emoji",
    "visual_context",  # image: background / whole-frame labels, template
    "ocr_auxiliary",  # price stickers, promo banners, watermarks
)


class Concept(BaseModel):
    """One element of an item's concept hierarchy.

    Attributes:
        slot: slot name, e.g. ``"brand"`` (see :data:`PRIMARY_SLOTS`, :data:`AUXILIARY_SLOTS`).
        value: the normalised value (lower-cased, units canonicalised: ``"500ml"`` -> ``"0.5 l"``).
        raw: the span as found in the source, when there is one.
        level: ``"primary"`` or ``"auxiliary"``.
        facet: ``"content"`` or ``"form"``.
        kind: ``"objective"`` or ``"subjective"``.
        source: where it was read: ``title``, ``text``, ``image``, ``ocr``, ``llm`` or ``phash``.
        salience: importance in [0, 1] for this item (an LLM's per-element attention score; rules
            give 1.0). Used as a per-item weight next to the fitted global slot weights α.
    """

    model_config = ConfigDict(extra="forbid")

    slot: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=512)
    raw: str | None = None
    level: Level = "primary"
    facet: Facet = "content"
    kind: Kind = "objective"
    source: Source = "title"
    salience: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("slot")
    @classmethod
    def _slot_is_identifier(cls, v: str) -> str:
        v = v.strip().lower()
        if not v.replace("_", "").isalnum():
            raise ValueError(f"slot name must be alphanumeric/underscore, got {v!r}")
        return v


class ConceptHierarchy(BaseModel):
    """The concept hierarchy of one item (FITRep CHIE output).

    Attributes:
        item_id: the catalog id of the item (string).
        concepts: all concepts, primary and auxiliary, in extraction order.
        extractor: name and version of the extractor that produced it, e.g. ``"rules/1"``.
        schema_version: :data:`SCHEMA_VERSION` at the time of extraction.
        error: when extraction for this item failed (or fell back), the reason; ``None`` otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    item_id: str
    concepts: list[Concept] = Field(default_factory=list)
    extractor: str = "unknown"
    schema_version: str = SCHEMA_VERSION
    error: str | None = None

    @property
    def primary(self) -> list[Concept]:
        """Concepts with ``level == "primary"``."""
        return [c for c in self.concepts if c.level == "primary"]

    @property
    def auxiliary(self) -> list[Concept]:
        """Concepts with ``level == "auxiliary"``."""
        return [c for c in self.concepts if c.level == "auxiliary"]

    def slot_values(self, slot: str) -> list[str]:
        """Values of all concepts in ``slot``, in order (may be empty)."""
        return [c.value for c in self.concepts if c.slot == slot]

    def slot_text(self, slot: str, sep: str = " ") -> str:
        """Values of ``slot`` joined by ``sep``; ``""`` when the slot is empty."""
        return sep.join(self.slot_values(slot))

    def slots(self) -> dict[str, list[str]]:
        """Mapping slot name -> list of values, in first-seen order."""
        out: dict[str, list[str]] = {}
        for c in self.concepts:
            out.setdefault(c.slot, []).append(c.value)
        return out

    def merged(self, other: "ConceptHierarchy") -> "ConceptHierarchy":
        """A new hierarchy with ``other``'s concepts appended (e.g. visual concepts after textual).

        Raises:
            ValueError: when the item ids differ.
        """
        if other.item_id != self.item_id:
            raise ValueError(f"cannot merge hierarchies of items {self.item_id!r} and {other.item_id!r}")
        extractor = self.extractor if other.extractor == self.extractor else f"{self.extractor}+{other.extractor}"
        errors = [e for e in (self.error, other.error) if e]
        return ConceptHierarchy(
            item_id=self.item_id,
            concepts=[*self.concepts, *other.concepts],
            extractor=extractor,
            schema_version=self.schema_version,
            error="; ".join(errors) or None,
        )
