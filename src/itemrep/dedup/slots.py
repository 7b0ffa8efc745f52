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
description        auxiliary  every concept of the description text           TF-IDF words
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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from itemrep.concepts.schema import AUXILIARY_SLOTS
from itemrep.dedup._kernels import csr_pair_dots
from itemrep.encoders.text import HashedTfidfEncoder, l2_normalize_rows
from itemrep.errors import ModelDirError

#: Concept slots whose values are not text for the text slots (handled by their own slot).
_NON_TEXT_SLOTS = {"visual_object", "visual_context", "visual_region", "ocr_primary", "ocr_auxiliary"}

#: Level given, in the slot view, to concepts read from an item's description text (concept
#: source ``"text"``): they feed the ``description`` slot only, never the title's primary slots or
#: the attribute slots, so a long description cannot drown the title (issue #10, transfer).
DESCRIPTION_LEVEL = "description"

#: Slot encoders / sources whose absence on an item means "no data" (no photo, no description),
#: not "no such attribute": pair scores are renormalised over the ones both items have (see
#: :meth:`SlotSet.modal_slots` and :meth:`~itemrep.dedup.fusion.AttentionFusion.pair_similarity`).
MODAL_ENCODERS = frozenset({"phash", "external", "dense"})
MODAL_SOURCES = frozenset({"description_text"})


def concept_level(level: str | None, source: str | None) -> str | None:
    """The level a concept has in the slot view: :data:`DESCRIPTION_LEVEL` for concepts of the
    description text (``source == "text"``), else its own level."""
    return DESCRIPTION_LEVEL if source == "text" else level


#: Version of the saved slot-encoder state (``slots.json``); bumped when the layout changes.
SLOT_ENCODER_FORMAT = 1

#: TF-IDF analyzers of the slot encoders: encoder name -> (analyzer, ngram_range).
TFIDF_ENCODERS: dict[str, tuple[str, tuple[int, int]]] = {
    "tfidf_word": ("word", (1, 1)),
    "tfidf_word12": ("word", (1, 2)),
    "tfidf_char": ("char_wb", (2, 4)),
}


