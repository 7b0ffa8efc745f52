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
* **bounded concurrency** (a thread pool of ``concurrency`` workers sharing one ``httpx.AsyncClient``
  that runs on a private event-loop thread), a **total deadline per request** (``timeout_s`` covers
  connecting, sending, waiting and reading: a server that trickles bytes cannot hold a request longer),
  a **cap on the response body** (``max_response_bytes``; a larger body is not read), **retries with
  exponential backoff** on 429, 5xx, timeouts and connection errors, honouring ``Retry-After`` up to
  ``max_retry_after_s`` (a longer wait asked for ends the request at once) within a total wait budget
  per request (``retry_budget_s``);
* **one repair attempt** on an unusable answer (invalid JSON, schema mismatch, cut off by
  ``max_tokens``), then **per-item fallback** to the rule-based extractor, with the reason recorded
  in ``ConceptHierarchy.error`` and counted in ``stats_``; an answer far longer than ``max_tokens``
  allows is not quoted back in the repair request;
* a **circuit breaker**: after ``breaker`` consecutive items whose requests failed (server down,
  wrong key, unknown model) the rest of the run falls back at once instead of waiting for timeouts;
* a **SQLite response cache** (:mod:`itemrep.concepts.llm_cache`) so a re-run or an interrupted run
  resumes without re-asking;
* the API key is read from an environment variable and never logged or put in an error message:
  everything the server sends (error bodies, a 200 that is not a chat completion, the answer text)
  is passed through :func:`redact_secrets` (the key, ``Bearer``/``Basic`` credentials and
  ``Authorization``/API-key header values) before it can reach an error, a concept value, the cache,
  a log or an exception.

The **text-only route** (``text_only=True``) sends no image: the title, text and, when a
``visual`` extractor is given (the image back-end of itemrep), its labels and OCR text, which suits
small text-only instruct models on CPU (e.g. a GGUF model behind ``llama_cpp.server``).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
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
    repair_turns,
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

#: Default cap on one response body, in bytes (a chat completion of 512 tokens is a few kB).
DEFAULT_MAX_RESPONSE_BYTES = 4 << 20
#: How much of an error response's body is read (only its start is reported).
ERROR_BODY_BYTES = 64 << 10

#: What a secret is replaced with.
REDACTED = "[redacted]"
#: Keys shorter than this are placeholders (``x``, ``EMPTY``, ``none``), not secrets: they are
#: redacted after ``Bearer`` and in header values, not wherever the letters occur.
MIN_SECRET_CHARS = 6

_PUNCT = r"\"'`<>,;()\[\]{}\\"
_STOP = r"\s" + _PUNCT  # characters that end a credential
#: ``Bearer <token>`` / ``Basic <credentials>`` (also URL- or JSON-escaped spaces).
_SCHEME_VALUE = re.compile(rf"(?i)\b(bearer|basic)(\s+|%20|\+|\\u0020)[^{_STOP}]+")
#: Header-like ``authorization: value`` / ``x-api-key = value`` (quoted or not), unless the value
#: starts with a scheme handled above.
_HEADER_VALUE = re.compile(
    rf"(?i)\b(proxy-authorization|authorization|x-api-key|api[-_]key|access[-_]token)(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    rf"(?!(?:bearer|basic)\b)(?!\[redacted\])(?:[A-Za-z][\w-]*(?:\s+|%20|\+)(?=[^{_STOP}]))?[^{_STOP}]+"
)
#: OpenAI-style keys (``sk-...``) whatever variable they came from.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")


