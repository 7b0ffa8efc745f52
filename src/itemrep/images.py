"""Robust image loading for catalogs: one photo in, one RGB ``PIL.Image`` (or a clear error) out.

Catalog photos come from sellers and scrapers, so every kind of file turns up: JPEG with an EXIF
rotation flag, palette PNGs with transparency, CMYK JPEGs, 16-bit PNGs, WebP, 50-megapixel camera
originals, half-downloaded (truncated) files and HTML error pages saved as ``.jpg``.
:func:`load_image` turns all of them into an upright 8-bit RGB image of bounded size, or raises
:class:`ImageLoadError` with a one-line reason; :func:`read_image` also returns the content hash of
the bytes (the key of the feature cache, :mod:`itemrep.cache`).

Decoding cost is bounded twice:

* JPEGs are decoded at reduced scale by libjpeg's DCT scaling (``Image.draft``), so a 4000 px
  photo asked for at 256 px is decoded at 1/8 scale for a fraction of the time and memory;
* images whose header declares more than ``max_pixels`` pixels are refused before decoding
  (decompression-bomb guard; PIL's own ``Image.MAX_IMAGE_PIXELS`` check is also active).
"""

from __future__ import annotations

import hashlib
import io
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from itemrep.errors import ItemrepError

#: Largest image (width x height as declared in the header) that is decoded at all: 64 MP.
MAX_PIXELS: int = 64_000_000
#: Largest file read into memory, bytes.
MAX_FILE_BYTES: int = 64 * 1024 * 1024
#: Default longest side after loading; large enough for a 224-288 px CNN input and a 32x32 pHash.
DEFAULT_MAX_SIDE: int = 512


class ImageLoadError(ItemrepError, ValueError):
    """An image file cannot be used: missing, not an image, truncated, too large, unsupported.

    The message names the file and the reason in one line; callers record it as an
    :class:`~itemrep.errors.ItemFailure` (stage ``"image"``) and carry on.
    """


@dataclass(frozen=True)
class LoadedImage:
    """An image as loaded by :func:`read_image`.

    Attributes:
        image: upright 8-bit RGB image, longest side at most the requested ``max_side``
            (and at least ``min_side`` where the source was that large).
        sha1: hex SHA-1 of the file bytes (40 lower-case hex digits): the content key of the cache.
        original_size: ``(width, height)`` declared by the file, before any reduction.
        format: PIL format name (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ...).
    """

    image: Image.Image
    sha1: str
    original_size: tuple[int, int]
    format: str


def content_hash(data: bytes) -> str:
    """SHA-1 hex digest (40 lower-case hex digits) of raw file bytes; the feature-cache key."""
    return hashlib.sha1(data).hexdigest()


