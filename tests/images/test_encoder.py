"""encode_catalog_images (dedup layer) / encode_images / embed_images (encoder): the contracts the
dedup pipeline and the recommender call."""

from __future__ import annotations

import numpy as np
import pytest

from itemrep.catalog import Item
from itemrep.concepts.schema import AUXILIARY_SLOTS, PRIMARY_SLOTS
from itemrep.dedup.images import encode_catalog_images
from itemrep.encoders.image import (
    COLOUR_DIM,
    FEATURE_DIM,
    PRIMARY_DIM,
    PRIMARY_METHODS,
    TOP_K,
    colour_descriptor,
    embed_images,
    encode_images,
    imagenet_labels,
    mask_box,
    primary_masks,
)

GOOD = ["ok.jpg", "ok_small_q60.jpg", "ok.webp", "cmyk.jpg", "alpha.png", "palette.png", "grey.png", "exif_rot6.jpg", "other.jpg"]
BAD = ["truncated.jpg", "not_an_image.jpg", "empty.png"]


def _items(fixtures_dir):
    items = [Item(item_id=f"g{i}", image=fixtures_dir / n, row=i + 1) for i, n in enumerate(GOOD)]
    items += [Item(item_id=f"b{i}", image=fixtures_dir / n, row=100 + i) for i, n in enumerate(BAD)]
    items.append(Item(item_id="none", image=None, phash="00000000000000ff", row=200))
    # the same file twice: computed once, identical rows
    items.append(Item(item_id="dup", image=fixtures_dir / "ok.jpg", row=201))
    return items


@pytest.fixture(scope="module")
def result(fixtures_dir, image_cache):
    return encode_catalog_images(_items(fixtures_dir), cache_dir=image_cache, batch_size=4)


def test_shapes_and_normalisation(result, fixtures_dir):
    n = len(_items(fixtures_dir))
    p, c = result.slots["image_primary"], result.slots["image_context"]
    assert p.shape == (n, FEATURE_DIM + COLOUR_DIM) and c.shape == (n, FEATURE_DIM)
    assert p.dtype == np.float32 and c.dtype == np.float32
    norms_p, norms_c = np.linalg.norm(p, axis=1), np.linalg.norm(c, axis=1)
    ok = np.arange(len(GOOD))
    np.testing.assert_allclose(norms_p[ok], 1.0, atol=1e-4)
    np.testing.assert_allclose(norms_c[ok], 1.0, atol=1e-4)
    bad = np.arange(len(GOOD), len(GOOD) + len(BAD) + 1)  # bad files and the item without an image
    assert not p[bad].any() and not c[bad].any()
    np.testing.assert_allclose(p[0], p[-1])  # same bytes -> same features


def test_failures_are_recorded_not_raised(result):
    f = {x.item_id: x for x in result.failures}
    assert set(f) == {"b0", "b1", "b2"}
    assert all(x.stage == "image" and x.field == "image" for x in f.values())
    assert "truncated" in f["b0"].message and f["b0"].row == 100
    assert "not an image" in f["b1"].message
    assert result.hierarchies[len(GOOD)].error  # failed item's hierarchy carries the reason


def test_phash_per_item(result):
    good = result.phash[: len(GOOD)]
    assert all(h is not None and len(h) == 16 and int(h, 16) >= 0 for h in good)
    assert result.phash[len(GOOD)] is None  # truncated file, no catalog phash
    assert result.phash[-2] == "00000000000000ff"  # no image: the catalog's own phash is kept


def test_hierarchies_are_readable_visual_concepts(result):
    h = result.hierarchies[0]
    slots = {c.slot for c in h.concepts}
    assert {"visual_object", "visual_context", "visual_region"} <= slots
    assert "visual_object" in PRIMARY_SLOTS and "visual_context" in AUXILIARY_SLOTS
    for c in h.concepts:
        assert c.source == "image"
        if c.slot == "visual_object":
            assert c.level == "primary" and c.facet == "content" and 0 < c.salience <= 1
        if c.slot in ("visual_context", "visual_region"):
            assert c.level == "auxiliary" and c.facet == "form"
    region = h.slot_text("visual_region")
    assert region.startswith("x ") and "of frame" in region
    assert [x.item_id for x in result.hierarchies][:2] == ["g0", "g1"]


def test_near_duplicate_closer_than_other_product(result):
    p = result.slots["image_primary"]
    # ok.jpg vs the same picture saved as WebP, against a different-colour product
    assert p[0] @ p[GOOD.index("ok.webp")] > p[0] @ p[GOOD.index("other.jpg")]


def test_cache_second_run_hits(fixtures_dir, image_cache, result):
    again = encode_catalog_images(_items(fixtures_dir), cache_dir=image_cache)
    assert again.stats["cache_hits"] == len(GOOD)  # ok.jpg appears twice but is one key
    assert again.stats["computed"] == len(BAD) - 1  # failures are retried (empty.png is rejected before hashing)
    np.testing.assert_allclose(again.slots["image_primary"], result.slots["image_primary"], atol=1e-3)  # float16 storage
    for k in ("seconds", "images_per_s", "backend", "primary_method"):
        assert k in again.stats


def test_deterministic(fixtures_dir, tmp_path):
    a = encode_catalog_images(_items(fixtures_dir)[:3], cache_dir=tmp_path / "a")
    b = encode_catalog_images(_items(fixtures_dir)[:3], cache_dir=tmp_path / "a2")
    np.testing.assert_array_equal(a.slots["image_primary"], b.slots["image_primary"])
    assert a.phash == b.phash


