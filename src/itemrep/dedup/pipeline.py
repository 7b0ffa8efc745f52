"""The FITRep orchestrator: CHIE -> slot encoding -> attention fusion -> SPDR -> FBC.

``FITRep`` takes its stages as arguments with working defaults (like BERTopic's sub-models); each
stage follows scikit-learn's conventions and saves itself in a versioned, non-pickle format:

>>> from itemrep.catalog import Catalog
>>> from itemrep.dedup.pipeline import FITRep
>>> cat = Catalog.load("examples/catalog.csv", label_col="label")   # doctest: +SKIP
>>> model = FITRep().fit(cat)                                         # learns α and τ
>>> result = model.dedup(cat)                                         # cluster ids
>>> result.clusters.head()                                            # doctest: +SKIP

Data flow for N items, in chunks of ``chunk_size`` (extraction and term counting run in
``n_jobs`` worker processes for the rule-based extractor):

1. CHIE: concepts per item -> a columnar table (``item_id, slot, value, …``), never N live objects;
2. slot encoders (:class:`~itemrep.dedup.slots.SlotEncoder`): hashed TF-IDF rows (sparse), phash
   bits, image embeddings; the fitted state (document frequencies) makes them catalog-independent;
3. fusion (:class:`~itemrep.dedup.fusion.AttentionFusion`): ``z = ⊕ √α_k c_k`` over dense views of
   the slots with α_k > 0 only;
4. SPDR (:mod:`itemrep.dedup.reduce`): PCA fitted on a sample, applied chunk by chunk;
5. FBC (:mod:`itemrep.dedup.cluster`): FAISS kNN graph, exact edge scores, connected components,
   chaining guard, cluster id = hash of the representative's id.

Items are processed in a canonical order (sorted by item id) and results are returned in catalog
order, so the same items give the same cluster ids whatever the row order.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from itemrep import __version__
from itemrep.catalog import Catalog, Item, csv_safe
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import ConceptHierarchy
from itemrep.dedup.cluster import Clustering, NearDuplicateClusterer, candidate_recall
from itemrep.dedup.fusion import AttentionFusion
from itemrep.dedup.metrics import dedup_metrics, mean_item_f1, pair_comembership_accuracy, pair_comembership_f1
from itemrep.dedup.neighbours import nearest_pairs
from itemrep.dedup.reduce import load_reducer, make_reducer
from itemrep.dedup.slots import DEFAULT_SLOT_SPECS, RawSlots, SlotEncoder, SlotSet, SlotSpec, concept_level
from itemrep.errors import ItemFailure, ModelDirError
from itemrep.runinfo import Progress, StageTimer

MODEL_FORMAT = 2
DEFAULT_TAU = 0.55
#: Weight of the prior model in :meth:`FITRep.fit` with ``prior`` (see :meth:`AttentionFusion.fit`):
#: chosen among 1, 10, 100 and τ only on the select split of Shopee (docs/dedup.md, review loop).
DEFAULT_PRIOR_STRENGTH = 10.0
#: ``nn_rule="auto"`` applies the nearest-neighbour rule only on catalogs where at least this share
#: of the items has an edge ≥ τ: chosen on Shopee's select split thinned to 0 %–86 % singletons
#: (``bench/nn_rule.py``: the rule gained down to a share of 0.47 and lost from 0.35; the midpoint,
#: rounded to 0.05; docs/dedup.md).
NN_MIN_SHARE = 0.4

#: Columns of the concept table (``concepts.parquet``).
CONCEPT_COLUMNS = ["item_id", "slot", "value", "raw", "level", "facet", "kind", "source", "salience", "extractor", "error"]

#: Every file ``itemrep dedup --out`` may write (stale ones from an earlier run are removed).
OUTPUT_FILES = ("clusters.parquet", "concepts.parquet", "edges.parquet", "neighbours.parquet", "failures.csv", "run.json",
                "metrics.json", "item_features.parquet")


def concepts_table(hierarchies: Sequence[ConceptHierarchy]) -> pa.Table:
    """One row per concept (columns :data:`CONCEPT_COLUMNS`), as an Arrow table.

    Items without any concept get one row with empty slot, so none is dropped.
    """
    cols: dict[str, list] = {c: [] for c in CONCEPT_COLUMNS}
    for h in hierarchies:
        rows = h.concepts or [None]
        for c in rows:
            cols["item_id"].append(h.item_id)
            cols["extractor"].append(h.extractor)
            cols["error"].append(h.error)
            for k in ("slot", "value", "raw", "level", "facet", "kind", "source", "salience"):
                cols[k].append(getattr(c, k) if c is not None else None)
    schema = pa.schema([(c, pa.float32() if c == "salience" else pa.string()) for c in CONCEPT_COLUMNS])
    return pa.table(cols, schema=schema)


def concepts_frame(hierarchies: Sequence[ConceptHierarchy]) -> pd.DataFrame:
    """:func:`concepts_table` as a pandas DataFrame."""
    return concepts_table(hierarchies).to_pandas()


def content_keys(concepts: Sequence[Sequence[tuple[str, str, str]]], phashes: Sequence[str | None]) -> np.ndarray:
    """uint64 (N,) key per item: equal keys mean identical slot inputs (concepts and phash).

    Such items are identical for the model and are always put in one cluster.
    """
    out = np.empty(len(concepts), dtype=np.uint64)
    for n, (cs, ph) in enumerate(zip(concepts, phashes)):
        s = "\x1e".join(f"{a}\x1f{b}\x1f{c}" for a, b, c in cs) + "\x1d" + (ph or "")
        out[n] = int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
    return out


@dataclass
class Encoded:
    """Items through CHIE, slot encoding, fusion and SPDR (no clustering yet), in the given order.

    Attributes:
        ids: object (N,) item ids (str).
        slots: the :class:`~itemrep.dedup.slots.SlotSet` (exact slot rows, for edge scores).
        vectors: float32 (N, d) reduced fused vectors, unit rows (the FAISS space).
        keys: uint64 (N,) content keys (:func:`content_keys`).
        concept_keys: uint64 (N,) keys of the concepts alone (0 for an item without concepts).
        input_keys: uint64 (N,) keys of the raw inputs (title, text, image path).
        concepts: Arrow table of every item's concepts (:data:`CONCEPT_COLUMNS`).
        failures: per-item failures of every stage so far.
        stats: per-stage extra counters for ``run.json``.
    """

    ids: np.ndarray
    slots: SlotSet
    vectors: np.ndarray
    keys: np.ndarray
    concepts: pa.Table
    failures: list[ItemFailure]
    stats: dict = field(default_factory=dict)
    concept_keys: np.ndarray | None = None
    input_keys: np.ndarray | None = None


@dataclass
class DedupResult:
    """Output of :meth:`FITRep.dedup`.

    Attributes:
        clusters: DataFrame ``item_id, cluster_id, representative_id, score`` (ids strings;
            ``score`` is the item's edge score to its representative, which can exceed 1: near-match
            bonuses add to Σ α_k cos_k; 1.0 for the representative itself).
        concepts: Arrow table of every item's concepts (:data:`CONCEPT_COLUMNS`).
        edges: DataFrame of the kept edges: ``item_a, item_b, similarity`` and one ``term_<feature>``
            column per feature (α_k cos_k, −γ_c conflict_c, β near-match), so every merge can be explained.
        metrics: dedup metrics when the catalog has labels, else ``None``.
        run: run information (parameters, seconds and memory per stage, counts).
        failures: per-item failures.
        neighbours: each item's best candidate pair and best non-edge pair (``item_a, item_b, score,
            edge, term_<feature>…``; see :mod:`itemrep.dedup.neighbours`), or ``None``.
    """

    clusters: pd.DataFrame
    concepts: pa.Table
    edges: pd.DataFrame
    metrics: dict | None
    run: dict
    failures: list[ItemFailure]
    neighbours: pd.DataFrame | None = None

    def write(self, out_dir: str | Path) -> None:
        """Write ``clusters.parquet``, ``concepts.parquet``, ``edges.parquet``, ``failures.csv``,
        ``run.json`` and (with labels) ``metrics.json`` into ``out_dir``.

        Files are written into a temporary folder beside ``out_dir`` and moved in at the end, so a
        failed write leaves no partial output; files of an earlier run that this run does not write
        (e.g. ``metrics.json``) are removed.

        Raises:
            OSError: when ``out_dir`` cannot be created or written (the message names the path).
        """
        out = Path(out_dir)
        check_out_dir(out)
        tmp = Path(tempfile.mkdtemp(prefix=".itemrep-tmp-", dir=out.parent if out.parent.exists() else None))
        try:
            self.clusters.to_parquet(tmp / "clusters.parquet", index=False)
            pq.write_table(self.concepts, tmp / "concepts.parquet")
            self.edges.to_parquet(tmp / "edges.parquet", index=False)
            if self.neighbours is not None:
                self.neighbours.to_parquet(tmp / "neighbours.parquet", index=False)
            fail = pd.DataFrame([f.to_dict() for f in self.failures], columns=["item_id", "stage", "field", "message", "row"])
            csv_safe(fail).to_csv(tmp / "failures.csv", index=False)
            (tmp / "run.json").write_text(json.dumps(self.run, indent=2, default=str))
            if self.metrics is not None:
                (tmp / "metrics.json").write_text(json.dumps(self.metrics, indent=2))
            out.mkdir(parents=True, exist_ok=True)
            written = {p.name for p in tmp.iterdir()}
            for name in OUTPUT_FILES:
                if name not in written and (out / name).exists():
                    (out / name).unlink()
            for name in sorted(written):
                os.replace(tmp / name, out / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def check_out_dir(out: str | Path) -> Path:
    """Check before any work that ``out`` can hold the outputs: a directory (created if needed)
    where a file can be written.

    Raises:
        OSError: naming ``out`` when it is a file, lies under a file, or is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OSError(f"--out {out}: exists and is not a directory; choose another path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".itemrep-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"--out {out}: cannot write there ({e.strerror or e}); choose a writable directory") from None
    return out


