"""Why two items were (or were not) merged: the edge score of one pair, term by term.

The edge score (FITRep Sec. 3.1, attention-weighted fusion, with our near-match bonuses β and
attribute-conflict penalties γ; see :mod:`itemrep.dedup.fusion`) is

    score = (Σ_k α_k cos_k + Σ_{k,t} β_{k,t} match_{k,t} − Σ_c γ_c conf_c) / ρ

and :func:`explain_pair` returns every term of it, computed by
:meth:`~itemrep.dedup.fusion.AttentionFusion.pair_terms`, the function ``itemrep dedup``
(``edges.parquet``), ``itemrep pairs`` and the index score with: the terms add up to the score bit
for bit (float32, in the pipeline's order).

Three sources of the pair (``itemrep explain ITEM_A ITEM_B``):

* a dedup output folder (``--out OUT``): the model is re-created from ``OUT/run.json`` (its
  parameters and α, β, γ, τ; :func:`model_from_run`), the catalog it recorded is encoded again as
  ``dedup`` did (:meth:`~itemrep.dedup.pipeline.FITRep.dedup_encoding`), the concepts come from
  ``OUT/concepts.parquet`` and the score is checked against ``OUT/edges.parquet`` when the pair is an edge;
* a catalog and a model (``--catalog FILE [--model-dir DIR]``): encoded as ``dedup`` would;
* an index (``--index DIR``): the stored slot rows and the index's model, no re-encoding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.catalog import Catalog
from itemrep.errors import ItemrepError


class ExplainError(ItemrepError, ValueError):
    """A pair cannot be explained: an unknown item id or an unusable dedup output folder (the
    message names the id and the file)."""


def _kind(name: str) -> str:
    return "conflict" if name.startswith("conflict_") else "match" if name.startswith("match_") else "slot"


def _slot_of(name: str) -> str:
    if name.startswith("conflict_"):
        return name[len("conflict_"):]
    if name.startswith("match_"):
        return name[len("match_"):].split("@", 1)[0]
    return name


def explain_pair(model, slots, ids: Sequence[str], item_a: str, item_b: str, *, tau: float | None = None,
                 source: str = "catalog") -> dict:
    """The edge score of the pair (``item_a``, ``item_b``) and its terms.

    Args:
        model: a fitted :class:`~itemrep.dedup.pipeline.FITRep` (its ``score_pairs`` scorer and τ are used).
        slots: the :class:`~itemrep.dedup.slots.SlotSet` rows of ``ids`` (e.g. ``enc.slots`` of
            :meth:`~itemrep.dedup.pipeline.FITRep.dedup_encoding`).
        ids: item id of every row of ``slots`` (str, length N).
        item_a, item_b: the two item ids.
        tau: τ to compare with (default ``model.tau``).
        source: what ``ids`` come from (a file or folder), named when an id is unknown.

    Returns:
        A JSON-serialisable dict: ``item_a``, ``item_b``, ``tau``, ``score`` (the float32 edge score
        as a float, exactly ``np.float32`` sum of the contributions in order), ``passes``
        (score ≥ τ), ``margin`` (score − τ), ``nn_threshold`` (the model's nearest-neighbour rule
        threshold or None: a pair below τ but at or above it is an edge when it is one item's best
        candidate and the rule applies to the catalog), ``scale`` (1/ρ, the renormalisation over the modal
        slots both items have), and ``terms``: one dict per feature, in ``slots.feature_names``
        order, with ``feature``, ``kind`` (``slot``, ``match`` or ``conflict``), ``slot``,
        ``weight`` (α_k, β_{k,t} or −γ_c, float32), ``value`` (cos_k, the near-match value or
        conf_c = 1 − cos_c) and ``contribution`` (weight · value · scale, float32).

    Raises:
        ExplainError: an id that is not among ``ids`` (the message names it and ``source``).
    """
    pos = {str(x): n for n, x in enumerate(ids)}
    for x in (item_a, item_b):
        if str(x) not in pos:
            raise ExplainError(f"item {x!r} is not in {source} ({len(pos)} items); check the id (ids are compared as text)")
    i, j = np.array([pos[str(item_a)]], np.int64), np.array([pos[str(item_b)]], np.int64)
    pt = model.pair_terms(slots, i, j)
    score = np.float32(pt.score[0])
    t = float(model.tau if tau is None else tau)
    terms = [{"feature": n, "kind": _kind(n), "slot": _slot_of(n), "weight": float(pt.weights[k]),
              "value": float(pt.features[0, k]), "contribution": float(pt.terms[0, k])}
             for k, n in enumerate(pt.names)]
    nn = getattr(getattr(model, "clusterer_", None) or getattr(model, "clusterer", None), "nn_threshold", None)
    return {"item_a": str(item_a), "item_b": str(item_b), "tau": t, "score": float(score), "passes": bool(score >= t),
            "margin": float(score) - t, "nn_threshold": None if nn is None else float(nn),
            "scale": float(pt.scale[0]), "terms": terms}


def positions_in(catalog: Catalog, item_ids: Sequence[str], source: str) -> list[int]:
    """Positions of ``item_ids`` in ``catalog`` (catalog order).

    Raises:
        ExplainError: an id that is not in the catalog (the message names it and ``source``).
    """
    pos = {x: n for n, x in enumerate(catalog.ids)}
    for x in item_ids:
        if str(x) not in pos:
            raise ExplainError(f"item {x!r} is not in {source} ({len(pos)} items); check the id and --id-col")
    return [pos[str(x)] for x in item_ids]


def concepts_of(concepts: pd.DataFrame, item_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """``{item_id: {slot: [values]}}`` from a concept table (``concepts.parquet`` columns
    ``item_id, slot, value``), in table order; items without concepts get ``{}``."""
    out: dict[str, dict[str, list[str]]] = {str(x): {} for x in item_ids}
    rows = concepts[concepts["item_id"].astype(str).isin(out) & concepts["slot"].notna()]
    for iid, slot, value in zip(rows["item_id"].astype(str), rows["slot"], rows["value"]):
        vals = out[iid].setdefault(str(slot), [])
        if value is not None and str(value) not in vals:
            vals.append(str(value))
    return out


# ---------------------------------------------------------------- dedup output folders
def read_run(out_dir: str | Path) -> dict:
    """``OUT/run.json`` of an ``itemrep dedup`` run.

    Raises:
        ExplainError: the folder or ``run.json`` is missing or not JSON (the message names the file).
    """
    out = Path(out_dir)
    p = out / "run.json"
    if not p.is_file():
        raise ExplainError(f"{out}: no run.json here; is it an `itemrep dedup --out` folder?")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExplainError(f"{p}: not valid JSON ({e})") from None


def model_from_run(out_dir: str | Path, **overrides):
    """The model an ``itemrep dedup`` run used, re-created from ``OUT/run.json`` (parameters, the
    model's α, β, γ and the τ in force, an override included); keyword ``overrides`` as in
    :meth:`~itemrep.dedup.pipeline.FITRep.load` (run-time options only: progress, cache, extractor).

    Returns:
        ``(model, run)``: a :class:`~itemrep.dedup.pipeline.FITRep` and the ``run.json`` dict.

    Raises:
        ExplainError: no usable ``run.json``; ModelDirError: its parameters do not validate.
    """
    from itemrep.dedup.modelfile import check_model_payload
    from itemrep.dedup.pipeline import MODEL_FORMAT, FITRep

    run = read_run(out_dir)
    p = Path(out_dir) / "run.json"
    if "parameters" not in run or "alpha" not in run:
        raise ExplainError(f"{p}: lacks the model parameters (parameters, alpha); it was not written by `itemrep dedup`")
    fusion = run.get("fusion") or {"alpha": run["alpha"], "gamma": run.get("gamma") or None,
                                   "beta": run.get("beta") or None}  # older runs: α as resolved for the catalog
    params = dict(run["parameters"], tau=run.get("tau", run["parameters"].get("tau")))
    payload = check_model_payload({"format": MODEL_FORMAT, "itemrep_version": str(run.get("itemrep_version", "")),
                                   "params": params, "fusion": fusion}, p)
    return FITRep.from_payload(payload, p, **overrides), run


def catalog_from_run(run: dict, out_dir: str | Path, catalog: str | Path | None = None, **load_kw) -> Catalog:
    """The catalog a dedup run read: ``catalog`` when given (a moved copy), else the path
    ``run.json`` recorded; read with the recorded columns (``load_kw`` overrides them, e.g.
    ``sep``, ``id_col``).

    Raises:
        ExplainError: the run recorded no catalog path (or it is gone) and none is given;
        CatalogError: the catalog cannot be read.
    """
    info = run.get("catalog") or {}
    path = catalog or info.get("path")
    if not path:
        raise ExplainError(f"{Path(out_dir) / 'run.json'} records no catalog file; pass --catalog FILE (the catalog deduplicated)")
    if catalog is None and not Path(path).is_file():
        raise ExplainError(f"{Path(out_dir) / 'run.json'}: the catalog it recorded, {path}, is gone; pass --catalog FILE")
    cols = {f"{k}_col": v for k, v in (info.get("columns") or {}).items()
            if k in ("id", "title", "text", "image", "phash", "label") and v is not None}
    cols.update({k: v for k, v in load_kw.items() if v is not None})
    return Catalog.load(path, **cols)


def check_ids_in_out(out_dir: str | Path, item_ids: Sequence[str]) -> pd.DataFrame:
    """``OUT/clusters.parquet`` rows of ``item_ids`` (in order), before any costly work.

    Raises:
        ExplainError: the file is missing, or an id is not in it (the message names the id and the file).
    """
    p = Path(out_dir) / "clusters.parquet"
    if not p.is_file():
        raise ExplainError(f"{p}: missing; is {out_dir} an `itemrep dedup --out` folder?")
    cl = pd.read_parquet(p)
    by_id = cl.set_index(cl["item_id"].astype(str))
    for x in item_ids:
        if str(x) not in by_id.index:
            raise ExplainError(f"item {x!r} is not in {p} ({len(cl)} items); check the id (ids are compared as text)")
    return by_id.loc[[str(x) for x in item_ids]]


def edge_score(out_dir: str | Path, item_a: str, item_b: str) -> float | None:
    """The pair's score in ``OUT/edges.parquet`` (either order), ``None`` when it is not an edge."""
    p = Path(out_dir) / "edges.parquet"
    if not p.is_file():
        return None
    e = pd.read_parquet(p)
    col = "score" if "score" in e.columns else "similarity"
    a, b = e["item_a"].astype(str), e["item_b"].astype(str)
    hit = e[((a == item_a) & (b == item_b)) | ((a == item_b) & (b == item_a))]
    return float(hit[col].iloc[0]) if len(hit) else None