@dataclass(frozen=True)
class SlotSpec:
    """How one slot is built.

    Attributes:
        name: slot name (a key of α).
        level: ``"primary"`` or ``"auxiliary"`` (drives the default α).
        source: ``"primary_text"`` (all primary text concepts of the title), ``"concepts:a,b"``
            (values of the listed concept slots of the title, each value one token),
            ``"auxiliary_text"``, ``"description_text"`` (every concept of the description text),
            ``"phash"``, ``"external"`` (a precomputed matrix passed in, e.g. image embeddings).
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
    SlotSpec("description", "auxiliary", "description_text", "tfidf_word"),
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
    n = len(phashes)
    present = np.fromiter((bool(h) for h in phashes), dtype=bool, count=n)
    out = np.zeros((n, 64), dtype=np.float32)
    if present.any():
        vals = np.array([int(h, 16) for h in phashes if h], dtype=np.uint64)
        bits = np.unpackbits(vals.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)  # MSB first
        out[present] = (bits.astype(np.float32) * 2.0 - 1.0) / 8.0
    return out


def sparse_random_projection(n_features: int, n_components: int, seed: int) -> sp.csr_matrix:
    """A very sparse random projection matrix (Li, Hastie & Church 2006), CSR float32 (n_features, n_components).

    About ``n_features · n_components / √n_features`` entries of value ±1 at uniformly random
    positions (the scale does not matter: projected rows are re-normalised). Generated from
    ``seed`` alone, so a fitted encoder stores only the seed.
    """
    rng = np.random.default_rng(seed)
    nnz = max(n_components, int(round(n_features * n_components / np.sqrt(n_features))))
    rows = rng.integers(0, n_features, nnz)
    cols = rng.integers(0, n_components, nnz)
    vals = np.where(rng.random(nnz) < 0.5, -1.0, 1.0).astype(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n_features, n_components), dtype=np.float32)
    m.sum_duplicates()
    return m


def concept_texts(concepts: Sequence[Sequence[tuple[str, str, str]]], sources: Sequence[str]) -> dict[str, list[str]]:
    """The strings each slot source encodes, for N items.

    Args:
        concepts: per item, its concepts as ``(slot, value, level)`` tuples in hierarchy order;
            concepts of the description text have level :data:`DESCRIPTION_LEVEL` (see
            :func:`concept_level`).
        sources: slot sources (``"primary_text"``, ``"auxiliary_text"``, ``"description_text"``,
            ``"concepts:a,b"``).

    Returns:
        source -> N strings (``""`` where the item has nothing for that source). Values of
        ``concepts:`` sources are joined with spaces, spaces inside a value becoming ``_`` (one token
        per value) except for OCR slots; description concepts feed only ``description_text``.
    """
    out: dict[str, list[str]] = {}
    for src in dict.fromkeys(sources):
        if src in ("primary_text", "auxiliary_text", "description_text"):
            lvl = src.split("_")[0]
            out[src] = [" ".join(v for s, v, l in cs if l == lvl and s not in _NON_TEXT_SLOTS) for cs in concepts]
        elif src.startswith("concepts:"):
            want = set(src.split(":", 1)[1].split(","))
            ocr = any(w.startswith("ocr") for w in want)
            out[src] = [" ".join(v if ocr else v.replace(" ", "_") for s, v, l in cs if s in want and l != DESCRIPTION_LEVEL)
                        for cs in concepts]
        else:
            raise ValueError(f"unknown slot source {src!r}")
    return out


def _is_sparse(m) -> bool:
    return sp.issparse(m)


@dataclass
class SlotSet:
    """K slot matrices for N items.

    Attributes:
        matrices: slot name -> (N, d_k) float32, dense ndarray or CSR (sorted indices); rows unit-norm or zero.
        levels: slot name -> ``"primary"`` / ``"auxiliary"``.
        salience: optional slot name -> (N,) float32 per-item weights in [0, 1] (LLM salience).
        conflict_slots: slots that also yield an attribute-conflict feature.
        knots: slot name -> near-match knots.
        modal_slots: slots whose absence on an item means missing data (photo, description), over
            which pair scores are renormalised (see :data:`MODAL_ENCODERS`).
    """

    matrices: dict[str, object]
    levels: dict[str, str]
    salience: dict[str, np.ndarray] = field(default_factory=dict)
    conflict_slots: list[str] = field(default_factory=list)
    knots: dict[str, tuple[float, ...]] = field(default_factory=dict)
    modal_slots: list[str] = field(default_factory=list)
    _presence: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def feature_names(self) -> list[str]:
        """Columns of :meth:`pair_features`: slot names, then ``conflict_<slot>``, then
        ``match_<slot>@<knot>`` names."""
        return (self.names + [f"conflict_{k}" for k in self.conflict_slots]
                + [f"match_{k}@{t:g}" for k, ts in self.knots.items() for t in ts])

    @property
    def names(self) -> list[str]:
        """Slot names in a fixed order."""
        return list(self.matrices)

    @property
    def n_items(self) -> int:
        return next(iter(self.matrices.values())).shape[0] if self.matrices else 0

    def presence(self, name: str) -> np.ndarray:
        """bool (N,): items with a non-zero vector in slot ``name`` (computed once per slot: the
        matrices of a SlotSet are not changed after it is made)."""
        p = self._presence.get(name)
        if p is None:
            m = self.matrices[name]
            p = self._presence[name] = (np.diff(m.indptr) > 0) if _is_sparse(m) else np.any(np.asarray(m) != 0, axis=1)
        return p

    def coverage(self) -> dict[str, float]:
        """Fraction of items with a non-zero vector, per slot."""
        return {k: float(np.mean(self.presence(k))) if self.n_items else 0.0 for k in self.matrices}

    # ------------------------------------------------------------------ rows
    def take(self, idx) -> "SlotSet":
        """The rows ``idx`` (int array) of every slot, as a new in-memory SlotSet."""
        idx = np.asarray(idx, dtype=np.int64)
        mats = {k: (m[idx] if _is_sparse(m) else np.ascontiguousarray(np.asarray(m)[idx])) for k, m in self.matrices.items()}
        return SlotSet(matrices=mats, levels=dict(self.levels), salience={k: v[idx] for k, v in self.salience.items()},
                       conflict_slots=list(self.conflict_slots), knots=dict(self.knots), modal_slots=list(self.modal_slots))

    @staticmethod
    def concat(sets: Sequence["SlotSet"]) -> "SlotSet":
        """Stack the rows of several SlotSets with the same slots (in order).

        Raises:
            ValueError: when the slot names or widths differ.
        """
        sets = list(sets)
        if not sets:
            raise ValueError("concat needs at least one SlotSet")
        first = sets[0]
        for s in sets[1:]:
            if s.names != first.names:
                raise ValueError(f"slot sets differ: {first.names} vs {s.names}")
        mats = {}
        for k, m in first.matrices.items():
            parts = [s.matrices[k] for s in sets]
            mats[k] = sp.vstack(parts, format="csr") if _is_sparse(m) else np.vstack([np.asarray(p) for p in parts])
        sal = {k: np.concatenate([s.salience[k] for s in sets]) for k in first.salience}
        return SlotSet(matrices=mats, levels=dict(first.levels), salience=sal,
                       conflict_slots=list(first.conflict_slots), knots=dict(first.knots), modal_slots=list(first.modal_slots))

    def save(self, directory: str | Path, name: str) -> None:
        """Write every slot as ``.npy`` arrays (CSR as data/indices/indptr) plus ``{name}.json``.

        The files can be memory-mapped back with :meth:`load`. Raises OSError on write failure.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": 1, "n_items": self.n_items, "levels": self.levels, "conflict_slots": self.conflict_slots,
                "knots": {k: list(v) for k, v in self.knots.items()}, "modal_slots": list(self.modal_slots), "slots": {}}
        for k, m in self.matrices.items():
            if _is_sparse(m):
                m = sp.csr_matrix(m)
                np.save(d / f"{name}.{k}.data.npy", m.data.astype(np.float32))
                np.save(d / f"{name}.{k}.indices.npy", m.indices.astype(np.int32))
                np.save(d / f"{name}.{k}.indptr.npy", m.indptr.astype(np.int64))
                meta["slots"][k] = {"kind": "csr", "shape": list(m.shape)}
            else:
                np.save(d / f"{name}.{k}.dense.npy", np.asarray(m, dtype=np.float32))
                meta["slots"][k] = {"kind": "dense", "shape": list(np.shape(m))}
        (d / f"{name}.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path, name: str, mmap: bool = True) -> "SlotSet":
        """Read a SlotSet written by :meth:`save` (arrays memory-mapped when ``mmap``).

        Raises:
            ModelDirError: when ``{name}.json`` is missing or of another format.
        """
        d = Path(directory)
        p = d / f"{name}.json"
        if not p.is_file():
            raise ModelDirError(f"{p}: missing slot rows; rebuild the index")
        meta = json.loads(p.read_text())
        if meta.get("format") != 1:
            raise ModelDirError(f"{p}: slot-row format {meta.get('format')!r}, this itemrep reads format 1")
        mode = "r" if mmap else None
        mats = {}
        for k, info in meta["slots"].items():
            if info["kind"] == "csr":
                arrs = [np.load(d / f"{name}.{k}.{part}.npy", mmap_mode=mode) for part in ("data", "indices", "indptr")]
                m = sp.csr_matrix(tuple(arrs), shape=tuple(info["shape"]), copy=False)
                m.has_sorted_indices = True
                mats[k] = m
            else:
                mats[k] = np.load(d / f"{name}.{k}.dense.npy", mmap_mode=mode)
        return cls(matrices=mats, levels=meta["levels"], conflict_slots=meta["conflict_slots"],
                   knots={k: tuple(v) for k, v in meta["knots"].items()}, modal_slots=list(meta.get("modal_slots", [])))

    # ------------------------------------------------------------------ pairs
    def pair_cosines(self, i: np.ndarray, j: np.ndarray, names: Sequence[str] | None = None, chunk: int = 262144) -> np.ndarray:
        """Per-slot cosines for item pairs.

        Args:
            i, j: int arrays of shape (E,), item positions.
            names: slots to compute (default: all, in :attr:`names` order).
            chunk: pairs per block for dense slots (bounds memory).

        Returns:
            float32 (E, K) with entry [e, k] = cos(c_k[i_e], c_k[j_e]) (0 where either is absent),
            multiplied by ``sqrt(s_k[i_e] s_k[j_e])`` when per-item salience is set for slot k.
            Sparse slots use a sorted-index merge per pair (:func:`itemrep.dedup._kernels.csr_pair_dots`).
        """
        names = list(names or self.names)
        i = np.ascontiguousarray(i, dtype=np.int64)
        j = np.ascontiguousarray(j, dtype=np.int64)
        out = np.zeros((len(i), len(names)), dtype=np.float32)
        for k, name in enumerate(names):
            m = self.matrices[name]
            if _is_sparse(m):
                if not m.has_sorted_indices:
                    m.sort_indices()
                out[:, k] = csr_pair_dots(m.indptr, m.indices, m.data, i, j)
            else:
                for s in range(0, len(i), chunk):
                    a, b = i[s : s + chunk], j[s : s + chunk]
                    out[s : s + chunk, k] = np.einsum("ij,ij->i", m[a], m[b])
            if name in self.salience:
                sal = self.salience[name]
                out[:, k] *= np.sqrt(sal[i] * sal[j])
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def pair_features(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Per-slot cosines followed by attribute conflicts and near-match features, float32 (E, F).

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


@dataclass
class RawSlots:
    """Un-weighted slot inputs of a chunk of items, before the fitted part of :class:`SlotEncoder`.

    Attributes:
        n: number of items.
        counts: TF-IDF slot name -> CSR float32 (n, n_features) raw term counts (hashed).
        dense: slot name -> float32 (n, d) (phash bits, dense text embeddings, external features).
    """

    n: int
    counts: dict[str, sp.csr_matrix] = field(default_factory=dict)
    dense: dict[str, np.ndarray] = field(default_factory=dict)


class SlotEncoder:
    """Fitted slot encoders: items and their concepts -> a :class:`SlotSet` (FITRep Sec. 3.1).

    TF-IDF slots hash their n-grams (scikit-learn ``HashingVectorizer``, 2^20 features) and learn
    only the document frequencies at :meth:`fit`, so once fitted the encoder is independent of the
    catalog: tomorrow's items are encoded into today's space. Slots absent from every fitted item
    (e.g. no phash column, no images) are left out for good.

    Args:
        specs: slot specifications (default :data:`DEFAULT_SLOT_SPECS`).
        dense_encoder: encoder with ``encode(list[str]) -> (N, d)`` for ``"dense"`` slots (e.g.
            :class:`~itemrep.encoders.text.USETextEncoder`); ``None`` drops those slots.
        n_features: hashed TF-IDF width.
        view_dim: width of the dense views used for the kNN search (sparse random projection).
            256 rather than 128: the projection noise (about ±1/√view_dim per slot cosine) moved
            whole-Shopee mean per-item F1 by −0.004 on average at 128 (3 seeds), ±0.001 at 256.
        random_state: seed of the random projections.

    Attributes (after :meth:`fit`):
        slots_: names of the slots kept, in spec order.
        tfidf_: slot name -> fitted :class:`~itemrep.encoders.text.HashedTfidfEncoder`.
        projections_: slot name -> CSR float32 (n_features, view_dim) sparse random projection.
    """

    def __init__(self, specs: Sequence[SlotSpec] = DEFAULT_SLOT_SPECS, dense_encoder=None, n_features: int = 2**20,
                 view_dim: int = 256, random_state: int = 0) -> None:
        self.specs = tuple(specs)
        self.dense_encoder = dense_encoder
        self.n_features = n_features
        self.view_dim = view_dim
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _tfidf_spec(self, spec: SlotSpec) -> HashedTfidfEncoder:
        if spec.encoder not in TFIDF_ENCODERS:
            raise ValueError(f"unknown slot encoder {spec.encoder!r} in slot {spec.name!r}")
        analyzer, ngram = TFIDF_ENCODERS[spec.encoder]
        return HashedTfidfEncoder(analyzer=analyzer, ngram_range=ngram, n_features=self.n_features)

    @property
    def text_sources(self) -> list[str]:
        """Sources of the text slots (see :func:`concept_texts`)."""
        return [s.source for s in self.specs if s.source not in ("phash", "external")]

    def count(self, concepts: Sequence[Sequence[tuple[str, str, str]]], phashes: Sequence[str | None],
              external: dict[str, np.ndarray] | None = None) -> RawSlots:
        """The un-fitted part of encoding (stateless, safe to run in worker processes).

        Args:
            concepts: per item, ``(slot, value, level)`` tuples.
            phashes: per item, 16 hex digits or None.
            external: precomputed slot matrices (n, d) by slot name (image embeddings).

        Returns:
            :class:`RawSlots` for these n items.

        Raises:
            ValueError: for an unknown slot source/encoder or a row-count mismatch.
        """
        n = len(concepts)
        texts = concept_texts(concepts, self.text_sources)
        raw = RawSlots(n=n)
        for spec in self.specs:
            if spec.source == "external":
                m = (external or {}).get(spec.name)
                if m is not None:
                    m = np.asarray(m, dtype=np.float32)
                    if m.shape[0] != n:
                        raise ValueError(f"external slot {spec.name!r} has {m.shape[0]} rows for {n} items")
                    raw.dense[spec.name] = l2_normalize_rows(m)
            elif spec.source == "phash":
                raw.dense[spec.name] = phash_bits(phashes)
            elif spec.encoder == "dense":
                if self.dense_encoder is not None:
                    raw.dense[spec.name] = self.dense_encoder.encode(texts[spec.source])
            else:
                raw.counts[spec.name] = self._tfidf_spec(spec).counts(texts[spec.source])
        return raw

    # ------------------------------------------------------------------ fit / transform
    def fit(self, raw: RawSlots | Sequence[RawSlots]) -> "SlotEncoder":
        """Learn document frequencies and choose the slots present in ``raw`` (one RawSlots or
        a list of chunks, which are never stacked); returns self."""
        parts = [raw] if isinstance(raw, RawSlots) else list(raw)
        self.slots_, self.tfidf_, self.projections_ = [], {}, {}
        for k, spec in enumerate(self.specs):
            counts = [p.counts[spec.name] for p in parts if spec.name in p.counts]
            dense = [p.dense[spec.name] for p in parts if spec.name in p.dense]
            if counts:
                if not any(m.nnz for m in counts):
                    continue
                self.tfidf_[spec.name] = self._tfidf_spec(spec).fit(counts)
                self.projections_[spec.name] = sparse_random_projection(self.n_features, self.view_dim, self.random_state + k)
            elif dense:
                if not any(np.any(m) for m in dense):
                    continue
            else:
                continue
            self.slots_.append(spec.name)
        if not self.slots_:
            raise ValueError("no slot could be encoded: every item has empty title, text, image and phash")
        return self

    def _check(self) -> None:
        if not hasattr(self, "slots_"):
            raise RuntimeError("SlotEncoder is not fitted: call fit() first (or load a fitted model)")

    def transform_raw(self, raw: RawSlots) -> SlotSet:
        """Apply the fitted encoders to raw slot inputs: a :class:`SlotSet` of the kept slots.

        A kept slot missing from ``raw`` (no phash column in a new catalog) gets all-zero rows.
        """
        self._check()
        by = {s.name: s for s in self.specs}
        mats: dict[str, object] = {}
        for name in self.slots_:
            if name in self.tfidf_:
                m = raw.counts.get(name)
                mats[name] = (self.tfidf_[name].transform_counts(m) if m is not None
                              else sp.csr_matrix((raw.n, self.n_features), dtype=np.float32))
            else:
                m = raw.dense.get(name)
                if m is None:
                    width = {"phash": 64}.get(by[name].encoder)
                    if width is None:
                        raise ValueError(f"slot {name!r} was fitted but is missing from this catalog's inputs")
                    m = np.zeros((raw.n, width), dtype=np.float32)
                mats[name] = np.ascontiguousarray(m, dtype=np.float32)
        levels = {n: by[n].level for n in self.slots_}
        return SlotSet(matrices=mats, levels=levels,
                       conflict_slots=[n for n in self.slots_ if by[n].conflict],
                       knots={n: tuple(by[n].knots) for n in self.slots_ if by[n].knots},
                       modal_slots=[n for n in self.slots_ if by[n].encoder in MODAL_ENCODERS or by[n].source in MODAL_SOURCES])

    def transform_parts(self, parts: list[RawSlots]) -> SlotSet:
        """:meth:`transform_raw` of chunks, stacked; the list is emptied as it goes so each chunk's
        raw counts are freed once weighted (peak memory: the weighted rows twice, not three times)."""
        out = []
        while parts:
            out.append(self.transform_raw(parts.pop(0)))
        return SlotSet.concat(out) if len(out) > 1 else out[0]

    def transform(self, concepts, phashes, external=None) -> SlotSet:
        """:meth:`count` then :meth:`transform_raw`."""
        return self.transform_raw(self.count(concepts, phashes, external))

    def dense_views(self, slots: SlotSet, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Dense stand-ins of the slots ``names`` (default all), for the FAISS candidate search only
        (edges are scored with the exact cosines of :meth:`SlotSet.pair_cosines`).

        Sparse TF-IDF slots go through a fixed sparse random projection to ``view_dim`` dimensions
        (Li, Hastie & Church 2006, "Very sparse random projections"), which keeps cosines within
        about ±1/√view_dim (Johnson–Lindenstrauss); dense slots are returned as they are. Rows are
        re-normalised.

        Returns:
            slot name -> float32 (N, d'_k), rows unit-norm or zero.
        """
        self._check()
        out = {}
        for name in names or slots.names:
            m = slots.matrices[name]
            if _is_sparse(m):
                out[name] = l2_normalize_rows(np.asarray((m @ self.projections_[name]).toarray(), dtype=np.float32))
            else:
                out[name] = np.ascontiguousarray(m, dtype=np.float32)
        return out

    # ------------------------------------------------------------------ persistence
    def params(self) -> dict:
        return {"specs": [dict(s.__dict__, knots=list(s.knots)) for s in self.specs], "n_features": self.n_features,
                "view_dim": self.view_dim, "random_state": self.random_state}

    def save(self, directory: str | Path) -> None:
        """Write ``slots.json`` (parameters, kept slots) and one ``df_<slot>.npz`` per TF-IDF slot
        (document frequencies) into ``directory``. Projections are re-made from the seed at load."""
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": SLOT_ENCODER_FORMAT, "params": self.params(), "slots": self.slots_,
                "tfidf": {k: v.state() for k, v in self.tfidf_.items()}}
        for k, v in self.tfidf_.items():
            idx = np.flatnonzero(v.df_)
            np.savez(d / f"df_{k}.npz", index=idx.astype(np.int64), df=v.df_[idx].astype(np.int64))
        (d / "slots.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path, dense_encoder=None, **expect) -> "SlotEncoder":
        """Read a fitted encoder written by :meth:`save`.

        Args:
            directory: the directory holding ``slots.json``.
            dense_encoder: the dense text encoder to attach (not saved).
            expect: parameter values the caller requires (e.g. ``n_features=2**20``).

        Raises:
            ModelDirError: when files are missing, of another format, or a parameter differs from ``expect``.
        """
        d = Path(directory)
        p = d / "slots.json"
        if not p.is_file():
            raise ModelDirError(f"{p}: missing; the model directory is incomplete (re-run `itemrep fit` or `itemrep index build`)")
        meta = json.loads(p.read_text())
        if meta.get("format") != SLOT_ENCODER_FORMAT:
            raise ModelDirError(f"{p}: slot-encoder format {meta.get('format')!r}, this itemrep reads {SLOT_ENCODER_FORMAT}")
        prm = meta["params"]
        for k, v in expect.items():
            if prm.get(k) != v:
                raise ModelDirError(f"{p}: parameter {k} is {prm.get(k)!r} here but {v!r} was asked for")
        specs = tuple(SlotSpec(**dict(s, knots=tuple(s["knots"]))) for s in prm["specs"])
        enc = cls(specs, dense_encoder=dense_encoder, n_features=prm["n_features"], view_dim=prm["view_dim"],
                  random_state=prm["random_state"])
        # rebuild the kept-slot list, projections from the seed, document frequencies from disk
        enc.slots_, enc.tfidf_, enc.projections_ = list(meta["slots"]), {}, {}
        by = {s.name: (k, s) for k, s in enumerate(specs)}
        for name, state in meta["tfidf"].items():
            k, spec = by[name]
            z = np.load(d / f"df_{name}.npz")
            df = np.zeros(enc.n_features, dtype=np.int64)
            df[z["index"]] = z["df"]
            enc.tfidf_[name] = enc._tfidf_spec(spec).set_state(df, state["n_docs"])
            enc.projections_[name] = sparse_random_projection(enc.n_features, enc.view_dim, enc.random_state + k)
        return enc


__all__ = ["AUXILIARY_SLOTS", "DEFAULT_SLOT_SPECS", "DESCRIPTION_LEVEL", "MODAL_ENCODERS", "MODAL_SOURCES", "concept_level", "RawSlots", "SlotEncoder", "SlotSet", "SlotSpec", "concept_texts", "phash_bits"]