def _secret_forms(secret: str) -> list[str]:
    """The spellings of a secret that may come back: as is, JSON-escaped, URL-quoted, repr-escaped."""
    forms = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), repr(secret)[1:-1]}
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials replaced by :data:`REDACTED`.

    Removes every spelling of each secret in ``secrets`` (when at least :data:`MIN_SECRET_CHARS`
    long), ``Bearer``/``Basic`` credentials, the values of ``Authorization``/API-key headers and
    OpenAI-style ``sk-...`` keys, whatever the case and quoting.

    Args:
        text: any string that may contain a credential (``None``/empty is returned as is).
        secrets: known secrets (the API key).
    """
    if not text:
        return text
    for sec in secrets:
        if sec and len(sec) >= MIN_SECRET_CHARS:
            for form in _secret_forms(sec):
                if form in text:
                    text = text.replace(form, REDACTED)
    text = _SCHEME_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _HEADER_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _KEY_LIKE.sub(REDACTED, text)


def display_url(url: str) -> str:
    """``url`` without user info or query string (where credentials may hide), for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<url>"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


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


@dataclass
class HTTPReply:
    """One HTTP answer as read by :class:`DeadlineHTTP`.

    Attributes:
        status_code: HTTP status code.
        headers: response headers.
        body: the body read (for errors: at most :data:`ERROR_BODY_BYTES`, the rest is left unread).
        too_large: for a 200 whose body is over the cap: the bytes seen (declared or read) before
            giving up; ``body`` is then empty. ``None`` otherwise.
    """

    status_code: int
    headers: httpx.Headers
    body: bytes
    too_large: int | None = None


