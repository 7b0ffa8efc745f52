"""Robust image loading: every odd file becomes an RGB image or a clear ImageLoadError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from itemrep.images import ImageLoadError, decode_image, load_image, read_image


@pytest.mark.parametrize("name", ["ok.jpg", "ok.webp", "cmyk.jpg", "alpha.png", "palette.png", "grey.png", "exif_rot6.jpg"])
def test_readable_formats_become_rgb(fixtures_dir, name):
    li = read_image(fixtures_dir / name)
    assert li.image.mode == "RGB"
    assert len(li.sha1) == 40
    assert li.format in ("JPEG", "PNG", "WEBP")


def test_exif_orientation_is_applied(fixtures_dir):
    # stored 96x64 landscape with orientation 6 -> displayed 64x96 portrait
    li = read_image(fixtures_dir / "exif_rot6.jpg")
    assert li.original_size == (96, 64)
    assert li.image.size == (64, 96)


def test_alpha_is_composited_on_white(fixtures_dir):
    im = load_image(fixtures_dir / "alpha.png")
    # the left half was fully transparent -> white
    assert im.getpixel((2, 30)) == (255, 255, 255)


def test_cmyk_colours_survive(fixtures_dir):
    a = np.asarray(load_image(fixtures_dir / "cmyk.jpg"), dtype=int)
    b = np.asarray(load_image(fixtures_dir / "ok.jpg"), dtype=int)
    assert np.abs(a - b).mean() < 20  # same picture, no inverted/garbled channels


@pytest.mark.parametrize(
    "name, fragment",
    [("truncated.jpg", "truncated"), ("not_an_image.jpg", "not an image"), ("empty.png", "empty file"), ("missing.jpg", "not found")],
)
def test_bad_files_raise_clear_errors(fixtures_dir, name, fragment):
    with pytest.raises(ImageLoadError) as e:
        read_image(fixtures_dir / name)
    assert fragment in str(e.value)
    assert name in str(e.value)  # the message names the file


def test_huge_image_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(buf, "PNG")
    with pytest.raises(ImageLoadError, match="MP"):
        decode_image(buf.getvalue(), name="big.png", max_pixels=1_000_000)


def test_jpeg_draft_and_max_side_bound_the_size():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(buf, "JPEG")
    im, size, fmt = decode_image(buf.getvalue(), max_side=512, min_side=224)
    assert size == (1600, 1200) and fmt == "JPEG"
    assert max(im.size) <= 512
    assert min(im.size) >= 224 * 512 / 1600 - 1  # aspect kept
