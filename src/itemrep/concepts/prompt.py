"""Versioned CHIE prompt, JSON schema and response parsing for LLM back-ends (FITRep Sec. 3.1).

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1 "Concept-Hierarchical Information
Extraction") asks a multimodal LLM to describe each item as a hierarchy of concepts: **primary**
elements (what the item is) versus **auxiliary** ones (decoration around it), each with a facet
(content/form) and a kind (objective/subjective). This module is the one place that defines how
itemrep asks for that hierarchy and how the answer is checked:

* the prompt text lives in versioned files under ``itemrep/concepts/prompts/<version>/``
  (``system.md``, ``user.md``, a few-shot ``example.json`` and the value normalisation tables
  ``normalise.json``); :data:`PROMPT_VERSION` names the version and keys the response cache, so a
  prompt change never reuses stale answers;
* :func:`response_schema` is the JSON schema sent to servers for schema-constrained decoding
  (OpenAI ``response_format``, vLLM structured outputs, Ollama ``format``, llama.cpp grammars);
* :class:`LLMHierarchy` is the pydantic model every answer is validated against on the client,
  whatever the server promised (servers are known to fail open with unconstrained text and 200 OK);
* :func:`to_hierarchy` maps a validated answer onto :class:`~itemrep.concepts.schema.ConceptHierarchy`
  (level from the list the element is in, ``source="llm"``, values normalised by
  :func:`normalise_value`).

Salience: every element carries a salience in [0, 1], an item-level attention weight that fusion can
use next to the fitted global slot weights α (FITRep Sec. 3.2 uses global α; the per-element
salience is this project's extension).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from itemrep.concepts.schema import AUXILIARY_SLOTS, PRIMARY_SLOTS, Concept, ConceptHierarchy

#: Version of the prompt files (directory name under ``prompts/``). Part of every cache key.
PROMPT_VERSION = "chie-v1"

#: Most elements accepted per list (the schema's ``maxItems``; bounds generation length).
MAX_PRIMARY = 8
MAX_AUXILIARY = 6
#: Longest accepted value (characters).
MAX_VALUE_CHARS = 80

PrimarySlot = Literal[
    "category", "brand", "model", "spec", "color", "variant", "pack", "name", "visual_object", "ocr_primary"
]
AuxiliarySlot = Literal["promo", "shipping", "seller", "stock", "emoji", "visual_context", "ocr_auxiliary"]
assert set(PrimarySlot.__args__) == set(PRIMARY_SLOTS), "prompt slots out of sync with schema.PRIMARY_SLOTS"
assert set(AuxiliarySlot.__args__) == set(AUXILIARY_SLOTS), "prompt slots out of sync with schema.AUXILIARY_SLOTS"


class ResponseError(ValueError):
    """An LLM answer that cannot be used: not JSON, not matching the schema, or cut off.

    Attributes:
        reason: short machine-readable reason: ``"empty"``, ``"not_json"``, ``"schema"`` or ``"truncated"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Element(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS)
    facet: Literal["content", "form"]
    kind: Literal["objective", "subjective"]
    salience: float = Field(ge=0.0, le=1.0, strict=True)


class PrimaryElement(_Element):
    """One primary element of an LLM answer (slot from :data:`PRIMARY_SLOTS`)."""

    slot: PrimarySlot


class AuxiliaryElement(_Element):
    """One auxiliary element of an LLM answer (slot from :data:`AUXILIARY_SLOTS`)."""

    slot: AuxiliarySlot


class LLMHierarchy(BaseModel):
    """The JSON object an LLM must return (validated client-side, always).

    ``{"primary": [{"slot", "value", "facet", "kind", "salience"}, ...], "auxiliary": [...]}`` with at
    most :data:`MAX_PRIMARY` / :data:`MAX_AUXILIARY` elements; unknown keys are rejected.
    """

    model_config = ConfigDict(extra="forbid")
    primary: list[PrimaryElement] = Field(max_length=MAX_PRIMARY)
    auxiliary: list[AuxiliaryElement] = Field(max_length=MAX_AUXILIARY)


