"""Text in the photo: OCR with RapidOCR (PP-OCR ONNX models bundled in the ``rapidocr`` wheel).

PP-OCR (Du et al. 2020, "PP-OCR: A Practical Ultra Lightweight OCR System", arXiv 2009.09941):
a DB text detector, a direction classifier and a CRNN recogniser, here the PP-OCRv6 small models
shipped inside ``rapidocr`` 3.10 (Apache-2.0) and run by ONNX Runtime, for Chinese and English.
No network access happens at run time (the models are in the wheel).

OCR is optional (``encode_catalog_images(..., ocr=True)``) because it costs about 0.5 s per photo
on 2 cores; its throughput is reported separately in ``docs/images.md``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

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
