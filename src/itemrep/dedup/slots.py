"""Slot encoding: every concept slot of every item becomes a unit-norm vector (FITRep Sec. 3.1).

A :class:`SlotSet` holds K slot matrices for N items. Slot ``k`` is an (N, d_k) float32 matrix, dense
or scipy CSR, whose rows are unit-norm, or all-zero where the item has nothing in that slot. The
cosine of items i and j in slot k is then a plain dot product ``c_k[i] · c_k[j]`` (0 when either is
absent), and the fused similarity of :mod:`itemrep.dedup.fusion` is ``Σ_k α_k cos(c_k[i], c_k[j])``.

The default slots (:data:`DEFAULT_SLOT_SPECS`) are built from the concept hierarchy:

=================  =========  ==============================================  ===================
slot               level      text / input                                    encoder
=================  =========  ==============================================  ===================
primary_words      primary    all primary text concepts                       TF-IDF words 1-2 g
primary_chars      primary    all primary text concepts                       TF-IDF char 2-4 g
primary_sem        primary    all primary text concepts                       dense (USE)
brand              primary    brand                                           TF-IDF words
model              primary    model codes                                     TF-IDF words
spec               primary    spec + pack values (one token each)             TF-IDF words
color              primary    colour values                                   TF-IDF words
auxiliary          auxiliary  promo, shipping, seller, stock, emoji           TF-IDF words
phash              primary    64-bit perceptual hash                          ±1/8 bit vector
image_primary      primary    main-object image embedding                     CNN (if images)
image_context      auxiliary  whole-frame image embedding                     CNN (if images)
ocr_primary        primary    text read off the product                       TF-IDF words
ocr_auxiliary      auxiliary  stickers, banners, watermarks                   TF-IDF words
=================  =========  ==============================================  ===================

Slots marked *conflict* (brand, model, spec, colour, variant) also yield an attribute-conflict
feature ``1 - cos`` for pairs where both items state the attribute: "500 ml" against "1 l" is
evidence *against* a duplicate, which an absent spec is not. :mod:`itemrep.dedup.fusion` learns a
non-negative penalty γ for each.

Slots with *knots* (the primary text slots and phash) also yield near-match features
``max(0, cos - t) / (1 - t)`` for each knot t: with non-negative weights β the slot's contribution
becomes a monotone piecewise-linear function of its cosine, so "the same photo" (phash Hamming
distance ≤ 8, i.e. cos ≥ 0.75) can count for more than a linear share — the "or" that a union of
thresholds expresses, kept additive and visible per term.

The phash slot maps bit b to ±1/8, so for two hashes at Hamming distance h the slot cosine is
exactly ``1 - h/32`` (64 bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from itemrep.catalog import Item
from itemrep.concepts.schema import AUXILIARY_SLOTS, ConceptHierarchy
from itemrep.encoders.text import TfidfTextEncoder, l2_normalize_rows

#: Concept slots whose values are not text for the text slots (handled by their own slot).
_NON_TEXT_SLOTS = {"visual_object", "visual_context", "visual_region", "ocr_primary", "ocr_auxiliary"}


@dataclass(frozen=True)
class SlotSpec:
    """How one slot is built.

    Attributes:
        name: slot name (a key of α).
        level: ``"primary"`` or ``"auxiliary"`` (drives the default α).
        source: ``"primary_text"`` (all primary text concepts), ``"concepts:a,b"`` (values of the
            listed concept slots, each value one token), ``"auxiliary_text"``, ``"phash"``,
            ``"external"`` (a precomputed matrix passed in, e.g. image embeddings).
        encoder: ``"tfidf_word"``, ``"tfidf_word12"``, ``"tfidf_char"``, ``"dense"``, ``"phash"``, ``"external"``.
        conflict: also score an *attribute conflict* for this slot: ``1 - cos`` when both items
            have the slot, 0 otherwise (see :meth:`SlotSet.pair_features`).
        knots: cosine values t at which a *near-match bonus* ``max(0, cos - t) / (1 - t)`` starts
            (see :meth:`SlotSet.pair_features`); empty for none.
    """

    name: str
    level: str
    source: str
    encoder: str
    conflict: bool = False
    knots: tuple[float, ...] = ()


DEFAULT_SLOT_SPECS: tuple[SlotSpec, ...] = (
    SlotSpec("primary_words", "primary", "primary_text", "tfidf_word12", knots=(0.6, 0.8)),
    SlotSpec("primary_chars", "primary", "primary_text", "tfidf_char", knots=(0.6, 0.8)),
    SlotSpec("primary_sem", "primary", "primary_text", "dense", knots=(0.8, 0.9)),
    SlotSpec("brand", "primary", "concepts:brand", "tfidf_word", conflict=True),
    SlotSpec("model", "primary", "concepts:model", "tfidf_word", conflict=True),
    SlotSpec("spec", "primary", "concepts:spec,pack", "tfidf_word", conflict=True),
    SlotSpec("color", "primary", "concepts:color", "tfidf_word", conflict=True),
    SlotSpec("variant", "primary", "concepts:variant", "tfidf_word", conflict=True),
    SlotSpec("auxiliary", "auxiliary", "auxiliary_text", "tfidf_word"),
    SlotSpec("phash", "primary", "phash", "phash", knots=(0.75, 0.875)),
    SlotSpec("image_primary", "primary", "external", "external"),
    SlotSpec("image_context", "auxiliary", "external", "external"),
    SlotSpec("ocr_primary", "primary", "concepts:ocr_primary", "tfidf_word"),
    SlotSpec("ocr_auxiliary", "auxiliary", "concepts:ocr_auxiliary", "tfidf_word"),
)


def phash_bits(phashes: Sequence[str | None]) -> np.ndarray:
    """Encode 16-hex-digit perceptual hashes as ±1/8 vectors.

    Args:
        phashes: N hashes (16 hex digits) or ``None``.

    Returns:
        float32 (N, 64); row i has entries ±1/8 (unit norm) or zeros when ``phashes[i]`` is None.
        For two hashes at Hamming distance h, the dot product is ``1 - h/32``.
    """
    out = np.zeros((len(phashes), 64), dtype=np.float32)
    for i, h in enumerate(phashes):
        if h:
            v = int(h, 16)
            bits = np.array([(v >> (63 - b)) & 1 for b in range(64)], dtype=np.float32)
            out[i] = (bits * 2.0 - 1.0) / 8.0
    return out


def _concept_text(h: ConceptHierarchy, level: str) -> str:
    vals = [c.value for c in h.concepts if c.level == level and c.slot not in _NON_TEXT_SLOTS]
    return " ".join(vals)


def _slot_tokens(h: ConceptHierarchy, slots: Sequence[str]) -> str:
    vals = [c.value for c in h.concepts if c.slot in slots]
    return " ".join(v.replace(" ", "_") if not any(s.startswith("ocr") for s in slots) else v for v in vals)


@dataclass
class SlotSet:
    """K slot matrices for N items.

    Attributes:
        matrices: slot name -> (N, d_k) float32, dense ndarray or CSR; rows unit-norm or zero.
        levels: slot name -> ``"primary"`` / ``"auxiliary"``.
        texts: slot name -> the N strings that were encoded (for the report), when textual.
        salience: optional slot name -> (N,) float32 per-item weights in [0, 1] (LLM salience).
    """

    matrices: dict[str, object]
    levels: dict[str, str]
    texts: dict[str, list[str]] = field(default_factory=dict)
    salience: dict[str, np.ndarray] = field(default_factory=dict)
    conflict_slots: list[str] = field(default_factory=list)
    knots: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Columns of :meth:`pair_features`: slot names, then ``conflict_<slot>``, then
        ``match_<slot>@<knot>`` names."""
        return (self.names + [f"conflict_{k}" for k in self.conflict_slots]
                + [f"match_{k}@{t:g}" for k, ts in self.knots.items() for t in ts])

    def presence(self, name: str) -> np.ndarray:
        """bool (N,): items with a non-zero vector in slot ``name``."""
        m = self.matrices[name]
        return (m.getnnz(axis=1) > 0) if sp.issparse(m) else np.any(m != 0, axis=1)

    def pair_features(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Per-slot cosines followed by attribute conflicts, float32 (E, K + C).

        Conflict of slot c for pair (i, j) is ``1 - cos_c`` when both items have slot c, else 0;
        the near-match feature of slot k at knot t is ``max(0, cos_k - t) / (1 - t)``.

        Returns:
            float32 (E, len(feature_names)).
        """
        cos = self.pair_cosines(i, j)
        parts = [cos]
        if self.conflict_slots:
            conf = np.zeros((len(i), len(self.conflict_slots)), dtype=np.float32)
            for c, name in enumerate(self.conflict_slots):
                pres = self.presence(name)
                both = pres[i] & pres[j]
                conf[both, c] = 1.0 - cos[both, self.names.index(name)]
            parts.append(conf)
        for name, ts in self.knots.items():
            c = cos[:, self.names.index(name)]
            parts.append(np.stack([np.maximum(0.0, c - t) / (1.0 - t) for t in ts], axis=1).astype(np.float32))
        return np.hstack(parts) if len(parts) > 1 else cos

    @property
    def names(self) -> list[str]:
        """Slot names in a fixed order."""
        return list(self.matrices)

    @property
    def n_items(self) -> int:
        return next(iter(self.matrices.values())).shape[0] if self.matrices else 0

    def coverage(self) -> dict[str, float]:
        """Fraction of items with a non-zero vector, per slot."""
        out = {}
        for k, m in self.matrices.items():
            nz = (m.getnnz(axis=1) > 0) if sp.issparse(m) else np.any(m != 0, axis=1)
            out[k] = float(np.mean(nz)) if len(nz) else 0.0
        return out

    def pair_cosines(self, i: np.ndarray, j: np.ndarray, names: Sequence[str] | None = None, chunk: int = 65536) -> np.ndarray:
        """Per-slot cosines for item pairs.

        Args:
            i, j: int arrays of shape (E,), item positions.
            names: slots to compute (default: all, in :attr:`names` order).
            chunk: pairs per block (bounds memory for dense slots).

        Returns:
            float32 (E, K) with entry [e, k] = cos(c_k[i_e], c_k[j_e]) (0 where either is absent),
            multiplied by ``sqrt(s_k[i_e] s_k[j_e])`` when per-item salience is set for slot k.
        """
        names = list(names or self.names)
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        out = np.zeros((len(i), len(names)), dtype=np.float32)
        for k, name in enumerate(names):
            m = self.matrices[name]
            for s in range(0, len(i), chunk):
                a, b = i[s : s + chunk], j[s : s + chunk]
                if sp.issparse(m):
                    v = np.asarray(m[a].multiply(m[b]).sum(axis=1)).ravel()
                else:
                    v = np.einsum("ij,ij->i", m[a], m[b])
                out[s : s + chunk, k] = v
            if name in self.salience:
                sal = self.salience[name]
                out[:, k] *= np.sqrt(sal[i] * sal[j])
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def dense_views(self, max_dim: int = 128, method: str = "srp", random_state: int = 0) -> dict[str, np.ndarray]:
        """Dense stand-ins for every slot, for the FAISS candidate search only (edges are scored
        with the exact cosines of :meth:`pair_cosines`).

        Dense slots are returned as they are; a sparse slot no wider than ``max_dim`` is densified;
        a wider one is projected to ``max_dim`` dimensions, by default with a sparse random
        projection (Li, Hastie & Church 2006, "Very sparse random projections"), which keeps
        cosines within about ±1/√max_dim (Johnson–Lindenstrauss) at a tiny cost, or with a
        truncated SVD (``method="svd"``, latent semantic analysis; slower). Rows are re-normalised.

        Returns:
            slot name -> float32 (N, d'_k), rows unit-norm or zero.

        Raises:
            ValueError: for an unknown ``method``.
        """
        from sklearn.decomposition import TruncatedSVD
        from sklearn.random_projection import SparseRandomProjection

        if method not in ("srp", "svd"):
            raise ValueError(f"unknown dense view method {method!r}; use srp or svd")
        out = {}
        for k, (name, m) in enumerate(self.matrices.items()):
            if not sp.issparse(m):
                out[name] = np.ascontiguousarray(m, dtype=np.float32)
            elif m.shape[1] <= max_dim or m.nnz == 0:
                out[name] = l2_normalize_rows(m.toarray())
            elif method == "srp":
                proj = SparseRandomProjection(n_components=max_dim, dense_output=True, random_state=random_state + k)
                out[name] = l2_normalize_rows(np.asarray(proj.fit_transform(m), dtype=np.float32))
            else:
                n_comp = int(min(max_dim, m.shape[0] - 1, m.shape[1] - 1))
                svd = TruncatedSVD(n_components=n_comp, algorithm="randomized", n_iter=3, random_state=random_state)
                out[name] = l2_normalize_rows(svd.fit_transform(m).astype(np.float32))
        return out


class SlotEncoder:
    """Build a :class:`SlotSet` from items and their concept hierarchies.

    Args:
        specs: slot specifications (default :data:`DEFAULT_SLOT_SPECS`). Slots whose input is
            absent for every item (e.g. no phash column, no images) are left out.
        dense_encoder: encoder with ``encode(list[str]) -> (N, d)`` used for ``"dense"`` slots
            (e.g. :class:`~itemrep.encoders.text.USETextEncoder`); ``None`` drops those slots.
    """

    def __init__(self, specs: Sequence[SlotSpec] = DEFAULT_SLOT_SPECS, dense_encoder=None) -> None:
        self.specs = tuple(specs)
        self.dense_encoder = dense_encoder

    def encode(
        self,
        items: Sequence[Item],
        hierarchies: Sequence[ConceptHierarchy],
        external: dict[str, np.ndarray] | None = None,
        phashes: Sequence[str | None] | None = None,
        progress=None,
    ) -> SlotSet:
        """Encode every slot.

        Args:
            items: N catalog items.
            hierarchies: N concept hierarchies, aligned with ``items``.
            external: precomputed slot matrices (N, d) by slot name, e.g. ``image_primary``.
            phashes: N phashes overriding ``item.phash`` (e.g. computed from images).
            progress: called with 1 after each slot specification (for a progress bar).

        Returns:
            The :class:`SlotSet` (slots with no data for any item are omitted).

        Raises:
            ValueError: when lengths do not match.
        """
        n = len(items)
        if len(hierarchies) != n:
            raise ValueError(f"{len(hierarchies)} hierarchies for {n} items")
        external = external or {}
        if phashes is None:
            phashes = [it.phash for it in items]
        primary_text = [_concept_text(h, "primary") for h in hierarchies]
        aux_text = [_concept_text(h, "auxiliary") for h in hierarchies]
        matrices: dict[str, object] = {}
        levels: dict[str, str] = {}
        texts: dict[str, list[str]] = {}
        dense_cache: dict[int, np.ndarray] = {}
        for spec in self.specs:
            if progress is not None:
                progress(1)
            if spec.source == "external":
                if spec.name in external and external[spec.name] is not None:
                    m = np.asarray(external[spec.name], dtype=np.float32)
                    if m.shape[0] != n:
                        raise ValueError(f"external slot {spec.name!r} has {m.shape[0]} rows for {n} items")
                    if np.any(m != 0):
                        matrices[spec.name] = l2_normalize_rows(m)
                        levels[spec.name] = spec.level
                continue
            if spec.source == "phash":
                if any(phashes):
                    matrices[spec.name] = phash_bits(phashes)
                    levels[spec.name] = spec.level
                continue
            if spec.source == "primary_text":
                txt = primary_text
            elif spec.source == "auxiliary_text":
                txt = aux_text
            elif spec.source.startswith("concepts:"):
                txt = [_slot_tokens(h, spec.source.split(":", 1)[1].split(",")) for h in hierarchies]
            else:
                raise ValueError(f"unknown slot source {spec.source!r} in slot {spec.name!r}")
            if not any(t.strip() for t in txt):
                continue
            if spec.encoder == "dense":
                if self.dense_encoder is None:
                    continue
                key = id(txt)
                if key not in dense_cache:
                    dense_cache[key] = self.dense_encoder.encode(txt)
                m = dense_cache[key]
            elif spec.encoder == "tfidf_word":
                m = TfidfTextEncoder("word", (1, 1)).fit_transform(txt)
            elif spec.encoder == "tfidf_word12":
                m = TfidfTextEncoder("word", (1, 2)).fit_transform(txt)
            elif spec.encoder == "tfidf_char":
                m = TfidfTextEncoder("char_wb", (2, 4)).fit_transform(txt)
            else:
                raise ValueError(f"unknown slot encoder {spec.encoder!r} in slot {spec.name!r}")
            matrices[spec.name] = m
            levels[spec.name] = spec.level
            texts[spec.name] = list(txt)
        conflict = [s.name for s in self.specs if s.conflict and s.name in matrices]
        knots = {s.name: tuple(s.knots) for s in self.specs if s.knots and s.name in matrices}
        return SlotSet(matrices=matrices, levels=levels, texts=texts, conflict_slots=conflict, knots=knots)


__all__ = ["AUXILIARY_SLOTS", "DEFAULT_SLOT_SPECS", "SlotEncoder", "SlotSet", "SlotSpec", "phash_bits"]
