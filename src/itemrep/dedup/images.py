"""The image stage of FITRep dedup: photos -> image slots, pHashes and visual concept hierarchies.

:mod:`itemrep.encoders.image` turns photos into arrays (embeddings, ImageNet label indices and
probabilities, boxes, pHashes, OCR lines); :mod:`itemrep.concepts.visual` turns labels and text
into concepts. This module is where the two meet, so neither has to import the other:

* :class:`ImageFeatures` (scikit-learn style, ``ImageFeatures(ocr=False).transform(items)``) and
  its function form :func:`encode_catalog_images` give the pipeline an :class:`ImageResult`;
* :class:`ImageConcepts` offers the same visual concepts as a
  :class:`~itemrep.concepts.base.ConceptExtractor`, for the text-only LLM route;
* :func:`build_extractor` is :func:`itemrep.concepts.registry.build_extractor` with
  ``visual="auto"`` resolved to :class:`ImageConcepts` (what the CLI's ``--extractor`` uses).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from itemrep.catalog import Item
from itemrep.concepts import registry
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import ConceptHierarchy
from itemrep.concepts.visual import region_text, visual_hierarchy
from itemrep.encoders.image import ImageArrays, encode_images, imagenet_labels
from itemrep.errors import ItemFailure


@dataclass
class ImageResult:
    """Image slots, hashes and visual concepts of a catalog (output of :func:`encode_catalog_images`).

    Attributes:
        slots: ``"image_primary"`` -> (N, 1280 + COLOUR_DIM = 1352) float32, L2-normalised embedding
            of the main-object region (CNN feature ⊕ colour histogram,
            :func:`itemrep.encoders.image.primary_vectors`); ``"image_context"`` -> (N, 1280)
            float32, L2-normalised whole-frame embedding (background, template). Rows are all-zero
            for items without a usable image.
        phash: per item 16 lower-case hex digits (``imagehash.phash`` of the photo); when the photo
            is missing or unusable, the catalog's own phash if it has one, else ``None``.
        hierarchies: per item a :class:`~itemrep.concepts.schema.ConceptHierarchy` with slots
            ``visual_object`` (primary), ``visual_context`` (auxiliary), ``visual_region`` (which
            region was primary, readable) and, when ``ocr=True``, ``ocr_primary`` /
            ``ocr_auxiliary``; ``error`` set for failed images.
        failures: one :class:`~itemrep.errors.ItemFailure` per failed item and stage (``"image"``:
            unreadable/corrupt/truncated file; ``"ocr"``: OCR raised).
        stats: ``seconds`` per part (``hash``, ``decode``, ``cnn``, ``pool``, ``ocr``, ``total``),
            ``images_per_s`` (usable images / total seconds), ``items``, ``with_image``,
            ``usable``, ``failed``, ``ocr_failed``, ``cache_hits``, ``computed``,
            ``unique_images``, ``backend``, ``primary_method``, ``ocr``, ``extractor``; with OCR
            also ``ocr_cache_hits`` and ``ocr_images_per_s``.
    """

    slots: dict[str, np.ndarray]
    phash: list[str | None]
    hierarchies: list[ConceptHierarchy]
    failures: list[ItemFailure]
    stats: dict


class ImageFeatures:
    """The image stage: catalog items -> :class:`ImageResult` (scikit-learn conventions).

    Stateless: :meth:`fit` learns nothing and returns ``self``; parameters are stored as given and
    checked by :meth:`transform`.

    Args:
        ocr: also read text in the photos with RapidOCR (about 0.5 s per photo on 2 cores).
        cache_dir: feature cache directory; default ``$ITEMREP_CACHE`` or ``~/.cache/itemrep``
            (:func:`itemrep.encoders.image.default_cache_dir`).
        batch_size: images per CNN call.
        primary_method: main-object region method (default
            :data:`itemrep.encoders.image.DEFAULT_PRIMARY_METHOD`).
        backend: ``"auto"``, ``"onnx"`` or ``"torch"``.

    Attributes:
        stats_: the last :meth:`transform`'s ``ImageResult.stats``.
    """

    def __init__(
        self,
        ocr: bool = False,
        cache_dir: Path | None = None,
        batch_size: int = 32,
        primary_method: str | None = None,
        backend: str = "auto",
    ) -> None:
        self.ocr = ocr
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.primary_method = primary_method
        self.backend = backend

    def fit(self, items: Sequence[Item] | None = None, y: object = None) -> ImageFeatures:
        """No-op (nothing is learned); returns ``self``."""
        return self

    def fit_transform(self, items: Sequence[Item], y: object = None, *, progress: Callable[[int], None] | None = None) -> ImageResult:
        """Same as :meth:`transform`."""
        return self.fit(items, y).transform(items, progress=progress)

    def transform(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> ImageResult:
        """Encode the photos of catalog items into image slots, pHashes and visual concepts.

        Args:
            items: :class:`itemrep.catalog.Item` objects (uses ``item_id``, ``image``, ``phash``,
                ``row``).
            progress: called with the number of items just finished (sums to ``len(items)``).

        Returns:
            :class:`ImageResult`, one row per item in order. A bad image never raises: it becomes a
            failure, zero rows and a hierarchy with ``error`` set.

        Raises:
            ValueError: unknown ``primary_method``.
            ImportError: the image model packages are missing (message says what to install).
            itemrep.errors.Interrupted: SIGINT or SIGTERM arrived; the finished batches are in the
                feature cache (a re-run resumes) and the message says how many
                (:func:`itemrep.encoders.image.encode_images`).
        """
        t_start = time.perf_counter()
        items = list(items)
        arr = encode_images([_image_path(it) for it in items], ocr=self.ocr, cache_dir=self.cache_dir,
                            batch_size=self.batch_size, progress=progress, primary_method=self.primary_method,
                            backend=self.backend)  # fmt: skip
        hierarchies, failures = _hierarchies_and_failures(items, arr, arr.stats["primary_method"])
        phash = [p or getattr(it, "phash", None) for it, p in zip(items, arr.phash)]
        stats = _stats(items, arr, failures, self.ocr, time.perf_counter() - t_start)
        self.stats_ = stats
        return ImageResult(slots={"image_primary": arr.primary, "image_context": arr.context}, phash=phash,
                           hierarchies=hierarchies, failures=failures, stats=stats)  # fmt: skip


def encode_catalog_images(
    items: Sequence[Item],
    *,
    ocr: bool = False,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    primary_method: str | None = None,
    backend: str = "auto",
) -> ImageResult:
    """``ImageFeatures(ocr, cache_dir, batch_size, primary_method, backend).transform(items, progress=progress)``.

    See :class:`ImageFeatures` (arguments) and :meth:`ImageFeatures.transform` (result, errors).
    """
    return ImageFeatures(ocr=ocr, cache_dir=cache_dir, batch_size=batch_size, primary_method=primary_method,
                         backend=backend).transform(items, progress=progress)  # fmt: skip


def _image_path(item: Item) -> Path | None:
    img = getattr(item, "image", None)
    return None if img is None else Path(img)


def _hierarchies_and_failures(items: Sequence[Item], arr: ImageArrays, method: str) -> tuple[list[ConceptHierarchy], list[ItemFailure]]:
    """One visual hierarchy per item; one failure per failed image and per failed OCR, in item order."""
    names = imagenet_labels()
    hier: list[ConceptHierarchy] = []
    failures: list[ItemFailure] = []
    for i, it in enumerate(items):
        iid, row = str(it.item_id), getattr(it, "row", None)
        if _image_path(it) is None:
            hier.append(visual_hierarchy(iid))
            continue
        if arr.errors[i]:
            failures.append(ItemFailure(item_id=iid, stage="image", field="image", message=arr.errors[i], row=row))
            hier.append(visual_hierarchy(iid, error=arr.errors[i]))
            continue
        hier.append(visual_hierarchy(
            iid,
            object_labels=_named(names, arr.object_labels[i], arr.object_scores[i]),
            context_labels=_named(names, arr.context_labels[i], arr.context_scores[i]),
            region=region_text(arr.boxes[i], method),
            ocr_lines=arr.ocr[i],
        ))  # fmt: skip
        if arr.ocr_errors[i]:
            failures.append(ItemFailure(item_id=iid, stage="ocr", field="image", message=arr.ocr_errors[i], row=row))
    return hier, failures


def _named(names: list[str], idx: np.ndarray, prob: np.ndarray) -> list[tuple[str, float]]:
    return [(names[int(a)], float(b)) for a, b in zip(idx, prob) if a >= 0]


def _stats(items: Sequence[Item], arr: ImageArrays, failures: list[ItemFailure], ocr: bool, total: float) -> dict:
    s = arr.stats
    secs = {**s["seconds"], "total": total}
    usable = int(arr.usable.sum())
    out = {
        "seconds": {k: round(v, 4) for k, v in secs.items()},
        "images_per_s": round(usable / total, 2) if total > 0 else None,
        "items": len(items),
        "with_image": sum(1 for it in items if _image_path(it) is not None),
        "usable": usable,
        "failed": sum(1 for f in failures if f.stage == "image"),
        "ocr_failed": sum(1 for f in failures if f.stage == "ocr"),
        "cache_hits": s["cache_hits"],
        "computed": s["computed"],
        "unique_images": s["unique_images"],
        "backend": s["backend"],
        "primary_method": s["primary_method"],
        "ocr": bool(ocr),
        "extractor": s["extractor"],
    }
    if ocr:
        out["ocr_cache_hits"] = s["ocr_cache_hits"]
        out["ocr_images_per_s"] = round(s["ocr_images"] / secs["ocr"], 3) if secs["ocr"] > 0 else None
    return out


# ------------------------------------------------------------------------- concepts from photos
class ImageConcepts(ConceptExtractor):
    """Visual concepts (ImageNet labels of the main object and the frame, OCR text) as an extractor.

    Wraps :class:`ImageFeatures` (with its on-disk feature cache), so the text-only LLM route can
    put image labels and OCR text into the prompt. Batched in :meth:`extract`.

    Args:
        ocr: read text in the photos (RapidOCR; about 0.5 s per photo on 2 cores).
        cache_dir: image feature cache directory (default: the image back-end's).
    """

    name = "image"
    version = "1"

    def __init__(self, *, ocr: bool = True, cache_dir: Path | None = None) -> None:
        super().__init__()
        self.ocr = ocr
        self.cache_dir = cache_dir

    def extract(self, items, *, progress=None):  # noqa: D102 - see class docstring
        res = encode_catalog_images(list(items), ocr=self.ocr, cache_dir=self.cache_dir, progress=progress)
        self.stats_ = dict(res.stats)
        return res.hierarchies

    def extract_one(self, item):  # noqa: D102
        return self.extract([item])[0]


def build_extractor(name: str, *, text_only: bool = False, visual: ConceptExtractor | str | None = "auto", **options: object) -> ConceptExtractor:
    """Build the concept extractor ``name``, with the image back-end as the LLM's ``visual`` input.

    The same as :func:`itemrep.concepts.registry.build_extractor` except for ``visual``:
    ``"auto"`` (default) gives :class:`ImageConcepts` to an LLM back-end (``openai``, ``hf``) in
    ``text_only`` mode (only items with an image pay for it) and none otherwise (the model sees the
    photo itself); an extractor is passed through; ``None`` means never.

    Args:
        name: ``"rules"``, ``"openai"`` or ``"hf"``.
        text_only: send no image to the model (title, text and image labels/OCR only).
        visual: ``"auto"``, a :class:`~itemrep.concepts.base.ConceptExtractor` or ``None``.
        **options: every other argument of :func:`itemrep.concepts.registry.build_extractor`
            (``base_url``, ``model``, ``api_key_env``, ``cache_path``, ``concurrency``,
            ``timeout_s``, ``image_pixels``, ``fallback`` and back-end options).

    Returns:
        A :class:`~itemrep.concepts.base.ConceptExtractor`.

    Raises:
        ExtractorConfigError: unknown name, a string ``visual`` other than ``"auto"``, or any
            error of :func:`itemrep.concepts.registry.build_extractor`.
    """
    if isinstance(visual, str) and visual == "auto":
        visual = ImageConcepts() if text_only else None  # cheap: nothing loads before extract()
    return registry.build_extractor(name, text_only=text_only, visual=visual, **options)  # type: ignore[arg-type]
