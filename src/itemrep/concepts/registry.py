"""Build a CHIE back-end by name: ``rules``, ``openai`` or ``hf`` (the CLI's ``--extractor``).

The CLI passes ``--extractor/--base-url/--model/--api-key-env/--llm-cache/--llm-concurrency/
--llm-timeout/--text-only`` into :func:`itemrep.dedup.images.build_extractor`, which resolves the
image back-end (``visual="auto"``) and calls :func:`build_extractor` here. This module knows no
image back-end: :mod:`itemrep.concepts` and :mod:`itemrep.encoders` do not import each other.
Heavy modules (httpx, transformers) are imported only for the back-end asked for.
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
    visual: ConceptExtractor | None = None,
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
        visual: extractor whose hierarchies (image labels, OCR text) go into the prompt, e.g.
            :class:`itemrep.dedup.images.ImageConcepts`; ``None`` (default): none. For the
            ``"auto"`` choice use :func:`itemrep.dedup.images.build_extractor`.
        **options: back-end specific keyword arguments (e.g. ``structured="vllm"``, ``max_tokens``,
            ``max_retries`` for ``openai``; ``device``, ``dtype``, ``max_new_tokens`` for ``hf``).

    Returns:
        A :class:`~itemrep.concepts.base.ConceptExtractor`.

    Raises:
        ExtractorConfigError: unknown name, missing ``base_url``/``model``, a string ``visual``,
            or an invalid option.
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
        hint = " (visual='auto' is resolved by itemrep.dedup.images.build_extractor)" if visual == "auto" else ""
        raise ExtractorConfigError(f"visual must be an extractor or None, got {visual!r}{hint}")
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