def default_extractor() -> ConceptExtractor:
    """The offline rule-based CHIE extractor."""
    from itemrep.concepts.rules import RuleBasedExtractor

    return RuleBasedExtractor()


# ---------------------------------------------------------------- worker side
_WORK: dict = {}


def encode_batch(extractor: ConceptExtractor, encoder: SlotEncoder, items: Sequence[Item]):
    """The per-item work of one batch, with no state shared between batches: CHIE, the concept
    table, raw slot inputs (hashed term counts, phash bits) and content keys.

    This is the function worker processes run on chunks, and the one a data-parallel engine maps
    over partitions (e.g. Ray Data ``map_batches`` over parquet files): its inputs are a stateless
    extractor and an un-fitted :class:`~itemrep.dedup.slots.SlotEncoder` (only its ``count`` is used),
    its outputs are plain arrays and an Arrow table that concatenate in order.

    Returns:
        ``(concepts: pa.Table, raw: RawSlots, keys: uint64 (3, n) (see :func:`_keys`), failures: list[ItemFailure], extractor stats: dict)``.
    """
    phashes = [it.phash for it in items]
    if hasattr(extractor, "extract_columns"):  # columnar fast path: no per-concept objects at all
        cols = extractor.extract_columns(items)
        table = _columns_table(cols)
        concepts, errors = _group_columns(cols, len(items))
    else:
        hier = extractor.extract(items)
        table = concepts_table(hier)
        concepts = [[(c.slot, c.value, concept_level(c.level, c.source)) for c in h.concepts] for h in hier]
        errors = [h.error for h in hier]
    fails = [ItemFailure(it.item_id, "extract", "concepts", e, it.row) for it, e in zip(items, errors) if e]
    raw = encoder.count(concepts, phashes)
    return table, raw, _keys(concepts, phashes, items), fails, dict(getattr(extractor, "stats_", {}))


def _columns_table(cols: dict[str, list]) -> pa.Table:
    schema = pa.schema([(c, pa.float32() if c == "salience" else pa.string()) for c in CONCEPT_COLUMNS])
    return pa.table({c: cols[c] for c in CONCEPT_COLUMNS}, schema=schema)


def _group_columns(cols: dict[str, list], n: int) -> tuple[list[list[tuple[str, str, str]]], list[str | None]]:
    """Per-item ``(slot, value, level)`` lists and errors from concept columns whose rows are
    grouped by item in item order (every item has at least one row); concepts of the description
    text get level :data:`~itemrep.dedup.slots.DESCRIPTION_LEVEL` (see :func:`~itemrep.dedup.slots.concept_level`)."""
    concepts: list[list[tuple[str, str, str]]] = []
    errors: list[str | None] = []
    prev = object()
    for iid, slot, value, level, src, err in zip(cols["item_id"], cols["slot"], cols["value"], cols["level"], cols["source"],
                                                 cols["error"]):
        if iid != prev:
            concepts.append([])
            errors.append(err)
            prev = iid
        if slot is not None:
            concepts[-1].append((slot, value, concept_level(level, src)))
    if len(concepts) != n:
        raise RuntimeError(f"extractor returned concepts for {len(concepts)} of {n} items")
    return concepts, errors


def _keys(concepts, phashes, items) -> np.ndarray:
    """uint64 (3, n): content keys, concept-only keys (0 where an item has no concept) and keys of
    the raw inputs (title, text, image path)."""
    ck = content_keys(concepts, [None] * len(concepts))
    ck[np.fromiter((not c for c in concepts), dtype=bool, count=len(concepts))] = 0
    raw = content_keys([[(it.title, it.text, str(it.image or ""))] for it in items], [None] * len(items))
    return np.stack([content_keys(concepts, phashes), ck, raw])


def _worker(bounds: tuple[int, int]):
    s, e = bounds
    return encode_batch(_WORK["extractor"], _WORK["encoder"], _WORK["items"][s:e])


_KEPT: dict[int, dict] = {}  # id(FITRep) -> {"pool", "key"}: worker pools kept between calls (FITRep.keep_workers)


def _close_kept(owner: int) -> None:
    slot = _KEPT.pop(owner, None)
    if slot and slot.get("pool") is not None:
        slot["pool"].close()
        slot["pool"].join()


