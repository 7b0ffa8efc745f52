"""Build a CHIE back-end by name: ``rules``, ``openai`` or ``hf`` (the CLI's ``--extractor``).

The CLI passes ``--extractor/--base-url/--model/--api-key-env/--llm-cache/--llm-concurrency/
--llm-timeout/--text-only`` straight into :func:`build_extractor`. Heavy modules (httpx,
transformers) are imported only for the back-end asked for.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from itemrep.concepts.base import ConceptExtractor
from itemrep.errors import ItemrepError

#: Names accepted by :func:`build_extractor`.
EXTRACTORS: tuple[str, ...] = ("rules", "openai", "hf")

#: Default image budget (pixels) for LLM back-ends; see ``openai_compat.DEFAULT_IMAGE_PIXELS``.
DEFAULT_IMAGE_PIXELS = 256 * 28 * 28


class ExtractorConfigError(ItemrepError, ValueError):
    """An extractor cannot be built from the given options (the message names the option)."""


def default_fallback() -> ConceptExtractor | None:
    """The rule-based extractor (``itemrep.concepts.rules.RuleBasedExtractor()``), or ``None``
    with a warning when that module is not available."""
    try:
        from itemrep.concepts.rules import RuleBasedExtractor
    except ImportError as e:
        warnings.warn(f"rule-based fallback unavailable ({e}); failed LLM items get empty hierarchies", stacklevel=2)
        return None
    return RuleBasedExtractor()


class ImageConcepts(ConceptExtractor):
    """Visual concepts (ImageNet labels of the main object and the frame, OCR text) as an extractor.

    Wraps :func:`itemrep.encoders.image.encode_catalog_images` (the image back-end of issue 3, with
    its on-disk feature cache), so the text-only LLM route can put image labels and OCR text into the
    prompt. Batched in :meth:`extract`.

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
        from itemrep.encoders.image import encode_catalog_images

        res = encode_catalog_images(list(items), ocr=self.ocr, cache_dir=self.cache_dir, progress=progress)
        self.stats_ = dict(res.stats)
        return res.hierarchies

    def extract_one(self, item):  # noqa: D102
        return self.extract([item])[0]


def default_visual() -> ConceptExtractor | None:
    """:class:`ImageConcepts` when the image back-end is importable, else ``None``."""
    import importlib.util

    try:
        ok = importlib.util.find_spec("itemrep.encoders.image") is not None
    except ImportError:
        ok = False
    return ImageConcepts() if ok else None


def build_extractor(
    name: str,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    cache_path: Path | None = None,
    concurrency: int = 4,
    timeout_s: float = 60.0,
    image_pixels: int = DEFAULT_IMAGE_PIXELS,
    text_only: bool = False,
    fallback: ConceptExtractor | None = None,
    visual: ConceptExtractor | str | None = "auto",
    **options: object,
) -> ConceptExtractor:
    """Build the concept extractor ``name``.

    Args:
        name: ``"rules"`` (offline default), ``"openai"`` (any OpenAI-compatible server) or ``"hf"``
            (a local transformers image-text-to-text model).
        base_url: ``openai``: API root such as ``http://127.0.0.1:8000/v1`` (required).
        model: ``openai``: the served model name (required); ``hf``: a model folder on disk (required).
        api_key_env: ``openai``: environment variable holding the API key (never logged).
        cache_path: SQLite response cache (``openai``/``hf``); ``None`` disables caching.
        concurrency: ``openai``: requests in flight; ``hf``: generation batch size.
        timeout_s: ``openai``: per-request timeout in seconds.
        image_pixels: pixel budget of each image sent to the model.
        text_only: send no image (title, text and image labels/OCR only).
        fallback: per-item fallback when the LLM route fails (default: the rule-based extractor).
        visual: image back-end whose labels and OCR text go into the prompt; ``"auto"`` (default):
            :class:`ImageConcepts` in ``text_only`` mode (only items with an image pay for it), none
            otherwise (the model sees the photo itself); ``None``: never.
        **options: back-end specific keyword arguments (e.g. ``structured="vllm"``, ``max_tokens``,
            ``max_retries`` for ``openai``; ``device``, ``dtype``, ``max_new_tokens`` for ``hf``).

    Returns:
        A :class:`~itemrep.concepts.base.ConceptExtractor`.

    Raises:
        ExtractorConfigError: unknown name, missing ``base_url``/``model``, or an invalid option.
    """
    name = (name or "").strip().lower()
    if name == "rules":
        from itemrep.concepts.rules import RuleBasedExtractor

        return RuleBasedExtractor()
    if name not in EXTRACTORS:
        raise ExtractorConfigError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    if fallback is None:
        fallback = default_fallback()
    if isinstance(visual, str):
        if visual != "auto":
            raise ExtractorConfigError(f"visual must be an extractor, 'auto' or None, got {visual!r}")
        visual = default_visual() if text_only else None
    cache = Path(cache_path) if cache_path is not None else None
    try:
        if name == "openai":
            if not base_url:
                raise ExtractorConfigError("--extractor openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            if not model:
                raise ExtractorConfigError("--extractor openai needs --model (the server's model name)")
            from itemrep.concepts.openai_compat import OpenAICompatExtractor

            return OpenAICompatExtractor(
                base_url=base_url,
                model=model,
                api_key_env=api_key_env,
                cache_path=cache,
                concurrency=concurrency,
                timeout_s=timeout_s,
                image_pixels=image_pixels,
                text_only=text_only,
                fallback=fallback,
                visual=visual,
                **options,  # type: ignore[arg-type]
            )
        if not model:
            raise ExtractorConfigError("--extractor hf needs --model PATH (a model folder on disk)")
        if not Path(model).is_dir():
            raise ExtractorConfigError(f"--model {model}: no such model folder (hf loads local folders only)")
        from itemrep.concepts.hf import HFExtractor

        return HFExtractor(
            model_path=Path(model),
            cache_path=cache,
            batch_size=concurrency,
            image_pixels=image_pixels,
            text_only=text_only,
            fallback=fallback,
            visual=visual,
            **options,  # type: ignore[arg-type]
        )
    except TypeError as e:  # an unknown **options key
        raise ExtractorConfigError(f"invalid option for extractor {name!r}: {e}") from None
    except ValueError as e:
        if isinstance(e, ExtractorConfigError):
            raise
        raise ExtractorConfigError(f"extractor {name!r}: {e}") from None