def test_encode_images_gives_arrays_that_the_dedup_layer_turns_into_concepts(fixtures_dir, image_cache, result):
    items = _items(fixtures_dir)
    arr = encode_images([it.image for it in items], cache_dir=image_cache)
    n = len(items)
    assert arr.primary.shape == (n, PRIMARY_DIM) and arr.primary.dtype == np.float32
    assert arr.context.shape == (n, FEATURE_DIM) and arr.boxes.shape == (n, 4) and arr.boxes.dtype == np.float32
    for lab, sc in ((arr.object_labels, arr.object_scores), (arr.context_labels, arr.context_scores)):
        assert lab.shape == sc.shape == (n, TOP_K) and lab.dtype == np.int16 and sc.dtype == np.float32
        assert (lab[: len(GOOD), 0] >= 0).all() and (lab[len(GOOD) : -1] == -1).all() and lab[-1, 0] >= 0  # best label first, -1 pads
        assert (sc[lab < 0] == 0).all() and (np.diff(sc[: len(GOOD)], axis=1) <= 0).all()
    assert list(arr.usable) == [True] * len(GOOD) + [False] * (len(BAD) + 1) + [True]
    assert arr.errors[: len(GOOD)] == [None] * len(GOOD) and all(arr.errors[len(GOOD) : len(GOOD) + len(BAD)])
    assert arr.errors[-2] is None and arr.phash[-2] is None and arr.sha1[-2] is None  # no path: nothing, no error
    assert arr.ocr == [[]] * n and arr.ocr_errors == [None] * n  # OCR off
    # the dedup layer's slots are these arrays; its labels are these indices, named
    np.testing.assert_array_equal(arr.primary, result.slots["image_primary"])
    names = imagenet_labels()
    assert result.hierarchies[0].slot_values("visual_object") == [names[i].lower() for i in arr.object_labels[0] if i >= 0]
    assert {"seconds", "cache_hits", "computed", "backend", "primary_method", "extractor"} <= set(arr.stats)


def test_encode_images_unknown_method_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="primary_method"):
        encode_images([tmp_path / "does-not-exist.jpg"], cache_dir=tmp_path, primary_method="bogus")
    assert not (tmp_path / "features.sqlite").exists()


def test_embed_images_black_box(fixtures_dir):
    x, err = embed_images([fixtures_dir / "ok.jpg", None, fixtures_dir / "truncated.jpg"])
    assert x.shape == (3, FEATURE_DIM) and x.dtype == np.float32
    assert abs(np.linalg.norm(x[0]) - 1) < 1e-4 and not x[1].any() and not x[2].any()
    assert err[0] is None and err[1] == "no image" and "truncated" in err[2]


def test_region_masks_are_sane():
    rng = np.random.default_rng(0)
    fmap = np.ones((2, 8, 7, 7), np.float32) + rng.random((2, 8, 7, 7)).astype(np.float32) * 0.01  # flat background
    fmap[:, 0, 2:5, 2:5] += 5.0  # an object in the middle with a different feature direction
    w = rng.random((1000, 8)).astype(np.float32)
    for m in PRIMARY_METHODS:
        mk = primary_masks(fmap, m.removesuffix("_crop"), w, np.zeros(1000, np.float32))
        assert mk.shape == (2, 7, 7) and mk.sum(axis=(1, 2)).min() >= 1
    sal = primary_masks(fmap, "saliency")
    x0, y0, x1, y1 = mask_box(sal[0])
    assert 0.2 <= x0 and x1 <= 0.8 and 0.2 <= y0 and y1 <= 0.8  # the object, not the frame
    with pytest.raises(ValueError):
        primary_masks(fmap, "nope")


def test_colour_descriptor_separates_colours(fixtures_dir):
    from itemrep.images import load_image

    red = colour_descriptor(load_image(fixtures_dir / "ok.jpg"))
    red2 = colour_descriptor(load_image(fixtures_dir / "ok_small_q60.jpg"))
    blue = colour_descriptor(load_image(fixtures_dir / "other.jpg"))
    assert red.shape == (COLOUR_DIM,) and abs(np.linalg.norm(red) - 1) < 1e-5
    assert red @ red2 > red @ blue + 0.05


def test_unknown_method_is_an_error(fixtures_dir, image_cache):
    with pytest.raises(ValueError, match="primary_method"):
        encode_catalog_images(_items(fixtures_dir)[:1], cache_dir=image_cache, primary_method="bogus")


def test_progress_counts_every_item_once(fixtures_dir, tmp_path):
    seen = []
    items = _items(fixtures_dir)
    encode_catalog_images(items, cache_dir=tmp_path, progress=seen.append, batch_size=3)
    assert sum(seen) == len(items)
    seen.clear()
    encode_catalog_images(items, cache_dir=tmp_path, progress=seen.append)  # all cached now
    assert sum(seen) == len(items)


def test_torch_fallback_matches_onnx(fixtures_dir, image_cache):
    from itemrep.encoders.image import EfficientNetLite0, _to_input
    from itemrep.images import load_image

    x = np.stack([_to_input(load_image(fixtures_dir / n), 224) for n in ("ok.jpg", "other.jpg")])
    onnx = EfficientNetLite0(backend="onnx", cache_dir=image_cache)
    torch_ = EfficientNetLite0(backend="torch", cache_dir=image_cache)
    assert onnx.backend_ == "onnx" and torch_.backend_ == "torch"
    np.testing.assert_allclose(onnx.feature_maps(x), torch_.feature_maps(x), atol=1e-3)