def _element_schema(slots: tuple[str, ...]) -> dict:
    return {
        "type": "object",
        "properties": {
            "slot": {"type": "string", "enum": list(slots)},
            "value": {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_CHARS},
            "facet": {"type": "string", "enum": ["content", "form"]},
            "kind": {"type": "string", "enum": ["objective", "subjective"]},
            "salience": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["slot", "value", "facet", "kind", "salience"],
        "additionalProperties": False,
    }


def response_schema() -> dict:
    """The JSON schema of :class:`LLMHierarchy`, inlined (no ``$ref``) for server-side constrained decoding.

    Written by hand rather than from ``LLMHierarchy.model_json_schema()`` so that every server's
    schema-to-grammar converter (OpenAI strict mode, vLLM/xgrammar, llama.cpp GBNF, Ollama) accepts it:
    all properties required, ``additionalProperties: false``, no ``$defs``. The test suite checks that
    it accepts exactly what :class:`LLMHierarchy` accepts on the bundled example.

    Returns:
        A JSON-schema dict.
    """
    return {
        "type": "object",
        "properties": {
            "primary": {"type": "array", "items": _element_schema(PRIMARY_SLOTS), "maxItems": MAX_PRIMARY},
            "auxiliary": {"type": "array", "items": _element_schema(AUXILIARY_SLOTS), "maxItems": MAX_AUXILIARY},
        },
        "required": ["primary", "auxiliary"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Prompt:
    """The files of one prompt version.

    Attributes:
        version: directory name, e.g. ``"chie-v1"``.
        system: system message text.
        user_template: user message template with ``{title}``, ``{text}`` and ``{visual}`` fields.
        example: few-shot example: ``{"title", "text", "visual", "answer"}``.
        units: unit spelling -> (canonical unit, factor) for :func:`normalise_value`.
        colors: colour word (any language) -> English colour.
    """

    version: str
    system: str
    user_template: str
    example: dict
    units: dict[str, tuple[str, float]]
    colors: dict[str, str]


@lru_cache(maxsize=4)
def load_prompt(version: str = PROMPT_VERSION) -> Prompt:
    """Read the prompt files of ``version`` from the package.

    Raises:
        FileNotFoundError: when ``prompts/<version>/`` or one of its files is missing.
    """
    base = resources.files("itemrep.concepts") / "prompts" / version
    try:
        system = (base / "system.md").read_text(encoding="utf-8").strip()
        user = (base / "user.md").read_text(encoding="utf-8")
        example = json.loads((base / "example.json").read_text(encoding="utf-8"))
        norm = json.loads((base / "normalise.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"prompt version {version!r} is incomplete or missing: {e}") from None
    LLMHierarchy.model_validate(example["answer"])  # the shipped example must itself be valid
    units = {k.lower(): (v[0], float(v[1])) for k, v in norm["units"].items()}
    return Prompt(version, system, user, example, units, {k.lower(): v for k, v in norm["colors"].items()})


def render_user_text(title: str, text: str = "", visual: str = "", *, prompt: Prompt | None = None) -> str:
    """Fill the user template.

    Args:
        title: item title (cleaned).
        text: item free text; truncated to 1,500 characters (long descriptions cost tokens, add little).
        visual: text-only route: image labels and OCR text, one line (``""`` when none).
        prompt: prompt files (default: :func:`load_prompt`).
    """
    p = prompt or load_prompt()
    text = (text or "").strip()
    if len(text) > 1500:
        text = text[:1500] + " …"
    vis = f"image: {visual.strip()}\n" if visual and visual.strip() else ""
    return p.user_template.format(title=title.strip() or "(none)", text=text or "(none)", visual=vis)


def build_messages(
    title: str,
    text: str = "",
    *,
    visual: str = "",
    image_url: str | None = None,
    prompt: Prompt | None = None,
) -> list[dict]:
    """OpenAI chat-completions messages for one item: system, one few-shot turn, the item.

    Args:
        title, text: item title and text.
        visual: text-only route: image labels and OCR text.
        image_url: ``data:image/jpeg;base64,...`` URL of the (resized) item image, or ``None``.
            When given, the user content is a list of parts ``[image_url, text]`` (OpenAI vision format,
            accepted by vLLM, SGLang, Ollama and llama.cpp servers).
        prompt: prompt files (default: :func:`load_prompt`).

    Returns:
        A list of message dicts (``role``, ``content``).
    """
    p = prompt or load_prompt()
    return messages_for_text(render_user_text(title, text, visual, prompt=p), image_url=image_url, prompt=p)


def messages_for_text(user_text: str, *, image_url: str | None = None, prompt: Prompt | None = None) -> list[dict]:
    """Like :func:`build_messages`, from an already rendered user text (see :func:`render_user_text`)."""
    p = prompt or load_prompt()
    ex = p.example
    content: str | list[dict]
    if image_url is not None:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": user_text}]
    else:
        content = user_text
    return [
        {"role": "system", "content": p.system},
        {"role": "user", "content": render_user_text(ex["title"], ex.get("text", ""), ex.get("visual", ""), prompt=p)},
        {"role": "assistant", "content": json.dumps(ex["answer"], ensure_ascii=False)},
        {"role": "user", "content": content},
    ]


def repair_message(error: ResponseError) -> dict:
    """The user message of the single repair attempt after an unusable answer."""
    if error.reason == "truncated":
        hint = "Your reply was cut off before the JSON ended. Reply again with fewer, shorter elements."
    else:
        hint = f"Your reply was not valid ({error}). Reply again with only the JSON object matching the schema."
    return {"role": "user", "content": hint}


def repair_turns(answer: str | None, error: ResponseError, *, echo_limit: int) -> list[dict]:
    """The messages appended to a request for its single repair attempt.

    Normally the unusable answer (as the assistant turn) and :func:`repair_message`. An answer longer
    than ``echo_limit`` characters is never sent back (it would cost the server as much again, and
    it is not an answer to the request): the repair then only says that the reply was too long.

    Args:
        answer: the unusable answer text (already redacted by the caller).
        error: why it was unusable.
        echo_limit: longest answer quoted back, in characters.
    """
    answer = answer or ""
    if len(answer) > echo_limit:
        return [{
            "role": "user",
            "content": f"Your previous reply was too long ({len(answer)} characters) and is not shown again. "
            "Reply with only the JSON object matching the schema, with few, short elements.",
        }]  # fmt: skip
    return [{"role": "assistant", "content": answer}, repair_message(error)]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_response(text: str | None, *, finish_reason: str | None = None) -> LLMHierarchy:
    """Parse and validate one LLM answer.

    Accepts a bare JSON object, a JSON object in a Markdown code fence, or the first JSON object
    embedded in prose; numeric saliences are clipped into [0, 1] (see :func:`_clip_salience`);
    the result must validate against :class:`LLMHierarchy`.

    Args:
        text: the message content.
        finish_reason: the choice's ``finish_reason``; ``"length"`` means the output was cut off.

    Returns:
        The validated answer.

    Raises:
        ResponseError: ``reason`` is ``"empty"``, ``"truncated"``, ``"not_json"`` or ``"schema"``.
    """
    if text is None or not text.strip():
        if finish_reason == "length":
            raise ResponseError("truncated", "output cut off (finish_reason=length) before any content")
        raise ResponseError("empty", "empty response")
    s = text.strip()
    m = _FENCE.search(s)
    if m:
        s = m.group(1).strip()
    obj = None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        start = s.find("{")
        if start >= 0:
            try:
                obj, _ = json.JSONDecoder().raw_decode(s[start:])
            except json.JSONDecodeError:
                obj = None
    if obj is None:
        if finish_reason == "length":
            raise ResponseError("truncated", "output cut off (finish_reason=length), JSON incomplete")
        raise ResponseError("not_json", f"no JSON object in response: {text[:120]!r}")
    _clip_salience(obj)
    try:
        return LLMHierarchy.model_validate(obj)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ResponseError("schema", f"JSON does not match the schema at {loc}: {first['msg']}") from None


def _clip_salience(obj: object) -> None:
    """Clip numeric ``salience`` values into [0, 1] in place.

    Grammar-constrained servers bound strings and enums but not numbers (llama.cpp's JSON-schema
    grammar ignores ``minimum``/``maximum`` for ``number``), so small models write ``1.5`` or ``5``;
    the value still has to be a number (booleans and strings are left for validation to reject).
    """
    if not isinstance(obj, dict):
        return
    for key in ("primary", "auxiliary"):
        for el in obj.get(key) or []:
            if isinstance(el, dict):
                v = el.get("salience")
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                    el["salience"] = min(1.0, max(0.0, float(v)))


_NUM_UNIT = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([a-zA-Z\"\u4e00-\u9fff]+)\s*$")


def _fmt_number(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return s or "0"


def normalise_value(slot: str, value: str, *, prompt: Prompt | None = None) -> str:
    """Normalise one element value: lower case, single spaces; units and colours canonicalised.

    * ``spec``: a single ``<number><unit>`` is converted with the ``units`` table of the prompt version
      (``"500ml"`` -> ``"0.5 l"``, ``"250 gr"`` -> ``"0.25 kg"``, ``"1TB"`` -> ``"1024 gb"``); decimal
      commas are read as points. Anything else is only lower-cased.
    * ``color``: looked up in the ``colors`` table (``"merah"`` -> ``"red"``, ``"红色"`` -> ``"red"``).

    Args:
        slot: the element's slot.
        value: the raw value from the LLM.
        prompt: prompt files (default: :func:`load_prompt`).

    Returns:
        The normalised value (may be ``""`` when the value was only whitespace).
    """
    p = prompt or load_prompt()
    v = " ".join(value.split()).lower()
    if slot == "spec":
        m = _NUM_UNIT.match(v)
        if m and m.group(2) in p.units:
            unit, factor = p.units[m.group(2)]
            v = f"{_fmt_number(float(m.group(1).replace(',', '.')) * factor)} {unit}"
    elif slot == "color":
        v = p.colors.get(v, v)
    return v


def to_hierarchy(item_id: str, answer: LLMHierarchy, extractor: str, *, prompt: Prompt | None = None) -> ConceptHierarchy:
    """Map a validated LLM answer onto the project's :class:`ConceptHierarchy`.

    Level comes from the list an element is in; ``source`` is ``"llm"``; values are normalised with
    :func:`normalise_value`; duplicates (same slot and normalised value) keep the first occurrence
    with the highest salience.

    Args:
        item_id: the item's id.
        answer: validated answer.
        extractor: ``"name/version"`` of the back-end.
    """
    p = prompt or load_prompt()
    concepts: list[Concept] = []
    seen: dict[tuple[str, str], int] = {}
    for level, elements in (("primary", answer.primary), ("auxiliary", answer.auxiliary)):
        for el in elements:
            v = normalise_value(el.slot, el.value, prompt=p)
            if not v:
                continue
            key = (el.slot, v)
            if key in seen:
                c = concepts[seen[key]]
                if el.salience > c.salience:
                    concepts[seen[key]] = c.model_copy(update={"salience": el.salience})
                continue
            seen[key] = len(concepts)
            concepts.append(
                Concept(
                    slot=el.slot,
                    value=v,
                    raw=el.value,
                    level=level,
                    facet=el.facet,
                    kind=el.kind,
                    source="llm",
                    salience=float(el.salience),
                )
            )
    return ConceptHierarchy(item_id=item_id, concepts=concepts, extractor=extractor)
