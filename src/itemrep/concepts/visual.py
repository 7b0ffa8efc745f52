"""Visual concepts for the CHIE hierarchy: what the photo shows, where, and what text it carries.

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1) splits every item into primary elements
(the product) and auxiliary ones (decoration). For a photo that becomes:

* ``visual_object`` (primary, content): top-k ImageNet labels of the main-object region, salience =
  class probability;
* ``visual_context`` (auxiliary, form): top-k labels of the whole frame (background, template);
* ``visual_region`` (auxiliary, form): which region was taken as the main object, as a readable
  box ``"x 0.14-0.86, y 0.00-1.00 of frame (cam)"``;
* ``ocr_primary`` (primary, content): text read off the product (brand, product name, spec);
* ``ocr_auxiliary`` (auxiliary, form): price stickers, promo banners, watermarks, shop handles.

OCR lines are split by the same rules as titles: :class:`itemrep.concepts.rules.RuleBasedExtractor`
when it is importable (``concepts_from_text(text, source="ocr")``); otherwise a small built-in
fallback (:func:`fallback_split_ocr`) using price / percent / promo / URL patterns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from itemrep.concepts.schema import Concept, ConceptHierarchy

#: Extractor identity recorded in the hierarchies built here.
VISUAL_EXTRACTOR = "image/1"

# Fallback patterns (used only when itemrep.concepts.rules is not importable).
_PRICE = re.compile(
    r"(?:rp\.?|idr|usd|us\$|\$|¥|￥|€|£|rm|sgd|kr|sek|元)\s*\d|\d[\d.,]*\s*(?:rb|ribu|k|元|kr|:-|,-)\b|\b\d+[.,]\d{2}\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"\d+\s*%|%\s*\d+")
_PROMO = re.compile(
    r"\b(?:sale|promo|diskon|disc|discount|off|free|gratis|ongkir|cod|bonus|hemat|murah|termurah|best\s*seller|"
    r"limited|new|baru|hot|deal|buy\s*\d|get\s*\d|only|now|today|flash|cashback|voucher|ready|stock|stok|"
    r"original|ori|official|store|shop|garansi|warranty|price|harga|kampanj|extrapris|rea|spara)\b|"
    r"特价|包邮|限时|促销|折|优惠|秒杀|热卖|新品|正品|现货|免运",
    re.IGNORECASE,
)
_URL = re.compile(r"www\.|https?://|\.com\b|\.co\.id\b|\.id\b|@\w{3,}|©|\bshopee\b|\btokopedia\b|\blazada\b", re.IGNORECASE)


def _rule_extractor():
    try:
        from itemrep.concepts.rules import RuleBasedExtractor  # written by another engineer
    except Exception:  # noqa: BLE001 - not there yet or half-written: use the fallback
        return None
    try:
        ext = RuleBasedExtractor()
        if not hasattr(ext, "concepts_from_text"):
            return None
        return ext
    except Exception:  # noqa: BLE001
        return None


_RULES = None
_RULES_CHECKED = False


def rules_available() -> bool:
    """True when :class:`itemrep.concepts.rules.RuleBasedExtractor` is importable and usable."""
    global _RULES, _RULES_CHECKED
    if not _RULES_CHECKED:
        _RULES = _rule_extractor()
        _RULES_CHECKED = True
    return _RULES is not None


def fallback_split_ocr(lines: Sequence[str]) -> list[Concept]:
    """Split OCR lines into ``ocr_primary`` / ``ocr_auxiliary`` concepts with built-in patterns.

    A line is auxiliary (facet ``form``; kind ``subjective`` for promo words, else ``objective``)
    when it contains a price, a percentage, a promo/stock/shipping word, a URL or a shop handle;
    otherwise it is primary content (brand, product name, spec). Values are lower-cased lines.
    """
    out: list[Concept] = []
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        value = re.sub(r"\s+", " ", raw.lower())[:512]
        promo = bool(_PROMO.search(raw))
        if promo or _PRICE.search(raw) or _PERCENT.search(raw) or _URL.search(raw):
            out.append(Concept(slot="ocr_auxiliary", value=value, raw=raw, level="auxiliary", facet="form",
                               kind="subjective" if promo else "objective", source="ocr"))
        else:
            out.append(Concept(slot="ocr_primary", value=value, raw=raw, level="primary", facet="content",
                               kind="objective", source="ocr"))
    return out


def split_ocr_text(lines: Sequence[str]) -> list[Concept]:
    """OCR lines -> ``ocr_primary`` / ``ocr_auxiliary`` concepts, by the title rules when available.

    With :class:`~itemrep.concepts.rules.RuleBasedExtractor`, each line goes through
    ``concepts_from_text(line, source="ocr")``; every primary concept becomes an ``ocr_primary``
    concept and every auxiliary one an ``ocr_auxiliary`` concept (the rule's own slot name is kept
    in ``raw`` as ``"<slot>: <span>"``). Otherwise :func:`fallback_split_ocr` is used.
    """
    if not rules_available():
        return fallback_split_ocr(lines)
    out: list[Concept] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            cs = _RULES.concepts_from_text(line, source="ocr")
        except Exception:  # noqa: BLE001 - a rules bug must not lose the OCR text
            out.extend(fallback_split_ocr([line]))
            continue
        for c in cs:
            aux = c.level == "auxiliary"
            out.append(Concept(
                slot="ocr_auxiliary" if aux else "ocr_primary", value=c.value, raw=f"{c.slot}: {c.raw or c.value}"[:512],
                level=c.level, facet="form" if aux else "content", kind=c.kind, source="ocr", salience=c.salience,
            ))
    return out


def region_text(box: Sequence[float], method: str) -> str:
    """Readable main-object region, e.g. ``"x 0.14-0.86, y 0.00-1.00 of frame (cam)"``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return f"x {x0:.2f}-{x1:.2f}, y {y0:.2f}-{y1:.2f} of frame ({method})"


def visual_hierarchy(
    item_id: str,
    *,
    object_labels: Sequence[tuple[str, float]] = (),
    context_labels: Sequence[tuple[str, float]] = (),
    region: str | None = None,
    ocr_lines: Sequence[str] = (),
    error: str | None = None,
) -> ConceptHierarchy:
    """Build one item's visual concept hierarchy.

    Args:
        item_id: catalog id.
        object_labels: (label, probability) of the main-object region -> ``visual_object``.
        context_labels: (label, probability) of the whole frame -> ``visual_context``.
        region: readable main-object region (:func:`region_text`) -> ``visual_region``.
        ocr_lines: recognised text lines -> ``ocr_primary`` / ``ocr_auxiliary`` (:func:`split_ocr_text`).
        error: reason the image could not be used, if any.

    Returns:
        A :class:`ConceptHierarchy` with extractor :data:`VISUAL_EXTRACTOR`.
    """
    cs: list[Concept] = []
    for lab, p in object_labels:
        cs.append(Concept(slot="visual_object", value=lab.lower(), raw=lab, level="primary", facet="content",
                          kind="objective", source="image", salience=min(1.0, max(0.0, float(p)))))
    for lab, p in context_labels:
        cs.append(Concept(slot="visual_context", value=lab.lower(), raw=lab, level="auxiliary", facet="form",
                          kind="objective", source="image", salience=min(1.0, max(0.0, float(p)))))
    if region:
        cs.append(Concept(slot="visual_region", value=region, level="auxiliary", facet="form", kind="objective", source="image"))
    if ocr_lines:
        cs.extend(split_ocr_text(ocr_lines))
    return ConceptHierarchy(item_id=item_id, concepts=cs, extractor=VISUAL_EXTRACTOR, error=error)
