"""itemrep.dedup.images: the image stage object, ImageConcepts, the image-aware extractor builder,
and the import isolation of the encoder and the registry it replaced."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from itemrep.catalog import Item
from itemrep.concepts.registry import ExtractorConfigError
from itemrep.concepts.registry import build_extractor as build_text_extractor
from itemrep.dedup.images import ImageConcepts, ImageFeatures, ImageResult, build_extractor, encode_catalog_images


def _items(fixtures_dir):
    return [
        Item(item_id="a", image=fixtures_dir / "ok.jpg", row=1),
        Item(item_id="b", image=None, phash="00000000000000ff", row=2),
        Item(item_id="c", image=fixtures_dir / "truncated.jpg", row=3),
    ]


def test_stage_object_is_the_function(fixtures_dir, image_cache):
    st = ImageFeatures(cache_dir=image_cache, batch_size=2)
    assert st.fit(_items(fixtures_dir)) is st and st.ocr is False and st.primary_method is None  # params kept as given
    seen = []
    r = st.transform(_items(fixtures_dir), progress=seen.append)
    assert isinstance(r, ImageResult) and sum(seen) == 3 and st.stats_ is r.stats
    f = encode_catalog_images(_items(fixtures_dir), cache_dir=image_cache)
    np.testing.assert_array_equal(r.slots["image_primary"], f.slots["image_primary"])
    assert r.phash == f.phash and r.phash[1] == "00000000000000ff"
    assert [h.model_dump() for h in r.hierarchies] == [h.model_dump() for h in f.hierarchies]
    assert [(x.item_id, x.stage) for x in r.failures] == [("c", "image")]
    assert r.hierarchies[1].concepts == [] and r.hierarchies[1].error is None  # no photo: empty, not failed
    assert list(r.stats) == list(f.stats) and r.stats["items"] == 3 and r.stats["with_image"] == 2
    g = ImageFeatures(cache_dir=image_cache).fit_transform(_items(fixtures_dir)[:1])
    np.testing.assert_array_equal(g.slots["image_context"][0], f.slots["image_context"][0])


def test_stage_checks_its_method_when_used(fixtures_dir, image_cache):
    st = ImageFeatures(primary_method="bogus", cache_dir=image_cache)  # sklearn: no check in __init__
    with pytest.raises(ValueError, match="primary_method"):
        st.transform(_items(fixtures_dir))


def test_image_concepts_extractor(fixtures_dir, image_cache):
    ex = ImageConcepts(ocr=False, cache_dir=image_cache)
    assert ex.identifier == "image/1"
    hs = ex.extract(_items(fixtures_dir))
    assert [h.item_id for h in hs] == ["a", "b", "c"] and hs[0].slot_values("visual_object") and hs[2].error
    assert ex.stats_["items"] == 3 and ex.stats_["ocr"] is False
    assert ex.extract_one(_items(fixtures_dir)[0]).model_dump() == hs[0].model_dump()


def test_build_extractor_resolves_auto_visual(tmp_path):
    kw = dict(base_url="http://127.0.0.1:1/v1", model="m", cache_path=tmp_path / "c.sqlite")
    ex = build_extractor("openai", text_only=True, **kw)
    assert isinstance(ex.visual, ImageConcepts) and ex.text_only  # text-only LLM: labels/OCR in the prompt
    assert build_extractor("openai", **kw).visual is None  # the model sees the photo itself
    assert build_extractor("openai", text_only=True, visual=None, **kw).visual is None
    mine = ImageConcepts(ocr=False)
    assert build_extractor("openai", text_only=True, visual=mine, **kw).visual is mine
    assert build_extractor("rules", visual="bogus").name == "rules"  # as before: rules ignores visual
    with pytest.raises(ExtractorConfigError, match="visual"):
        build_extractor("openai", visual="bogus", **kw)
    with pytest.raises(ExtractorConfigError, match="unknown extractor"):
        build_extractor("gpt", text_only=True)


def test_registry_alone_knows_no_image_backend(tmp_path):
    kw = dict(base_url="http://127.0.0.1:1/v1", model="m")
    assert build_text_extractor("openai", text_only=True, **kw).visual is None
    with pytest.raises(ExtractorConfigError, match="itemrep.dedup.images.build_extractor"):
        build_text_extractor("openai", text_only=True, visual="auto", **kw)


@pytest.mark.parametrize("module,forbidden", [
    ("itemrep.encoders.image", ("itemrep.concepts", "itemrep.dedup")),
    ("itemrep.encoders.ocr", ("itemrep.concepts", "itemrep.dedup")),
    ("itemrep.encoders.phash", ("itemrep.concepts", "itemrep.dedup")),
    ("itemrep.concepts.registry", ("itemrep.encoders", "itemrep.dedup")),
    ("itemrep.concepts.visual", ("itemrep.encoders", "itemrep.dedup")),
])  # fmt: skip
def test_importing_a_module_loads_no_sibling_layer(module, forbidden):
    """Runtime twin of tests/core/test_layers.py for the modules this split touched."""
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules if m.startswith({forbidden!r})))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} loaded {out}"
