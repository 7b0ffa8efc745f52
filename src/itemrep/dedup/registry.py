"""Cluster registry: the durable record of which item belongs to which cluster, behind a small
storage interface (one SQLite file by default).

A persistent dedup index (:mod:`itemrep.dedup.index`) keeps three kinds of facts here:

* **items** — ``item_id -> cluster_id`` as assigned when the item was added (a row is written
  once and never rewritten: after a merge the stored id is an alias, and
  :meth:`ClusterRegistry.get_clusters` / :meth:`ClusterRegistry.resolve` give the live id), the
  batch that added the item and its similarity to the cluster's representative;
* **clusters** — ``cluster_id -> representative_id, size, created_batch, alias_of``. An id is minted
  once and never changes; when two clusters merge, the younger one keeps its row with ``alias_of``
  set to the survivor, and :meth:`ClusterRegistry.resolve` maps it (and any chain of aliases) to
  the live id;
* **changes** — an append-only change log ``time, batch, kind, cluster_id, other_id, item_id,
  reason`` (kinds: ``new``, ``merge``, ``alias``, ``bridge_rejected``);
* **meta** — ``key -> value`` strings, among them the registry ``format`` and the committed
  ``generation`` of the index.

Everything one batch changes is written between :meth:`~ClusterRegistry.begin` and
:meth:`~ClusterRegistry.commit` (or inside ``with registry.transaction():``), so a batch is applied
entirely or not at all.

Back-ends are chosen from a config dict, the way datasketch chooses its LSH storage
(``ordered_storage({"type": "redis", ...})``)::

    reg = make_registry({"type": "sqlite", "path": "index/registry.sqlite"})
    reg = make_registry({"type": "memory"})          # tests, throw-away indexes

Another database is plugged in by subclassing :class:`ClusterRegistry` and calling
:func:`register_backend`.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from itemrep.errors import ItemrepError

#: Version of the registry's table layout (``meta.format``); a mismatch is refused on open.
REGISTRY_FORMAT = 2

#: Columns of the change log, in order (also the columns of ``changes.parquet``).
CHANGE_COLUMNS = ["time", "batch", "kind", "cluster_id", "other_id", "item_id", "reason"]
#: Columns of :meth:`ClusterRegistry.clusters_info`.
CLUSTER_COLUMNS = ["cluster_id", "representative_id", "size", "created_batch", "alias_of"]
#: Columns of :meth:`ClusterRegistry.items_frame`.
ITEM_COLUMNS = ["item_id", "cluster_id", "batch", "score"]


class RegistryError(ItemrepError, ValueError):
    """The registry cannot be opened or used (wrong format, missing file, misuse of a transaction)."""


class ClusterRegistry(ABC):
    """Storage interface of the cluster registry (see the module docstring for the data model).

    Reads may happen at any time; writes must happen inside a transaction (:meth:`begin` ...
    :meth:`commit`, or ``with reg.transaction():``); a write outside one raises
    :class:`RegistryError`. Cluster ids passed to the read methods may be aliases unless stated.
    """

    # ------------------------------------------------------------------ transactions
    @abstractmethod
    def begin(self) -> None:
        """Start the transaction of one batch. Raises :class:`RegistryError` when one is open."""

    @abstractmethod
    def commit(self) -> None:
        """Make every write since :meth:`begin` durable, atomically."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard every write since :meth:`begin` (no-op when no transaction is open)."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """True between :meth:`begin` and :meth:`commit`/:meth:`rollback`."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator["ClusterRegistry"]:
        """``with reg.transaction():`` — begin; commit on success, roll back on any exception
        (``KeyboardInterrupt`` included) and re-raise it."""
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def close(self) -> None:
        """Release the storage (no-op by default)."""

    # ------------------------------------------------------------------ meta
    @abstractmethod
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` (a string), or ``default``."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set ``key`` to the string ``value`` (in a transaction)."""

    @property
    def generation(self) -> int:
        """The committed generation of the index (0 before the first commit of a build)."""
        return int(self.get_meta("generation", "0") or 0)

    def set_generation(self, generation: int) -> None:
        """Set the generation (in the same transaction as the batch's rows)."""
        self.set_meta("generation", str(int(generation)))

    # ------------------------------------------------------------------ items
    @abstractmethod
    def put_assignments(self, item_ids: Sequence[str], cluster_ids: Sequence[str], batch: int,
                        scores: Sequence[float] | None = None) -> None:
        """Record new items with their cluster (in a transaction).

        Args:
            item_ids: N item ids (strings, not yet in the registry).
            cluster_ids: N cluster ids (must exist).
            batch: the batch (generation) that adds them.
            scores: N similarities to the cluster's representative (default NaN).

        Raises:
            RegistryError: when an item id is already registered (the message names it).
        """

    @abstractmethod
    def get_clusters(self, item_ids: Sequence[str], resolve: bool = True) -> dict[str, str]:
        """``item_id -> cluster_id`` for the registered ones among ``item_ids`` (others absent);
        with ``resolve`` the live id (aliases followed), else the id stored for the item."""

    @abstractmethod
    def get_items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        """Rows (:data:`ITEM_COLUMNS`, cluster ids as stored) of the registered ones among ``item_ids``."""

    @abstractmethod
    def reassign(self, from_cluster: str, to_cluster: str) -> int:
        """Move every item stored under ``from_cluster`` to ``to_cluster`` (in a transaction);
        returns how many moved. A maintenance operation (it scans the items; merges do not use it:
        they alias the absorbed id instead)."""

    @abstractmethod
    def items_frame(self, batch: int | None = None) -> pd.DataFrame:
        """Items (all, or those added by ``batch``) as a DataFrame with :data:`ITEM_COLUMNS`,
        cluster ids as stored: the id each item was assigned, an alias after a merge
        (:meth:`resolve` them for the live ids)."""

    @abstractmethod
    def n_items(self) -> int:
        """Number of registered items."""

    # ------------------------------------------------------------------ clusters
    @abstractmethod
    def mint_cluster(self, cluster_id: str, representative_id: str, batch: int, size: int = 0) -> None:
        """Create a cluster (in a transaction).

        Raises:
            RegistryError: when ``cluster_id`` exists already (ids are minted once).
        """

    def mint_clusters(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        """Bulk :meth:`mint_cluster` of ``(cluster_id, representative_id, batch, size)`` tuples."""
        for c, r, b, s in rows:
            self.mint_cluster(c, r, b, s)

    @abstractmethod
    def has_clusters(self, cluster_ids: Sequence[str]) -> set[str]:
        """The subset of ``cluster_ids`` that exist (live or alias)."""

    @abstractmethod
    def clusters_info(self, cluster_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows of the given clusters (all when ``None``) with :data:`CLUSTER_COLUMNS`; the ids are
        taken as given (an alias returns its own row)."""

    def describe_clusters(self, cluster_ids: Sequence[str]) -> dict[str, tuple[str, int, int, str | None]]:
        """``cluster_id -> (representative_id, size, created_batch, alias_of)`` for the existing
        ones among ``cluster_ids`` (a light :meth:`clusters_info` for the query path)."""
        df = self.clusters_info(cluster_ids)
        return {c: (r, int(s), int(b), None if a is None or a != a else a)
                for c, r, s, b, a in zip(df["cluster_id"], df["representative_id"], df["size"], df["created_batch"], df["alias_of"])}

    @abstractmethod
    def add_sizes(self, deltas: dict[str, int]) -> None:
        """Add ``deltas[cluster_id]`` to each cluster's size (in a transaction)."""

    @abstractmethod
    def add_alias(self, alias_id: str, target_id: str) -> None:
        """Make ``alias_id`` an alias of ``target_id`` (in a transaction). Aliases that pointed to
        ``alias_id`` are re-pointed to ``target_id`` so chains stay one step long.

        Raises:
            RegistryError: when either id does not exist, they are equal, or ``target_id`` is
                itself an alias.
        """

    def merge_clusters(self, merges: Sequence[tuple[str, str]]) -> None:
        """Merge clusters, in order (in a transaction): for each ``(absorbed, survivor)`` the
        absorbed cluster becomes an alias of the survivor's live id (:meth:`add_alias`) and its
        size moves there. Item rows are not rewritten: their stored id now resolves to the survivor.

        Raises:
            RegistryError: an id does not exist, or the two are one cluster already.
        """
        for absd, surv in merges:
            if not self.has_clusters([absd, surv]) >= {absd, surv}:
                raise RegistryError(f"merge_clusters: cluster {absd if not self.has_clusters([absd]) else surv!r} does not exist")
            a, b = self.resolve([absd, surv])
            if a == b:
                raise RegistryError(f"merge_clusters: {absd!r} and {surv!r} are one cluster already")
            n = int(self.describe_clusters([a])[a][1])
            self.add_alias(a, b)
            self.add_sizes({b: n, a: -n})

    @abstractmethod
    def resolve(self, cluster_ids: Sequence[str]) -> list[str]:
        """Live id of each of ``cluster_ids`` (an alias is followed to its survivor; ids that do
        not exist are returned unchanged)."""

    def resolve_one(self, cluster_id: str) -> str:
        """:meth:`resolve` for one id."""
        return self.resolve([cluster_id])[0]

    # ------------------------------------------------------------------ change log
    @abstractmethod
    def record_changes(self, rows: Iterable[dict]) -> None:
        """Append change-log rows (dicts with keys of :data:`CHANGE_COLUMNS`; ``time`` defaults to
        now, missing keys to ``None``), in a transaction."""

    @abstractmethod
    def changes(self, batch: int | None = None) -> pd.DataFrame:
        """The change log (all, or one batch's) with :data:`CHANGE_COLUMNS`, in insertion order."""

    # ------------------------------------------------------------------ helpers
    def _check_tx(self) -> None:
        if not self.in_transaction:
            raise RegistryError("registry write outside a transaction: call begin() first (or use `with reg.transaction():`)")

    @staticmethod
    def _change_row(r: dict) -> tuple:
        r = dict(r)
        r.setdefault("time", time.time())
        return tuple(r.get(c) for c in CHANGE_COLUMNS)


# ---------------------------------------------------------------------------------------- SQLite
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id TEXT PRIMARY KEY, representative_id TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,
    created_batch INTEGER NOT NULL, alias_of TEXT);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, batch INTEGER NOT NULL, score REAL);
