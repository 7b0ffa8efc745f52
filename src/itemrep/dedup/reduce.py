"""SPDR: structure-preserving dimensionality reduction of fused vectors (FITRep Sec. 3.2).

FITRep compresses the fused concept vectors with an adaptive UMAP that keeps local neighbourhoods,
so the FAISS graph of :mod:`itemrep.dedup.cluster` works in a small space. Three reducers share one
scikit-learn style interface (``fit`` on a sample, ``transform`` the rest, ``fit_transform``):

* :class:`UMAPReducer` — umap-learn; the number of neighbours and the output dimension are chosen
  from the catalog size, and a *kept-neighbour* check (share of each sampled item's 10 nearest
  neighbours that survive the reduction) doubles the dimension once when too little is kept;
* :class:`PCAReducer` — scikit-learn PCA, whitening off;
* :class:`IdentityReducer` — no reduction (``--reducer none``).

Outputs are float32 with unit-norm rows so that inner product = cosine in the FAISS index.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from itemrep.encoders.text import l2_normalize_rows
from itemrep.errors import ModelDirError

#: Version of the saved reducer state (``reducer.json``).
REDUCER_FORMAT = 1


def kept_neighbour_ratio(x: np.ndarray, y: np.ndarray, k: int = 10, sample: int = 500, random_state: int = 0) -> float:
    """Mean share of each sampled item's k nearest neighbours (cosine) in ``x`` that are also among
    its k nearest in ``y``. Shapes (N, d) and (N, d'); returns a float in [0, 1]."""
    import faiss

    n = x.shape[0]
    if n <= k + 1:
        return 1.0
    rng = np.random.default_rng(random_state)
    q = rng.choice(n, size=min(sample, n), replace=False)
    res = []
    for m in (x, y):
        m = l2_normalize_rows(m)
        idx = faiss.IndexFlatIP(m.shape[1])
        idx.add(m)
        _, nn = idx.search(m[q], k + 1)
        res.append(nn[:, 1:])
    kept = [len(set(a) & set(b)) / k for a, b in zip(*res)]
    return float(np.mean(kept))


class IdentityReducer:
    """No reduction: rows are only L2-normalised. ``name = "none"``."""

    name = "none"

    def fit(self, x: np.ndarray) -> "IdentityReducer":
        self.n_components_ = int(x.shape[1])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize_rows(x)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def stats(self) -> dict:
        return {"reducer": self.name, "n_components": getattr(self, "n_components_", None)}

    def save(self, directory: str | Path) -> None:
        """Write ``reducer.json``."""
        _write_meta(directory, self.name, {"n_components": self.n_components_})

    @classmethod
    def _from_saved(cls, directory: Path, meta: dict) -> "IdentityReducer":
        r = cls()
        r.n_components_ = int(meta["state"]["n_components"])
        return r


class PCAReducer:
    """PCA to ``n_components`` (capped by the data), fitted on at most ``sample_size`` rows.

    Args:
        n_components: output dimension (float32 (N, n_components) after :meth:`transform`).
        sample_size: rows used to fit.
        random_state: seed of the sample and the randomized SVD.
    """

    name = "pca"

    def __init__(self, n_components: int = 128, sample_size: int = 8000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.sample_size = sample_size
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> "PCAReducer":
        from sklearn.decomposition import PCA

        n, d = x.shape
        k = int(min(self.n_components, d, max(1, n - 1)))
        rng = np.random.default_rng(self.random_state)
        s = x if n <= self.sample_size else x[np.sort(rng.choice(n, self.sample_size, replace=False))]
        pca = PCA(n_components=k, svd_solver="randomized" if k < min(s.shape) // 2 else "full",
                  random_state=self.random_state).fit(s)
        self.components_ = pca.components_.astype(np.float32)
        self.mean_ = pca.mean_.astype(np.float32)
        self.explained_variance_ = float(pca.explained_variance_ratio_.sum())
        self.n_components_ = k
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, d) -> float32 (N, n_components_), unit rows: ``(x - mean_) @ components_.T`` (PCA, whitening off)."""
        return l2_normalize_rows((np.asarray(x, dtype=np.float32) - self.mean_) @ self.components_.T)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def stats(self) -> dict:
        return {"reducer": self.name, "n_components": self.n_components_, "explained_variance": self.explained_variance_}

    def save(self, directory: str | Path) -> None:
        """Write ``reducer.json`` and ``pca_components.npy``, ``pca_mean.npy``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "pca_components.npy", self.components_)
        np.save(d / "pca_mean.npy", self.mean_)
        _write_meta(d, self.name, {"n_components": self.n_components_, "explained_variance": self.explained_variance_,
                                   "params": {"n_components": self.n_components, "sample_size": self.sample_size,
                                              "random_state": self.random_state}})

    @classmethod
    def _from_saved(cls, directory: Path, meta: dict) -> "PCAReducer":
        st = meta["state"]
        r = cls(**st["params"])
        r.components_ = np.load(directory / "pca_components.npy")
        r.mean_ = np.load(directory / "pca_mean.npy")
        r.n_components_ = int(st["n_components"])
        r.explained_variance_ = float(st["explained_variance"])
        if r.components_.shape[0] != r.n_components_ or r.components_.shape[1] != r.mean_.shape[0]:
            raise ModelDirError(f"{directory}: pca_components.npy {r.components_.shape} does not match n_components {r.n_components_}")
        return r