class DeadlineHTTP:
    """An ``httpx.AsyncClient`` on a private event-loop thread, called from worker threads.

    Each :meth:`post` runs under one total deadline (``asyncio.wait_for``): connecting, sending,
    waiting for the headers and reading the body together take at most ``timeout_s``, whatever the
    peer does (a server sending one byte per second is cut off at the deadline, headers or body).
    Bodies are streamed and never read past a cap.

    Args:
        timeout_s: total seconds per request.
        concurrency: connections kept (one per worker thread).
    """

    def __init__(self, *, timeout_s: float, concurrency: int) -> None:
        self.timeout_s = float(timeout_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="itemrep-llm-io", daemon=True)
        self._thread.start()

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            )

        self._client = asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    async def _post(self, url: str, body: dict, headers: dict[str, str], max_bytes: int) -> HTTPReply:
        async with self._client.stream("POST", url, json=body, headers=headers) as r:
            ok = r.status_code == 200
            limit = max_bytes if ok else min(max_bytes, ERROR_BODY_BYTES)
            declared = r.headers.get("content-length", "")
            if ok and declared.isdigit() and int(declared) > max_bytes:
                return HTTPReply(r.status_code, r.headers, b"", int(declared))
            buf = bytearray()
            async for chunk in r.aiter_bytes():
                buf += chunk
                if len(buf) > limit:
                    if ok:
                        return HTTPReply(r.status_code, r.headers, b"", len(buf))
                    del buf[limit:]
                    break
            return HTTPReply(r.status_code, r.headers, bytes(buf))

    async def _post_by_deadline(self, *args) -> HTTPReply:
        return await asyncio.wait_for(self._post(*args), self.timeout_s)

    def post(self, url: str, *, json_body: dict, headers: dict[str, str], max_bytes: int) -> HTTPReply:
        """POST ``json_body``; the reply, read within the deadline.

        Raises:
            TimeoutError: the deadline passed.
            httpx.HTTPError: transport errors (connection refused, reset, protocol errors).
        """
        fut = asyncio.run_coroutine_threadsafe(self._post_by_deadline(url, json_body, headers, max_bytes), self._loop)
        try:
            return fut.result(self.timeout_s + 10.0)  # the loop enforces the deadline; this is a backstop
        except TimeoutError:
            fut.cancel()
            raise

    def close(self) -> None:
        """Close the client and stop the loop thread."""
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(10.0)
        except Exception:  # noqa: BLE001 - closing must not mask the run's outcome
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        if not self._thread.is_alive():
            self._loop.close()


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

    # -- redaction ---------------------------------------------------------------------------
    def secrets(self) -> list[str]:
        """Credentials that must never reach an output (the API key of server back-ends)."""
        return []

    def redact(self, text: str | None) -> str | None:
        """``text`` with every credential removed (see :func:`redact_secrets`)."""
        return redact_secrets(text, self.secrets()) if text else text

    def scrub(self, h: ConceptHierarchy) -> ConceptHierarchy:
        """``h`` with credentials removed from its error and its concept values.

        The last gate before a hierarchy leaves the back-end (``concepts.parquet``, ``failures.csv``),
        so nothing a server sent can carry a key out, even from an older cache.
        """
        secrets = self.secrets()
        update: dict = {}
        if h.error:
            clean = redact_secrets(h.error, secrets)
            if clean != h.error:
                update["error"] = clean
        concepts, changed = [], False
        for c in h.concepts:
            v = redact_secrets(c.value, secrets)
            r = redact_secrets(c.raw, secrets) if c.raw else c.raw
            if v != c.value or r != c.raw:
                c = c.model_copy(update={"value": v, "raw": r})
                changed = True
            concepts.append(c)
        if changed:
            update["concepts"] = concepts
        return h.model_copy(update=update) if update else h

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
        return self.scrub(h)

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
                return h.model_copy(update={"error": self.redact(msg)})
            except Exception as e:  # noqa: BLE001
                reason = f"{reason}; fallback {self.fallback.identifier} raised {type(e).__name__}: {e}"
        return ConceptHierarchy(item_id=item.item_id, extractor=self.identifier, error=self.redact(f"llm failed: {reason}"))


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
        timeout_s: total deadline of one HTTP request in seconds: connecting, sending, waiting and
            reading together (a server trickling bytes is cut off); each retry gets a new deadline.
        image_pixels: pixel budget of the image sent (see :data:`DEFAULT_IMAGE_PIXELS`).
        text_only: send no image (text-only models); image labels/OCR come from ``visual``.
        fallback: extractor used per item when the LLM route fails (normally the rule-based one).
        visual: optional image back-end whose labels and OCR text are added to the prompt.
        structured: one of :data:`STRUCTURED_MODES` (see the module docstring).
        max_retries: retries per request on 429/5xx/timeouts/connection errors (0 = one attempt).
        backoff_s: first backoff delay; doubles each retry (plus up to 25 % jitter), capped by
            ``max_backoff_s``. A ``Retry-After`` header replaces the computed delay.
        max_retry_after_s: longest ``Retry-After`` honoured; a server asking for a longer wait
            ends the request at once (the item falls back) instead of holding a worker.
        retry_budget_s: most seconds one request may spend waiting between its retries, in total;
            when the next wait would pass it, the request ends with the last error.
        max_response_bytes: largest response body read; a larger one is not read (the request
            fails, it is not retried, and nothing of it is sent back in a repair).
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
        max_retry_after_s: float = 60.0,
        retry_budget_s: float = 120.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
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
        if not max_retry_after_s >= 0:
            raise ValueError(f"max_retry_after_s must be >= 0, got {max_retry_after_s}")
        if not retry_budget_s >= 0:
            raise ValueError(f"retry_budget_s must be >= 0, got {retry_budget_s}")
        if not max_response_bytes >= 1024:
            raise ValueError(f"max_response_bytes must be >= 1024, got {max_response_bytes}")
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
        self.retry_budget_s = float(retry_budget_s)
        self.max_response_bytes = int(max_response_bytes)
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
        self._client: DeadlineHTTP | None = None

    def __repr__(self) -> str:  # never shows the key (nor credentials in the URL)
        return f"OpenAICompatExtractor(base_url={display_url(self.base_url)!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def secrets(self) -> list[str]:
        """The API key (read from ``api_key_env`` now) and any password in ``base_url``."""
        out = []
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            out.append(key)
        try:
            pw = urllib.parse.urlsplit(self.base_url).password
        except ValueError:
            pw = None
        if pw:
            out.append(urllib.parse.unquote(pw))
        return out

    @property
    def echo_limit(self) -> int:
        """Longest invalid answer quoted back in a repair request (characters): 8 per token asked for."""
        return max(4096, 8 * self.max_tokens)

    @property
    def structured_mode(self) -> str:
        """The structured-output mode currently used (``auto`` may have stepped down)."""
        return self._modes[self._mode_idx]

    # -- HTTP --------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
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

        Every attempt has a total deadline of ``timeout_s``; waits between attempts follow
        ``backoff_s`` or ``Retry-After`` (up to ``max_retry_after_s``) within ``retry_budget_s``.
        The content returned and every error message are redacted (:meth:`redact`).

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
        waited = 0.0
        while True:
            mode = self.structured_mode
            self._add(requests=1)
            retry_after: float | None = None
            try:
                r = self._client.post(
                    url, json_body=self._body(messages, max_tokens, mode), headers=self._headers(), max_bytes=self.max_response_bytes
                )
            except (TimeoutError, httpx.TimeoutException):
                err = LLMRequestError(f"timeout: no complete answer within {self.timeout_s:g} s", transport=True)
            except httpx.HTTPError as e:
                err = LLMRequestError(self.redact(f"cannot reach {display_url(url)}: {type(e).__name__}: {e}"), transport=True)
            else:
                if r.too_large is not None:
                    raise LLMRequestError(
                        f"HTTP {r.status_code}: response body larger than {self.max_response_bytes} bytes "
                        f"(at least {r.too_large}); not read"
                    )
                text = r.body.decode("utf-8", errors="replace")
                if r.status_code == 200:
                    return self._completion(text)
                body = self.redact(text)[:300]
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
            if retry_after is not None and retry_after > self.max_retry_after_s:
                raise LLMRequestError(
                    f"{err}; the server asks to retry after {retry_after:g} s (Retry-After), more than the "
                    f"{self.max_retry_after_s:g} s allowed (--llm-max-retry-after)",
                    transport=err.transport,
                )
            delay = self._delay(attempt, retry_after)
            if waited + delay > self.retry_budget_s:
                raise LLMRequestError(
                    f"{err}; gave up after {attempt + 1} attempt(s): waiting {delay:.3g} s more would pass the "
                    f"retry budget of {self.retry_budget_s:g} s (--llm-retry-budget)",
                    transport=err.transport,
                )
            self._add(retries=1)
            time.sleep(delay)
            waited += delay
            attempt += 1

    def _completion(self, text: str) -> tuple[str | None, str | None, tuple[int, int]]:
        """Content, finish reason and token counts of a 200 body (redacted).

        Raises:
            LLMRequestError: the body is not a chat completion.
        """
        try:
            data = json.loads(text)
            choice = data["choices"][0]
            message = choice.get("message") or {}
            content = message.get("content")
            usage = data.get("usage") or {}
            toks = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            finish = choice.get("finish_reason")
        except Exception:  # noqa: BLE001 - a 200 that is not a chat completion
            raise LLMRequestError(f"200 OK but not a chat-completion body: {self.redact(text)[:160]!r}") from None
        if content is not None and not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)  # e.g. a server returning the JSON object itself
        self._add(prompt_tokens=toks[0], completion_tokens=toks[1])
        return self.redact(content), finish if isinstance(finish, str) else None, toks

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
                repair = [*messages, *repair_turns(content, first, echo_limit=self.echo_limit)]
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
            reason = self.redact(str(e))
            self._note_request_outcome(True, reason)
            return self.fall_back(item, reason)
        self._note_request_outcome(False)
        self.cache_put(image_hash, text_hash, answer, usage)
        return self.success(item, answer, image_error)

    def _make_client(self) -> DeadlineHTTP:
        return DeadlineHTTP(timeout_s=self.timeout_s, concurrency=self.concurrency)

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
