"""Text in the photo: OCR with RapidOCR (PP-OCR ONNX models bundled in the ``rapidocr`` wheel).

PP-OCR (Du et al. 2020, "PP-OCR: A Practical Ultra Lightweight OCR System", arXiv 2009.09941):
a DB text detector, a direction classifier and a CRNN recogniser, here the PP-OCRv6 small models
shipped inside ``rapidocr`` 3.10 (Apache-2.0) and run by ONNX Runtime, for Chinese and English.
No network access happens at run time (the models are in the wheel).

OCR is optional (``itemrep.encoders.image.encode_images(..., ocr=True)``, which calls
:func:`read_text_cached`) because it costs about 0.5 s per photo on 2 cores; its throughput is
reported separately in ``docs/images.md``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from itemrep.cache import FeatureCache
from itemrep.images import read_image

#: Identity of the OCR extractor; part of its cache namespace.
OCR_VERSION = "rapidocr-ppocrv6-v1"
#: Lines recognised with a lower confidence are dropped.
MIN_SCORE = 0.6


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line.

    Attributes:
        text: the recognised string.
        score: recogniser confidence in [0, 1].
        box: (x0, y0, x1, y1) axis-aligned bounding box as fractions of the image width/height.
    """

    text: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        """Box area as a fraction of the image (0..1)."""
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


class OcrEngine:
    """Lazily-loaded RapidOCR wrapper (one per process; calls are serialised by a lock).

    Raises:
        ImportError: on first use when ``rapidocr``/``onnxruntime`` are not installed (the message
            says what to install).
    """

    def __init__(self, min_score: float = MIN_SCORE, max_side: int = 960) -> None:
        self.min_score = float(min_score)
        self.max_side = int(max_side)
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:
                raise ImportError(f"OCR needs the packages rapidocr==3.10.0 and onnxruntime ({e})") from e
            import logging

            self._engine = RapidOCR(params={"Global.log_level": "error"})
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    def read(self, image: Image.Image) -> list[OcrLine]:
        """Recognise the text lines in an RGB image.

        Args:
            image: RGB ``PIL.Image`` (downscaled so the longest side is at most ``max_side``).

        Returns:
            Lines with confidence >= ``min_score``, top-to-bottom, left-to-right.
        """
        if max(image.size) > self.max_side:
            image = image.copy()
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        w, h = image.size
        with self._lock:
            out = self._load()(image)
        txts = getattr(out, "txts", None) or ()
        scores = getattr(out, "scores", None) or ()
        boxes = getattr(out, "boxes", None)
        lines: list[OcrLine] = []
        for i, (t, s) in enumerate(zip(txts, scores)):
            t = str(t).strip()
            if not t or float(s) < self.min_score:
                continue
            if boxes is not None and len(boxes) > i:
                b = np.asarray(boxes[i], dtype=np.float32)
                box = (float(b[:, 0].min() / w), float(b[:, 1].min() / h), float(b[:, 0].max() / w), float(b[:, 1].max() / h))
            else:
                box = (0.0, 0.0, 1.0, 1.0)
            lines.append(OcrLine(text=t, score=float(s), box=box))
        lines.sort(key=lambda ln: (round(ln.box[1], 2), ln.box[0]))
        return lines


_ENGINE: OcrEngine | None = None


def get_ocr_engine() -> OcrEngine:
    """The process-wide shared :class:`OcrEngine`."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = OcrEngine()
    return _ENGINE


@dataclass
class OcrBatch:
    """Text lines of a list of photos (output of :func:`read_text_cached`; rows follow the input).

    Attributes:
        lines: per photo the recognised lines, top-to-bottom (``[]`` when no path, nothing was
            read, or OCR raised).
        errors: per photo ``None`` or ``"<ExceptionType>: <message>"`` when OCR raised.
        cache_hits: distinct photos served from the cache.
        images: distinct photos with a result (cached or new).
        seconds: wall seconds spent, cache lookups included.
    """

    lines: list[list[str]]
    errors: list[str | None]
    cache_hits: int
    images: int
    seconds: float


def read_text_cached(
    paths: Sequence[Path | None],
    keys: Sequence[str | None],
    *,
    cache_dir: Path,
    engine: OcrEngine | None = None,
    track: dict | None = None,
) -> OcrBatch:
    """OCR every photo once per content key, reusing ``<cache_dir>/features.sqlite`` (namespace
    ``ocr/<OCR_VERSION>``).

    A photo is decoded with :func:`itemrep.images.read_image` (longest side at most the engine's
    ``max_side``, shortest at least 640 px) and read by :meth:`OcrEngine.read`. When OCR raises for
    one path, that path gets an ``errors`` entry and a later path with the same key is tried again.
    Every result is stored as soon as it is read, so a run stopped part-way (SIGINT/SIGTERM under
    :func:`itemrep.cache.stop_on_signals`) keeps what it read and a re-run reads only the rest.

    Args:
        paths: image files; ``None`` = skip this row.
        keys: per path the content key (SHA-1 of the bytes, as in the image cache); a row without
            a key is skipped.
        cache_dir: cache directory.
        engine: OCR engine (default: the shared :func:`get_ocr_engine`).
        track: optional dict, given ``"cache"`` (the open :class:`~itemrep.cache.FeatureCache`)
            and ``"images"`` (distinct content keys) at the start, for a progress report when the
            run is stopped (kept = ``cache.hits + cache.stored``).

    Returns:
        :class:`OcrBatch`. Never raises for a bad photo.

    Raises:
        ValueError: ``paths`` and ``keys`` differ in length.
    """
    if len(paths) != len(keys):
        raise ValueError(f"paths and keys differ in length: {len(paths)} != {len(keys)}")
    t0 = time.perf_counter()
    errors: list[str | None] = [None] * len(paths)
    rows = [(i, Path(p), k) for i, (p, k) in enumerate(zip(paths, keys)) if p is not None and k]
    with FeatureCache(cache_dir, f"ocr/{OCR_VERSION}") as cache:
        distinct = sorted({k for _, _, k in rows})
        if track is not None:
            track.update(cache=cache, images=len(distinct))
        found = {k: json.loads(str(v["lines"])) for k, v in cache.get_many(distinct).items()}
        eng = engine or get_ocr_engine()
        for i, path, k in rows:
            if k in found:
                continue
            try:
                lines = [ln.text for ln in eng.read(read_image(path, max_side=eng.max_side, min_side=640).image)]
            except Exception as e:  # noqa: BLE001 - per-photo OCR failure, recorded
                errors[i] = f"{type(e).__name__}: {e}"
                continue
            found[k] = lines
            cache.put_many({k: {"lines": np.array(json.dumps(lines, ensure_ascii=False))}})  # at once: a stopped run keeps it
        hits = cache.hits
    out = [[] for _ in paths]
    for i, _, k in rows:
        out[i] = list(found.get(k, []))
    return OcrBatch(lines=out, errors=errors, cache_hits=hits, images=len(found), seconds=time.perf_counter() - t0)
