"""CHIE through any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, llama.cpp, OpenAI).

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1) obtains the concept hierarchy of an item
from a multimodal LLM (the paper cites Qwen2.5-VL). :class:`OpenAICompatExtractor` sends each item's
title, text and photo (as a base64 ``data:`` URL, resized to a pixel budget first because visual
tokens cost) with the versioned prompt of :mod:`itemrep.concepts.prompt`, and maps the answer onto
:class:`~itemrep.concepts.schema.ConceptHierarchy`.

Robustness for bulk extraction:

* **schema-constrained decoding** where the server supports it: ``structured="auto"`` starts with
  OpenAI ``response_format`` ``json_schema`` and steps down, on a 400/422 that names the format, to
  llama-cpp-python's ``json_object`` + ``schema``, then plain ``json_object``, then none; ``"vllm"``
  sends vLLM's ``structured_outputs``; ``"ollama"`` sends Ollama's ``format``;
* **client-side validation, always** (servers fail open and return prose with 200 OK);
* **bounded concurrency** (a thread pool of ``concurrency`` workers sharing one ``httpx.Client``),
  a per-request timeout, **retries with exponential backoff** on 429, 5xx, timeouts and connection
  errors, honouring ``Retry-After``;
* **one repair attempt** on an unusable answer (invalid JSON, schema mismatch, cut off by
  ``max_tokens``), then **per-item fallback** to the rule-based extractor, with the reason recorded
  in ``ConceptHierarchy.error`` and counted in ``stats_``;
* a **circuit breaker**: after ``breaker`` consecutive items whose requests failed (server down,
  wrong key, unknown model) the rest of the run falls back at once instead of waiting for timeouts;
* a **SQLite response cache** (:mod:`itemrep.concepts.llm_cache`) so a re-run or an interrupted run
  resumes without re-asking;
* the API key is read from an environment variable and never logged or put in an error message.

The **text-only route** (``text_only=True``) sends no image: the title, text and, when a
``visual`` extractor is given (the image back-end of itemrep), its labels and OCR text, which suits
small text-only instruct models on CPU (e.g. a GGUF model behind ``llama_cpp.server``).
"""

from __future__ import annotations

import base64
import email.utils
import io
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx

from itemrep.catalog import Item
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.llm_cache import ResponseCache, file_hash, sha256_text
from itemrep.concepts.prompt import (
    PROMPT_VERSION,
    LLMHierarchy,
    ResponseError,
    load_prompt,
    messages_for_text,
    parse_response,
    render_user_text,
    repair_message,
    response_schema,
    to_hierarchy,
)
from itemrep.concepts.schema import ConceptHierarchy

#: Default image budget in pixels: 256 visual tokens of Qwen2.5-VL (28 x 28 pixels per token after
#: the 2 x 2 patch merge; Qwen2.5-VL tech report, Sec. 2.1), i.e. about 448 x 448.
DEFAULT_IMAGE_PIXELS = 256 * 28 * 28

#: Structured-output modes tried in order by ``structured="auto"``.
AUTO_MODES: tuple[str, ...] = ("json_schema", "llama_cpp", "json_object", "none")
STRUCTURED_MODES: tuple[str, ...] = ("auto", *AUTO_MODES, "vllm", "ollama")

STAT_KEYS = (
    "items",
    "requests",
    "retries",
    "cache_hits",
    "failures",
    "fallbacks",
    "repairs",
    "invalid_responses",
    "image_failures",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
)


