"""Perceptual hash of a photo (DCT pHash), computed when the catalog has none.

Uses ``imagehash.phash`` (Zauner 2010, "Implementation and Benchmarking of Perceptual Image Hash
Functions", Sec. 3.2.3: greyscale, resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies,
threshold at their median) so the 16 hex digits match the ``image_phash`` column of the Shopee
data when computed on the same photo.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image


def phash_hex(image: Image.Image) -> str:
    """64-bit pHash of ``image`` as 16 lower-case hex digits (``imagehash.phash``, hash_size 8)."""
    return str(imagehash.phash(image)).lower()


def phash_bits(hashes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Unpack hex pHashes into a bit matrix.

    Args:
        hashes: N strings of 16 hex digits, or ``None``.

    Returns:
        ``(bits, valid)``: ``bits`` (N, 64) uint8 in {0, 1} (zeros where missing), ``valid`` (N,) bool.
    """
    n = len(hashes)
    bits = np.zeros((n, 64), dtype=np.uint8)
    valid = np.zeros(n, dtype=bool)
    for i, h in enumerate(hashes):
        if h:
            v = int(h, 16)
            bits[i] = [(v >> (63 - b)) & 1 for b in range(64)]
            valid[i] = True
    return bits, valid


def phash_similarity_vectors(hashes: list[str | None]) -> np.ndarray:
    """Unit vectors whose cosine is the pHash bit agreement: ``cos = 1 - 2 * hamming / 64``.

    Each bit b becomes ``(+1 or -1) / 8``, so ``u . v = (agreements - disagreements) / 64``.
    Missing hashes give all-zero rows.

    Returns:
        (N, 64) float32.
    """
    bits, valid = phash_bits(hashes)
    v = (bits.astype(np.float32) * 2.0 - 1.0) / 8.0
    v[~valid] = 0.0
    return v
