"""The FITRep orchestrator: CHIE -> slot encoding -> attention fusion -> SPDR -> FBC.

``FITRep`` takes its stages as arguments with working defaults (like BERTopic's sub-models):

>>> from itemrep.catalog import Catalog
>>> from itemrep.dedup.pipeline import FITRep
>>> cat = Catalog.load("examples/catalog.csv", label_col="label")   # doctest: +SKIP
>>> model = FITRep().fit(cat)                                         # learns α and τ
>>> result = model.dedup(cat)                                         # cluster ids
>>> result.clusters.head()                                            # doctest: +SKIP

A model directory (``save``/``load``) is plain JSON: parameters, α, τ and the versions that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep import __version__
from itemrep.catalog import Catalog
from itemrep.dedup.cluster import Clustering, NearDuplicateClusterer
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import ConceptHierarchy
from itemrep.errors import ItemFailure, ModelDirError
from itemrep.dedup.metrics import dedup_metrics, mean_item_f1
from itemrep.dedup.fusion import AttentionFusion
from itemrep.dedup.reduce import make_reducer
from itemrep.runinfo import Progress, StageTimer
from itemrep.dedup.slots import DEFAULT_SLOT_SPECS, SlotEncoder, SlotSet, SlotSpec

MODEL_FORMAT = 1
DEFAULT_TAU = 0.55


@dataclass
class Representation:
    """Everything computed for a catalog before clustering.

    Attributes:
        hierarchies: N concept hierarchies.
        slots: the :class:`~itemrep.dedup.slots.SlotSet`.
        vectors: float32 (N, d) reduced fused vectors used for the kNN graph.
        failures: per-item failures from every stage so far.
        stats: per-stage extra counters (extractor stats, image stats, reducer stats).
    """

    hierarchies: list[ConceptHierarchy]
    slots: SlotSet
    vectors: np.ndarray
    failures: list[ItemFailure]
    stats: dict = field(default_factory=dict)


@dataclass
class DedupResult:
    """Output of :meth:`FITRep.dedup`.

    Attributes:
        clusters: DataFrame ``item_id, cluster_id, representative_id, similarity`` (ids strings).
        concepts: long DataFrame of every item's concepts (see :func:`concepts_frame`).
        edges: DataFrame of the kept edges: ``item_a, item_b, similarity`` and one ``term_<slot>``
            column per slot (α_k cos_k), so every merge can be explained.
        metrics: dedup metrics when the catalog has labels, else ``None``.
        run: run information (parameters, seconds and memory per stage, counts).
        failures: per-item failures.
    """

    clusters: pd.DataFrame
    concepts: pd.DataFrame
    edges: pd.DataFrame
    metrics: dict | None
    run: dict
    failures: list[ItemFailure]

    def write(self, out_dir: str | Path) -> None:
        """Write ``clusters.parquet``, ``concepts.parquet``, ``edges.parquet``, ``failures.csv``,
        ``run.json`` and (with labels) ``metrics.json`` into ``out_dir`` (created if needed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.clusters.to_parquet(out / "clusters.parquet", index=False)
        self.concepts.to_parquet(out / "concepts.parquet", index=False)
        self.edges.to_parquet(out / "edges.parquet", index=False)
        pd.DataFrame([f.to_dict() for f in self.failures], columns=["item_id", "stage", "field", "message", "row"]).to_csv(
            out / "failures.csv", index=False
        )
        (out / "run.json").write_text(json.dumps(self.run, indent=2, default=str))
        if self.metrics is not None:
            (out / "metrics.json").write_text(json.dumps(self.metrics, indent=2))


def concepts_frame(hierarchies: Sequence[ConceptHierarchy]) -> pd.DataFrame:
    """One row per concept: ``item_id, slot, value, raw, level, facet, kind, source, salience,
    extractor, error``. Items without any concept get one row with empty slot (so none is dropped)."""
    rows = []
    for h in hierarchies:
        if not h.concepts:
            rows.append((h.item_id, None, None, None, None, None, None, None, None, h.extractor, h.error))
        for c in h.concepts:
            rows.append((h.item_id, c.slot, c.value, c.raw, c.level, c.facet, c.kind, c.source, c.salience, h.extractor, h.error))
    return pd.DataFrame(rows, columns=["item_id", "slot", "value", "raw", "level", "facet", "kind", "source", "salience",
                                       "extractor", "error"])


def default_extractor() -> ConceptExtractor:
    """The offline rule-based CHIE extractor."""
    from itemrep.concepts.rules import RuleBasedExtractor

    return RuleBasedExtractor()


class FITRep:
    """FITRep near-duplicate deduplication (Zhang et al. 2025, arXiv 2511.21389).

    Args:
        extractor: CHIE back-end (default: rule-based, offline).
        text_encoder: dense text encoder for the ``primary_sem`` slot: ``"none"`` (default: on
            Shopee it added no F1 over the TF-IDF slots and cost most of the run time, see
            docs/dedup.md), ``"use"`` (bundled multilingual USE) or ``"st:PATH"`` (any
            sentence-transformers model).
        slot_specs: slot definitions (default :data:`~itemrep.dedup.slots.DEFAULT_SLOT_SPECS`).
        fusion: :class:`~itemrep.dedup.fusion.AttentionFusion` (default α favours primary slots).
        reducer: ``"umap"``, ``"pca"`` or ``"none"`` (SPDR; see :mod:`itemrep.dedup.reduce`).
        clusterer: :class:`~itemrep.dedup.cluster.NearDuplicateClusterer` (holds τ and k).
        images: ``"auto"`` (use image features when the catalog has images and the image
            encoder is installed), ``"on"`` or ``"off"``.
        ocr: read text in images (slower).
        cache_dir: feature cache directory for image features.
        edge_score: ``"exact"`` scores candidate pairs with the exact slot-decomposed similarity;
            ``"reduced"`` uses the inner product of the reduced vectors.
        random_state: seed for every random step.
        progress: show progress bars.
    """

    def __init__(
        self,
        extractor: ConceptExtractor | None = None,
        text_encoder: str = "none",
        slot_specs: Sequence[SlotSpec] = DEFAULT_SLOT_SPECS,
        fusion: AttentionFusion | None = None,
        reducer: str = "pca",
        clusterer: NearDuplicateClusterer | None = None,
        images: str = "auto",
        ocr: bool = False,
        cache_dir: str | Path | None = None,
        edge_score: str = "exact",
        random_state: int = 0,
        progress: bool = False,
    ) -> None:
        for name, value, allowed in (("images", images, ("auto", "on", "off")), ("reducer", reducer, ("pca", "umap", "none")),
                                     ("edge_score", edge_score, ("exact", "reduced"))):
            if value not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}; got {value!r}")
        self.extractor = extractor
        self.text_encoder = text_encoder
        self.slot_specs = tuple(slot_specs)
        self.fusion = fusion or AttentionFusion()
        self.reducer = reducer
        self.clusterer = clusterer or NearDuplicateClusterer(threshold=DEFAULT_TAU)
        self.images = images
        self.ocr = ocr
        self.cache_dir = cache_dir
        self.edge_score = edge_score
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ stages
    def _extractor(self) -> ConceptExtractor:
        if self.extractor is None:
            self.extractor = default_extractor()
        return self.extractor

    def represent(self, catalog: Catalog, timer: StageTimer | None = None) -> Representation:
        """Run CHIE, image features, slot encoding, fusion and SPDR on ``catalog``.

        Returns:
            :class:`Representation` (no clustering yet).
        """
        from itemrep.encoders.text import make_dense_text_encoder

        timer = timer or StageTimer()
        items = catalog.items
        failures = list(catalog.failures)
        stats: dict = {}
        with Progress(self.progress) as prog:
            with timer.stage("extract"):
                ex = self._extractor()
                hierarchies = ex.extract(items, progress=prog.task("concepts", len(items)))
                stats["extractor"] = {"name": ex.identifier, **getattr(ex, "stats_", {})}
                for it, h in zip(items, hierarchies):
                    if h.error:
                        failures.append(ItemFailure(it.item_id, "extract", "concepts", h.error, it.row))
            external: dict[str, np.ndarray] = {}
            phashes = [it.phash for it in items]
            if self._use_images(catalog):
                with timer.stage("images"):
                    from itemrep.encoders.image import encode_catalog_images

                    res = encode_catalog_images(items, ocr=self.ocr, cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                                                progress=prog.task("images", len(items)))
                    external = dict(res.slots)
                    phashes = [p if p else q for p, q in zip(phashes, res.phash)]
                    hierarchies = [h.merged(v) for h, v in zip(hierarchies, res.hierarchies)]
                    failures.extend(res.failures)
                    stats["images"] = res.stats
            with timer.stage("encode"):
                enc = SlotEncoder(self.slot_specs, dense_encoder=make_dense_text_encoder(self.text_encoder))
                slots = enc.encode(items, hierarchies, external=external, phashes=phashes,
                                   progress=prog.task("slots", len(self.slot_specs)))
                if not slots.matrices:
                    raise ValueError("no slot could be encoded: every item has empty title, text, image and phash")
                stats["slot_coverage"] = slots.coverage()
            with timer.stage("fuse"):
                step = prog.task("fuse", 1)
                views = slots.dense_views(random_state=self.random_state)
                z = self.fusion.fuse(views, slots)
                step(1)
            with timer.stage("reduce"):
                red_name = self.reducer if len(items) > 50 else "none"  # too few items to learn a projection
                step = prog.task(f"reduce ({red_name})", 1)
                red = make_reducer(red_name, random_state=self.random_state)
                vectors = red.fit_transform(z)
                stats["reducer"] = red.stats()
                step(1)
        return Representation(hierarchies=hierarchies, slots=slots, vectors=vectors, failures=failures, stats=stats)

    def _use_images(self, catalog: Catalog) -> bool:
        if self.images == "off":
            return False
        has = any(it.image is not None for it in catalog.items)
        if self.images == "on":
            return True
        if not has:
            return False
        try:
            import itemrep.encoders.image  # noqa: F401
        except ImportError:
            return False
        return True

    def _score(self, rep: Representation, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        if self.edge_score == "reduced":
            return np.einsum("ij,ij->i", rep.vectors[i], rep.vectors[j])
        sim, _ = self.fusion.pair_similarity(rep.slots, i, j)
        return sim

    def _pair_score_fn(self, rep: Representation):
        return lambda a, b: self._score(rep, np.asarray(a), np.asarray(b))

    # ------------------------------------------------------------------ fit
    def fit(self, catalog: Catalog, tau_grid: Sequence[float] | None = None, learn_alpha: bool = True) -> "FITRep":
        """Learn α (non-negative logistic regression on kNN candidate pairs) and τ (best mean
        per-item F1 of the clustering) from a labelled catalog.

        Args:
            catalog: items with labels (``--label-col``).
            tau_grid: thresholds to try (default: 0.10..0.95 by 0.05, then ±0.04 by 0.01 around the best).
            learn_alpha: when False, keep the fusion's given/default α and fit τ only.

        Raises:
            ValueError: when the catalog has no labels or no duplicate pair among the candidates.
        """
        if not catalog.has_labels:
            raise ValueError("fit needs a label for every item: pass --label-col with a column of group labels")
        timer = StageTimer()
        if learn_alpha:
            self.fusion = AttentionFusion(primary_share=self.fusion.primary_share)
        rep = self.represent(catalog, timer)
        labels = np.asarray([str(x) for x in catalog.labels], dtype=object)
        with timer.stage("fit_alpha"):
            i, j = self.clusterer.candidates(rep.vectors)
            y = (labels[i] == labels[j]).astype(np.int8)
            if learn_alpha:
                self.fusion.fit(rep.slots.pair_features(i, j), y, rep.slots.feature_names)
            else:
                self.fusion.alpha_ = self.fusion.alpha_for(rep.slots)
                self.fusion.tau_logistic_ = None
        # candidates again in the space fused with the learned α
        with timer.stage("fit_refuse"):
            views = rep.slots.dense_views(random_state=self.random_state)
            z = self.fusion.fuse(views, rep.slots)
            red = make_reducer(self.reducer if len(catalog) > 50 else "none", random_state=self.random_state)
            rep.vectors = red.fit_transform(z)
        with timer.stage("fit_tau"):
            i, j = self.clusterer.candidates(rep.vectors)
            score = self._score(rep, i, j)
            ids = catalog.ids
            pair_fn = self._pair_score_fn(rep)

            def f1_at(t: float) -> float:
                c = NearDuplicateClusterer(threshold=t, k=self.clusterer.k, guard=self.clusterer.guard,
                                           guard_margin=self.clusterer.guard_margin)
                return mean_item_f1(labels, c.cluster(len(ids), i, j, score, ids, pair_score=pair_fn).cluster_id)

            grid = list(tau_grid) if tau_grid is not None else [round(x, 3) for x in np.arange(0.1, 0.96, 0.05)]
            curve = {t: f1_at(t) for t in grid}
            best = max(curve, key=lambda t: (curve[t], -t))
            if tau_grid is None:
                fine = [round(best + d, 3) for d in np.arange(-0.04, 0.041, 0.01) if 0.05 < best + d < 0.99]
                curve.update({t: f1_at(t) for t in fine if t not in curve})
                best = max(curve, key=lambda t: (curve[t], -t))
        self.clusterer.threshold = float(best)
        self.fit_info_ = {
            "n_items": len(catalog),
            "n_candidate_pairs": int(len(y)),
            "positive_pairs": int(y.sum()),
            "alpha": self.fusion.alpha_,
            "gamma": getattr(self.fusion, "gamma_", {}),
            "beta": getattr(self.fusion, "beta_", {}),
            "tau": float(best),
            "tau_logistic": self.fusion.tau_logistic_,
            "train_mean_item_f1": float(curve[best]),
            "tau_curve": {str(k): float(v) for k, v in sorted(curve.items())},
            "stages": timer.stages,
        }
        return self

    # ------------------------------------------------------------------ dedup
    def dedup(self, catalog: Catalog) -> DedupResult:
        """Assign a stable cluster id to every item of ``catalog``.

        Returns:
            :class:`DedupResult` (write it with :meth:`DedupResult.write`).
        """
        timer = StageTimer()
        rep = self.represent(catalog, timer)
        ids = catalog.ids
        with timer.stage("cluster"), Progress(self.progress) as prog:
            step = prog.task("cluster", 3)
            i, j = self.clusterer.candidates(rep.vectors)
            step(1)
            # exact scores come with their per-term breakdown: keep it for edges.parquet
            score, terms_all = (self.fusion.pair_similarity(rep.slots, i, j) if self.edge_score == "exact"
                                else (self._score(rep, i, j), None))
            step(1)
            cl: Clustering = self.clusterer.cluster(len(ids), i, j, score, ids, pair_score=self._pair_score_fn(rep))
            step(1)
        with timer.stage("write"):
            ids_arr = np.asarray(ids, dtype=object)
            clusters = pd.DataFrame({
                "item_id": ids_arr.astype(str),
                "cluster_id": cl.cluster_id,
                "representative_id": ids_arr[cl.representative].astype(str),
                "similarity": cl.similarity.astype(np.float32),
            })
            keep = score >= self.clusterer.threshold
            ki, kj = i[keep], j[keep]
            terms = terms_all[keep] if terms_all is not None else self.fusion.pair_similarity(rep.slots, ki, kj)[1]
            edges = pd.DataFrame({"item_a": ids_arr[ki].astype(str), "item_b": ids_arr[kj].astype(str),
                                  "similarity": score[keep].astype(np.float32)})
            for k, name in enumerate(rep.slots.feature_names):
                edges[f"term_{name}"] = terms[:, k]
            concepts = concepts_frame(rep.hierarchies)
        metrics = None
        if catalog.has_labels:
            metrics = dedup_metrics(catalog.labels, cl.cluster_id)
        from itemrep.runinfo import package_versions

        run = {
            "itemrep_version": __version__,
            "versions": package_versions(),
            "n_items": len(ids),
            "n_clusters": int(len(set(cl.cluster_id))),
            "n_duplicates_removed": int(len(ids) - len(set(cl.cluster_id))),
            "parameters": self.params(),
            "alpha": self.fusion.alpha_for(rep.slots),
            "slots_without_weight": self.fusion.unweighted(rep.slots),
            "gamma": dict(zip(rep.slots.conflict_slots, map(float, self.fusion.penalties(rep.slots)))),
            "beta": dict(zip([n for n in rep.slots.feature_names if n.startswith("match_")], map(float, self.fusion.bonuses(rep.slots)))),
            "tau": self.clusterer.threshold,
            "index": getattr(self.clusterer, "index_name_", None),
            "n_candidate_pairs": int(len(i)),
            "n_edges": cl.n_edges,
            "n_split_by_chaining_guard": cl.n_split,
            "stages": timer.stages,
            "total_seconds": round(timer.total_seconds, 3),
            "failed_items": len({f.item_id for f in rep.failures}),
            "failures_by_stage": pd.Series([f.stage for f in rep.failures], dtype=object).value_counts().to_dict(),
            **rep.stats,
        }
        return DedupResult(clusters=clusters, concepts=concepts, edges=edges, metrics=metrics, run=run, failures=rep.failures)

    # ------------------------------------------------------------------ persistence
    def params(self) -> dict:
        """Constructor parameters that define the model (JSON-serialisable)."""
        return {
            "extractor": self._extractor().identifier if self.extractor is not None else "rules",
            "text_encoder": self.text_encoder,
            "reducer": self.reducer,
            "k": self.clusterer.k,
            "tau": self.clusterer.threshold,
            "guard": self.clusterer.guard,
            "guard_margin": self.clusterer.guard_margin,
            "images": self.images,
            "ocr": self.ocr,
            "edge_score": self.edge_score,
            "random_state": self.random_state,
            "slot_specs": [s.__dict__ for s in self.slot_specs],
        }

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.json`` (parameters, α, τ, fit report, versions) into ``model_dir``."""
        from itemrep.runinfo import package_versions

        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "itemrep_version": __version__,
            "params": self.params(),
            "fusion": self.fusion.to_dict(),
            "fit": getattr(self, "fit_info_", None),
            "versions": package_versions(),
        }
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
            ModelDirError: when the directory or ``model.json`` is missing or of another format.
        """
        p = Path(model_dir)
        p = p if p.suffix == ".json" else p / "model.json"
        if not p.is_file():
            raise ModelDirError(f"{model_dir}: no model.json here; create one with `itemrep fit CATALOG --label-col COL --model-dir {model_dir}`")
        try:
            payload = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ModelDirError(f"{p}: not valid JSON (line {e.lineno}): {e.msg}") from None
        if payload.get("format") != MODEL_FORMAT:
            raise ModelDirError(f"{p}: model format {payload.get('format')!r}, this itemrep reads format {MODEL_FORMAT}; re-run `itemrep fit`")
        prm = payload["params"]
        specs = tuple(SlotSpec(**s) for s in prm.get("slot_specs", [])) or DEFAULT_SLOT_SPECS
        kw = dict(
            text_encoder=prm["text_encoder"], slot_specs=specs, reducer=prm["reducer"],
            clusterer=NearDuplicateClusterer(threshold=prm["tau"], k=prm["k"], guard=prm["guard"], guard_margin=prm["guard_margin"]),
            images=prm["images"], ocr=prm["ocr"], edge_score=prm["edge_score"], random_state=prm["random_state"],
            fusion=AttentionFusion.from_dict(payload["fusion"]),
        )
        kw.update(overrides)
        model = cls(**kw)
        model.fit_info_ = payload.get("fit")
        return model