class LLMRequestError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status).

    Attributes:
        transport: True when the server could not be reached or did not answer in time.
    """

    def __init__(self, message: str, *, transport: bool = False) -> None:
        super().__init__(message)
        self.transport = transport


def load_image(path: Path, max_pixels: int = DEFAULT_IMAGE_PIXELS):
    """Load an image as RGB and fit it into a pixel budget.

    EXIF orientation is applied; palette, CMYK, grey and alpha images become RGB (alpha composited on
    white); JPEGs much larger than the budget are decoded at reduced size with ``draft``; the image is
    then resized (Lanczos) so that ``width * height <= max_pixels``, keeping the aspect ratio.

    Args:
        path: image file.
        max_pixels: pixel budget (> 0).

    Returns:
        A ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        OSError, ValueError, PIL.Image.DecompressionBombError: unreadable, truncated or absurdly large
            images, or ``max_pixels <= 0`` (callers record them as per-item failures).
    """
    from PIL import Image, ImageOps

    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
    with Image.open(path) as im:
        w, h = im.size
        if im.format == "JPEG" and w * h > 4 * max_pixels:
            scale = (max_pixels / (w * h)) ** 0.5
            im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGB", im.size, (255, 255, 255))
            bg.paste(im, mask=im.getchannel("A"))
            im = bg
        elif im.mode != "RGB":
            im = im.convert("RGB")
        w, h = im.size
        if w * h > max_pixels:
            scale = (max_pixels / (w * h)) ** 0.5
            im = im.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.LANCZOS)
        return im.copy()


def encode_image(path: Path, max_pixels: int = DEFAULT_IMAGE_PIXELS, *, quality: int = 90) -> str:
    """:func:`load_image`, re-encoded as a JPEG ``data:`` URL (``"data:image/jpeg;base64,..."``).

    Raises:
        The errors of :func:`load_image`.
    """
    buf = io.BytesIO()
    load_image(path, max_pixels).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def visual_text(h: ConceptHierarchy | None, max_chars: int = 400) -> str:
    """One line of image labels and OCR text from an image back-end's hierarchy (text-only route).

    Uses the slots ``visual_object`` / ``visual_context`` (labels) and ``ocr_primary`` /
    ``ocr_auxiliary`` (text read in the image).

    Returns:
        e.g. ``"labels: water bottle, plastic bag; text in image: AQUA 600ml"``; ``""`` when none.
    """
    if h is None:
        return ""
    labels = [c.value for c in h.concepts if c.slot in ("visual_object", "visual_context")]
    ocr = [c.raw or c.value for c in h.concepts if c.slot in ("ocr_primary", "ocr_auxiliary")]
    parts = []
    if labels:
        parts.append("labels: " + ", ".join(dict.fromkeys(labels)))
    if ocr:
        parts.append("text in image: " + " | ".join(dict.fromkeys(ocr)))
    return "; ".join(parts)[:max_chars]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date, RFC 9110 Sec. 10.2.3).

    Returns:
        Non-negative seconds, or ``None`` when absent or unparsable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _rejects_format(status: int, body: str) -> bool:
    """Whether an error response says the structured-output request itself was refused.

    400/422 naming the format, or any error status naming ``response_format``/``json_schema``
    (llama-cpp-python's server answers its request-validation error with 500).
    """
    b = body.lower()
    if status in (400, 422) and any(w in b for w in ("response_format", "json_schema", "schema", "format", "guided", "structured")):
        return True
    return status >= 400 and ("response_format" in b or "json_schema" in b)


class LLMExtractorBase(ConceptExtractor):
    """Shared machinery of the LLM back-ends: cache keys, fallback, stats.

    Subclasses set ``name``/``version`` and implement the model call. Not for direct use.
    """

    version = "1"

    def __init__(
        self,
        *,
        model: str,
        cache_path: Path | None = None,
        image_pixels: int = DEFAULT_IMAGE_PIXELS,
        text_only: bool = False,
        fallback: ConceptExtractor | None = None,
        visual: ConceptExtractor | None = None,
    ) -> None:
        super().__init__()
        if image_pixels <= 0:
            raise ValueError(f"image_pixels must be > 0, got {image_pixels}")
        self.model = model
        self.image_pixels = int(image_pixels)
        self.text_only = bool(text_only)
        self.fallback = fallback
        self.visual = visual
        self.prompt = load_prompt(PROMPT_VERSION)
        self.cache = ResponseCache(cache_path) if cache_path is not None else None
        self._stats_lock = threading.Lock()
        self._visual_map: dict[str, ConceptHierarchy] = {}
        self._reset_stats()

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def identifier(self) -> str:
        """``"name/version+prompt"``, e.g. ``"openai/1+chie-v1"``."""
        return f"{self.name}/{self.version}+{PROMPT_VERSION}"

    @property
    def cache_backend(self) -> str:
        """The back-end part of the cache key: name, version and output-changing settings."""
        return f"{self.name}/{self.version}|px={0 if self.text_only else self.image_pixels}"

    def _reset_stats(self) -> None:
        self.stats_ = {k: 0 for k in STAT_KEYS}
        self.stats_["seconds"] = 0.0

    def _add(self, **kw: float) -> None:
        with self._stats_lock:
            for k, v in kw.items():
                self.stats_[k] = self.stats_.get(k, 0) + v

    # -- inputs ------------------------------------------------------------------------------
    def prepare(self, item: Item) -> tuple[str, str | None, str, str, str | None]:
        """Inputs and cache key parts for one item.

        Returns:
            ``(user_text, image_url, image_hash, text_hash, image_error)``: ``image_url`` is ``None``
            in text-only mode or without a readable image; ``image_error`` says why an existing image
            was skipped.
        """
        vis = ""
        if self.visual is not None and item.image is not None:
            try:
                vh = self._visual_map.get(item.item_id)
                vis = visual_text(vh if vh is not None else self.visual.extract_one(item))
            except Exception as e:  # noqa: BLE001 - the image back-end failing costs the labels only
                vis = ""
                self._add(image_failures=1)
                image_error: str | None = f"visual context: {type(e).__name__}: {e}"
            else:
                image_error = None
        else:
            image_error = None
        user_text = render_user_text(item.title, item.text, vis, prompt=self.prompt)
        image_url, image_hash = None, ""
        if not self.text_only and item.image is not None:
            try:
                image_hash = file_hash(item.image)
                image_url = self._image_url(item.image)
            except Exception as e:  # noqa: BLE001 - unreadable image: answer from the text, record it
                image_url, image_hash = None, ""
                image_error = f"image {item.image}: {type(e).__name__}: {e}"
                self._add(image_failures=1)
        return user_text, image_url, image_hash, sha256_text(user_text), image_error

    def _image_url(self, path: Path) -> str:
        return encode_image(path, self.image_pixels)

    def precompute_visual(self, items: Sequence[Item]) -> None:
        """Run the ``visual`` back-end once, batched, over the items that have an image.

        Its hierarchies (labels, OCR text) are kept for :meth:`prepare`; if it raises, items fall
        back to calling ``visual.extract_one`` one by one (and record their failures there).
        """
        self._visual_map = {}
        if self.visual is None:
            return
        with_img = [it for it in items if it.image is not None]
        if not with_img:
            return
        try:
            hs = self.visual.extract(with_img)
        except Exception:  # noqa: BLE001 - per-item path records the failures
            return
        self._visual_map = {h.item_id: h for h in hs}

    def cache_get(self, image_hash: str, text_hash: str) -> LLMHierarchy | None:
        """A cached validated answer, or ``None``."""
        if self.cache is None:
            return None
        hit = self.cache.get(self.cache_backend, self.model, PROMPT_VERSION, image_hash, text_hash)
        if hit is None:
            return None
        try:
            return LLMHierarchy.model_validate(hit)
        except Exception:  # noqa: BLE001 - a corrupt row is just a miss
            return None

    def cache_put(self, image_hash: str, text_hash: str, answer: LLMHierarchy, usage: tuple[int, int]) -> None:
        """Store a validated answer."""
        if self.cache is not None:
            self.cache.put(
                self.cache_backend,
                self.model,
                PROMPT_VERSION,
                image_hash,
                text_hash,
                answer.model_dump(mode="json"),
                prompt_tokens=usage[0],
                completion_tokens=usage[1],
            )

    def success(self, item: Item, answer: LLMHierarchy, image_error: str | None) -> ConceptHierarchy:
        """The hierarchy for a validated answer (``error`` notes a skipped image)."""
        h = to_hierarchy(item.item_id, answer, self.identifier, prompt=self.prompt)
        if image_error:
            h = h.model_copy(update={"error": f"answered without image ({image_error})"})
        return h

    def fall_back(self, item: Item, reason: str) -> ConceptHierarchy:
        """Per-item fallback after the LLM route failed; the reason goes into ``error`` and stats.

        The fallback extractor's hierarchy is returned with ``error`` set to
        ``"llm failed: <reason>; fell back to <fallback>"``; without a fallback (or when it raises too)
        an empty hierarchy with the error is returned.
        """
        self._add(failures=1)
        if self.fallback is not None:
            try:
                h = self.fallback.extract_one(item)
                self._add(fallbacks=1)
                msg = f"llm failed: {reason}; fell back to {self.fallback.identifier}"
                if h.error:
                    msg += f" ({h.error})"
                return h.model_copy(update={"error": msg})
            except Exception as e:  # noqa: BLE001
                reason = f"{reason}; fallback {self.fallback.identifier} raised {type(e).__name__}: {e}"
        return ConceptHierarchy(item_id=item.item_id, extractor=self.identifier, error=f"llm failed: {reason}")


class OpenAICompatExtractor(LLMExtractorBase):
    """CHIE back-end for OpenAI-compatible chat-completions servers.

    Args:
        base_url: the API root including the version prefix, e.g. ``"http://127.0.0.1:8000/v1"``;
            requests go to ``{base_url}/chat/completions``.
        model: model name as the server knows it (vLLM: the served model name; llama.cpp: any).
        api_key_env: environment variable holding the API key (sent as ``Authorization: Bearer``;
            omitted when the variable is unset, as local servers need none). Never logged.
        cache_path: SQLite response cache file, or ``None`` for no cache.
        concurrency: requests in flight at once (threads), >= 1.
        timeout_s: per-request timeout in seconds (connect, read and write).
        image_pixels: pixel budget of the image sent (see :data:`DEFAULT_IMAGE_PIXELS`).
        text_only: send no image (text-only models); image labels/OCR come from ``visual``.
        fallback: extractor used per item when the LLM route fails (normally the rule-based one).
        visual: optional image back-end whose labels and OCR text are added to the prompt.
        structured: one of :data:`STRUCTURED_MODES` (see the module docstring).
        max_retries: retries per request on 429/5xx/timeouts/connection errors (0 = one attempt).
        backoff_s: first backoff delay; doubles each retry (plus up to 25 % jitter), capped by
            ``max_backoff_s``. A ``Retry-After`` header replaces the computed delay (capped at
            ``max_retry_after_s``).
        max_tokens: completion budget per request; the repair after a cut-off answer doubles it.
        temperature, seed: sampling settings (greedy and seeded by default, for reproducible runs).
        breaker: consecutive items with failed requests after which the rest of the run falls back
            without asking; 0 disables it.
        extra_body: extra JSON fields merged into every request (e.g. ``{"top_k": 1}``).

    Raises:
        ValueError: on an invalid setting (names the setting).
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        cache_path: Path | None = None,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        image_pixels: int = DEFAULT_IMAGE_PIXELS,
        text_only: bool = False,
        fallback: ConceptExtractor | None = None,
        visual: ConceptExtractor | None = None,
        structured: str = "auto",
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = 0,
        breaker: int = 8,
        extra_body: dict | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model is required for the openai extractor (the server's model name)")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {STRUCTURED_MODES}, got {structured!r}")
        if max_retries < 0 or max_tokens < 16:
            raise ValueError("max_retries must be >= 0 and max_tokens >= 16")
        super().__init__(
            model=model,
            cache_path=cache_path,
            image_pixels=image_pixels,
            text_only=text_only,
            fallback=fallback,
            visual=visual,
        )
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.structured = structured
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.seed = seed
        self.breaker = int(breaker)
        self.extra_body = dict(extra_body or {})
        self._modes = AUTO_MODES if structured == "auto" else (structured,)
        self._mode_idx = 0
        self._mode_lock = threading.Lock()
        self._breaker_lock = threading.Lock()
        self._consecutive_failed = 0
        self._breaker_reason: str | None = None
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatExtractor(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def structured_mode(self) -> str:
        """The structured-output mode currently used (``auto`` may have stepped down)."""
        return self._modes[self._mode_idx]

    # -- HTTP --------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def _body(self, messages: list[dict], max_tokens: int, mode: str) -> dict:
        body: dict = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        schema = response_schema()
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "concept_hierarchy", "strict": True, "schema": schema},
            }
        elif mode == "llama_cpp":
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif mode == "vllm":
            body["structured_outputs"] = {"json": schema}
        elif mode == "ollama":
            body["format"] = schema
        body.update(self.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        d = min(self.backoff_s * (2**attempt), self.max_backoff_s)
        return d * (1.0 + 0.25 * random.random())

    def _step_down(self, mode: str) -> bool:
        """Move to the next structured mode after ``mode`` was rejected; False when none is left."""
        with self._mode_lock:
            if self._modes[self._mode_idx] != mode:
                return True  # another thread already stepped down
            if self._mode_idx + 1 >= len(self._modes):
                return False
            self._mode_idx += 1
            return True

    def chat(self, messages: list[dict], *, max_tokens: int | None = None) -> tuple[str | None, str | None, tuple[int, int]]:
        """One chat completion with retries.

        Args:
            messages: chat messages.
            max_tokens: completion budget (default ``self.max_tokens``).

        Returns:
            ``(content, finish_reason, (prompt_tokens, completion_tokens))``.

        Raises:
            LLMRequestError: when retries are exhausted or the status is not retryable.
        """
        assert self._client is not None, "chat() is called inside extract()"
        max_tokens = max_tokens or self.max_tokens
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            mode = self.structured_mode
            self._add(requests=1)
            retry_after: float | None = None
            try:
                r = self._client.post(url, json=self._body(messages, max_tokens, mode), headers=self._headers())
            except httpx.TimeoutException as e:
                err: LLMRequestError = LLMRequestError(f"timeout after {self.timeout_s:g} s ({type(e).__name__})", transport=True)
            except httpx.TransportError as e:
                err = LLMRequestError(f"cannot reach {url}: {type(e).__name__}: {e}", transport=True)
            else:
                if r.status_code == 200:
                    try:
                        data = r.json()
                        choice = data["choices"][0]
                        content = choice.get("message", {}).get("content")
                        usage = data.get("usage") or {}
                        toks = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
                    except Exception:  # noqa: BLE001 - a 200 that is not a chat completion
                        raise LLMRequestError(f"200 OK but not a chat-completion body: {r.text[:160]!r}") from None
                    self._add(prompt_tokens=toks[0], completion_tokens=toks[1])
                    return content, choice.get("finish_reason"), toks
                body = r.text[:300]
                if mode != "none" and _rejects_format(r.status_code, body) and self._step_down(mode):
                    continue  # same attempt, simpler structured mode
                if r.status_code == 429 or r.status_code >= 500:
                    err = LLMRequestError(f"HTTP {r.status_code}: {body[:160]!r}", transport=r.status_code >= 500)
                    retry_after = parse_retry_after(r.headers.get("retry-after"))
                elif r.status_code in (401, 403):
                    raise LLMRequestError(
                        f"HTTP {r.status_code}: not authorised (check the API key in ${self.api_key_env})", transport=True
                    )
                else:
                    raise LLMRequestError(f"HTTP {r.status_code}: {body[:160]!r}", transport=r.status_code == 404)
            if attempt >= self.max_retries:
                raise err
            self._add(retries=1)
            time.sleep(self._delay(attempt, retry_after))
            attempt += 1

    # -- per item ----------------------------------------------------------------------------
    def _note_request_outcome(self, failed: bool, reason: str = "") -> None:
        with self._breaker_lock:
            if not failed:
                self._consecutive_failed = 0
                return
            self._consecutive_failed += 1
            if self.breaker and self._consecutive_failed >= self.breaker and self._breaker_reason is None:
                self._breaker_reason = f"{self._consecutive_failed} consecutive items failed, last: {reason}"

    def extract_one(self, item: Item) -> ConceptHierarchy:
        """Extract one item (cache, request, validation, one repair, fallback). Never raises for item problems."""
        own_client = self._client is None
        if own_client:
            self._client = self._make_client()
        try:
            return self._extract_one(item)
        finally:
            if own_client:
                self._client.close()
                self._client = None

    def _extract_one(self, item: Item) -> ConceptHierarchy:
        user_text, image_url, image_hash, text_hash, image_error = self.prepare(item)
        cached = self.cache_get(image_hash, text_hash)
        if cached is not None:
            self._add(cache_hits=1)
            return self.success(item, cached, image_error)
        if self._breaker_reason is not None:
            return self.fall_back(item, f"circuit open ({self._breaker_reason})")
        messages = messages_for_text(user_text, image_url=image_url, prompt=self.prompt)
        try:
            content, finish, usage = self.chat(messages)
            try:
                answer = parse_response(content, finish_reason=finish)
            except ResponseError as first:
                self._add(invalid_responses=1, repairs=1)
                repair = [*messages, {"role": "assistant", "content": content or ""}, repair_message(first)]
                budget = self.max_tokens * 2 if first.reason == "truncated" else self.max_tokens
                content2, finish2, usage2 = self.chat(repair, max_tokens=budget)
                usage = (usage[0] + usage2[0], usage[1] + usage2[1])
                try:
                    answer = parse_response(content2, finish_reason=finish2)
                except ResponseError as second:
                    self._add(invalid_responses=1)
                    self._note_request_outcome(False)
                    return self.fall_back(item, f"invalid answer ({first.reason}: {first}); repair failed ({second.reason}: {second})")
        except LLMRequestError as e:
            self._note_request_outcome(True, str(e))
            return self.fall_back(item, str(e))
        self._note_request_outcome(False)
        self.cache_put(image_hash, text_hash, answer, usage)
        return self.success(item, answer, image_error)

    def _make_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    def extract(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> list[ConceptHierarchy]:
        """Extract all items with ``concurrency`` requests in flight; output order = input order.

        At most ``2 * concurrency`` items are queued at once, so memory stays flat on huge catalogs.
        ``stats_`` afterwards holds :data:`STAT_KEYS` (``requests`` counts every HTTP request sent,
        retries and repairs included; ``failures`` items whose LLM route failed; ``fallbacks`` those
        answered by the fallback extractor).
        """
        t0 = time.perf_counter()
        self._reset_stats()
        self._consecutive_failed = 0
        self._breaker_reason = None
        self.precompute_visual(items)
        out: list[ConceptHierarchy | None] = [None] * len(items)
        self._client = self._make_client()
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="itemrep-llm") as pool:
                pending: deque[tuple[int, Future]] = deque()
                it = iter(enumerate(items))
                exhausted = False
                while pending or not exhausted:
                    while not exhausted and len(pending) < 2 * self.concurrency:
                        try:
                            i, item = next(it)
                        except StopIteration:
                            exhausted = True
                            break
                        pending.append((i, pool.submit(self._safe_one, item)))
                    if pending:
                        i, fut = pending.popleft()
                        out[i] = fut.result()
                        if progress is not None:
                            progress(1)
        finally:
            self._client.close()
            self._client = None
        self._add(items=len(items))
        self.stats_["seconds"] = time.perf_counter() - t0
        return [h for h in out if h is not None]

    def _safe_one(self, item: Item) -> ConceptHierarchy:
        try:
            return self._extract_one(item)
        except Exception as e:  # noqa: BLE001 - a bug must not stop a million-item run; recorded
            return self.fall_back(item, f"unexpected {type(e).__name__}: {e}")