class UMAPReducer:
    """Adaptive UMAP (umap-learn), fitted on a sample and applied to the rest.

    Args:
        n_components: output dimension or ``"auto"``: 16 below 5,000 items, 32 up to 100,000, 48
            above; doubled once (max 64) when the kept-neighbour ratio is below ``min_kept``.
        n_neighbors: UMAP neighbourhood size or ``"auto"``: clip(round(√N / 4), 10, 50).
        sample_size: rows used to fit; the rest go through ``transform``.
        min_kept: kept-neighbour ratio below which the dimension is doubled.
        random_state: seed (UMAP is then deterministic, single-threaded in its layout step).

    Raises:
        ImportError: when umap-learn is not installed (it is a dependency of itemrep).
    """

    name = "umap"

    def __init__(self, n_components: int | str = "auto", n_neighbors: int | str = "auto", sample_size: int = 10000,
                 min_kept: float = 0.5, random_state: int = 0) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.sample_size = sample_size
        self.min_kept = min_kept
        self.random_state = random_state

    def _auto(self, n: int) -> tuple[int, int]:
        dim = self.n_components if self.n_components != "auto" else (16 if n < 5000 else 32 if n <= 100000 else 48)
        nn = self.n_neighbors if self.n_neighbors != "auto" else int(np.clip(round(np.sqrt(n) / 4), 10, 50))
        return int(dim), int(min(nn, max(2, n - 1)))

    def _fit_one(self, s: np.ndarray, dim: int, nn: int):
        import umap

        return umap.UMAP(n_components=dim, n_neighbors=nn, metric="cosine", min_dist=0.0,
                         random_state=self.random_state, low_memory=True, verbose=False).fit(s)

    def fit(self, x: np.ndarray) -> "UMAPReducer":
        n = x.shape[0]
        rng = np.random.default_rng(self.random_state)
        self.sample_idx_ = np.arange(n) if n <= self.sample_size else np.sort(rng.choice(n, self.sample_size, replace=False))
        s = x[self.sample_idx_]
        dim, nn = self._auto(len(s))
        self.umap_ = self._fit_one(s, dim, nn)
        self.kept_neighbours_ = kept_neighbour_ratio(s, self.umap_.embedding_, random_state=self.random_state)
        if self.kept_neighbours_ < self.min_kept and self.n_components == "auto" and dim < 64:
            dim = min(64, dim * 2)
            self.umap_ = self._fit_one(s, dim, nn)
            self.kept_neighbours_ = kept_neighbour_ratio(s, self.umap_.embedding_, random_state=self.random_state)
        self.n_components_, self.n_neighbors_ = dim, nn
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize_rows(np.asarray(self.umap_.transform(x), dtype=np.float32))

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        self.fit(x)
        out = np.empty((x.shape[0], self.n_components_), dtype=np.float32)
        mask = np.zeros(x.shape[0], dtype=bool)
        mask[self.sample_idx_] = True
        out[mask] = l2_normalize_rows(np.asarray(self.umap_.embedding_, dtype=np.float32))
        if (~mask).any():
            out[~mask] = self.transform(x[~mask])
        return out

    def stats(self) -> dict:
        return {"reducer": self.name, "n_components": self.n_components_, "n_neighbors": self.n_neighbors_,
                "fit_sample": int(len(self.sample_idx_)), "kept_neighbours": self.kept_neighbours_}

    def save(self, directory: str | Path) -> None:
        """Not supported: a fitted umap-learn model can only be stored by pickling it, which itemrep
        never does. Raises :class:`~itemrep.errors.ModelDirError` (use ``--reducer pca`` or ``none``
        for a persistent index)."""
        raise ModelDirError("a fitted UMAP reducer cannot be saved without pickle; use --reducer pca or none "
                            "for a saved model or an index")


def _write_meta(directory: str | Path, name: str, state: dict) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "reducer.json").write_text(json.dumps({"format": REDUCER_FORMAT, "reducer": name, "state": state}, indent=1))


def load_reducer(directory: str | Path, expect: str | None = None):
    """Read a reducer written by its ``save``.

    Args:
        directory: folder holding ``reducer.json``.
        expect: the reducer name the caller requires (``"pca"``/``"none"``), or None for any.

    Raises:
        ModelDirError: missing file, other format, or a different reducer than ``expect``.
    """
    d = Path(directory)
    p = d / "reducer.json"
    if not p.is_file():
        raise ModelDirError(f"{p}: missing; the model directory is incomplete")
    meta = json.loads(p.read_text())
    if meta.get("format") != REDUCER_FORMAT:
        raise ModelDirError(f"{p}: reducer format {meta.get('format')!r}, this itemrep reads {REDUCER_FORMAT}")
    name = meta.get("reducer")
    if expect is not None and name != expect:
        raise ModelDirError(f"{p}: parameter reducer is {name!r} here but {expect!r} was asked for")
    cls = {"pca": PCAReducer, "none": IdentityReducer}.get(name)
    if cls is None:
        raise ModelDirError(f"{p}: unknown reducer {name!r}")
    return cls._from_saved(d, meta)


def make_reducer(name: str | None, random_state: int = 0):
    """``"umap"`` | ``"pca"`` | ``"none"``/``None`` -> a reducer instance.

    Raises:
        ValueError: for an unknown name.
    """
    if name in (None, "none"):
        return IdentityReducer()
    if name == "pca":
        return PCAReducer(random_state=random_state)
    if name == "umap":
        return UMAPReducer(random_state=random_state)
    raise ValueError(f"unknown reducer {name!r}; use umap, pca or none")
