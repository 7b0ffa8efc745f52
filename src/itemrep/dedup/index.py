"""A persistent dedup index: deduplicate a catalog once, then place tomorrow's items against
today's clusters without moving any existing cluster id.

>>> from itemrep.catalog import Catalog
>>> from itemrep.dedup.index import ClusterIndex
>>> idx = ClusterIndex.build(Catalog.load("day1.csv"), model=None, index_dir="idx")   # doctest: +SKIP
>>> res = idx.add(Catalog.load("day2.csv"))                                          # doctest: +SKIP
>>> res.write("out/day2")            # clusters.parquet + changes.parquet              # doctest: +SKIP
>>> ClusterIndex.open("idx").lookup(Catalog.load("query.csv"))                         # doctest: +SKIP

**What an index directory holds**::

    index.json                    format, registry config, τ_merge, model class (written once by build)
    model/                        the fitted FITRep (``model.save``): every stage incl. fitted encoders
    registry.sqlite               items, clusters (with aliases), change log, meta (generation, manifest)
    segments/g00000001/           one segment per batch (generation): ids.parquet (item_id, key),
                                  vectors.npy (reduced, unit rows) and the exact slot rows (slots.*.npy,
                                  memory-mapped on load) so new items are scored exactly against old ones
    search/g0000000N/             a snapshot of the FAISS index over every row of generations <= N;
                                  rows of later segments are added from their vectors.npy on open
    .lock                         held by a writer (build / add)

Rows are numbered in segment order (build rows first, each batch's rows after), and that row number
is the FAISS id. The registry's ``meta.manifest`` lists the committed segments and snapshot.

**Rules of** :meth:`ClusterIndex.add` (one batch of new items):

1. every new item is scored exactly (``model.score_pairs``) against its k nearest indexed rows and
   against its k nearest neighbours inside the batch;
2. an item *joins* an existing cluster when its best edge to one of the cluster's members is
   ``>= τ`` and it passes the chaining guard: its score to the cluster's representative is
   ``>= τ - guard_margin``. Among several such clusters the best edge wins. An item with the
   content key (``enc.keys``) of an indexed item is that listing again and joins its cluster
   whatever the scores, as ``dedup`` keeps identical listings together;
3. an item whose passing edges reach two existing clusters *bridges* them: they merge only when both
   edges are ``>= τ_merge`` (default τ + 0.1) and the two representatives are within the guard
   (``>= τ - guard_margin``). The older cluster (smaller ``created_batch``, then smaller id) survives,
   the other becomes an alias of it (:meth:`ClusterRegistry.resolve` follows it) and its items move
   to the survivor. A bridge below τ_merge is logged as ``bridge_rejected``;
4. new items linked (edges ``>= τ``) to items that joined a cluster join it too when they pass the
   guard against its representative (the batch dedup's connected component + guard);
5. the remaining new items are clustered among themselves (union-find + chaining guard, as in
   ``dedup``) and each cluster gets a new id, ``stable_cluster_id(representative_id)``, minted once;
   with the **nearest-neighbour rule** (when the model has it and ``build`` applied it to the build
   catalog, ``index.json`` ``nn_rule``), a new item's best-scoring candidate, indexed or in the
   batch, counts as an edge in rules 2, 4 and 5 when it scores ≥ the rule's threshold, even below
   τ (as ``dedup`` does; never for a merge, which needs τ_merge). Indexed items keep their cluster;
6. an existing cluster's id and representative never change (except that an absorbed cluster
   becomes an alias); ids therefore never move under their consumers. (The representative stays
   the guard's anchor, so a cluster cannot drift away from it batch after batch; an id would not
   move even if it changed, since ids are stored, not re-derived.)

Adding an item id that is already indexed raises :class:`IndexDirError` naming the item
(``existing="skip"`` leaves such items where they are and adds the rest).

**Crash safety.** A batch is generation ``G + 1`` of a committed generation ``G``: its files are
written under names carrying ``G + 1``, then the registry rows, the new manifest and the generation
are committed in one SQLite transaction. A crash or Ctrl-C before that commit leaves generation
``G`` as it was; the orphaned ``G + 1`` files are ignored by readers and deleted by the next writer.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep import __version__
from itemrep.catalog import Catalog
from itemrep.dedup.cluster import _pair_ranks, cluster_edges, stable_cluster_id
from itemrep.dedup.registry import CHANGE_COLUMNS, ClusterRegistry, RegistryError, make_registry
from itemrep.dedup.slots import SlotSet
from itemrep.errors import ItemrepError

#: Version of the index directory layout (``index.json`` ``format``); a mismatch is refused on open.
INDEX_FORMAT = 1
INDEX_FILE = "index.json"
#: IVF lists a new item visits in :meth:`ClusterIndex.add` / :meth:`ClusterIndex.lookup` (the
#: build's whole-catalog search uses the clusterer's 64). Chosen by measurement on 10,000-item
#: batches into a 1M synthetic Shopee index (``python bench/incremental.py --synthetic 1000000``,
#: docs/index.md): recall of the exact candidate edges above τ 32 vs 64 lists, and the time saved.
ADD_NPROBE = 32
#: Test hook: ``ITEMREP_INDEX_HOOK=POINT:FLAGFILE`` makes :meth:`ClusterIndex.add` write FLAGFILE and
#: sleep (``ITEMREP_INDEX_HOOK_SLEEP`` seconds, default 120) at POINT (``after_segment``,
#: ``after_search``, ``in_transaction``), so a test can kill the process there.
HOOK_ENV = "ITEMREP_INDEX_HOOK"
#: Columns of :attr:`AddResult.clusters` (``clusters.parquet`` of a batch).
ADD_COLUMNS = ["item_id", "cluster_id", "representative_id", "score", "match"]
#: Columns of :meth:`ClusterIndex.lookup`.
LOOKUP_COLUMNS = ["item_id", "cluster_id", "representative_id", "score", "match"]


class IndexDirError(ItemrepError, ValueError):
    """An index directory is missing, incomplete, locked, of another format, or an add is refused
    (e.g. an item id already indexed); the message names the path or the item."""


# ---------------------------------------------------------------------------------------- helpers
def _gen_name(gen: int) -> str:
    return f"g{int(gen):08d}"


def _gen_of(name: str) -> int | None:
    if len(name) == 9 and name[0] == "g" and name[1:].isdigit():
        return int(name[1:])
    return None


def _hook(point: str) -> None:
    spec = os.environ.get(HOOK_ENV)
    if not spec:
        return
    name, _, flag = spec.partition(":")
    if name == point:
        if flag:
            Path(flag).write_text(str(os.getpid()))
        time.sleep(float(os.environ.get(HOOK_ENV + "_SLEEP", "120")))


def _fsync_path(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(d: Path) -> None:
    """fsync every file under ``d``, then ``d`` and its parent (durability of a segment before its
    commit). The files are flushed from a few threads at once (fsync releases the GIL; a segment
    holds ~30 files and the disk serves concurrent flushes: 0.02 s instead of 0.1 s measured)."""
    from concurrent.futures import ThreadPoolExecutor

    files = [p for p in sorted(d.rglob("*")) if p.is_file()]
    if files:
        with ThreadPoolExecutor(min(16, len(files))) as ex:
            list(ex.map(_fsync_path, files))
    for q in (d, d.parent):
        _fsync_path(q)


def _sorted_by_id(catalog: Catalog) -> Catalog:
    """The catalog with rows ordered by item id: every result is then independent of row order."""
    ids = np.asarray(catalog.ids, dtype=object)
    order = np.argsort(ids.astype(str), kind="stable")
    return catalog if np.array_equal(order, np.arange(len(ids))) else catalog.subset(order)


def _model_param(model, name: str, default=None):
    """τ (``threshold``), ``guard_margin``, ``k`` or ``guard`` of a fitted model: the model's own
    attribute (``model.tau`` for τ) else its (fitted) clusterer's."""
    v = getattr(model, "tau", None) if name == "threshold" else None
    if v is None:
        v = getattr(model, name, None)
    for attr in ("clusterer_", "clusterer"):
        if v is not None:
            break
        c = getattr(model, attr, None)
        v = getattr(c, name, None) if c is not None else None
    return default if v is None else v


def _score_fn(model) -> Callable:
    """``f(slots, i, j) -> float32 (E,)`` exact edge scores (``model.score_pairs``)."""
    if hasattr(model, "score_pairs"):
        return lambda s, i, j: np.asarray(model.score_pairs(s, np.asarray(i, np.int64), np.asarray(j, np.int64))[0],
                                          dtype=np.float32)
    return lambda s, i, j: np.asarray(model.fusion.pair_similarity(s, np.asarray(i, np.int64), np.asarray(j, np.int64))[0],
                                      dtype=np.float32)


