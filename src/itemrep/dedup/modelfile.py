"""Schema of ``model.json`` (formats 1 and 2), validated as a whole when a model is loaded.

A malformed file fails at load time, before any feature is computed, with a message that names
the file and the field (pydantic's location), never a traceback from inside the pipeline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from itemrep.errors import ModelDirError

KNOWN_SOURCES = ("primary_text", "auxiliary_text", "description_text", "phash", "external")
KNOWN_ENCODERS = ("tfidf_word", "tfidf_word12", "tfidf_char", "dense", "phash", "external")


class _SlotSpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    level: Literal["primary", "auxiliary"]
    source: str
    encoder: Literal[KNOWN_ENCODERS]  # type: ignore[valid-type]
    conflict: bool = False
    knots: list[float] = []

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in KNOWN_SOURCES and not v.startswith("concepts:"):
            raise ValueError(f"unknown slot source {v!r}; use one of {', '.join(KNOWN_SOURCES)} or concepts:a,b")
        return v


class _ParamsModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    extractor: str = "rules"
    text_encoder: str
    reducer: Literal["pca", "umap", "none"]
    k: int = Field(ge=1, le=1000)
    tau: float = Field(gt=0.0, le=2.0)
    guard: bool
    guard_margin: float = Field(ge=0.0, le=2.0)
    nn_threshold: float | None = Field(default=None, gt=-2.0, le=2.0)
    mutual_k: int | None = Field(default=None, ge=1, le=1000)
    nn_min_share: float | None = Field(default=None, ge=0.0, le=1.0)
    images: Literal["auto", "on", "off"]
    ocr: bool
    edge_score: Literal["exact", "reduced"]
    random_state: int
    blend_rounds: int = Field(default=0, ge=0, le=10)
    blend_power: float = Field(default=3.0, gt=0.0, le=100.0)
    blend_floor: float | None = None
    slot_specs: list[_SlotSpecModel] = []


def _finite_weights(v: dict[str, float] | None) -> dict[str, float] | None:
    if v is None:
        return v
    for k, x in v.items():
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"weight {k!r} is {x!r}; weights must be finite and non-negative")
    return v


class _FusionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: dict[str, float] | None = None
    gamma: dict[str, float] | None = None
    beta: dict[str, float] | None = None
    primary_share: float = Field(0.9, ge=0.0, le=1.0)
    intercept: float | None = None
    tau_logistic: float | None = None

    _check = field_validator("alpha", "gamma", "beta")(classmethod(lambda cls, v: _finite_weights(v)))


class ModelFile(BaseModel):
    """The whole ``model.json``."""

    model_config = ConfigDict(extra="forbid")
    format: Literal[1, 2]
    itemrep_version: str
    params: _ParamsModel
    fusion: _FusionModel
    fit: dict | None = None
    tune: dict | None = None
    versions: dict = {}
    stages: dict[str, str] | None = None


def read_model_file(path: Path) -> dict:
    """Read and validate ``model.json``; returns the payload as plain JSON data.

    Raises:
        ModelDirError: not JSON, not an object, another format, or a field of the wrong type or
            value (the message names the file and the field, e.g. ``params.tau``).
    """
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path}: cannot read ({e})") from None
    return check_model_payload(payload, path)


def check_model_payload(payload, path: Path | str) -> dict:
    """Validate the contents of a ``model.json`` (or a payload built from a run's ``run.json``)
    read from ``path`` (named in messages); returns ``payload``.

    Raises:
        ModelDirError: as :func:`read_model_file`.
    """
    if not isinstance(payload, dict):
        raise ModelDirError(f"{path}: expected a JSON object, found {type(payload).__name__}")
    if payload.get("format") not in (1, 2):
        raise ModelDirError(f"{path}: model format {payload.get('format')!r}, this itemrep reads formats 1 and 2; re-run `itemrep fit`")
    try:
        ModelFile.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ModelDirError(f"{path}: field {loc}: {err['msg']} (got {err.get('input')!r:.80})") from None
    alpha = (payload.get("fusion") or {}).get("alpha") or {}
    names = {s["name"] for s in payload["params"].get("slot_specs", [])}
    unknown = sorted(set(alpha) - names) if names else []
    if unknown:
        raise ModelDirError(f"{path}: field fusion.alpha names slots {unknown} that params.slot_specs does not define")
    return payload
