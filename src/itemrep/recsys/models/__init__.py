"""Recommender models and their registry.

``MODELS`` maps a name (as used by ``itemrep rec train --model NAME``) to the model class; every
class takes ``(dataset, cfg: dict, *, clusters=None)`` (``clusters``: int64 (n_items,) cluster ids,
used by the ``cluster_emb`` option of BPR, LightGCN and LIRDRec).
"""

from __future__ import annotations

import numpy as np

from itemrep.recsys.models.base import RecModel
from itemrep.recsys.models.bpr import BPRMF
from itemrep.recsys.models.lightgcn import LightGCN
from itemrep.recsys.models.lirdrec import LIRDRec
from itemrep.recsys.models.vbpr import VBPR

MODELS: dict[str, type[RecModel]] = {"bpr": BPRMF, "lightgcn": LightGCN, "vbpr": VBPR, "lirdrec": LIRDRec}


def build_model(name: str, dataset, cfg: dict, *, clusters: np.ndarray | None = None) -> RecModel:
    """Instantiate model ``name`` for ``dataset`` (``clusters``: int64 (n_items,) cluster ids or ``None``).

    Raises:
        ValueError: unknown model name (lists the known ones); a bad ``cluster_emb`` option.
    """
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](dataset, cfg, clusters=clusters)


__all__ = ["MODELS", "RecModel", "build_model", "BPRMF", "LightGCN", "VBPR", "LIRDRec"]