def read_bytes(path: str | Path) -> bytes:
    """Read a whole image file, refusing missing, empty or oversized files.

    Raises:
        ImageLoadError: the path is missing, unusable (too long, NUL byte), a directory, empty, or
            larger than :data:`MAX_FILE_BYTES`.
    """
    p = Path(path)
    shown = str(p) if len(str(p)) <= 200 else str(p)[:100] + "…" + str(p)[-60:]
    shown = shown.replace("\0", "\\0")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"{shown}: image file not found") from None
    except OSError as e:  # e.g. [Errno 36] File name too long
        raise ImageLoadError(f"{shown}: cannot use image path ({e.strerror or e})") from None
    except ValueError as e:  # embedded NUL byte
        raise ImageLoadError(f"{shown}: cannot use image path ({e})") from None
    size = st.st_size
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(f"{p}: is a directory, expected an image file")
    if size == 0:
        raise ImageLoadError(f"{p}: empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageLoadError(f"{p}: file is {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB limit")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ImageLoadError(f"{p}: cannot read image file ({e.strerror or e})") from None


def decode_image(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = 224,
    max_pixels: int = MAX_PIXELS,
) -> tuple[Image.Image, tuple[int, int], str]:
    """Decode image bytes into an upright RGB image of bounded size.

    Steps: identify the format (JPEG, PNG, WebP, GIF first frame, BMP, TIFF ... whatever PIL reads);
    refuse headers declaring more than ``max_pixels`` pixels; for JPEG, ask libjpeg for the
    smallest DCT scale (1/2, 1/4, 1/8) that keeps the *shorter* side at least ``min_side``
    (``Image.draft``); decode fully (so truncation is detected here, not later); apply the EXIF
    orientation (``ImageOps.exif_transpose``); convert palette / CMYK / greyscale / 16-bit / alpha
    to 8-bit RGB, compositing transparency onto white; shrink so the longest side is at most
    ``max_side`` (Lanczos).

    Args:
        data: the file bytes.
        name: file name used in error messages.
        max_side: longest side of the result in pixels (``0`` keeps the decoded size).
        min_side: the JPEG draft scale never takes the shorter side below this.
        max_pixels: decompression-bomb guard on the declared width x height.

    Returns:
        ``(image, original_size, format)``: RGB ``PIL.Image``, declared ``(width, height)``, format name.

    Raises:
        ImageLoadError: not an image, truncated or corrupt data, too many pixels, zero-sized.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        head = data[:16].lstrip()
        hint = " (looks like text/HTML)" if head[:1] in (b"<", b"{") or head.isascii() else ""
        raise ImageLoadError(f"{name}: not an image file or unsupported format{hint}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{name}: image too large to decode safely ({e})") from None
    except Exception as e:  # noqa: BLE001 - any decoder error is a per-item failure
        raise ImageLoadError(f"{name}: cannot open image ({type(e).__name__}: {e})") from None
    fmt = im.format or "unknown"
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"{name}: image has zero size {w}x{h}")
    if w * h > max_pixels:
        raise ImageLoadError(f"{name}: image is {w}x{h} = {w * h / 1e6:.0f} MP, more than the {max_pixels / 1e6:.0f} MP limit")
    try:
        if fmt == "JPEG" and min_side > 0:
            # draft picks the largest scale >= requested size; ask for the size that keeps the
            # shorter side >= min_side.
            s = max(min_side / min(w, h), 1e-6)
            im.draft("RGB", (max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5))))
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{name}: image too large to decode safely ({e})") from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg or "broken data stream" in msg or "premature end" in msg.lower():
            raise ImageLoadError(f"{name}: truncated or corrupt image data ({msg})") from None
        raise ImageLoadError(f"{name}: cannot decode image ({msg})") from None
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    im = to_rgb(im)
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return im, (w, h), fmt


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited onto ``background``.

    Handles ``P`` (with or without a ``transparency`` entry), ``PA``, ``LA``, ``RGBA``, ``CMYK``,
    ``YCbCr``, ``L``, ``1``, ``I``, ``I;16``, ``F``.
    """
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("PA", "LA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, background)
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: rescale to 0..255 by the actual range.
        import numpy as np

        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def read_image(
    path: str | Path,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = 224,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Read and decode one image file (see :func:`decode_image` for the steps).

    Args:
        path: the image file.
        max_side, min_side, max_pixels: see :func:`decode_image`.

    Returns:
        :class:`LoadedImage` with the RGB image and the SHA-1 of the file bytes.

    Raises:
        ImageLoadError: missing/empty/oversized file, not an image, truncated, too many pixels.
    """
    data = read_bytes(path)
    im, size, fmt = decode_image(data, name=str(path), max_side=max_side, min_side=min_side, max_pixels=max_pixels)
    return LoadedImage(image=im, sha1=content_hash(data), original_size=size, format=fmt)


def load_image(path: str | Path, *, max_side: int = DEFAULT_MAX_SIDE, min_side: int = 224) -> Image.Image:
    """Load one image file as an upright RGB ``PIL.Image`` (longest side <= ``max_side``).

    Raises:
        ImageLoadError: see :func:`read_image`.
    """
    return read_image(path, max_side=max_side, min_side=min_side).image
