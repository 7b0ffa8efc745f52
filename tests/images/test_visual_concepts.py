"""Visual concept hierarchy and OCR text splitting."""

from __future__ import annotations

import pytest

from itemrep.concepts.visual import fallback_split_ocr, region_text, split_ocr_text, visual_hierarchy


def test_fallback_split_promo_vs_product():
    cs = fallback_split_ocr(["Nescafe Gold 200g", "SALE -50%", "Rp 29.900", "www.tokobagus.com", "特价 包邮", "Oatly Havregurt"])
    by = {c.raw: c for c in cs}
    assert by["Nescafe Gold 200g"].slot == "ocr_primary" and by["Nescafe Gold 200g"].level == "primary"
    for aux in ("SALE -50%", "Rp 29.900", "www.tokobagus.com", "特价 包邮"):
        assert by[aux].slot == "ocr_auxiliary" and by[aux].level == "auxiliary" and by[aux].facet == "form"
    assert by["Oatly Havregurt"].slot == "ocr_primary"
    assert all(c.source == "ocr" for c in cs)


def test_split_uses_rules_or_fallback_consistently():
    cs = split_ocr_text(["FLASH SALE 70%", "Tropicana Orange Juice 1 L"])
    assert any(c.slot == "ocr_auxiliary" for c in cs)
    assert any(c.slot == "ocr_primary" for c in cs)


def test_visual_hierarchy_fields():
    h = visual_hierarchy("42", object_labels=[("Granny Smith", 0.8)], context_labels=[("grocery store", 0.6)],
                         region=region_text((0.1, 0.2, 0.9, 1.0), "saliency_crop"), ocr_lines=["SALE 20%"])
    assert h.item_id == "42" and h.extractor == "image/1"
    assert h.slot_values("visual_object") == ["granny smith"]
    assert h.slot_values("visual_context") == ["grocery store"]
    assert h.slot_text("visual_region") == "x 0.10-0.90, y 0.20-1.00 of frame (saliency_crop)"
    assert h.primary[0].salience == pytest.approx(0.8)
    assert [c.slot for c in h.auxiliary][-1] == "ocr_auxiliary"


@pytest.mark.slow
def test_ocr_reads_rendered_text(tmp_path, image_cache):
    pytest.importorskip("rapidocr")
    from pathlib import Path

    from PIL import Image, ImageDraw, ImageFont

    from itemrep.catalog import Item
    from itemrep.dedup.images import encode_catalog_images

    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(str(font_path), 30) if font_path.exists() else ImageFont.load_default(size=30)
    im = Image.new("RGB", (480, 240), "white")
    d = ImageDraw.Draw(im)
    d.text((20, 30), "Nescafe Gold 200g", fill="black", font=font)
    d.text((20, 140), "SALE -50% Rp 29.900", fill=(200, 0, 0), font=font)
    p = tmp_path / "ad.png"
    im.save(p)
    r = encode_catalog_images([Item(item_id="a", image=p)], ocr=True, cache_dir=image_cache)
    h = r.hierarchies[0]
    prim = " ".join(h.slot_values("ocr_primary")).lower()
    aux = " ".join(h.slot_values("ocr_auxiliary")).lower()
    assert "nescafe" in prim
    assert "50%" in aux.replace(" ", "") or "sale" in aux
    assert r.stats["ocr"] is True and "ocr_images_per_s" in r.stats