def _ignore_sigint() -> None:
    """Pool initializer: Ctrl-C reaches the whole process group; the parent handles it (rolls back,
    stops the pool), so a worker must not die mid-task and leave the parent waiting for its result."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_items(items):
    """Task of a kept pool (:meth:`FITRep.keep_workers`): the items come pickled, the stages were inherited at fork."""
    return encode_batch(_WORK["extractor"], _WORK["encoder"], items)


class FITRep:
    """FITRep near-duplicate deduplication (Zhang et al. 2025, arXiv 2511.21389).

    Every stage is given as an object or a name; objects are copied, never mutated.

    Args:
        extractor: CHIE back-end (a :class:`~itemrep.concepts.base.ConceptExtractor`; default:
            rule-based, offline).
        text_encoder: dense text encoder for the ``primary_sem`` slot: ``"none"`` (default: on
            Shopee it added no F1 over the TF-IDF slots and cost most of the run time, see
            docs/dedup.md), ``"use"`` (bundled multilingual USE), ``"st:PATH"`` or an object with
            ``encode(list[str]) -> float32 (N, d)``.
        slot_specs: slot definitions (default :data:`~itemrep.dedup.slots.DEFAULT_SLOT_SPECS`).
        fusion: :class:`~itemrep.dedup.fusion.AttentionFusion` (α, β, γ; default α favours primary slots).
        reducer: ``"pca"`` (default), ``"umap"``, ``"none"`` or an object with ``fit``/``transform``/``stats``.
        clusterer: :class:`~itemrep.dedup.cluster.NearDuplicateClusterer` (τ, k, guard).
        threshold: τ override (None: the clusterer's / the fitted one).
        images: ``"auto"`` (use image features when the catalog has images and the image
            encoder is installed), ``"on"`` or ``"off"``.
        ocr: read text in images (slower).
        cache_dir: feature cache directory for image features.
        edge_score: ``"exact"`` scores candidate pairs with the exact slot-decomposed similarity;
            ``"reduced"`` uses the inner product of the reduced vectors.
        chunk_size: items per chunk (bounds the memory of the per-item stages).
        n_jobs: worker processes for extraction and term counting (rule-based extractor only).
        random_state: seed for every random step.
        progress: show progress bars.
        blend_rounds: rounds of neighbourhood blending of the slot vectors before the candidate
            pairs are scored (:mod:`itemrep.dedup.blend`; 0 = off, the default). Memory grows with
            the blended rows' non-zeros: meant for catalogs up to some 10^5 items.
        blend_power: the exponent p of the blending weights ``max(s, 0) ** p``.
        blend_floor: candidate pairs scoring below it do not blend (default τ - guard margin).

    Fitted attributes: ``slot_encoder_``, ``reducer_``, ``fusion_``, ``clusterer_`` (after
    :meth:`fit`, :meth:`fit_encoders` or :meth:`load`), ``fit_info_`` (after :meth:`fit`).

    Raises:
        ValueError: for an unknown name of images, reducer or edge_score.
    """

    def __init__(
        self,
        extractor: ConceptExtractor | str | None = None,
        text_encoder="none",
        slot_specs: Sequence[SlotSpec] = DEFAULT_SLOT_SPECS,
        fusion: AttentionFusion | None = None,
        reducer="pca",
        clusterer: NearDuplicateClusterer | None = None,
        threshold: float | None = None,
        images: str = "auto",
        ocr: bool = False,
        cache_dir: str | Path | None = None,
        edge_score: str = "exact",
        chunk_size: int = 20000,
        n_jobs: int | None = None,
        random_state: int = 0,
        progress: bool = False,
        blend_rounds: int = 0,
        blend_power: float = 3.0,
        blend_floor: float | None = None,
    ) -> None:
        if int(blend_rounds) < 0 or float(blend_power) <= 0:
            raise ValueError(f"blend_rounds must be >= 0 and blend_power > 0; got {blend_rounds!r}, {blend_power!r}")
        checks = [("images", images, ("auto", "on", "off")), ("edge_score", edge_score, ("exact", "reduced"))]
        if isinstance(reducer, str):
            checks.append(("reducer", reducer, ("pca", "umap", "none")))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}; got {value!r}")
        if threshold is not None and not (0.0 < float(threshold) <= 2.0):
            raise ValueError(f"--threshold must be in (0, 2]; got {threshold!r}")
        self.extractor = extractor
        self.text_encoder = text_encoder
        self.slot_specs = tuple(slot_specs)
        self.fusion = fusion
        self.reducer = reducer
        self.clusterer = clusterer
        self.threshold = threshold
        self.images = images
        self.ocr = ocr
        self.cache_dir = cache_dir
        self.edge_score = edge_score
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress
        self.blend_rounds = blend_rounds
        self.blend_power = blend_power
        self.blend_floor = blend_floor

    def _blend(self, enc: Encoded, fusion: AttentionFusion, clusterer: NearDuplicateClusterer, i, j) -> None:
        """Neighbourhood blending (:mod:`itemrep.dedup.blend`), ``blend_rounds`` times: the slot
        rows of ``enc`` are replaced by their blends over the scored candidate pairs (i, j) (pairs
        below ``blend_floor``, default τ - guard margin, do not blend)."""
        if not self.blend_rounds or self.edge_score == "reduced" or len(i) == 0:  # reduced: no slots to blend
            return
        from itemrep.dedup.blend import blend_slots, blend_weights

        floor = clusterer.threshold - clusterer.guard_margin if self.blend_floor is None else float(self.blend_floor)
        for _ in range(int(self.blend_rounds)):
            score = _score_in_blocks(fusion, enc.slots, i, j, np.inf)[0]
            enc.slots = blend_slots(enc.slots, blend_weights(len(enc.ids), i, j, score, self.blend_power, floor))

    # ------------------------------------------------------------------ stage construction
    def _make_extractor(self) -> ConceptExtractor:
        if self.extractor is None or self.extractor == "rules":
            return default_extractor()
        if isinstance(self.extractor, str):
            raise ValueError(f"unknown extractor name {self.extractor!r}; pass 'rules' or an extractor object")
        return copy.copy(self.extractor)

    def _make_dense_text_encoder(self):
        from itemrep.encoders.text import make_dense_text_encoder

        if self.text_encoder is None or isinstance(self.text_encoder, str):
            return make_dense_text_encoder(self.text_encoder or "none")
        return self.text_encoder

    def _make_reducer(self, n: int):
        if not isinstance(self.reducer, str):
            return copy.deepcopy(self.reducer)
        return make_reducer(self.reducer if n > 50 else "none", random_state=self.random_state)  # too few items to learn a projection

    def _fusion(self) -> AttentionFusion:
        return getattr(self, "fusion_", None) or copy.deepcopy(self.fusion) or AttentionFusion()

    def _clusterer(self) -> NearDuplicateClusterer:
        c = getattr(self, "clusterer_", None) or copy.deepcopy(self.clusterer) or NearDuplicateClusterer(threshold=DEFAULT_TAU)
        if self.threshold is not None:
            c = copy.deepcopy(c)
            c.threshold = float(self.threshold)
        return c

    @property
    def tau(self) -> float:
        """τ in use (fitted, loaded or overridden)."""
        return float(self._clusterer().threshold)

    @property
    def pair_tau(self) -> float:
        """Threshold of a decision on one pair seen without its neighbourhood (``itemrep pairs``): a
        ``threshold`` override when given, else the fitted ``τ_logistic`` (the score at which the
        class-balanced logistic model of :meth:`AttentionFusion.fit` gives P(duplicate) = 0.5;
        it is also the nearest-neighbour rule's threshold), else τ. τ itself is a *clustering*
        threshold: one false edge merges two clusters through connected components, so it is
        chosen higher than a pair decision needs (docs/dedup.md, pair scoring)."""
        if self.threshold is not None:
            return float(self.threshold)
        t = getattr(self._fusion(), "tau_logistic_", None)
        return float(t) if _usable_pair_tau(t) else self.tau

    # ------------------------------------------------------------------ encoding
    def _use_images(self, catalog: Catalog) -> bool:
        if self.images == "off":
            return False
        if self.images == "on":
            return True
        if not any(it.image is not None for it in catalog.items):
            return False
        try:
            import itemrep.encoders.image  # noqa: F401
        except ImportError:
            return False
        return True

    def _n_jobs(self, extractor: ConceptExtractor, n: int, encoder: SlotEncoder | None = None) -> int:
        """Worker processes: the given ``n_jobs``, else up to 2 cores from 10,000 items (below,
        forking costs more than it saves). One process when the slot encoder has a dense text
        encoder: a forked copy of a process that has run torch (or any threaded runtime) can
        deadlock in its first call, and such an encoder uses the cores itself."""
        if not getattr(extractor, "parallel_safe", False) or n < 2:
            return 1
        if encoder is not None and getattr(encoder, "dense_encoder", None) is not None:
            return 1
        if self.n_jobs is not None:
            return max(1, int(self.n_jobs))
        return min(2, os.cpu_count() or 1) if n >= 10_000 else 1

    def _extract_raw(self, items: Sequence[Item], encoder: SlotEncoder, timer: StageTimer, prog: Progress,
                     use_images: bool, stats: dict, on_raw=None):
        """CHIE + raw slot inputs for ``items`` in chunks; returns (concept table, list of RawSlots chunks, keys, failures).

        ``on_raw``: called with each chunk's RawSlots, in order, as soon as it is ready (while the
        workers extract the next chunks) instead of collecting it in the returned list."""
        extractor = self._make_extractor()
        failures: list[ItemFailure] = []
        n = len(items)
        if use_images:
            return self._extract_raw_images(items, encoder, extractor, timer, prog, stats)
        jobs = self._n_jobs(extractor, n, encoder)
        # with workers, at least 4 chunks per worker so both cores stay busy to the end
        size = self.chunk_size if jobs == 1 else max(1, min(self.chunk_size, -(-n // (4 * jobs))))
        bounds = [(s, min(n, s + size)) for s in range(0, n, size)]
        tables, raws, keys, ex_stats = [], [], [], []
        step = prog.task("concepts + slots", n)
        with timer.stage("extract"):
            if jobs > 1:
                import multiprocessing as mp

                pool = self._kept_pool(extractor, encoder, jobs)
                if pool is not None:  # workers kept between calls: send the items, not a fork per call
                    for (s, e), res in zip(bounds, pool.imap(_worker_items, [items[s:e] for s, e in bounds])):
                        self._collect(res, tables, raws, keys, failures, ex_stats, on_raw)
                        step(e - s)
                else:
                    _WORK.update(extractor=extractor, encoder=encoder, items=items)
                    try:
                        with mp.get_context("fork").Pool(jobs, initializer=_ignore_sigint) as pool:
                            for (s, e), res in zip(bounds, pool.imap(_worker, bounds)):
                                self._collect(res, tables, raws, keys, failures, ex_stats, on_raw)
                                step(e - s)
                    finally:
                        _WORK.clear()
            else:
                for s, e in bounds:
                    self._collect(encode_batch(extractor, encoder, items[s:e]), tables, raws, keys, failures, ex_stats, on_raw)
                    step(e - s)
        stats["extractor"] = {"name": extractor.identifier, "workers": jobs, **_sum_stats(ex_stats)}
        return pa.concat_tables(tables), raws, np.concatenate(keys, axis=1), failures

    def keep_workers(self, on: bool = True) -> "FITRep":
        """Keep the concept-extraction worker processes alive between :meth:`transform` calls
        (for a service that encodes batch after batch, e.g. :meth:`ClusterIndex.add
        <itemrep.dedup.index.ClusterIndex.add>`): each call then sends its items to the same
        workers instead of forking new ones (forking a process that holds a 1M-item index costs
        ~0.25 s a call). ``on=False`` or :meth:`close` stops them; they also stop when this
        object is garbage-collected. Copies of this object do not share or inherit them. Returns self."""
        if on and id(self) not in _KEPT:
            _KEPT[id(self)] = {}
            weakref.finalize(self, _close_kept, id(self))
        elif not on:
            self.close()
        return self

    def close(self) -> None:
        """Stop kept worker processes (see :meth:`keep_workers`); safe to call more than once."""
        _close_kept(id(self))

    def _kept_pool(self, extractor, encoder, jobs: int):
        """The kept pool for these stages (forked on first use, again when the fitted encoder or
        the worker count changes), or None when workers are not kept."""
        slot = _KEPT.get(id(self))
        if slot is None:
            return None
        key = (id(encoder), extractor.identifier, jobs)
        if slot.get("key") != key:
            import multiprocessing as mp

            if slot.get("pool") is not None:
                slot["pool"].close()
                slot["pool"].join()
            _WORK.update(extractor=extractor, encoder=encoder)
            try:
                slot["pool"] = mp.get_context("fork").Pool(jobs, initializer=_ignore_sigint)
            finally:
                _WORK.clear()
            slot["key"] = key
        return slot["pool"]

    @staticmethod
    def _collect(res, tables, raws, keys, failures, ex_stats, on_raw=None) -> None:
        t, r, k, f, st = res
        tables.append(t)
        if on_raw is not None:
            on_raw(r)
        else:
            raws.append(r)
        keys.append(k)
        failures.extend(f)
        ex_stats.append(st)

    def _extract_raw_images(self, items, encoder, extractor, timer, prog, stats):
        from itemrep.dedup.images import encode_catalog_images

        with timer.stage("extract"):
            hier = extractor.extract(items, progress=prog.task("concepts", len(items)))
            stats["extractor"] = {"name": extractor.identifier, **getattr(extractor, "stats_", {})}
        failures = [ItemFailure(it.item_id, "extract", "concepts", h.error, it.row) for it, h in zip(items, hier) if h.error]
        with timer.stage("images"):
            res = encode_catalog_images(items, ocr=self.ocr, cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                                        progress=prog.task("images", len(items)))
            phashes = [p if p else q for p, q in zip([it.phash for it in items], res.phash)]
            hier = [h.merged(v) for h, v in zip(hier, res.hierarchies)]
            failures.extend(res.failures)
            stats["images"] = res.stats
        concepts = [[(c.slot, c.value, concept_level(c.level, c.source)) for c in h.concepts] for h in hier]
        raw = encoder.count(concepts, phashes, external=dict(res.slots))
        return concepts_table(hier), [raw], _keys(concepts, phashes, items), failures

    def _fuse(self, part: SlotSet, fusion: AttentionFusion, names: Sequence[str]) -> np.ndarray:
        """z = ⊕ √α_k c_k of the slot rows ``part`` over the weighted slots ``names`` (dense views)."""
        return fusion.transform(self.slot_encoder_.dense_views(part, names), part)

    def _chunk_vectors(self, part: SlotSet, fusion: AttentionFusion, reducer) -> np.ndarray:
        """float32 (n, d) reduced fused vectors of the slot rows ``part`` (fitted stages)."""
        return np.asarray(reducer.transform(self._fuse(part, fusion, fusion.weighted_slots(part))), dtype=np.float32)

    def _fused_vectors(self, slots: SlotSet, fusion: AttentionFusion, reducer, fit: bool, ids_sorted: np.ndarray,
                       timer: StageTimer, prog: Progress) -> np.ndarray:
        """Dense views of the weighted slots -> z = ⊕ √α_k c_k -> SPDR, chunk by chunk."""
        names = fusion.weighted_slots(slots)
        n = slots.n_items

        def fuse_rows(rows: np.ndarray) -> np.ndarray:
            return self._fuse(slots if len(rows) == n else slots.take(rows), fusion, names)  # a single chunk: no copy

        with timer.stage("fuse"):
            if fit:
                size = getattr(reducer, "sample_size", n)
                rows = np.arange(n) if n <= size else _hash_sample(ids_sorted, size, self.random_state)
                reducer.fit(fuse_rows(rows))
        with timer.stage("reduce"):
            step = prog.task(f"fuse + reduce ({getattr(reducer, 'name', type(reducer).__name__)})", n)
            parts = []
            for s in range(0, n, self.chunk_size):
                rows = np.arange(s, min(n, s + self.chunk_size))
                parts.append(np.asarray(reducer.transform(fuse_rows(rows)), dtype=np.float32))
                step(len(rows))
        return np.ascontiguousarray(np.vstack(parts) if parts else np.zeros((0, 1), np.float32))

    def _encode(self, catalog: Catalog, fit_encoders: bool, timer: StageTimer, fusion: AttentionFusion | None = None) -> Encoded:
        """Encode ``catalog`` in canonical (sorted-id) order."""
        order = _canonical_order(catalog)
        items = [catalog.items[i] for i in order]
        ids = np.asarray([it.item_id for it in items], dtype=object)
        fusion = fusion or self._fusion()
        stats: dict = {}
        use_images = self._use_images(catalog)
        with Progress(self.progress) as prog:
            encoder = (SlotEncoder(self.slot_specs, dense_encoder=self._make_dense_text_encoder(), random_state=self.random_state)
                       if fit_encoders else self.slot_encoder_)
            if not fit_encoders and not use_images:
                # fitted stages: weight, fuse and reduce each chunk as soon as the workers return
                # it, while they extract the next ones (every step is per row: the same rows as
                # encoding the whole catalog at once)
                slot_parts, vec_parts = [], []

                def on_raw(r: RawSlots) -> None:
                    part = self.slot_encoder_.transform_raw(r)
                    slot_parts.append(part)
                    vec_parts.append(self._chunk_vectors(part, fusion, self.reducer_))

                table, _, keys, failures = self._extract_raw(items, encoder, timer, prog, use_images, stats, on_raw)
                slots = SlotSet.concat(slot_parts) if len(slot_parts) > 1 else slot_parts[0]
                stats["slot_coverage"] = slots.coverage()
                vectors = np.ascontiguousarray(np.vstack(vec_parts), dtype=np.float32)
            else:
                table, raw, keys, failures = self._extract_raw(items, encoder, timer, prog, use_images, stats)
                with timer.stage("encode"):
                    if fit_encoders:
                        self.slot_encoder_ = encoder.fit(raw)
                    slots = self.slot_encoder_.transform_parts(raw)  # empties the list of raw chunks
                    stats["slot_coverage"] = slots.coverage()
                reducer = self._make_reducer(len(items)) if fit_encoders else self.reducer_
                vectors = self._fused_vectors(slots, fusion, reducer, fit_encoders, ids, timer, prog)
            if fit_encoders:
                self.reducer_ = reducer
            stats["reducer"] = self.reducer_.stats()
        failures = list(catalog.failures) + failures
        return Encoded(ids=ids, slots=slots, vectors=vectors, keys=keys[0], concepts=table, failures=failures, stats=stats,
                       concept_keys=keys[1], input_keys=keys[2])

    def fit_encoders(self, catalog: Catalog) -> "FITRep":
        """Fit the unsupervised stages (slot encoders' document frequencies, the reducer) on
        ``catalog``; afterwards :meth:`transform` encodes any items in that space. Returns self."""
        self.fit_transform(catalog)
        return self

    def fit_transform(self, catalog: Catalog) -> Encoded:
        """:meth:`fit_encoders` on ``catalog`` and its encoding (in canonical, sorted-id order) at once."""
        return self._encode(catalog, True, StageTimer())

    def dedup_encoding(self, catalog: Catalog) -> tuple[Encoded, np.ndarray, np.ndarray]:
        """The encoding :meth:`dedup` scores its edges on, and its candidate pairs: ``(enc, i, j)``
        with ``enc`` = :meth:`fit_transform` (canonical, sorted-id order) whose slot rows are
        blended when ``blend_rounds`` > 0, and int64 (E,) ``i``, ``j`` the kNN candidate pairs.
        ``score_pairs(enc.slots, i, j)`` gives exactly the scores of ``edges.parquet``."""
        fusion, clusterer = self._fusion(), self._clusterer()
        enc = self._encode(catalog, True, StageTimer(), fusion=fusion)
        i, j = clusterer.candidates(enc.vectors)
        self._blend(enc, fusion, clusterer, i, j)
        return enc, i, j

    def cluster(self, enc: Encoded) -> Clustering:
        """FBC on an encoding: kNN candidates, exact edge scores, connected components, chaining guard;
        items with one content key always share a cluster. Aligned with ``enc.ids``."""
        fusion, clusterer = self._fusion(), self._clusterer()
        i, j = clusterer.candidates(enc.vectors)
        scorer = self._scorer(enc, fusion)
        return self._cluster(enc, clusterer, i, j, scorer(i, j), scorer)

    def transform(self, catalog: Catalog) -> Encoded:
        """Encode ``catalog`` with the fitted stages (no refitting), in canonical (sorted-id) order.

        Raises:
            RuntimeError: when the encoders are not fitted (call :meth:`fit_encoders` or load an index model).
        """
        if not hasattr(self, "slot_encoder_") or not hasattr(self, "reducer_"):
            raise RuntimeError("FITRep encoders are not fitted: call fit_encoders(catalog) or load a saved index model")
        return self._encode(catalog, False, StageTimer())

    # ------------------------------------------------------------------ scoring
    @property
    def feature_names(self) -> list[str]:
        """Names of the edge-score terms (columns of ``terms`` in :meth:`score_pairs`)."""
        return self._feature_names_

    def score_pairs(self, slots: SlotSet, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact edge scores of row pairs (i, j) of ``slots``: ``(score float32 (E,), terms float32 (E, F))``,
        score = Σ α_k cos_k + Σ β match − Σ γ conflict (see :mod:`itemrep.dedup.fusion`)."""
        return self._fusion().pair_similarity(slots, np.asarray(i), np.asarray(j))

    def pair_terms(self, slots: SlotSet, i: np.ndarray, j: np.ndarray):
        """:meth:`score_pairs` with every part of the score: a :class:`~itemrep.dedup.fusion.PairTerms`
        (features, weights α/β/−γ, the 1/ρ scale, terms and the score; see
        :meth:`AttentionFusion.pair_terms`)."""
        return self._fusion().pair_terms(slots, np.asarray(i), np.asarray(j))

    def _scorer(self, enc: Encoded, fusion: AttentionFusion):
        if self.edge_score == "reduced":
            return lambda a, b: np.einsum("ij,ij->i", enc.vectors[np.asarray(a)], enc.vectors[np.asarray(b)])
        return lambda a, b: fusion.pair_similarity(enc.slots, np.asarray(a), np.asarray(b))[0]

    def _cluster(self, enc: Encoded, clusterer: NearDuplicateClusterer, i, j, score, scorer) -> Clustering:
        return clusterer.cluster(len(enc.ids), i, j, score, enc.ids.tolist(), pair_score=scorer, groups=_groups(enc.keys))

    # ------------------------------------------------------------------ fit
    def fit(self, catalog: Catalog, tau_grid: Sequence[float] | None = None, learn_alpha: bool = True,
            pairs: pd.DataFrame | None = None, prior: "FITRep | AttentionFusion | None" = None,
            prior_strength: float = DEFAULT_PRIOR_STRENGTH, nn_rule: str = "auto") -> "FITRep":
        """Learn α, β, γ (sign-constrained logistic regression on labelled pairs,
        :meth:`AttentionFusion.fit`) and τ (best clustering score on the catalog) from a catalog
        with group labels, from labelled pairs of its items, or both; returns self.

        Training pairs: with group labels, the kNN candidate pairs of the catalog (same label:
        duplicate); labelled ``pairs`` join them (a labelled pair that is also a candidate takes the
        pair's label), or are the only training pairs when the catalog has no labels (a review
        loop: ``itemrep fit CATALOG --pairs FILE``).

        τ: the catalog is clustered at every τ of the grid and scored by the mean per-item F1 on
        the groups, the co-membership accuracy of the labelled pairs
        (:func:`~itemrep.dedup.metrics.pair_comembership_accuracy`: a duplicate pair must share a
        cluster, a distinct pair must not; chaining counts), or the mean of both. (Accuracy, not
        F1: with F1 the loop of docs/dedup.md lowered τ too far on the fit + select pool.)
        Labelled pairs are evidence only where their scores lie: without groups, τ is chosen within
        the range of the labelled pairs' scores (under the new weights), and among equal scores the
        τ closest to the prior's (else the model's own) wins.

        Args:
            catalog: items, with labels (``--label-col``) unless ``pairs`` are given.
            tau_grid: thresholds to try (default: 0.10..0.95 by 0.05, then ±0.04 by 0.01 around the best).
            learn_alpha: when False, keep the given/default α and fit τ only.
            pairs: DataFrame ``item_a, item_b, label`` (label int 0/1; ``line`` or ``row`` name a
                pair in messages), e.g. from :func:`itemrep.dedup.review.read_pair_labels`; ids are
                the catalog's. A pair given twice keeps its last label.
            prior: a fitted model (FITRep or AttentionFusion) the weights are pulled toward
                (:meth:`AttentionFusion.fit` with its :meth:`AttentionFusion.prior_coef`): few
                labelled pairs then correct that model instead of replacing it. ``None``: no prior.
            prior_strength: weight of the prior (see :meth:`AttentionFusion.fit`).
            nn_rule: the nearest-neighbour rule (:class:`NearDuplicateClusterer`, ``nn_threshold``):
                ``"auto"`` sets its threshold to the fitted ``τ_logistic`` (the score where the
                class-balanced logistic model gives P(duplicate) = 0.5: every item keeps its best
                candidate when that pair is more likely a duplicate than not) and applies it only
                on catalogs where at least :data:`NN_MIN_SHARE` (0.4) of the items have an edge ≥ τ;
                ``"on"``: the same threshold, always applied; ``"off"``: no rule; ``"keep"``: the
                clusterer's own settings as given. τ is then chosen with the rule in place.
                Default ``"auto"``, as ``itemrep fit`` (chosen on Shopee's select split: docs/dedup.md).
                Without learned weights (``learn_alpha=False``) the given weights' τ_logistic is
                kept (none: the rule stays off). With labelled ``pairs`` alone and a ``prior``
                that has the rule, the prior's threshold is kept: pairs a reviewer picked near τ
                are no calibration sample for the catalog (docs/dedup.md, review loop).

        Raises:
            ValueError: the catalog has no labels and no ``pairs`` are given, fewer than 2 items,
                no duplicate (or, without a prior, no distinct) pair to learn from, a pair of an item with
                itself, or an unknown ``nn_rule``.
            PairsError: a pair names an item id that is not in the catalog (the message names the
                pair's line or row).
        """
        from itemrep.dedup.pairs import check_pair_ids

        if nn_rule not in ("auto", "on", "off", "keep"):  # before any encoding or fitting
            raise ValueError(f"nn_rule must be auto, on, off or keep; got {nn_rule!r}")
        groups = catalog.has_labels
        if not groups and pairs is None:
            missing = [it.row for it in catalog.items if it.label is None][:5]
            raise ValueError("fit needs a label for every item: pass --label-col with a column of group labels, "
                             "or --pairs with labelled pairs"
                             + (f" (no label on rows {missing})" if missing and len(missing) < len(catalog) else ""))
        if len(catalog) < 2:
            raise ValueError(f"fit needs at least 2 labelled items; the catalog has {len(catalog)}")
        if pairs is not None:
            pairs = check_pair_ids(pairs, catalog, source=pairs.attrs.get("source", "pairs"))
        timer = StageTimer()
        given = copy.deepcopy(self.fusion) or AttentionFusion()
        fusion = AttentionFusion(primary_share=given.primary_share) if learn_alpha else given
        clusterer = copy.deepcopy(self.clusterer) or NearDuplicateClusterer(threshold=DEFAULT_TAU)
        enc = self._encode(catalog, True, timer, fusion=fusion)
        labels = None
        if groups:
            lab_by_id = {it.item_id: str(it.label) for it in catalog.items}
            labels = np.asarray([lab_by_id[x] for x in enc.ids], dtype=object)
        pi = pj = py = None
        if pairs is not None:
            pi, pj, py = _pair_positions(enc.ids, pairs)
        with timer.stage("fit_alpha"):
            ti, tj, ty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
            if groups:
                ti, tj = clusterer.candidates(enc.vectors)
                ty = (labels[ti] == labels[tj]).astype(np.int8)
            if pi is not None:  # a labelled pair that is also a candidate keeps the pair's label only
                n = len(enc.ids)
                keep = ~np.isin(np.minimum(ti, tj) * n + np.maximum(ti, tj), np.minimum(pi, pj) * n + np.maximum(pi, pj))
                ti, tj, ty = np.concatenate([ti[keep], pi]), np.concatenate([tj[keep], pj]), np.concatenate([ty[keep], py])
            n_candidates = int(len(ti) - (0 if pi is None else len(pi)))
            y = ty
            if learn_alpha:
                if y.min(initial=1) == y.max(initial=0) and (prior is None or len(y) == 0):
                    what = "candidate and labelled pairs" if groups and pi is not None else "labelled pairs" if pi is not None else "candidate pairs"
                    raise ValueError(f"need both duplicate and non-duplicate pairs to learn slot weights; the {what} "
                                     f"hold {int(y.sum())} duplicate(s) of {len(y)}")
                prior_w = None
                if prior is not None:
                    pf = prior._fusion() if isinstance(prior, FITRep) else prior
                    prior_w = pf.prior_coef(enc.slots.feature_names)
                fusion.fit(enc.slots.pair_features(ti, tj), y, enc.slots.feature_names,
                           prior=prior_w, prior_strength=prior_strength if prior_w is not None else 0.0)
            else:  # α, β, γ kept as given: so is their logistic decision point (None when never fitted)
                fusion.alpha_ = fusion.alpha_for(enc.slots)
                fusion.tau_logistic_ = getattr(fusion, "tau_logistic_", None)
        self.fusion_ = fusion
        nn_note = None
        if nn_rule in ("auto", "on") and not _usable_pair_tau(getattr(fusion, "tau_logistic_", None)):
            nn_note = (f"nearest-neighbour rule off: no usable τ_logistic ({getattr(fusion, 'tau_logistic_', None)!r}; "
                       "it must be finite, in (0, 2])")
            clusterer.nn_threshold, clusterer.nn_min_share = None, None
        elif nn_rule == "off":
            clusterer.nn_threshold, clusterer.nn_min_share = None, None
        elif nn_rule in ("auto", "on"):
            clusterer.nn_threshold = round(float(fusion.tau_logistic_), 4)
            clusterer.nn_min_share = NN_MIN_SHARE if nn_rule == "auto" else None
            prior_nn = prior._clusterer().nn_threshold if isinstance(prior, FITRep) else None
            if pi is not None and not groups and prior_nn is not None:
                # labelled pairs alone (a review loop) are chosen near τ, not drawn from the catalog:
                # their logistic decision point is not calibrated for it, the prior's is
                clusterer.nn_threshold = float(prior_nn)
                nn_note = "threshold from the prior: labelled pairs alone are not a calibration sample"
        with timer.stage("fit_refuse"):  # candidates again in the space fused with the learned α
            reducer = self._make_reducer(len(catalog))
            enc.vectors = self._fused_vectors(enc.slots, fusion, reducer, True, enc.ids, timer, Progress(False))
            self.reducer_ = reducer
        with timer.stage("fit_tau"):
            i, j = clusterer.candidates(enc.vectors)
            self._blend(enc, fusion, clusterer, i, j)
            scorer = self._scorer(enc, fusion)
            score = scorer(i, j)

            parts: dict[float, dict] = {}

            def f1_at(t: float) -> float:
                c = copy.deepcopy(clusterer)
                c.threshold = t
                cid = self._cluster(enc, c, i, j, score, scorer).cluster_id
                parts[t] = {"groups": mean_item_f1(labels, cid) if groups else None,
                            "pairs": pair_comembership_accuracy(cid, pi, pj, py) if pi is not None else None,
                            "pair_f1": pair_comembership_f1(cid, pi, pj, py) if pi is not None else None}
                return float(np.mean([v for k, v in parts[t].items() if v is not None and k != "pair_f1"]))

            grid = list(tau_grid) if tau_grid is not None else [round(x, 3) for x in np.arange(0.1, 0.96, 0.05)]
            start = float(prior.tau if isinstance(prior, FITRep) else clusterer.threshold)  # τ of the model corrected
            lo, hi = 0.0, np.inf
            if pi is not None:
                # labelled pairs are evidence only where their scores lie: without groups τ stays
                # inside the range of the labelled pairs' scores, and among equal scores the τ
                # closest to the corrected model's wins (no evidence, no move)
                if not groups:
                    ps = np.asarray(scorer(pi, pj), dtype=np.float64)
                    lo, hi = round(float(ps.min()), 3), round(float(ps.max()), 3)
                    grid = [t for t in grid if lo <= t <= hi] or [min(max(round(start, 3), lo), hi)]
                grid = sorted(set(grid) | ({min(max(round(start, 3), lo), hi)} if tau_grid is None else set()))
                rank = lambda t: (curve[t], -abs(t - start), -t)  # noqa: E731
            else:
                rank = lambda t: (curve[t], -t)  # noqa: E731
            curve = {t: f1_at(t) for t in grid}
            best = max(curve, key=rank)
            if tau_grid is None:
                fine = [round(best + d, 3) for d in np.arange(-0.04, 0.041, 0.01) if 0.05 < best + d < 0.99 and lo <= best + d <= hi]
                curve.update({t: f1_at(t) for t in fine if t not in curve})
                best = max(curve, key=rank)
        clusterer.threshold = float(best)
        self.clusterer_ = clusterer
        self.fit_info_ = {
            "n_items": len(catalog),
            "n_candidate_pairs": n_candidates,
            "positive_pairs": int(y.sum()),
            "n_labelled_pairs": 0 if pi is None else int(len(pi)),
            "labelled_positive_pairs": 0 if pi is None else int(py.sum()),
            "tau_range": None if pi is None or groups else [float(lo), float(hi)],
            "tau_criterion": " + ".join((["mean per-item F1 (groups)"] if groups else [])
                                        + (["co-membership accuracy (labelled pairs)"] if pi is not None else [])),
            "prior": None if prior is None else {"strength": float(prior_strength),
                                                 "alpha": dict((prior._fusion() if isinstance(prior, FITRep) else prior).to_dict()["alpha"] or {})},
            "alpha": fusion.alpha_,
            "gamma": getattr(fusion, "gamma_", {}),
            "beta": getattr(fusion, "beta_", {}),
            "tau": float(best),
            "tau_logistic": fusion.tau_logistic_,
            "nn_rule": {"mode": nn_rule, "threshold": clusterer.nn_threshold, "min_share": clusterer.nn_min_share,
                        "note": nn_note},
            "train_mean_item_f1": parts[best]["groups"],
            "train_pair_accuracy": parts[best]["pairs"],
            "train_pair_f1": parts[best]["pair_f1"],
            "train_tau_score": float(curve[best]),
            "tau_curve": {str(k): float(v) for k, v in sorted(curve.items())},
            "stages": timer.stages,
        }
        return self

    def tune(self, catalog: Catalog, tau_grid: Sequence[float] | None = None,
             nn_grid: Sequence[float | None] | None = None, score_on: Sequence[str] | None = None) -> "FITRep":
        """Choose τ (and, when ``nn_grid`` offers values, the nearest-neighbour threshold) on a
        labelled catalog the weights were *not* fitted on: the selection split of a fit / select /
        report protocol. α, β, γ stay as fitted. The catalog is encoded once, as :meth:`dedup`
        would (unsupervised stages fitted on it unless the model carries fitted ones), and every
        grid point is clustered from the same scored candidate pairs.

        Args:
            catalog: labelled items (not those :meth:`fit` saw).
            tau_grid: τ values (default: the current τ ± 0.10 by 0.01).
            nn_grid: nearest-neighbour thresholds to try (``None`` = rule off); default: the
                model's own (fitted by :meth:`fit`'s ``nn_rule``, or off).
            score_on: item ids whose F1 is averaged (default: all). Pass the selection items of
                a catalog that also holds the fit items, to choose τ inside a pool as large as
                the catalogs the model will meet: a τ chosen on a small pool lets too many
                distractors through in a large one (docs/dedup.md, pool size).

        Returns:
            self, with ``clusterer_.threshold`` / ``clusterer_.nn_threshold`` set to the best
            mean per-item F1 (ties: the larger τ, then the rule off or the higher threshold) and
            ``tune_info_`` = ``{"tau", "nn_threshold", "select_mean_item_f1", "curve"}`` (saved in
            ``model.json``). A ``threshold`` override given to the constructor is cleared: the tuned
            τ is the model's own.

        Raises:
            ValueError: the catalog has no labels or fewer than 2 items.
        """
        if not catalog.has_labels:
            raise ValueError("tune needs a labelled catalog: pass one with --label-col")
        if len(catalog) < 2:
            raise ValueError(f"tune needs at least 2 labelled items; the catalog has {len(catalog)}")
        timer = StageTimer()
        fusion = self._fusion()
        base = self._clusterer()
        enc = self._encode(catalog, True, timer, fusion=fusion)
        lab_by_id = {it.item_id: str(it.label) for it in catalog.items}
        labels = np.asarray([lab_by_id[x] for x in enc.ids], dtype=object)
        mask = None
        if score_on is not None:
            want = {str(x) for x in score_on}
            mask = np.fromiter((str(x) in want for x in enc.ids), dtype=bool, count=len(enc.ids))
            if not mask.any():
                raise ValueError("score_on names none of the catalog's items")
        i, j = base.candidates(enc.vectors)
        self._blend(enc, fusion, base, i, j)
        scorer = self._scorer(enc, fusion)
        score = scorer(i, j)
        t0 = float(base.threshold)
        nn_grid = [base.nn_threshold] if nn_grid is None else list(nn_grid)
        grid = list(tau_grid) if tau_grid is not None else [round(t0 + d, 3) for d in np.arange(-0.10, 0.101, 0.01) if 0.0 < t0 + d <= 2.0]
        curve = {}
        for t in grid:
            for nn in nn_grid:
                c = copy.deepcopy(base)
                c.threshold, c.nn_threshold = float(t), (None if nn is None else float(nn))
                curve[(float(t), c.nn_threshold)] = mean_item_f1(labels, self._cluster(enc, c, i, j, score, scorer).cluster_id, mask)
        best = max(curve, key=lambda k: (curve[k], k[0], -1.0 if k[1] is None else k[1]))
        c = copy.deepcopy(base)
        c.threshold, c.nn_threshold = best
        self.clusterer_ = c
        self.threshold = None  # the tuned τ is the model's own now
        self.tune_info_ = {"tau": best[0], "nn_threshold": best[1], "select_mean_item_f1": float(curve[best]),
                           "curve": [{"tau": k[0], "nn_threshold": k[1], "mean_item_f1": float(v)} for k, v in curve.items()]}
        return self

    # ------------------------------------------------------------------ dedup
    def dedup(self, catalog: Catalog) -> DedupResult:
        """Assign a stable cluster id to every item of ``catalog`` (one-shot: the unsupervised
        stages are fitted on this catalog; α, β, γ, τ come from the model).

        Returns:
            :class:`DedupResult` in catalog order (write it with :meth:`DedupResult.write`).
        """
        timer = StageTimer()
        fusion = self._fusion()
        clusterer = self._clusterer()
        enc = self._encode(catalog, True, timer, fusion=fusion)
        self._feature_names_ = enc.slots.feature_names
        ids = enc.ids
        with timer.stage("cluster"), Progress(self.progress) as prog:
            step = prog.task("cluster", 4)
            i, j = clusterer.candidates(enc.vectors)
            self._blend(enc, fusion, clusterer, i, j)
            step(1)
            # exact scores come with their per-term breakdown: keep it for the kept edges (edges.parquet)
            if self.edge_score == "exact":
                score, kept_terms = _score_in_blocks(fusion, enc.slots, i, j, clusterer.min_edge_score)
            else:
                score, kept_terms = self._scorer(enc, fusion)(i, j), None
            step(1)
            scorer = self._scorer(enc, fusion)
            cl = self._cluster(enc, clusterer, i, j, score, scorer)
            step(1)
            recall = candidate_recall(enc.vectors, i, j, scorer, clusterer.threshold, k=clusterer.k,
                                      random_state=self.random_state, groups=getattr(clusterer, "groups_", None))
            step(1)
        with timer.stage("write"):
            back = np.empty(len(ids), dtype=np.int64)  # canonical position of each catalog row
            back[_canonical_order(catalog)] = np.arange(len(ids))
            cid = np.asarray(cl.cluster_id, dtype=object)
            clusters = pd.DataFrame({  # ids are str objects already: no copies as fixed-width strings
                "item_id": ids[back],
                "cluster_id": cid[back],
                "representative_id": ids[cl.representative[back]],
                "score": cl.similarity[back].astype(np.float32),
            })
            keep = clusterer.edge_mask(len(ids), i, j, score)
            ki, kj = i[keep], j[keep]
            if kept_terms is not None:  # terms of the pairs scoring >= min_edge_score; keep those that are edges
                terms = kept_terms[keep[score >= clusterer.min_edge_score]]
            else:
                terms = _score_in_blocks(fusion, enc.slots, ki, kj, -np.inf)[1]
            edges = pd.DataFrame({"item_a": ids[ki], "item_b": ids[kj], "similarity": score[keep].astype(np.float32)})
            for k, name in enumerate(enc.slots.feature_names):
                edges[f"term_{name}"] = terms[:, k]
            del terms, kept_terms
            near = nearest_pairs(i, j, score, keep)  # each item's nearest candidates, edge or not (report)
            neighbours = pd.DataFrame({"item_a": ids[i[near]], "item_b": ids[j[near]], "score": score[near].astype(np.float32),
                                       "edge": keep[near]})
            near_terms = _score_in_blocks(fusion, enc.slots, i[near], j[near], -np.inf)[1]
            for k, name in enumerate(enc.slots.feature_names):
                neighbours[f"term_{name}"] = near_terms[:, k]
        metrics = None
        if catalog.has_labels:
            metrics = dedup_metrics(catalog.labels, clusters["cluster_id"].tolist())
        from itemrep.runinfo import package_versions

        n_clusters = int(pd.unique(cid).size)
        run = {
            "itemrep_version": __version__,
            "versions": package_versions(),
            "n_items": len(ids),
            "n_clusters": n_clusters,
            "n_duplicates_removed": int(len(ids) - n_clusters),
            "parameters": self.params(),
            **fusion.report(enc.slots),
            "fusion": fusion.to_dict(),  # the model's own α, β, γ (`itemrep explain --out` re-creates the model from it)
            "tau": clusterer.threshold,
            "index": getattr(clusterer, "search_info_", None),
            "nn_rule": getattr(clusterer, "nn_info_", None),
            "candidate_recall": recall,
            "n_candidate_pairs": int(len(i)),
            "n_edges": cl.n_edges,
            "n_split_by_chaining_guard": cl.n_split,
            "n_identical_groups": int((_groups(enc.keys) >= 0).sum()),
            "degenerate_extractor": _degenerate(enc.concept_keys, enc.input_keys),
            "catalog_warnings": list(getattr(catalog, "warnings", [])),
            # what `itemrep explain --out` / `review-pairs` reload to re-create this run's encoding
            "catalog": {"path": str(Path(catalog.path).resolve()) if getattr(catalog, "path", None) else None,
                        "columns": dict(getattr(catalog, "columns", {}) or {})},
            "stages": timer.stages,
            "total_seconds": round(timer.total_seconds, 3),
            "failed_items": len({f.item_id for f in enc.failures}),
            "failures_by_stage": pd.Series([f.stage for f in enc.failures], dtype=object).value_counts().to_dict(),
            **enc.stats,
        }
        return DedupResult(clusters=clusters, concepts=enc.concepts, edges=edges, metrics=metrics, run=run, failures=enc.failures,
                           neighbours=neighbours)

    # ------------------------------------------------------------------ persistence
    def params(self) -> dict:
        """Constructor parameters that define the model (JSON-serialisable)."""
        c = self._clusterer()
        ex = self.extractor
        return {
            "extractor": "rules" if ex is None else ex if isinstance(ex, str) else ex.identifier,
            "text_encoder": self.text_encoder if isinstance(self.text_encoder, str) or self.text_encoder is None else type(self.text_encoder).__name__,
            "reducer": self.reducer if isinstance(self.reducer, str) else getattr(self.reducer, "name", type(self.reducer).__name__),
            "k": c.k,
            "tau": c.threshold,
            "guard": c.guard,
            "guard_margin": c.guard_margin,
            "nn_threshold": c.nn_threshold,
            "nn_min_share": getattr(c, "nn_min_share", None),
            "mutual_k": getattr(c, "mutual_k", None),
            "images": self.images,
            "ocr": self.ocr,
            "edge_score": self.edge_score,
            "random_state": self.random_state,
            "blend_rounds": self.blend_rounds,
            "blend_power": self.blend_power,
            "blend_floor": self.blend_floor,
            "slot_specs": [dict(s.__dict__, knots=list(s.knots)) for s in self.slot_specs],
        }

    def save(self, model_dir: str | Path, stages: bool = True) -> Path:
        """Write ``model.json`` (parameters, α, β, γ, τ, fit report, versions) into ``model_dir``;
        with ``stages`` and fitted encoders, also ``stages/slots`` and ``stages/reducer`` (JSON +
        ``.npy``/``.npz``) so that :meth:`transform` works after :meth:`load` without refitting.

        Raises:
            ModelDirError: when a fitted stage cannot be saved (e.g. a UMAP reducer).
        """
        from itemrep.runinfo import package_versions

        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "itemrep_version": __version__,
            "params": self.params(),
            "fusion": self._fusion().to_dict(),
            "fit": getattr(self, "fit_info_", None),
            "tune": getattr(self, "tune_info_", None),
            "versions": package_versions(),
            "stages": None,
        }
        if stages and hasattr(self, "slot_encoder_") and hasattr(self, "reducer_"):
            self.slot_encoder_.save(d / "stages" / "slots")
            self.reducer_.save(d / "stages" / "reducer")
            payload["stages"] = {"slots": "stages/slots", "reducer": "stages/reducer"}
        (d / "model.json").write_text(json.dumps(payload, indent=2, default=str))
        return d / "model.json"

    @classmethod
    def default(cls, **overrides) -> "FITRep":
        """The built-in model (``itemrep/data/default_model.json``: α, γ and τ fitted by
        ``scripts/make_default_model.sh`` on the Shopee development split, text + phash slots), or
        the untrained defaults (α favouring primary slots, τ = 0.55) when it is absent.

        Slots the built-in model has no weight for (e.g. image slots) get none: fit a model on your
        own labelled catalog (``itemrep fit``) to weigh them.
        """
        from importlib import resources

        ref = resources.files("itemrep") / "data" / "default_model.json"
        if ref.is_file():
            with resources.as_file(ref) as path:
                return cls.load(path, **overrides)
        return cls(**overrides)

    @classmethod
    def load(cls, model_dir: str | Path, **overrides) -> "FITRep":
        """Read a model directory written by :meth:`save` (or its ``model.json`` path); keyword
        ``overrides`` replace parameters (e.g. ``reducer="none"``, ``progress=True``).

        Raises:
            ModelDirError: when the directory or ``model.json`` is missing, malformed or of another
                format (the message names the file and the field).
        """
        from itemrep.dedup.modelfile import read_model_file

        p = Path(model_dir)
        p = p if p.suffix == ".json" else p / "model.json"
        if not p.is_file():
            raise ModelDirError(f"{model_dir}: no model.json here; create one with `itemrep fit CATALOG --label-col COL --model-dir {model_dir}`")
        return cls.from_payload(read_model_file(p), p, **overrides)

    @classmethod
    def from_payload(cls, payload: dict, p: Path, **overrides) -> "FITRep":
        """A model from the validated contents of a ``model.json`` (:func:`~itemrep.dedup.modelfile.read_model_file`)
        read from ``p`` (named in messages; fitted stages are read relative to its folder), with
        keyword ``overrides`` as in :meth:`load`.

        Raises:
            ModelDirError: the model names a sentence-transformers model that ``overrides`` does not allow.
        """
        p = Path(p)
        prm = payload["params"]
        te = prm.get("text_encoder") or "none"
        if te.startswith("st:") and overrides.get("text_encoder") != te:
            raise ModelDirError(f"{p}: the model asks to load the sentence-transformers model {te[3:]!r}; itemrep loads "
                                f"no model a file names unless you allow it: pass --text-encoder {te}")
        specs = tuple(SlotSpec(**dict(s, knots=tuple(s.get("knots", ())))) for s in prm.get("slot_specs", [])) or DEFAULT_SLOT_SPECS
        kw = dict(
            text_encoder=prm["text_encoder"], slot_specs=specs, reducer=prm["reducer"],
            clusterer=NearDuplicateClusterer(threshold=prm["tau"], k=prm["k"], guard=prm["guard"], guard_margin=prm["guard_margin"],
                                             nn_threshold=prm.get("nn_threshold"), mutual_k=prm.get("mutual_k"),
                                             nn_min_share=prm.get("nn_min_share")),
            images=prm["images"], ocr=prm["ocr"], edge_score=prm["edge_score"], random_state=prm["random_state"],
            blend_rounds=prm.get("blend_rounds", 0), blend_power=prm.get("blend_power", 3.0), blend_floor=prm.get("blend_floor"),
            fusion=AttentionFusion.from_dict(payload["fusion"]),
        )
        kw.update(overrides)
        model = cls(**kw)
        model.fusion_ = copy.deepcopy(model.fusion)
        model.clusterer_ = copy.deepcopy(model.clusterer)
        model.fit_info_ = payload.get("fit")
        if payload.get("tune"):
            model.tune_info_ = payload["tune"]
        st = payload.get("stages")
        if st:
            base = p.parent
            model.slot_encoder_ = SlotEncoder.load(base / st["slots"], dense_encoder=model._make_dense_text_encoder())
            model.reducer_ = load_reducer(base / st["reducer"],
                                          expect=model.reducer if isinstance(model.reducer, str) and "reducer" in overrides else None)
        return model


# ---------------------------------------------------------------- helpers
def _usable_pair_tau(t) -> bool:
    """τ_logistic can serve as a pair threshold: finite and in (0, 2] (the score range of a model
    file's thresholds); a fit whose logistic intercept pushed it outside is not used."""
    return t is not None and bool(np.isfinite(t)) and 0.0 < float(t) <= 2.0


def _canonical_order(catalog: Catalog) -> np.ndarray:
    """Positions of the catalog's items sorted by item id (ids are unique)."""
    return np.argsort(np.asarray(catalog.ids, dtype=object).astype(str), kind="stable")


def _hash_sample(ids: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` row positions chosen by a seeded hash of the ids: the same items whatever the row order."""
    h = np.fromiter((int.from_bytes(hashlib.blake2b(f"{seed}\x1f{x}".encode(), digest_size=8).digest(), "little") for x in ids),
                    dtype=np.uint64, count=len(ids))
    return np.sort(np.argsort(h, kind="stable")[:size])


def _groups(keys: np.ndarray) -> np.ndarray:
    """int64 (N,) group id of items sharing a content key with another item, -1 for unique items."""
    _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    g = inv.astype(np.int64)
    g[counts[inv] < 2] = -1
    return g


def _degenerate(concept_keys: np.ndarray, input_keys: np.ndarray, share: float = 0.5, min_items: int = 10) -> dict | None:
    """``{"items", "different_inputs", "share"}`` when one non-empty concept set (key ≠ 0, see
    :func:`content_keys`) is given to more than ``share`` of at least ``min_items`` items whose
    inputs differ — an extractor answering the same for everything — else None. A catalog of truly
    identical listings (same title and text) is not degenerate."""
    n = len(concept_keys)
    if n < min_items or not (concept_keys != 0).any():
        return None
    vals, counts = np.unique(concept_keys[concept_keys != 0], return_counts=True)
    members = concept_keys == vals[np.argmax(counts)]
    _, same = np.unique(input_keys[members], return_counts=True)
    different = int(members.sum() - same.max())  # members whose input differs from the most common one
    return ({"items": int(members.sum()), "different_inputs": different, "share": float(members.sum() / n)}
            if different / n > share else None)


def _score_in_blocks(fusion: AttentionFusion, slots: SlotSet, i: np.ndarray, j: np.ndarray, tau: float,
                     block: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Exact edge scores of all pairs, float32 (E,), and the per-term breakdown of the pairs with
    score ≥ ``tau`` only, float32 (E_kept, F), computed ``block`` pairs at a time (bounded memory)."""
    scores, terms = [], []
    for s in range(0, len(i), block):
        sc, te = fusion.pair_similarity(slots, i[s:s + block], j[s:s + block])
        scores.append(np.asarray(sc, dtype=np.float32))
        terms.append(te[sc >= tau])
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, len(slots.feature_names)), np.float32)
    return np.concatenate(scores), np.concatenate(terms)


def _pair_positions(ids: np.ndarray, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int64 (P,) positions in ``ids`` of each labelled pair's items and int8 (P,) labels, one row
    per unordered pair (a pair given twice keeps its last label, at its last position), in row order.

    Raises:
        ValueError: a pair of an item with itself (the message names its line or row).
    """
    where = "line" if "line" in pairs.columns else "row" if "row" in pairs.columns else None
    same = np.flatnonzero(pairs["item_a"].to_numpy() == pairs["item_b"].to_numpy())
    if len(same):
        k = same[0]
        at = f"{where} {pairs[where].iat[k]}" if where else f"pair {k + 1}"
        raise ValueError(f"{pairs.attrs.get('source', 'pairs')}: {at}: a pair of item {pairs['item_a'].iat[k]!r} with itself "
                         f"({len(same)} such pair(s)); drop it")
    position = {x: n for n, x in enumerate(ids.tolist())}
    a = np.fromiter((position[x] for x in pairs["item_a"]), dtype=np.int64, count=len(pairs))
    b = np.fromiter((position[x] for x in pairs["item_b"]), dtype=np.int64, count=len(pairs))
    lab = pairs["label"].to_numpy().astype(np.int8)
    last: dict[tuple[int, int], int] = {}
    for k, key in enumerate(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist())):
        last.pop(key, None)  # re-inserted: a repeated pair takes its last position and label
        last[key] = k
    rows = np.fromiter(sorted(last.values()), dtype=np.int64, count=len(last))
    return a[rows], b[rows], lab[rows]


def _sum_stats(parts: list[dict]) -> dict:
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out