CREATE INDEX IF NOT EXISTS items_batch ON items(batch);
CREATE INDEX IF NOT EXISTS clusters_alias ON clusters(alias_of);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, batch INTEGER, kind TEXT, cluster_id TEXT,
    other_id TEXT, item_id TEXT, reason TEXT);
CREATE INDEX IF NOT EXISTS changes_batch ON changes(batch);
"""

def _clusters_frame(rows: list) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
    df["alias_of"] = df["alias_of"].astype(object).where(df["alias_of"].notna(), None)
    df["size"] = df["size"].astype("int64")
    df["created_batch"] = df["created_batch"].astype("int64")
    return df


_CHUNK = 900  # host parameters per IN (...) query (SQLite's default limit is 999 on old builds)


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterator[Sequence]:
    for s in range(0, len(seq), n):
        yield seq[s : s + n]


class SQLiteRegistry(ClusterRegistry):
    """The default back-end: one SQLite file in WAL mode, ``synchronous=FULL``, one explicit
    ``BEGIN IMMEDIATE`` ... ``COMMIT`` per batch (an interrupted batch is rolled back by SQLite
    when the file is next opened).

    Args:
        path: the database file (created with its tables when ``create`` is true).
        create: create the file when absent; when false a missing file raises.
        readonly: open with ``mode=ro`` (no writes, no transactions).

    Raises:
        RegistryError: the file is missing (``create=False``), is not an itemrep registry, or has
            another :data:`REGISTRY_FORMAT` (the message names the path and both versions).
    """

    def __init__(self, path: str | Path, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and (readonly or not create):
            raise RegistryError(f"{self.path}: registry database not found")
        try:
            if readonly:
                self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                            check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
                self._con.execute("PRAGMA journal_mode=WAL")
                self._con.execute("PRAGMA synchronous=FULL")
                self._con.execute("PRAGMA wal_autocheckpoint=16384")
                self._con.executescript(_SCHEMA)
            fmt = self._con.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path}: not an itemrep registry database ({e})") from None
        # format 1 rewrote item rows on merges (so they hold live ids, which read the same here)
        # and indexed items.cluster_id; the first write transaction drops that index and moves
        # the file to format 2 (a reader never changes the file)
        self._upgrade = fmt is not None and int(fmt[0]) == 1
        if fmt is None and not readonly:
            self._con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?)", (str(REGISTRY_FORMAT),))
        elif fmt is not None and int(fmt[0]) not in (1, REGISTRY_FORMAT):
            self._con.close()
            raise RegistryError(f"{self.path}: registry format {fmt[0]}, this itemrep reads formats 1 and {REGISTRY_FORMAT}; "
                                "use the itemrep version that wrote it, or rebuild the index")
        self._tx = False
        self.readonly = readonly

    # transactions
    def begin(self) -> None:
        if self.readonly:
            raise RegistryError(f"{self.path}: registry opened read-only")
        if self._tx:
            raise RegistryError("a registry transaction is already open")
        self._con.execute("BEGIN IMMEDIATE")
        self._tx = True
        if self._upgrade:  # format 1 -> 2 within the first write transaction (rolled back with it)
            self._con.execute("DROP INDEX IF EXISTS items_cluster")
            self._con.execute("UPDATE meta SET value=? WHERE key='format'", (str(REGISTRY_FORMAT),))

    def commit(self) -> None:
        if not self._tx:
            raise RegistryError("commit() without begin()")
        self._con.execute("COMMIT")
        self._tx = False
        self._upgrade = False

    def rollback(self) -> None:
        if self._tx:
            self._con.execute("ROLLBACK")
            self._tx = False

    @property
    def in_transaction(self) -> bool:
        return self._tx

    def close(self) -> None:
        self.rollback()
        self._con.close()

    # meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._check_tx()
        self._con.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          (key, str(value)))

    # items
    def put_assignments(self, item_ids, cluster_ids, batch, scores=None) -> None:
        self._check_tx()
        if len(item_ids) != len(cluster_ids) or (scores is not None and len(scores) != len(item_ids)):
            raise RegistryError(f"put_assignments: {len(item_ids)} items, {len(cluster_ids)} clusters, "
                                f"{None if scores is None else len(scores)} scores")
        sc = [None] * len(item_ids) if scores is None else [None if s != s else float(s) for s in scores]
        self._con.execute("SAVEPOINT put_assignments")
        try:
            self._con.executemany("INSERT INTO items(item_id, cluster_id, batch, score) VALUES (?, ?, ?, ?)",
                                  zip(map(str, item_ids), map(str, cluster_ids), [int(batch)] * len(item_ids), sc))
        except sqlite3.IntegrityError:
            self._con.execute("ROLLBACK TO put_assignments")
            self._con.execute("RELEASE put_assignments")
            seen: set[str] = set()
            dup = next((x for x in map(str, item_ids) if x in seen or seen.add(x)), None)
            taken = self.get_clusters([str(x) for x in item_ids], resolve=False)
            if taken:
                first = sorted(taken)[0]
                raise RegistryError(f"item {first!r} is already in the registry (cluster {taken[first]}); "
                                    f"{len(taken)} of the {len(item_ids)} items are") from None
            raise RegistryError(f"item {dup!r} appears twice in one put_assignments call") from None
        self._con.execute("RELEASE put_assignments")

    def get_clusters(self, item_ids, resolve: bool = True) -> dict[str, str]:
        ids = [str(x) for x in item_ids]
        out: dict[str, str] = {}
        for part in _chunks(ids):
            q = f"SELECT item_id, cluster_id FROM items WHERE item_id IN ({','.join('?' * len(part))})"
            out.update(self._con.execute(q, list(part)).fetchall())
        if resolve and out:
            keys = list(out)
            live = self.resolve([out[k] for k in keys])
            out = dict(zip(keys, live))
        return out

    def get_items(self, item_ids) -> pd.DataFrame:
        rows = []
        for part in _chunks([str(x) for x in item_ids]):
            q = f"SELECT item_id, cluster_id, batch, score FROM items WHERE item_id IN ({','.join('?' * len(part))})"
            rows.extend(self._con.execute(q, list(part)).fetchall())
        return pd.DataFrame(rows, columns=ITEM_COLUMNS)

    def reassign(self, from_cluster: str, to_cluster: str) -> int:
        self._check_tx()
        return self._con.execute("UPDATE items SET cluster_id=? WHERE cluster_id=?", (to_cluster, from_cluster)).rowcount

    def items_frame(self, batch: int | None = None) -> pd.DataFrame:
        q = "SELECT item_id, cluster_id, batch, score FROM items" + ("" if batch is None else " WHERE batch=?")
        rows = self._con.execute(q, () if batch is None else (int(batch),)).fetchall()
        return pd.DataFrame(rows, columns=ITEM_COLUMNS)

    def n_items(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    # clusters
    def mint_cluster(self, cluster_id, representative_id, batch, size=0) -> None:
        self._check_tx()
        try:
            self._con.execute("INSERT INTO clusters(cluster_id, representative_id, size, created_batch, alias_of) "
                              "VALUES (?, ?, ?, ?, NULL)", (cluster_id, representative_id, int(size), int(batch)))
        except sqlite3.IntegrityError:
            raise RegistryError(f"cluster id {cluster_id!r} exists already; ids are minted once") from None

    def mint_clusters(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        self._check_tx()
        try:
            self._con.executemany("INSERT INTO clusters(cluster_id, representative_id, created_batch, size, alias_of) "
                                  "VALUES (?, ?, ?, ?, NULL)", [(c, r, int(b), int(s)) for c, r, b, s in rows])
        except sqlite3.IntegrityError:
            have = self.has_clusters([r[0] for r in rows])
            raise RegistryError(f"cluster id {sorted(have)[0] if have else '?'} exists already; ids are minted once") from None

    def has_clusters(self, cluster_ids) -> set[str]:
        ids = [str(x) for x in cluster_ids]
        out: set[str] = set()
        for part in _chunks(ids):
            q = f"SELECT cluster_id FROM clusters WHERE cluster_id IN ({','.join('?' * len(part))})"
            out.update(r[0] for r in self._con.execute(q, list(part)))
        return out

    def describe_clusters(self, cluster_ids) -> dict[str, tuple[str, int, int, str | None]]:
        out = {}
        for part in _chunks(list(dict.fromkeys(map(str, cluster_ids)))):
            q = ("SELECT cluster_id, representative_id, size, created_batch, alias_of FROM clusters "
                 f"WHERE cluster_id IN ({','.join('?' * len(part))})")
            out.update((c, (r, s, b, a)) for c, r, s, b, a in self._con.execute(q, list(part)))
        return out

    def clusters_info(self, cluster_ids=None) -> pd.DataFrame:
        cols = ", ".join(CLUSTER_COLUMNS)
        if cluster_ids is None:
            rows = self._con.execute(f"SELECT {cols} FROM clusters").fetchall()
        else:
            rows = []
            for part in _chunks(list(dict.fromkeys(map(str, cluster_ids)))):
                q = f"SELECT {cols} FROM clusters WHERE cluster_id IN ({','.join('?' * len(part))})"
                rows.extend(self._con.execute(q, list(part)).fetchall())
        return _clusters_frame(rows)

    def add_sizes(self, deltas: dict[str, int]) -> None:
        self._check_tx()
        self._con.executemany("UPDATE clusters SET size = size + ? WHERE cluster_id = ?",
                              [(int(d), str(c)) for c, d in deltas.items() if d])

    def add_alias(self, alias_id: str, target_id: str) -> None:
        self._check_tx()
        info = self.clusters_info([alias_id, target_id]).set_index("cluster_id")
        for c in (alias_id, target_id):
            if c not in info.index:
                raise RegistryError(f"add_alias: cluster {c!r} does not exist")
        if alias_id == target_id:
            raise RegistryError(f"add_alias: cluster {alias_id!r} cannot be an alias of itself")
        if not pd.isna(info.loc[target_id, "alias_of"]):
            raise RegistryError(f"add_alias: target {target_id!r} is itself an alias of {info.loc[target_id, 'alias_of']!r}; "
                                "resolve it first")
        self._con.execute("UPDATE clusters SET alias_of=? WHERE alias_of=?", (target_id, alias_id))
        self._con.execute("UPDATE clusters SET alias_of=? WHERE cluster_id=?", (target_id, alias_id))

    def merge_clusters(self, merges: Sequence[tuple[str, str]]) -> None:
        """As :meth:`ClusterRegistry.merge_clusters`, with one statement per kind of change."""
        self._check_tx()
        if not merges:
            return
        ids = sorted({c for m in merges for c in m})
        info = self.describe_clusters(ids)
        missing = [c for c in ids if c not in info]
        if missing:
            raise RegistryError(f"merge_clusters: cluster {missing[0]!r} does not exist")
        targets = sorted({info[c][3] for c in ids if info[c][3] is not None} - set(ids))
        if targets:  # the live ids behind aliases given as input
            info.update(self.describe_clusters(targets))
            ids = sorted(set(ids) | set(targets))
        root = {c: (info[c][3] or c) for c in ids}  # live id of each, before these merges
        for absd, surv in merges:  # apply in order, on live ids
            a, b = root[absd], root[surv]
            while root.get(b, b) != b:
                b = root[b]
            if a == b:
                raise RegistryError(f"merge_clusters: {absd!r} and {surv!r} are one cluster already")
            for c, r in list(root.items()):
                if r == a:
                    root[c] = b
            root[a] = b
        absorbed = [c for c in ids if root[c] != c and info[c][3] is None]  # live clusters that become aliases
        n_items = {a: int(info[a][1]) for a in absorbed}  # a live cluster's size counts its aliases' items too
        pairs = [(root[a], a) for a in absorbed]
        # item rows keep the id they were assigned (no rewrite, no index on items.cluster_id to
        # maintain: 10k item rows insert in 0.05 s instead of 0.35 s into a 1M-row table)
        self._con.executemany("UPDATE clusters SET alias_of=? WHERE alias_of=?", pairs)
        self._con.executemany("UPDATE clusters SET alias_of=? WHERE cluster_id=?", pairs)
        delta: dict[str, int] = {}
        for a in absorbed:
            n = int(n_items.get(a, 0))
            delta[root[a]] = delta.get(root[a], 0) + n
            delta[a] = delta.get(a, 0) - n
        self.add_sizes(delta)

    def resolve(self, cluster_ids) -> list[str]:
        ids = [str(x) for x in cluster_ids]
        amap: dict[str, str] = {}
        todo = set(ids)
        for _ in range(64):  # chains are one step long by construction; bounded anyway
            if not todo:
                break
            found: dict[str, str] = {}
            for part in _chunks(sorted(todo)):
                q = f"SELECT cluster_id, alias_of FROM clusters WHERE alias_of IS NOT NULL AND cluster_id IN ({','.join('?' * len(part))})"
                found.update(self._con.execute(q, list(part)).fetchall())
            amap.update(found)
            todo = {v for v in found.values() if v not in amap}
        out = []
        for c in ids:
            seen = 0
            while c in amap and seen < 64:
                c = amap[c]
                seen += 1
            out.append(c)
        return out

    # change log
    def record_changes(self, rows) -> None:
        self._check_tx()
        self._con.executemany(f"INSERT INTO changes({', '.join(CHANGE_COLUMNS)}) VALUES ({', '.join('?' * len(CHANGE_COLUMNS))})",
                              [self._change_row(r) for r in rows])

    def changes(self, batch: int | None = None) -> pd.DataFrame:
        q = f"SELECT {', '.join(CHANGE_COLUMNS)} FROM changes" + ("" if batch is None else " WHERE batch=?") + " ORDER BY seq"
        rows = self._con.execute(q, () if batch is None else (int(batch),)).fetchall()
        return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


# ---------------------------------------------------------------------------------------- memory
class MemoryRegistry(ClusterRegistry):
    """In-memory back-end (dicts), for tests and throw-away indexes; a transaction snapshots the
    state on :meth:`begin` and restores it on :meth:`rollback`. Nothing persists."""

    def __init__(self) -> None:
        self._s = {"meta": {"format": str(REGISTRY_FORMAT)}, "items": {}, "clusters": {}, "changes": []}
        self._snap = None

    def begin(self) -> None:
        if self._snap is not None:
            raise RegistryError("a registry transaction is already open")
        self._snap = copy.deepcopy(self._s)

    def commit(self) -> None:
        if self._snap is None:
            raise RegistryError("commit() without begin()")
        self._snap = None

    def rollback(self) -> None:
        if self._snap is not None:
            self._s, self._snap = self._snap, None

    @property
    def in_transaction(self) -> bool:
        return self._snap is not None

    def get_meta(self, key, default=None):
        return self._s["meta"].get(key, default)

    def set_meta(self, key, value) -> None:
        self._check_tx()
        self._s["meta"][key] = str(value)

    def put_assignments(self, item_ids, cluster_ids, batch, scores=None) -> None:
        self._check_tx()
        items = self._s["items"]
        for x in item_ids:
            if str(x) in items:
                raise RegistryError(f"item {str(x)!r} is already in the registry (cluster {items[str(x)][0]})")
        sc = [float("nan")] * len(item_ids) if scores is None else scores
        for x, c, s in zip(item_ids, cluster_ids, sc):
            items[str(x)] = (str(c), int(batch), float(s))

    def get_clusters(self, item_ids, resolve=True) -> dict[str, str]:
        items = self._s["items"]
        out = {str(x): items[str(x)][0] for x in item_ids if str(x) in items}
        if resolve and out:
            keys = list(out)
            out = dict(zip(keys, self.resolve([out[k] for k in keys])))
        return out

    def get_items(self, item_ids) -> pd.DataFrame:
        items = self._s["items"]
        rows = [(x, *items[x]) for x in map(str, item_ids) if x in items]
        return pd.DataFrame(rows, columns=ITEM_COLUMNS)

    def reassign(self, from_cluster, to_cluster) -> int:
        self._check_tx()
        n = 0
        for k, (c, b, s) in self._s["items"].items():
            if c == from_cluster:
                self._s["items"][k] = (to_cluster, b, s)
                n += 1
        return n

    def items_frame(self, batch=None) -> pd.DataFrame:
        rows = [(k, c, b, s) for k, (c, b, s) in self._s["items"].items() if batch is None or b == batch]
        return pd.DataFrame(rows, columns=ITEM_COLUMNS)

    def n_items(self) -> int:
        return len(self._s["items"])

    def mint_cluster(self, cluster_id, representative_id, batch, size=0) -> None:
        self._check_tx()
        if cluster_id in self._s["clusters"]:
            raise RegistryError(f"cluster id {cluster_id!r} exists already; ids are minted once")
        self._s["clusters"][cluster_id] = {"representative_id": representative_id, "size": int(size),
                                           "created_batch": int(batch), "alias_of": None}

    def has_clusters(self, cluster_ids) -> set[str]:
        return {str(c) for c in cluster_ids if str(c) in self._s["clusters"]}

    def clusters_info(self, cluster_ids=None) -> pd.DataFrame:
        cl = self._s["clusters"]
        keys = list(cl) if cluster_ids is None else [c for c in dict.fromkeys(map(str, cluster_ids)) if c in cl]
        return _clusters_frame([(k, cl[k]["representative_id"], cl[k]["size"], cl[k]["created_batch"], cl[k]["alias_of"])
                                for k in keys])

    def add_sizes(self, deltas) -> None:
        self._check_tx()
        for c, d in deltas.items():
            if c in self._s["clusters"]:
                self._s["clusters"][c]["size"] += int(d)

    def add_alias(self, alias_id, target_id) -> None:
        self._check_tx()
        cl = self._s["clusters"]
        for c in (alias_id, target_id):
            if c not in cl:
                raise RegistryError(f"add_alias: cluster {c!r} does not exist")
        if alias_id == target_id:
            raise RegistryError(f"add_alias: cluster {alias_id!r} cannot be an alias of itself")
        if cl[target_id]["alias_of"] is not None:
            raise RegistryError(f"add_alias: target {target_id!r} is itself an alias of {cl[target_id]['alias_of']!r}; resolve it first")
        for v in cl.values():
            if v["alias_of"] == alias_id:
                v["alias_of"] = target_id
        cl[alias_id]["alias_of"] = target_id

    def resolve(self, cluster_ids) -> list[str]:
        cl = self._s["clusters"]
        out = []
        for c in map(str, cluster_ids):
            for _ in range(64):
                a = cl.get(c, {}).get("alias_of")
                if a is None:
                    break
                c = a
            out.append(c)
        return out

    def record_changes(self, rows) -> None:
        self._check_tx()
        self._s["changes"].extend(self._change_row(r) for r in rows)

    def changes(self, batch=None) -> pd.DataFrame:
        rows = [r for r in self._s["changes"] if batch is None or r[1] == batch]
        return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


# ---------------------------------------------------------------------------------------- factory
_BACKENDS: dict[str, type] = {"sqlite": SQLiteRegistry, "memory": MemoryRegistry}


def register_backend(name: str, cls: type) -> None:
    """Make ``{"type": name, ...}`` configs build ``cls(**rest_of_config)`` (a :class:`ClusterRegistry`)."""
    if not (isinstance(cls, type) and issubclass(cls, ClusterRegistry)):
        raise TypeError(f"{cls!r} is not a ClusterRegistry subclass")
    _BACKENDS[name] = cls


def make_registry(config: dict, base_dir: str | Path | None = None, **kwargs) -> ClusterRegistry:
    """Build a registry from a config dict.

    Args:
        config: ``{"type": "sqlite", "path": "registry.sqlite"}`` (a relative ``path`` is taken
            relative to ``base_dir``), ``{"type": "memory"}`` or a type added with
            :func:`register_backend`; the other keys are passed to the back-end's constructor.
        base_dir: directory that relative paths are resolved against.
        kwargs: extra constructor arguments (e.g. ``create=False``, ``readonly=True``).

    Raises:
        RegistryError: unknown ``type`` (the message lists the known ones).
    """
    cfg = dict(config)
    tp = cfg.pop("type", "sqlite")
    if tp not in _BACKENDS:
        raise RegistryError(f"unknown registry type {tp!r}; known: {', '.join(sorted(_BACKENDS))}")
    if "path" in cfg and base_dir is not None and not Path(cfg["path"]).is_absolute():
        cfg["path"] = Path(base_dir) / cfg["path"]
    if tp == "memory":
        kwargs = {}
    return _BACKENDS[tp](**cfg, **kwargs)


__all__ = ["CHANGE_COLUMNS", "CLUSTER_COLUMNS", "ClusterRegistry", "ITEM_COLUMNS", "MemoryRegistry", "REGISTRY_FORMAT",
           "RegistryError", "SQLiteRegistry", "make_registry", "register_backend"]