def _clusterer_of(model):
    """The model's (fitted) clusterer stage, copied; a default one from τ, k and the guard margin
    when the model has none."""
    import copy

    from itemrep.dedup.cluster import NearDuplicateClusterer

    c = getattr(model, "clusterer_", None) or getattr(model, "clusterer", None)
    if c is not None and hasattr(c, "candidates") and hasattr(c, "cluster"):
        c = copy.copy(c)
        c.threshold = float(_model_param(model, "threshold"))  # the model's τ (its override included)
        return c
    return NearDuplicateClusterer(threshold=float(_model_param(model, "threshold")), k=int(_model_param(model, "k", 10)),
                                  guard=bool(_model_param(model, "guard", True)),
                                  guard_margin=float(_model_param(model, "guard_margin", 0.1)))


def _key_groups(keys: np.ndarray | None) -> np.ndarray | None:
    """int64 (N,) group of items sharing a content key with another item (-1 = unique), or None."""
    if keys is None:
        return None
    _, inv, counts = np.unique(np.asarray(keys), return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    g = inv.astype(np.int64)
    g[counts[inv] < 2] = -1
    return g


def _id_keys(ids) -> np.ndarray:
    import hashlib

    return np.fromiter((int.from_bytes(hashlib.blake2b(f"\x00id\x1f{x}".encode(), digest_size=8).digest(), "little")
                        for x in ids), dtype=np.uint64, count=len(ids))


def _enc_keys(enc) -> np.ndarray | None:
    keys = getattr(enc, "keys", None)
    return None if keys is None else np.asarray(keys, dtype=np.uint64)


class _VectorSearch:
    """The persistent candidate search: a :class:`~itemrep.dedup.cluster.CandidateSearch` over the
    reduced vectors (exact ``IndexFlatIP`` up to its ``exact_max`` rows, IVF above) whose ids are
    the index's row numbers, in add order."""

    def __init__(self, impl) -> None:
        self.impl = impl

    @classmethod
    def fit(cls, x: np.ndarray, clusterer) -> "_VectorSearch":
        """A search over ``x`` (float32 (N, d) unit rows) with the clusterer's k / exact_max / nprobe."""
        from itemrep.dedup.cluster import CandidateSearch

        kw = {p: getattr(clusterer, p) for p in ("k", "exact_max", "nprobe", "random_state") if hasattr(clusterer, p)}
        return cls(CandidateSearch(**kw).fit(np.ascontiguousarray(x, dtype=np.float32)))

    @property
    def ntotal(self) -> int:
        return int(self.impl.n_items_)

    @property
    def name(self) -> str:
        return str(self.impl.index_name_)

    def add(self, x: np.ndarray, lists: np.ndarray | None = None) -> None:
        """Append rows (ids continue from :attr:`ntotal`); ``lists``: their IVF lists when known
        (from :meth:`search`)."""
        if len(x):
            self.impl.add(np.ascontiguousarray(x, dtype=np.float32), lists=lists)

    def search(self, q: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(sims float32 (n, k), ids int64 (n, k), lists)``; id -1 where fewer than k rows are
        reachable; ``lists``: int (n,) the IVF list each query would join (None for the exact
        index or a small batch), to pass to :meth:`add`. ``nprobe``: lists visited per query
        (None: the index's own)."""
        if len(q) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64), None
        q = np.ascontiguousarray(q, dtype=np.float32)
        coarse = self.impl.assign(q, nprobe) if len(q) >= self.impl.batch_min else None
        sims, ids = self.impl.search(q, k, coarse=coarse, nprobe=nprobe)
        return sims, ids, (None if coarse is None else coarse[:, 0])

    def save(self, d: Path) -> None:
        """Write ``faiss.index`` + ``search.json`` into directory ``d`` (created)."""
        self.impl.save(d)

    @classmethod
    def load(cls, d: Path) -> "_VectorSearch":
        from itemrep.dedup.cluster import CandidateSearch

        return cls(CandidateSearch.load(d))


def _gather_slots(parts: list) -> object:
    """One SlotSet of the rows ``rows`` of each ``(slot_set, rows)`` in ``parts``, in order.

    Equivalent to ``SlotSet.concat([s.take(rows) for s, rows in parts])`` but builds each slot
    matrix once (one CSR from the memory-mapped segments' data/indices/indptr), which matters when a
    lookup needs a few rows from several segments. Falls back to take + concat for anything other
    than CSR / dense slots.
    """
    import scipy.sparse as sp

    from itemrep.dedup._kernels import csr_take

    first = parts[0][0]
    cls = type(first)
    if any(s.names != first.names for s, _ in parts) or not all(
            sp.isspmatrix_csr(m) or isinstance(m, np.ndarray) for s, _ in parts for m in s.matrices.values()):
        return cls.concat([s.take(r) for s, r in parts])
    mats = {}
    for name, m0 in first.matrices.items():
        if sp.issparse(m0):
            datas, inds, lens = [], [], []
            for s, rows in parts:
                m = s.matrices[name]
                ptr, ind, dat = csr_take(m.indptr, m.indices, m.data, rows)
                ln = np.diff(ptr)
                datas.append(dat)
                inds.append(ind)
                lens.append(ln)
            ln = np.concatenate(lens)
            indptr = np.zeros(len(ln) + 1, dtype=np.int64)
            np.cumsum(ln, out=indptr[1:])
            data = np.concatenate(datas) if len(datas) > 1 else datas[0]
            ind = np.concatenate(inds) if len(inds) > 1 else inds[0]
            out = sp.csr_matrix((data, ind, indptr), shape=(len(ln), m0.shape[1]), copy=False)
            out.has_sorted_indices = all(bool(getattr(s.matrices[name], "has_sorted_indices", False)) for s, _ in parts)
            mats[name] = out
        else:
            mats[name] = np.concatenate([np.asarray(s.matrices[name][r], dtype=np.float32) for s, r in parts])
    sal = {k: np.concatenate([np.asarray(s.salience[k])[r] for s, r in parts]) for k in first.salience}
    return cls(matrices=mats, levels=dict(first.levels), salience=sal, conflict_slots=list(first.conflict_slots),
               knots=dict(first.knots), modal_slots=list(first.modal_slots))


@contextlib.contextmanager
def _single_threaded(active: bool = True):
    """One FAISS (OpenMP) and numba thread inside the block: for a handful of queries, starting
    threads costs more than the work (measured: 20 pair scores 0.1 ms on one thread, 60 ms on two
    on a busy 2-core machine)."""
    if not active:
        yield
        return
    import faiss

    nf = faiss.omp_get_max_threads()
    try:
        import numba

        nn = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a dependency of the dedup kernels
        numba, nn = None, None
    faiss.omp_set_num_threads(1)
    if numba is not None:
        numba.set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(nf)
        if numba is not None:
            numba.set_num_threads(nn)


class _Lock:
    """Exclusive writer lock on ``DIR/.lock`` (fcntl); raises when another writer holds it."""

    def __init__(self, d: Path) -> None:
        self.path = d / ".lock"
        self.fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise IndexDirError(f"{self.path.parent}: another `itemrep index build/add` is writing this index "
                                f"(lock {self.path}); wait for it to finish") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------------------- results
@dataclass
class AddResult:
    """Outcome of one :meth:`ClusterIndex.add` batch.

    Attributes:
        batch: the batch number (= the index generation it committed).
        clusters: one row per added item: ``item_id, cluster_id`` (live id), ``representative_id``,
            ``score`` (float32 similarity to the representative, 1.0 for the representative) and
            ``match``: ``"existing"`` (joined a cluster that existed before the batch) or ``"new"``.
        changes: the batch's change-log rows (:data:`~itemrep.dedup.registry.CHANGE_COLUMNS`;
            ``time`` as UTC timestamps).
        stats: counts and seconds per step.
    """

    batch: int
    clusters: pd.DataFrame
    changes: pd.DataFrame
    stats: dict = field(default_factory=dict)

    @classmethod
    def combine(cls, results: Sequence["AddResult"], registry: ClusterRegistry | None = None) -> "AddResult":
        """One result for consecutive batches (:meth:`ClusterIndex.add_batches`): their rows and
        change-log rows concatenated; ``batch`` the last committed one; counts and seconds summed
        over the batches, the per-batch stats under ``"batches"``.

        With ``registry``, cluster ids are resolved to the live ids: a row whose cluster a later
        batch merged into another gets the survivor's id and representative, and its ``score``
        (to the old representative) becomes NaN (``itemrep explain`` scores any pair).

        Raises:
            ValueError: no result.
        """
        if not results:
            raise ValueError("combine needs at least one AddResult")
        if len(results) == 1 and registry is None:
            return results[0]
        parts = [r.clusters for r in results if len(r.clusters)] or [results[0].clusters]
        cl = pd.concat(parts, ignore_index=True)
        if registry is not None and len(cl):
            u = cl["cluster_id"].unique().tolist()
            live = dict(zip(u, registry.resolve(u)))
            moved = cl["cluster_id"].map(lambda c: live[c] != c).to_numpy(bool)
            if moved.any():
                cl["cluster_id"] = cl["cluster_id"].map(live)
                reps = registry.describe_clusters(cl.loc[moved, "cluster_id"].unique().tolist())
                cl.loc[moved, "representative_id"] = cl.loc[moved, "cluster_id"].map(lambda c: reps[c][0])
                cl.loc[moved, "score"] = np.nan
        if len(cl):
            cl["score"] = cl["score"].astype(np.float32)
        ch_parts = [r.changes for r in results if len(r.changes)] or [results[0].changes]
        ch = pd.concat(ch_parts, ignore_index=True) if len(ch_parts) > 1 else ch_parts[0]
        stats: dict = {}
        for r in results:
            for k, v in r.stats.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "generation":
                    stats[k] = round(stats.get(k, 0) + v, 3) if isinstance(v, float) else stats.get(k, 0) + v
        committed = [r for r in results if r.stats.get("committed")]
        stats["committed"] = bool(committed)
        batch = committed[-1].batch if committed else results[-1].batch
        stats["generation"] = batch
        if len(results) > 1:
            stats["batches"] = [{"batch": r.batch, **r.stats} for r in results]
        return cls(batch=batch, clusters=cl, changes=ch, stats=stats)

    def write(self, out_dir: str | Path) -> None:
        """Write ``clusters.parquet``, ``changes.parquet`` and ``run.json`` into ``out_dir`` (created).
        Each file is written under a temporary name and renamed, so a reader (or a run killed
        mid-write) sees the previous version or the new one, never half a file."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        writers = {"clusters.parquet": lambda p: self.clusters.to_parquet(p, index=False),
                   "changes.parquet": lambda p: self.changes.to_parquet(p, index=False),
                   "run.json": lambda p: p.write_text(json.dumps({"batch": self.batch, **self.stats}, indent=2, default=str))}
        for name, write in writers.items():
            tmp = out / f".{name}.tmp"
            write(tmp)
            os.replace(tmp, out / name)


def _changes_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["time"] = pd.to_datetime(df["time"].astype(float), unit="s", utc=True)
    df["batch"] = df["batch"].astype("int64")
    for c in ("kind", "cluster_id", "other_id", "item_id", "reason"):
        df[c] = df[c].astype(object)
    return df[CHANGE_COLUMNS]


def _best_per_item(cand: dict) -> dict:
    """The chosen cluster of each item in ``cand`` (dict of arrays, see ``_match_old``): a forced
    (content-key) match first, then the best edge, then the smaller cluster id. Returns a dict of
    arrays ``i, c, s, g``."""
    c = np.asarray(cand["c"], dtype=object).astype(str)
    i = np.asarray(cand["i"])
    o = np.lexsort((c, -np.asarray(cand["s"]), ~np.asarray(cand["forced"], bool), i))
    first = np.r_[True, i[o][1:] != i[o][:-1]] if len(o) else np.zeros(0, bool)
    o = o[first]
    return {"i": i[o], "c": c[o].astype(object), "s": np.asarray(cand["s"])[o], "g": np.asarray(cand["g"])[o]}


@dataclass
class _Plan:
    """What one batch will write (computed without touching the index)."""

    ids: np.ndarray  # (n,) new item ids (sorted)
    cluster: np.ndarray  # (n,) live cluster id per new item
    rep: np.ndarray  # (n,) representative id per new item
    score: np.ndarray  # (n,) float32 score to the representative
    match: np.ndarray  # (n,) "existing" / "new"
    new_clusters: list  # (cluster_id, representative_id, size)
    merges: list  # (survivor, absorbed, bridge item, s_a, s_b, s_reps)
    rejected: list  # (kept, other, item, reason)
    size_delta: dict
    stats: dict
    lists: np.ndarray | None = None  # (n,) IVF list of each new item (from the search), or None


# ---------------------------------------------------------------------------------------- index
class ClusterIndex:
    """A persistent, incrementally updated dedup index (see the module docstring for the layout,
    the rules of :meth:`add` and crash safety).

    Create one with :meth:`build`, reopen it with :meth:`open`. Not thread-safe; one writer process
    at a time (a second one gets :class:`IndexDirError`), any number of readers.

    Attributes:
        index_dir: the directory.
        model: the fitted FITRep (encoders fitted at build; never refitted).
        registry: the :class:`~itemrep.dedup.registry.ClusterRegistry`.
        tau, guard_margin, tau_merge, k: the assignment thresholds (τ and the guard margin come from
            the model, τ_merge from ``index.json``).
    """

    def __init__(self, index_dir: Path, model, registry: ClusterRegistry, meta: dict, readonly: bool = False,
                 nprobe: int | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.model = model
        self.registry = registry
        self.meta = meta
        self.readonly = readonly
        self.tau = float(_model_param(model, "threshold"))
        self.guard_margin = float(_model_param(model, "guard_margin", 0.1))
        self.k = int(_model_param(model, "k", 10))
        self.tau_merge = float(meta.get("tau_merge") or self.tau + 0.1)
        nn = meta.get("nn_rule") or {}
        # the nearest-neighbour rule as build applied it (an index built before the rule existed: off)
        self.nn_threshold = float(nn["threshold"]) if nn.get("applied") and nn.get("threshold") is not None else None
        self.snapshot_fraction = float(meta.get("snapshot_fraction", 0.25))
        self.nprobe = int(ADD_NPROBE if nprobe is None else nprobe)  # checked by open()
        self._score = _score_fn(model)
        self._clusterer = _clusterer_of(model)
        self._load_state()

    # ------------------------------------------------------------------ open / build
    @classmethod
    def open(cls, index_dir: str | Path, readonly: bool = False, model=None, model_overrides: dict | None = None,
             nprobe: int | None = None) -> "ClusterIndex":
        """Open an index written by :meth:`build`.

        Args:
            index_dir: the index directory.
            readonly: open for :meth:`lookup` only (no cleanup of an interrupted batch's files;
                :meth:`add` is refused).
            model: use this fitted model instead of loading ``index_dir/model`` (tests).
            model_overrides: run-time keyword overrides for the model's ``load`` (e.g. ``extractor``,
                ``progress``, ``cache_dir``); never ones that change the fitted space.
            nprobe: IVF lists each new item visits in :meth:`add` and :meth:`lookup` (default
                :data:`ADD_NPROBE`; the build's whole-catalog search keeps its own, 64).

        Raises:
            IndexDirError: the directory or ``index.json`` is missing, the format differs, the build
                never committed, or the model cannot be loaded (the message names the path).
        """
        d = Path(index_dir)
        if nprobe is not None and int(nprobe) < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        if not d.is_dir():
            raise IndexDirError(f"{d}: index directory not found; create it with `itemrep index build CATALOG --index {d}`")
        p = d / INDEX_FILE
        if not p.is_file():
            raise IndexDirError(f"{d}: not an itemrep index (no {INDEX_FILE}); create one with `itemrep index build CATALOG --index {d}`")
        try:
            meta = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise IndexDirError(f"{p}: not valid JSON (line {e.lineno}): {e.msg}") from None
        if meta.get("format") != INDEX_FORMAT:
            raise IndexDirError(f"{p}: index format {meta.get('format')!r}, this itemrep reads format {INDEX_FORMAT}; "
                                f"rebuild it with `itemrep index build CATALOG --index {d} --overwrite`")
        nn = meta.get("nn_rule")
        if nn is not None and not (isinstance(nn, dict) and isinstance(nn.get("applied"), bool) and (
                not nn["applied"] or (isinstance(nn.get("threshold"), (int, float)) and not isinstance(nn["threshold"], bool)
                                      and math.isfinite(nn["threshold"]) and -2.0 < nn["threshold"] <= 2.0))):
            raise IndexDirError(f"{p}: nn_rule must be null or {{\"applied\": true|false, \"threshold\": a number in (-2, 2]}}, "
                                f"got {json.dumps(nn)[:80]}; the file was changed by hand: rebuild the index "
                                f"(`itemrep index build CATALOG --index {d} --overwrite`)")
        try:
            reg = make_registry(meta["registry"], base_dir=d, create=False)
        except RegistryError as e:
            raise IndexDirError(f"{d}: cannot open the cluster registry: {e}") from None
        if reg.generation < 1:
            reg.close()
            raise IndexDirError(f"{d}: the index build never completed (no committed generation); "
                                f"rebuild it with `itemrep index build CATALOG --index {d} --overwrite`")
        if model is None:
            model = cls._load_model(d, meta, model_overrides or {})
        if not readonly:
            with _Lock(d):
                cls._clean_uncommitted(d, reg.generation)
        return cls(d, model, reg, meta, readonly=readonly, nprobe=nprobe)

    @staticmethod
    def _load_model(d: Path, meta: dict, overrides: dict):
        mod, _, name = meta.get("model_class", "itemrep.dedup.pipeline:FITRep").partition(":")
        try:
            klass = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as e:
            raise IndexDirError(f"{d / INDEX_FILE}: model class {meta.get('model_class')!r} cannot be imported: {e}") from None
        try:
            return klass.load(d / "model", **overrides)
        except ItemrepError as e:
            raise IndexDirError(f"{d / 'model'}: {e}") from None

    @classmethod
    def build(cls, catalog: Catalog, model=None, index_dir: str | Path = "index", *, tau_merge: float | None = None,
              merge_margin: float = 0.1, registry: dict | None = None, overwrite: bool = False,
              snapshot_fraction: float = 0.25) -> "ClusterIndex":
        """Deduplicate ``catalog`` and write a new index into ``index_dir``.

        Fits the model's unsupervised stages on the catalog (``model.fit_encoders``), encodes it
        (``model.transform``), clusters it exactly as ``dedup`` does, and persists the model, the
        segment (ids, vectors, slot rows), the FAISS index and the registry (generation 1). Rows are
        processed in item-id order, so shuffling the catalog gives the same ids.

        Args:
            catalog: the items (ids unique; labels ignored).
            model: a FITRep (default: ``FITRep.default()``); it is fitted in place.
            index_dir: target directory (created).
            tau_merge: threshold a bridging item's edges must reach to merge two existing clusters
                (default ``τ + merge_margin``).
            merge_margin: see ``tau_merge``.
            registry: registry config for :func:`~itemrep.dedup.registry.make_registry` (default
                ``{"type": "sqlite", "path": "registry.sqlite"}``).
            overwrite: replace an existing index in ``index_dir``.
            snapshot_fraction: :meth:`add` writes a new FAISS snapshot once the rows added since the
                last one exceed this fraction of it (else new rows are re-added on open).

        Returns:
            The open :class:`ClusterIndex`.

        Raises:
            IndexDirError: ``index_dir`` holds an index already (without ``overwrite``) or another
                directory's files.
            ValueError: an empty catalog.
        """
        d = Path(index_dir)
        if len(catalog) == 0:
            raise ValueError("cannot build an index from an empty catalog")
        if d.exists() and not d.is_dir():
            raise IndexDirError(f"{d}: exists and is not a directory")
        d.mkdir(parents=True, exist_ok=True)
        with _Lock(d):
            cls._prepare_build_dir(d, overwrite)
            if model is None:
                from itemrep.dedup.pipeline import FITRep

                model = FITRep.default()
            catalog = _sorted_by_id(catalog)
            t0 = time.perf_counter()
            enc = model.fit_transform(catalog)
            t_enc = time.perf_counter() - t0
            clusters, nn_info = cls._build_clusters(model, enc)
            t_cl = time.perf_counter() - t0 - t_enc
            tau = float(_model_param(model, "threshold"))
            reg_cfg = registry or {"type": "sqlite", "path": "registry.sqlite"}
            meta = {"format": INDEX_FORMAT, "itemrep_version": __version__, "created": time.time(), "registry": reg_cfg,
                    "tau_merge": float(tau_merge if tau_merge is not None else tau + merge_margin),
                    "snapshot_fraction": snapshot_fraction,
                    "nn_rule": nn_info,
                    "model_class": f"{type(model).__module__}:{type(model).__qualname__}"}
            model.save(d / "model")
            gen = 1
            seg = cls._write_segment(d, gen, enc, clusters["cluster_id"].to_numpy())
            search = _VectorSearch.fit(enc.vectors, _clusterer_of(model))
            search.save(d / "search" / _gen_name(gen))
            _fsync_tree(d / "search" / _gen_name(gen))
            (d / INDEX_FILE).write_text(json.dumps(meta, indent=2))
            reg = make_registry(reg_cfg, base_dir=d)
            try:
                cl = clusters
                sizes = cl.groupby("cluster_id").size()
                reps = cl.drop_duplicates("cluster_id").set_index("cluster_id")["representative_id"]
                rows = [(c, str(reps[c]), gen, int(sizes[c])) for c in sorted(sizes.index)]
                manifest = {"segments": [[gen, int(seg)]], "search": gen}
                with reg.transaction():
                    reg.mint_clusters(rows)
                    reg.put_assignments(cl["item_id"].tolist(), cl["cluster_id"].tolist(), gen, cl["score"].tolist())
                    now = time.time()
                    reg.record_changes({"time": now, "batch": gen, "kind": "new", "cluster_id": c, "item_id": r,
                                        "reason": f"build: {s} item(s)"} for c, r, _, s in rows)
                    reg.set_meta("manifest", json.dumps(manifest))
                    reg.set_meta("build_stats", json.dumps({"n_items": len(cl), "n_clusters": len(rows),
                                                            "encode_seconds": round(t_enc, 3), "cluster_seconds": round(t_cl, 3)}))
                    reg.set_generation(gen)
            except BaseException:
                reg.close()
                raise
        return cls(d, model, reg, meta)

    @staticmethod
    def _build_clusters(model, enc) -> tuple[pd.DataFrame, dict | None]:
        """Clusters of the build catalog, aligned with ``enc.ids``, as ``FITRep.dedup`` makes them:
        the model's clusterer stage (kNN candidates, exact edge scores, components + chaining guard,
        listings with one content key kept together), and the clusterer's nearest-neighbour rule
        report (``nn_info_``: threshold, share, applied) or None when the model has no rule."""
        clusterer = _clusterer_of(model)
        score = _score_fn(model)
        ids = np.asarray(enc.ids, dtype=object).astype(str)
        i, j = clusterer.candidates(enc.vectors)
        s = score(enc.slots, i, j) if len(i) else np.zeros(0, np.float32)
        cl = clusterer.cluster(len(ids), i, j, s, ids.tolist(), pair_score=lambda a, b: score(enc.slots, a, b),
                               groups=_key_groups(_enc_keys(enc)))
        nn = getattr(clusterer, "nn_info_", None) if getattr(clusterer, "nn_threshold", None) is not None else None
        return pd.DataFrame({"item_id": ids, "cluster_id": np.asarray(cl.cluster_id, dtype=object),
                             "representative_id": ids[np.asarray(cl.representative)],
                             "score": np.asarray(cl.similarity, dtype=np.float32)}), nn

    @staticmethod
    def _prepare_build_dir(d: Path, overwrite: bool) -> None:
        ours = [INDEX_FILE, "model", "segments", "search", "registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm"]
        kept = {".lock", "llm_cache.sqlite", "llm_cache.sqlite-wal", "llm_cache.sqlite-shm"}  # the CLI's LLM cache may live here
        if (d / INDEX_FILE).exists() and not overwrite:
            try:
                old = make_registry(json.loads((d / INDEX_FILE).read_text())["registry"], base_dir=d, create=False)
                complete = old.generation >= 1
                old.close()
            except (RegistryError, KeyError, TypeError, json.JSONDecodeError):
                complete = False
            if complete:
                raise IndexDirError(f"{d}: an index exists here already; add items with `itemrep index add`, "
                                    "or pass --overwrite to rebuild it")
        others = [p.name for p in d.iterdir() if p.name not in ours and p.name not in kept]
        if others:
            raise IndexDirError(f"{d}: directory is not empty and not an itemrep index ({', '.join(sorted(others)[:5])}); "
                                "choose an empty or new directory")
        for name in ours:
            p = d / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    @staticmethod
    def _write_segment(d: Path, gen: int, enc, clusters: Sequence[str]) -> int:
        """Write one segment: ``ids.parquet`` (item id, content key and the cluster id the item was
        assigned when it was added: items never leave that cluster except by a logged merge, so
        the registry's alias resolution of it gives the live cluster), ``vectors.npy``, slots."""
        seg = d / "segments" / _gen_name(gen)
        if seg.exists():
            shutil.rmtree(seg)
        seg.mkdir(parents=True)
        ids = np.asarray(enc.ids, dtype=object).astype(str)
        keys = _enc_keys(enc)
        if keys is None:  # no content keys from the model: one key per id, so none is shared
            keys = _id_keys(ids)
        pd.DataFrame({"item_id": ids, "key": keys, "cluster_id": np.asarray(clusters, dtype=object).astype(str)}).to_parquet(
            seg / "ids.parquet", index=False)
        np.save(seg / "vectors.npy", np.ascontiguousarray(enc.vectors, dtype=np.float32))
        enc.slots.save(seg, "slots")
        _fsync_tree(seg)
        return len(ids)

    @staticmethod
    def _clean_uncommitted(d: Path, committed: int) -> list[Path]:
        """Delete segment and search directories of generations above ``committed`` (left by an
        interrupted batch). Call with the writer lock held. Returns what was removed."""
        removed = []
        for sub in ("segments", "search"):
            root = d / sub
            if not root.is_dir():
                continue
            for p in root.iterdir():
                g = _gen_of(p.name)
                if g is not None and g > committed:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        """(Re)load ids, slot segments and the FAISS index of the committed generation."""
        reg = self.registry
        self.generation = reg.generation
        man = json.loads(reg.get_meta("manifest") or "{}")
        self.manifest = man
        ids, keys, segs, assigned = [], [], [], []
        off = 0
        for (gen, n), sd in zip(man.get("segments", []), self.segment_dirs()):
            try:
                t = pd.read_parquet(sd / "ids.parquet")
                slots = SlotSet.load(sd, "slots", mmap=True)
            except (OSError, ItemrepError) as e:
                raise IndexDirError(f"{sd}: committed segment unreadable ({e}); the index is damaged, rebuild it") from None
            if len(t) != n:
                raise IndexDirError(f"{sd}: {len(t)} rows, the registry says {n}; the index is damaged, rebuild it")
            ids.append(t["item_id"].to_numpy(dtype=object))
            keys.append(t["key"].to_numpy(dtype=np.uint64))
            assigned.append(t["cluster_id"].to_numpy(dtype=object) if "cluster_id" in t.columns else None)
            segs.append((off, int(n), gen, slots))
            off += int(n)
        self._ids = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
        self._keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
        self._segs = segs
        # cluster assigned to each row when it was added (segments written before this column
        # existed: None, the registry is asked instead)
        self._row_cluster = (np.concatenate(assigned) if assigned and all(a is not None for a in assigned)
                             else (np.zeros(0, dtype=object) if not assigned else None))
        self._row_index = None
        self._key_order = None
        s_gen = int(man.get("search", 0))
        sdir = self.index_dir / "search" / _gen_name(s_gen)
        try:
            search = _VectorSearch.load(sdir)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise IndexDirError(f"{sdir}: committed FAISS snapshot unreadable ({e}); rebuild the index") from None
        self._search_rows = search.ntotal  # rows covered by the snapshot
        for o, n, gen, _ in segs:
            if gen > s_gen:
                search.add(np.load(self.index_dir / "segments" / _gen_name(gen) / "vectors.npy"))
        if search.ntotal != off:
            raise IndexDirError(f"{sdir}: FAISS index has {search.ntotal} rows, the segments {off}; rebuild the index")
        self._search = search

    def segment_dirs(self) -> list[Path]:
        """The committed segment directories (each holds ``ids.parquet``, ``vectors.npy`` and the
        slot rows of one batch), in row order: their rows concatenated are the index's rows."""
        return [self.index_dir / "segments" / _gen_name(gen) for gen, _ in self.manifest.get("segments", [])]

    @property
    def n_rows(self) -> int:
        """Number of indexed items (rows)."""
        return len(self._ids)

    def _rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """int64 row of each item id (-1 when not indexed)."""
        if self._row_index is None:  # id -> row, built once and extended by each committed batch
            self._row_index = dict(zip(self._ids.tolist(), range(len(self._ids))))
        get = self._row_index.get
        return np.fromiter((get(x, -1) for x in item_ids), dtype=np.int64, count=len(item_ids))

    def _live_clusters(self, rows: np.ndarray) -> np.ndarray:
        """Live cluster id (str) of each indexed row in ``rows`` (int64)."""
        if self._row_cluster is not None:
            assigned = self._row_cluster[rows]
            uniq, inv = np.unique(assigned.astype(str), return_inverse=True)
            return np.asarray(self.registry.resolve(uniq.tolist()), dtype=object).astype(str)[inv.reshape(-1)]
        uid = self._ids[rows].astype(str)
        cmap = self.registry.get_clusters(list(uid), resolve=True)
        if len(cmap) < len(uid):
            miss = next(x for x in uid if x not in cmap)
            raise IndexDirError(f"{self.index_dir}: indexed item {miss!r} has no registry row; the index is damaged")
        return np.asarray([cmap[x] for x in uid], dtype=object).astype(str)

    def _row_parts(self, rows: np.ndarray) -> list:
        """``[(segment SlotSet, local rows)]`` covering the indexed rows ``rows`` (sorted, unique int64)."""
        parts = []
        for off, n, _, slots in self._segs:
            lo, hi = np.searchsorted(rows, [off, off + n])
            if hi > lo:
                parts.append((slots, rows[lo:hi] - off))
        return parts

    def slot_rows(self, item_ids: Sequence[str]) -> SlotSet:
        """The stored exact slot rows of indexed items, one row per id in the given order (what
        :meth:`add` scores new items against; ``model.score_pairs`` on them gives the index's scores).

        Raises:
            IndexDirError: an id that is not indexed (the message names it and the index).
        """
        ids = [str(x) for x in item_ids]
        rows = self._rows_of(ids)
        if (rows < 0).any():
            miss = ids[int(np.flatnonzero(rows < 0)[0])]
            raise IndexDirError(f"item {miss!r} is not indexed in {self.index_dir} ({self.n_rows} items); check the id")
        uniq, inv = np.unique(rows, return_inverse=True)
        return _gather_slots(self._row_parts(uniq)).take(inv.reshape(-1))

    def search(self, vectors: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` (default: the model's k) indexed items nearest to each row of ``vectors``
        (reduced vectors from ``model.transform(...).vectors``) in the FAISS space, visiting
        :attr:`nprobe` IVF lists per query: the candidates :meth:`add` scores.

        Args:
            vectors: float32 (M, d) unit rows.
            k: neighbours per row.

        Returns:
            ``(sims float32 (M, k), item_ids object (M, k))``, best first; ``None`` ids (and
            ``-inf``) where fewer than k items are reachable.
        """
        kk = int(min(self.k if k is None else k, max(self.n_rows, 1)))
        sims, rows, _ = self._search.search(np.asarray(vectors, dtype=np.float32), kk, nprobe=self.nprobe)
        ids = np.full(rows.shape, None, dtype=object)
        ok = rows >= 0
        ids[ok] = self._ids[rows[ok]]
        return sims, ids

    # ------------------------------------------------------------------ matching
    def _match_old(self, enc, extra: tuple[np.ndarray, np.ndarray] | None = None):
        """Score new items against their k nearest indexed rows (and, in the same call, ``extra``
        pairs among the new items).

        Returns ``(S, m, cand, clusters, s_extra, lists)``:

        * ``S``: a SlotSet with the m needed indexed rows first, then the new items (new item i is
          row ``m + i``);
        * ``cand``: dict of equal-length arrays ``i, c, s, forced, rep_pos, g`` — per new item i and live cluster c
          with an edge ``>= τ`` (or a shared content key, ``forced``): the best edge s, the
          position of c's representative in S and the score g to it; restricted to
          ``g >= τ - guard_margin`` unless forced;
        * ``clusters``: live cluster id -> ``(rep position in S, created_batch, size,
          representative_id)`` for every cluster touched by a neighbour;
        * ``s_extra``: float32 scores of the ``extra`` pairs (rows of the new items), or None;
        * ``lists``: the IVF list of each new item for the search's :meth:`_VectorSearch.add`, or None;
        * ``nn_extra``: bool, the ``extra`` pairs the nearest-neighbour rule makes edges (the best
          candidate of one of its items, ≥ the rule's threshold), or None.

        With the nearest-neighbour rule (``self.nn_threshold``), a new item's edge to an indexed row
        also passes when it is the item's best candidate (indexed or ``extra``) and scores ≥ the
        rule's threshold.
        """
        n = len(enc.ids)
        kk = int(min(self.k, self.n_rows))
        def empty():
            return {"i": np.zeros(0, np.int64), "c": np.zeros(0, object), "s": np.zeros(0, np.float32),
                    "forced": np.zeros(0, bool), "rep_pos": np.zeros(0, np.int64), "g": np.zeros(0, np.float32)}
        ea, eb = (np.zeros(0, np.int64), np.zeros(0, np.int64)) if extra is None else (np.asarray(extra[0], np.int64),
                                                                                        np.asarray(extra[1], np.int64))
        if kk == 0 or n == 0:
            s_extra = self._score(enc.slots, ea, eb) if len(ea) else np.zeros(0, np.float32)
            _, nn_extra = self._nearest(n, np.zeros(0, np.int64), np.zeros(0, np.float32), ea, eb, s_extra)
            return enc.slots, 0, empty(), {}, (s_extra if extra is not None else None), None, (nn_extra if extra is not None else None)
        _, rows, lists = self._search.search(enc.vectors, kk, nprobe=self.nprobe)
        qi = np.repeat(np.arange(n, dtype=np.int64), kk)
        orow = rows.reshape(-1)
        ok = orow >= 0
        qi, orow = qi[ok], orow[ok]
        # items with the content key of an indexed item are that listing again: they join its
        # cluster whatever the scores (as dedup keeps such groups together)
        hit_i, hit_row = self._key_hits(_enc_keys(enc))
        forced = np.zeros(len(qi), bool)
        if len(hit_i):
            qi, orow = np.concatenate([qi, hit_i]), np.concatenate([orow, hit_row])
            forced = np.concatenate([forced, np.ones(len(hit_i), bool)])
        # the live cluster of every neighbour, and each touched cluster's representative
        uniq, inv = np.unique(orow, return_inverse=True)
        ucl = self._live_clusters(uniq)
        touched, ucidx = np.unique(ucl, return_inverse=True)
        cidx = ucidx.reshape(-1)[inv.reshape(-1)]  # touched-cluster index of every (i, neighbour) pair
        info = self.registry.describe_clusters(touched.tolist())
        rep_ids = np.asarray([info[c][0] for c in touched.tolist()], dtype=object).astype(str)
        rep_rows = self._rows_of(rep_ids)
        if (rep_rows < 0).any():
            bad = touched[np.nonzero(rep_rows < 0)[0][0]]
            raise IndexDirError(f"{self.index_dir}: representative of cluster {bad} is not indexed; the index is damaged")
        needed = np.unique(np.concatenate([uniq, rep_rows]))
        S = _gather_slots(self._row_parts(needed) + [(enc.slots, np.arange(n, dtype=np.int64))])
        m = len(needed)
        rep_pos = np.searchsorted(needed, rep_rows)
        # the edges and the extra pairs, then each (item, touched cluster) with a passing edge
        # against the cluster's representative
        T = len(touched)
        sc = self._score(S, np.concatenate([m + qi, m + ea]), np.concatenate([np.searchsorted(needed, orow), m + eb]))
        s_on, s_extra = sc[:len(qi)], sc[len(qi):]
        clusters = {c: (int(p), int(info[c][2]), int(info[c][1]), str(r))
                    for c, p, r in zip(touched.tolist(), rep_pos.tolist(), rep_ids.tolist())}
        # a content-key twin is the item's best candidate (dedup finds it as an identical vector)
        nn_old, nn_extra = self._nearest(n, qi, np.where(forced, np.inf, s_on).astype(np.float32), ea, eb, s_extra)
        e = (s_on >= self.tau) | forced | nn_old
        if e.any():
            # best edge per (item, cluster): sort by key, max over each run (numpy, no groupby)
            key, s_e, f_e = qi[e] * T + cidx[e], s_on[e], forced[e]
            o = np.argsort(key, kind="stable")
            key, s_e, f_e = key[o], s_e[o], f_e[o]
            start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            k = key[start]
            s_max = np.maximum.reduceat(s_e, start)
            f_any = np.logical_or.reduceat(f_e, start)
            g = self._score(S, m + k // T, rep_pos[k % T]).astype(np.float32)
            keep = (g >= self.tau - self.guard_margin) | f_any
            k = k[keep]
            cand = {"i": k // T, "c": touched[k % T].astype(object), "s": s_max[keep].astype(np.float32),
                    "forced": f_any[keep], "rep_pos": rep_pos[k % T], "g": g[keep]}
        else:
            cand = empty()
        return S, m, cand, clusters, (s_extra if extra is not None else None), lists, (nn_extra if extra is not None else None)

    def _nearest(self, n: int, qi, s_on, ea, eb, s_extra) -> tuple[np.ndarray, np.ndarray]:
        """The nearest-neighbour rule for new items: ``(on_old bool (len(qi),), on_extra bool (len(ea),))``,
        the (item ``qi``, indexed row) pairs and the ``extra`` (ea, eb) pairs that are the best
        candidate of one of their new items (ties: indexed pairs first, then the earlier pair) and
        score ≥ ``nn_threshold``; all False when the rule is off. The ranks are those of
        ``NearDuplicateClusterer.nearest_edges`` (``_pair_ranks``), with each indexed row of a pair
        standing as its own node: only the new item's side of such a pair counts."""
        m = len(qi)
        if self.nn_threshold is None or n == 0 or m + len(ea) == 0:
            return np.zeros(m, bool), np.zeros(len(ea), bool)
        s = np.concatenate([s_on, s_extra]).astype(np.float32)  # compared in float32, as dedup does
        ra, rb = _pair_ranks(np.concatenate([qi, ea]), np.concatenate([n + np.arange(m), eb]), s)
        ok = s >= np.float32(self.nn_threshold)
        return (ra[:m] == 0) & ok[:m], ((ra[m:] == 0) | (rb[m:] == 0)) & ok[m:]

    def _key_hits(self, keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(i, row)``: new item i has the content key of indexed row ``row`` (one row per item)."""
        if keys is None or self.n_rows == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if self._key_order is None:
            self._key_order = np.argsort(self._keys, kind="stable")
            self._keys_sorted = self._keys[self._key_order]
        sk = self._keys_sorted
        p = np.minimum(np.searchsorted(sk, keys), len(sk) - 1)
        hit = sk[p] == keys
        return np.nonzero(hit)[0].astype(np.int64), self._key_order[p[hit]].astype(np.int64)

    def _plan(self, enc, batch: int) -> _Plan:
        """Decide every new item's cluster, the merges and the new clusters of one batch."""
        t0 = time.perf_counter()
        ids = np.asarray(enc.ids, dtype=object).astype(str)
        n = len(ids)
        tau, floor = self.tau, self.tau - self.guard_margin
        ni, nj = self._clusterer.candidates(enc.vectors)  # candidate pairs inside the batch
        S, m, cand, clusters, s_nn, lists, nn_nn = self._match_old(enc, extra=(ni, nj))
        best = _best_per_item(cand)
        cand = pd.DataFrame(cand)
        t_old = time.perf_counter() - t0
        score = self._score
        sc = np.ones(n, dtype=np.float32)  # each item's score to its representative

        # bridges: items whose passing edges reach >= 2 existing clusters
        parent: dict[str, str] = {}

        def find(c: str) -> str:
            while parent.get(c, c) != c:
                c = parent[c]
            return c

        def older(a: str, b: str) -> bool:
            return (clusters[a][1], a) < (clusters[b][1], b)

        merges, rejected = [], []
        if len(cand):
            multi = cand.groupby("i")["c"].transform("size") > 1
            br = cand[multi].sort_values(["i", "s", "c"], ascending=[True, False, True])
            pairs = []  # (item, best cluster, other cluster, s_best, s_other)
            for i, grp in br.groupby("i", sort=True):
                cs, ss = grp["c"].tolist(), grp["s"].tolist()
                for c, s in zip(cs[1:], ss[1:]):
                    pairs.append((int(i), cs[0], c, float(ss[0]), float(s)))
            if pairs:
                ra = np.asarray([clusters[p[1]][0] for p in pairs], np.int64)
                rb = np.asarray([clusters[p[2]][0] for p in pairs], np.int64)
                s_reps = score(S, ra, rb)
                for (i, a, b, sa, sb), sr in zip(pairs, s_reps):
                    item = ids[i]
                    if sa >= self.tau_merge and sb >= self.tau_merge and sr >= floor:
                        fa, fb = find(a), find(b)
                        if fa == fb:
                            continue
                        surv, absd = (fa, fb) if older(fa, fb) else (fb, fa)
                        parent[absd] = surv
                        merges.append((surv, absd, item, sa, sb, float(sr)))
                    else:
                        why = (f"edges {sa:.3f} / {sb:.3f}, merge needs both >= τ_merge {self.tau_merge:.3f}"
                               if min(sa, sb) < self.tau_merge else
                               f"representatives score {float(sr):.3f} < guard {floor:.3f}")
                        rejected.append((a, b, item, why))

        # direct attachment: the best passing edge wins
        assign = np.full(n, None, dtype=object)
        rescore = []  # items whose cluster was merged this batch: their representative changed
        if len(cand):
            for i, c, g in zip(best["i"].tolist(), best["c"].tolist(), best["g"].tolist()):
                assign[i] = find(c)
                sc[i] = g
                if assign[i] != c:
                    rescore.append(i)
        n_direct = int(sum(a is not None for a in assign))

        # propagation through edges inside the batch (connected component + guard)
        en = (s_nn >= tau) | nn_nn
        n_prop = 0
        if en.any() and n_direct:
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            g = coo_matrix((np.ones(int(en.sum())), (ni[en], nj[en])), shape=(n, n))
            _, comp = connected_components(g, directed=False)
            attached = np.asarray([a is not None for a in assign])
            comp_clusters: dict[int, set] = {}
            for i in np.nonzero(attached)[0]:
                comp_clusters.setdefault(int(comp[i]), set()).add(assign[i])
            qi, qc = [], []
            for u in np.nonzero(~attached)[0]:
                for c in sorted(comp_clusters.get(int(comp[u]), ())):
                    qi.append(int(u))
                    qc.append(c)
            if qi:
                gs = score(S, m + np.asarray(qi, np.int64), np.asarray([clusters[c][0] for c in qc], np.int64))
                pr = pd.DataFrame({"i": qi, "c": qc, "g": gs})
                pr = pr[pr["g"] >= floor].sort_values(["i", "g", "c"], ascending=[True, False, True]).drop_duplicates("i")
                for i, c, g in zip(pr["i"].to_numpy(), pr["c"].tolist(), pr["g"].to_numpy()):
                    assign[i] = c
                    sc[i] = g
                n_prop = len(pr)

        # the rest: clusters among themselves, new ids
        match = np.where([a is not None for a in assign], "existing", "new").astype(object)
        rep = np.full(n, None, dtype=object)
        att = np.nonzero(match == "existing")[0]
        if len(att):
            rep[att] = [clusters[c][3] for c in assign[att]]
        if rescore:
            rs = np.asarray(rescore, np.int64)
            sc[rs] = score(S, m + rs, np.asarray([clusters[c][0] for c in assign[rs]], np.int64))
        rest = np.nonzero(match == "new")[0]
        new_clusters = []
        if len(rest):
            loc = np.full(n, -1, np.int64)
            loc[rest] = np.arange(len(rest))
            both = (loc[ni] >= 0) & (loc[nj] >= 0) if len(ni) else np.zeros(0, bool)
            li, lj, ls, lf = loc[ni[both]], loc[nj[both]], s_nn[both], nn_nn[both]
            guard = bool(_model_param(self.model, "guard", True))
            keys = _enc_keys(enc)
            cl = cluster_edges(len(rest), li, lj, ls, tau, list(ids[rest]),
                               pair_score=(lambda a, b: score(S, m + rest[a], m + rest[b])) if guard else None,
                               guard_tau=floor, groups=None if keys is None else _key_groups(keys[rest]),
                               force=lf if lf.any() else None)
            cids = np.asarray(cl.cluster_id, dtype=object)
            reps = ids[rest][cl.representative]
            uniq_c = list(dict.fromkeys(cids.tolist()))
            taken = self.registry.has_clusters(uniq_c)
            remap = {}
            for c in uniq_c:
                if c in taken:  # a 60-bit hash collision with an existing id: derive another, deterministically
                    r = reps[np.nonzero(cids == c)[0][0]]
                    alt, salt = c, 0
                    while alt in taken or alt in remap.values():
                        salt += 1
                        alt = stable_cluster_id(f"{r}#{salt}")
                    remap[c] = alt
            cids = np.asarray([remap.get(c, c) for c in cids], dtype=object)
            assign[rest] = cids
            rep[rest] = reps
            sc[rest] = cl.similarity
            sizes = pd.Series(cids).value_counts()
            first_rep = dict(zip(cids[::-1], reps[::-1]))
            new_clusters = [(c, str(first_rep[c]), int(sizes[c])) for c in sorted(sizes.index)]

        delta: dict[str, int] = {}
        for c in assign[att]:
            delta[c] = delta.get(c, 0) + 1
        stats = {"n_items": n, "n_joined_existing": int(len(att)), "n_joined_direct": n_direct, "n_joined_via_batch": n_prop,
                 "n_new_clusters": len(new_clusters), "n_items_in_new_clusters": int(len(rest)), "n_merges": len(merges),
                 "n_bridges_rejected": len(rejected), "n_candidate_old_edges": int(len(cand)),
                 "match_old_seconds": round(t_old, 3), "plan_seconds": round(time.perf_counter() - t0, 3)}
        return _Plan(ids=ids, cluster=assign, rep=rep, score=sc, match=match, new_clusters=new_clusters, merges=merges,
                     rejected=rejected, size_delta=delta, stats=stats, lists=lists)

    # ------------------------------------------------------------------ add
    def add(self, catalog: Catalog, existing: str = "error") -> AddResult:
        """Assign the items of ``catalog`` (one batch) and commit them as the next generation.

        Args:
            catalog: new items.
            existing: what to do with item ids that are indexed already: ``"error"`` (default:
                raise naming the first one; nothing is written) or ``"skip"`` (leave them in their
                cluster, add the others).

        Returns:
            :class:`AddResult` (write it with :meth:`AddResult.write`).

        Raises:
            IndexDirError: an item id is already indexed (``existing="error"``), the index is
                read-only or another writer holds the lock.
            KeyboardInterrupt / any error: the batch is rolled back; the index stays at the
                generation it had.
        """
        return self._add(catalog, existing, None)

    def add_batches(self, catalogs: Iterable[Catalog], existing: str = "error", ahead: bool = True) -> Iterator[AddResult]:
        """Add several batches in turn, each exactly as :meth:`add` would (its own generation,
        transaction, ids and change-log rows; the same results as calling :meth:`add` on each),
        while the next batch is encoded in a background thread: concept extraction runs in the
        model's worker processes, so it overlaps the search, scoring and commit of the current batch.

        Args:
            catalogs: the batches, in order (e.g. :meth:`Catalog.batches
                <itemrep.catalog.Catalog.batches>` of one big catalog).
            existing: as in :meth:`add`, checked per batch against the index as it is then.
            ahead: encode the next batch in the background (False: one :meth:`add` after the
                other, e.g. for image runs, whose encoding stops cleanly on Ctrl-C only in the main
                thread).

        Yields:
            one :class:`AddResult` per batch (``stats["encode_overlapped"]`` is true for a batch
            that was encoded ahead).

        Raises:
            as :meth:`add`. The batches committed before an error stay committed; the failing
            one is rolled back; the ones after it are not started.
        """
        from concurrent.futures import ThreadPoolExecutor

        if existing not in ("error", "skip"):
            raise ValueError(f"existing must be 'error' or 'skip'; got {existing!r}")
        if not ahead:
            for cat in catalogs:
                yield self._add(cat, existing, None)
            return
        self._keep_workers()
        it = iter(catalogs)

        def encode(cat: Catalog):
            return cat, self.model.transform(cat)

        pending = []
        with ThreadPoolExecutor(1, thread_name_prefix="itemrep-encode") as ex:
            def submit(cat):
                """Encode ahead what ``_add`` will encode if the index does not change meanwhile:
                the batch in id order, without the ids indexed already (checked here, in the
                thread that owns the registry; ``_add`` checks again and re-encodes on a change)."""
                if cat is None or not len(cat):
                    return None
                cat, _ = self._without_indexed(cat)
                if not len(cat):
                    return None
                f = ex.submit(encode, _sorted_by_id(cat))
                pending.append(f)
                return f

            try:
                cur = next(it, None)
                fut = submit(cur)
                while cur is not None:
                    nxt = next(it, None)
                    nfut = submit(nxt)  # encoded while `cur` is planned and committed
                    res = self._add(cur, existing, fut)
                    cur, fut = nxt, nfut
                    yield res
            finally:
                for f in pending:  # an error or an abandoned generator: encode nothing more
                    f.cancel()

    def _keep_workers(self) -> None:
        """An index adds batch after batch: keep the model's extraction workers between calls."""
        keep = getattr(self.model, "keep_workers", None)
        if callable(keep):
            keep()

    def _without_indexed(self, catalog: Catalog) -> tuple[Catalog, dict[str, str]]:
        """``(catalog without the items indexed already, {indexed item id: live cluster id})``."""
        known = self.registry.get_clusters(catalog.ids, resolve=True)
        if known:
            catalog = catalog.subset([k for k, x in enumerate(catalog.ids) if x not in known])
        return catalog, known

    def _add(self, catalog: Catalog, existing: str, ahead) -> AddResult:
        """:meth:`add`; ``ahead``: a future of ``(sorted catalog, its encoding)`` computed in advance
        (used when no item of the batch turns out to be indexed already), or None."""
        if existing not in ("error", "skip"):
            raise ValueError(f"existing must be 'error' or 'skip'; got {existing!r}")
        if self.readonly:
            raise IndexDirError(f"{self.index_dir}: index opened read-only; open it with readonly=False to add items")
        t0 = time.perf_counter()
        with _Lock(self.index_dir):
            if self.registry.generation != self.generation:  # another process added a batch since we loaded
                self._load_state()
            self._clean_uncommitted(self.index_dir, self.generation)
            rest, known = self._without_indexed(catalog)
            if known and existing == "error":
                first = sorted(known)[0]
                raise IndexDirError(f"item {first!r} is already in the index {self.index_dir} (cluster {known[first]}); "
                                    f"{len(known)} of the {len(catalog)} items are. Ids are assigned once: remove them "
                                    "from the batch or pass --existing skip")
            catalog, n_skipped = rest, len(known)
            batch = self.generation + 1
            if len(catalog) == 0:
                return AddResult(batch=self.generation, clusters=pd.DataFrame(columns=ADD_COLUMNS),
                                 changes=_changes_frame(pd.DataFrame(columns=CHANGE_COLUMNS)),
                                 stats={"n_items": 0, "n_skipped_existing": n_skipped, "committed": False})
            catalog = _sorted_by_id(catalog)
            self._keep_workers()
            t1 = time.perf_counter()
            used = False
            if ahead is not None:
                done_cat, done_enc = ahead.result()  # encoded while the previous batch was planned and committed
                # (waited for even when unusable: two encodes must never run at once)
                if list(done_cat.ids) == list(catalog.ids):
                    catalog, enc, used = done_cat, done_enc, True
            if not used:
                enc = self.model.transform(catalog)
            t_enc = time.perf_counter() - t1
            plan = self._plan(enc, batch)
            t2 = time.perf_counter()
            mutated = False
            try:
                n_seg = self._write_segment(self.index_dir, batch, enc, plan.cluster)
                _hook("after_segment")
                mutated = True
                self._search.add(enc.vectors, plan.lists)
                since = self._search.ntotal - self._search_rows
                s_gen = int(self.manifest.get("search", 1))
                if since > self.snapshot_fraction * max(self._search_rows, 1):
                    sd = self.index_dir / "search" / _gen_name(batch)
                    self._search.save(sd)
                    _fsync_tree(sd)
                    s_gen = batch
                _hook("after_search")
                manifest = {"segments": self.manifest["segments"] + [[batch, n_seg]], "search": s_gen}
                changes = self._change_rows(plan, batch)
                with self.registry.transaction():
                    reg = self.registry
                    reg.mint_clusters([(c, r, batch, s) for c, r, s in plan.new_clusters])
                    reg.put_assignments(list(plan.ids), list(plan.cluster), batch, list(map(float, plan.score)))
                    reg.merge_clusters([(absd, surv) for surv, absd, *_ in plan.merges])
                    reg.add_sizes(plan.size_delta)  # the new items, per live cluster
                    reg.record_changes(changes)
                    reg.set_meta("manifest", json.dumps(manifest))
                    reg.set_generation(batch)
                    _hook("in_transaction")
            except BaseException:
                for sub in ("segments", "search"):
                    shutil.rmtree(self.index_dir / sub / _gen_name(batch), ignore_errors=True)
                if mutated:
                    self._load_state()
                raise
            # committed: move the in-memory state forward
            self.generation = batch
            self.manifest = manifest
            n0 = len(self._ids)
            if self._row_index is not None:
                self._row_index.update(zip(plan.ids.tolist(), range(n0, n0 + len(plan.ids))))
            self._ids = np.concatenate([self._ids, plan.ids.astype(object)])
            if self._row_cluster is not None:
                self._row_cluster = np.concatenate([self._row_cluster, plan.cluster.astype(str).astype(object)])
            nk = _enc_keys(enc)
            nk = nk if nk is not None else _id_keys(plan.ids)
            self._keys = np.concatenate([self._keys, nk])
            if self._key_order is not None:  # merge the new keys into the sorted view (no full sort)
                o = np.argsort(nk, kind="stable")
                at = np.searchsorted(self._keys_sorted, nk[o], side="right")
                self._keys_sorted = np.insert(self._keys_sorted, at, nk[o])
                self._key_order = np.insert(self._key_order, at, n0 + o)
            sd = self.index_dir / "segments" / _gen_name(batch)
            self._segs.append((self._segs[-1][0] + self._segs[-1][1] if self._segs else 0, n_seg, batch,
                               SlotSet.load(sd, "slots", mmap=True)))
            if s_gen == batch:
                self._search_rows = self._search.ntotal
                self._drop_old_snapshots(keep=s_gen)
            t_commit = time.perf_counter() - t2
        cl = pd.DataFrame({"item_id": plan.ids, "cluster_id": plan.cluster.astype(str), "representative_id": plan.rep.astype(str),
                           "score": plan.score.astype(np.float32), "match": plan.match.astype(str)})
        # ids of clusters absorbed by this batch's merges resolve to their survivor
        if plan.merges:
            live = dict(zip(cl["cluster_id"].unique(), self.registry.resolve(list(cl["cluster_id"].unique()))))
            cl["cluster_id"] = cl["cluster_id"].map(live)
        stats = {**plan.stats, "n_skipped_existing": n_skipped, "committed": True, "generation": batch,
                 "encode_seconds": round(t_enc, 3), "encode_overlapped": used,
                 "write_commit_seconds": round(t_commit, 3),
                 "total_seconds": round(time.perf_counter() - t0, 3),
                 "failed_items": len({f.item_id for f in getattr(enc, "failures", [])})}
        return AddResult(batch=batch, clusters=cl, changes=_changes_frame(self.registry.changes(batch)), stats=stats)

    def _drop_old_snapshots(self, keep: int) -> None:
        """Delete FAISS snapshots older than the one before ``keep`` (a reader that opened the
        previous manifest may still be loading it)."""
        root = self.index_dir / "search"
        gens = sorted(g for g in (_gen_of(p.name) for p in root.iterdir()) if g is not None and g <= keep)
        for g in gens[:-2]:
            shutil.rmtree(root / _gen_name(g), ignore_errors=True)

    def _change_rows(self, plan: _Plan, batch: int) -> list[dict]:
        now = time.time()
        rows = []
        for c, r, s in plan.new_clusters:
            rows.append({"time": now, "batch": batch, "kind": "new", "cluster_id": c, "other_id": None, "item_id": r,
                         "reason": f"{s} new item(s) matched no existing cluster"})
        for surv, absd, item, sa, sb, sr in plan.merges:
            why = (f"item {item} bridges both clusters with edges >= τ_merge {self.tau_merge:.3f}; "
                   f"representatives score {sr:.3f}")
            rows.append({"time": now, "batch": batch, "kind": "merge", "cluster_id": surv, "other_id": absd, "item_id": item,
                         "reason": why + f"; {surv} is older and survives"})
            rows.append({"time": now, "batch": batch, "kind": "alias", "cluster_id": absd, "other_id": surv, "item_id": item,
                         "reason": f"merged into the older cluster {surv}; {absd} now resolves to it"})
        for kept, other, item, why in plan.rejected:
            rows.append({"time": now, "batch": batch, "kind": "bridge_rejected", "cluster_id": kept, "other_id": other,
                         "item_id": item, "reason": why})
        return rows

    # ------------------------------------------------------------------ lookup
    def lookup(self, catalog: Catalog) -> pd.DataFrame:
        """Which cluster each item would join, without writing anything.

        Returns:
            DataFrame with :data:`LOOKUP_COLUMNS`, one row per item in catalog order:
            ``match`` is ``"indexed"`` (the item is in the index: its live cluster, ``score`` its
            stored similarity to the representative), ``"existing"`` (it would join ``cluster_id``:
            best edge >= τ and score to the representative >= τ - guard_margin) or ``"none"``
            (it would start a new cluster; ``cluster_id`` and ``representative_id`` empty).
        """
        ids = [str(x) for x in catalog.ids]
        known = self.registry.get_clusters(ids, resolve=True)
        cid: list = [known.get(x) for x in ids]
        rid: list = [None] * len(ids)
        score = np.full(len(ids), np.nan, dtype=np.float32)
        match = ["indexed" if x in known else "none" for x in ids]
        if known:
            info = self.registry.describe_clusters(list(set(known.values())))
            stored = self.registry.get_items(list(known)).set_index("item_id")["score"]
            for k, x in enumerate(ids):
                if x in known:
                    rid[k] = info[known[x]][0]
                    score[k] = stored.get(x, np.nan)
        todo = [k for k, x in enumerate(ids) if x not in known]
        if todo:
            sub = catalog.subset(todo) if len(todo) < len(ids) else catalog
            with _single_threaded(len(todo) <= 256):
                enc = self.model.transform(sub)
                _, _, cand, clusters, _, _, _ = self._match_old(enc)
            if len(cand["i"]):
                pos_of = {x: k for k, x in enumerate(ids)}
                best = _best_per_item(cand)
                for i, c, g in zip(best["i"].tolist(), best["c"].tolist(), best["g"].tolist()):
                    k = pos_of[str(enc.ids[i])]
                    cid[k], rid[k], score[k], match[k] = c, clusters[c][3], g, "existing"
        cols = {"item_id": ids, "cluster_id": cid, "representative_id": rid, "score": score, "match": match}
        return pd.DataFrame({c: (v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)) for c, v in cols.items()},
                            columns=LOOKUP_COLUMNS)

    # ------------------------------------------------------------------ reading
    def assignments(self) -> pd.DataFrame:
        """Every indexed item with its live cluster: ``item_id, cluster_id, batch, score``."""
        df = self.registry.items_frame()
        if len(df):
            uniq = df["cluster_id"].unique().tolist()
            df["cluster_id"] = df["cluster_id"].map(dict(zip(uniq, self.registry.resolve(uniq))))
        return df

    def changes(self, batch: int | None = None) -> pd.DataFrame:
        """The change log (all batches, or one), ``time`` as UTC timestamps."""
        return _changes_frame(self.registry.changes(batch))

    def close(self) -> None:
        """Close the registry and stop the model's kept worker processes (see :meth:`add`)."""
        stop = getattr(self.model, "close", None)
        if callable(stop):
            stop()
        self.registry.close()

    def __enter__(self) -> "ClusterIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ADD_COLUMNS", "AddResult", "ClusterIndex", "HOOK_ENV", "INDEX_FORMAT", "IndexDirError", "LOOKUP_COLUMNS"]
