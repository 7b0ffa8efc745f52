"""Recommender models and their registry.

``MODELS`` maps a name (as used by ``itemrep rec train --model NAME``) to the model class; every
class takes ``(dataset, cfg: dict)``.
"""

from __future__ import annotations

from itemrep.recsys.models.base import RecModel
from itemrep.recsys.models.bpr import BPRMF
from itemrep.recsys.models.lightgcn import LightGCN
from itemrep.recsys.models.lirdrec import LIRDRec
from itemrep.recsys.models.vbpr import VBPR

MODELS: dict[str, type[RecModel]] = {"bpr": BPRMF, "lightgcn": LightGCN, "vbpr": VBPR, "lirdrec": LIRDRec}


def build_model(name: str, dataset, cfg: dict) -> RecModel:
    """Instantiate model ``name`` for ``dataset``.

    Raises:
        ValueError: unknown model name (lists the known ones).
    """
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](dataset, cfg)


__all__ = ["MODELS", "RecModel", "build_model", "BPRMF", "LightGCN", "VBPR", "LIRDRec"]
