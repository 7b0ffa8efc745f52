"""On-disk feature cache: SQLite, keyed by content hash and extractor version.

Image features are expensive (a CNN pass, optionally OCR) and depend only on the bytes of the image
file and on the extractor that computed them. The cache therefore keys every record by
``(namespace, content_key)`` where ``namespace`` encodes the extractor and its version (for
example ``"image/effnet-lite0-224-v1"``) and ``content_key`` is the SHA-1 of the file bytes. A
re-run, or another catalog that shares photos (even under other file names), skips the work; a
new extractor version never reads stale features.

Storage follows datasketch's ``storage.py`` idea of one small back-end behind a dict-like
surface: a single SQLite file (WAL mode, so several processes can read while one writes) holding
``np.savez`` blobs of named arrays. Values are dicts of numpy arrays / scalars / strings.

The cache is an accelerator, never a requirement: a cache file that is not SQLite (or not
itemrep's), a damaged database, a folder that cannot be created or a read-only file gives one
:class:`CacheWarning` naming the file, and the run goes on without the cache (or, read-only, without
storing new records). A damaged record is a miss: it is recomputed and replaced.

Interruption: the image back-end stores records batch by batch, so a run stopped part-way keeps
what it finished and a re-run resumes. :func:`stop_on_signals` turns SIGINT and SIGTERM into
:class:`StopSignal` while a stage runs (restoring the previous handlers after), and
:meth:`FeatureCache.put_many` holds such a signal back until its transaction is committed, so a
batch is stored whole or not at all and :attr:`FeatureCache.stored` is exact.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

#: Bumped when the on-disk layout changes.
CACHE_FORMAT = "1"

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


class CacheWarning(UserWarning):
    """A cache file cannot be used (fully or for writing); the run goes on without it."""


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(path: str | Path, problem: str, message: str) -> None:
    """Issue ``message`` as a :class:`CacheWarning` once per process for ``(path, problem)``."""
    key = (str(path), problem)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, CacheWarning, stacklevel=3)


def not_sqlite_reason(path: Path) -> str | None:
    """Why an existing ``path`` cannot be a SQLite database, or ``None`` when it may be one.

    A missing or empty file is fine (SQLite creates the database); anything else must start with
    the SQLite header.
    """
    if not path.exists():
        return None
    if path.is_dir():
        return "it is a directory"
    if not path.is_file():
        return "it is not a regular file"
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        return "not a SQLite database"
    return None


# ------------------------------------------------------------------------------ interruption
class StopSignal(BaseException):
    """SIGINT or SIGTERM arrived while a :func:`stop_on_signals` block ran.

    A ``BaseException`` (like ``KeyboardInterrupt``), so the ``except Exception`` that records a
    per-item failure never swallows it. The stage that installed the handlers catches it and
    raises :class:`itemrep.errors.Interrupted` saying what was kept.

    Attributes:
        signum: the signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = int(signum)


def signal_name(signum: int) -> str:
    """``"SIGINT"``, ``"SIGTERM"``, ... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# One stage at a time holds the handlers (the outermost stop_on_signals of the main thread).
#: "off" (no handler of ours), "raise" (raise StopSignal, or hold it back inside a deferred block),
#: "stopping" (a StopSignal was raised: further signals are ignored while the stage cleans up),
#: "closing" (the stage ended normally: a signal is kept and re-delivered to the restored handler).
_sig_mode = "off"
_sig_defer = 0
_sig_pending: int | None = None


def _on_signal(signum: int, frame: object) -> None:
    global _sig_mode, _sig_pending
    if _sig_mode == "raise" and _sig_defer == 0:
        _sig_mode = "stopping"
        raise StopSignal(signum)
    if _sig_mode in ("raise", "closing") and _sig_pending is None:
        _sig_pending = signum  # raised when the deferred block ends / re-delivered after restoring


@contextlib.contextmanager
def stop_on_signals(signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise :class:`StopSignal` in the main thread.

    Only signals whose disposition is the standard one (``SIG_DFL``, or Python's default SIGINT
    handler) are taken over: an ignored signal stays ignored and a handler someone else installed
    (an embedding application, or an enclosing ``stop_on_signals``) is left alone. The previous
    handlers are restored when the block ends; a signal arriving while they are being restored is
    re-delivered to them. Outside the main thread this does nothing.
    """
    global _sig_mode, _sig_pending
    if threading.current_thread() is not threading.main_thread() or _sig_mode != "off":
        yield
        return
    previous: dict[int, object] = {}
    _sig_mode, _sig_pending = "raise", None
    try:
        for s in signums:
            prev = signal.getsignal(s)
            if prev is signal.SIG_DFL or prev is signal.default_int_handler:
                signal.signal(s, _on_signal)
                previous[s] = prev
        yield
    finally:
        if _sig_mode == "raise":
            _sig_mode = "closing"
        for s, prev in previous.items():
            signal.signal(s, prev)  # type: ignore[arg-type]
        late = _sig_pending if _sig_mode == "closing" else None
        _sig_mode, _sig_pending = "off", None
        if late is not None:
            signal.raise_signal(late)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a :func:`stop_on_signals` signal back until the block ends (then raise it).

    Used around a cache commit so that a batch is stored whole. Only the main thread's blocks
    count (signals are delivered to the main thread).
    """
    global _sig_defer, _sig_mode, _sig_pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _sig_defer += 1
    try:
        yield
    finally:
        _sig_defer -= 1
        if _sig_defer == 0 and _sig_mode == "raise" and _sig_pending is not None:
            signum, _sig_pending = _sig_pending, None
            _sig_mode = "stopping"
            raise StopSignal(signum)


def _errtext(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _pack(record: Mapping[str, object]) -> bytes:
    buf = io.BytesIO()
    arrays = {k: np.asarray(v) for k, v in record.items()}
    for k, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"cache value {k!r} must be a numeric array or a string, got object dtype")
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_COLUMNS = {"ns", "key", "value"}


class FeatureCache:
    """A persistent mapping ``content_key -> dict of arrays`` inside one namespace.

    Args:
        path: directory (``features.sqlite`` is created inside) or a ``.sqlite`` file path.
        namespace: extractor identity and version, e.g. ``"image/effnet-lite0-224-v1"``; records
            written under another namespace are invisible.

    Attributes:
        path: the database file.
        hits, misses: counters of :meth:`get_many` lookups since construction.
        stored: records committed by :meth:`put_many` since construction.
        problem: ``None``, or why the file cannot be used or written (as in the warning).
        readable, writable: whether lookups / stores still go to the file. Both turn ``False``
            (with one :class:`CacheWarning` naming the file) when the file cannot be used; only
            ``writable`` when it is read-only. A cache that is neither behaves as an empty one.

    Never raises for a bad cache file; thread-safe for use from one process (a lock around the
    connection); safe across processes through SQLite's own locking.
    """

    @staticmethod
    def file_for(path: str | Path) -> Path:
        """The database file a cache at ``path`` (directory or ``.sqlite`` / ``.db`` file) uses."""
        p = Path(path)
        return p if p.suffix in (".sqlite", ".db") else p / "features.sqlite"

    def __init__(self, path: str | Path, namespace: str) -> None:
        p = Path(path)
        is_file = p.suffix in (".sqlite", ".db")
        self.path = self.file_for(p)
        self.namespace = f"{namespace}#fmt{CACHE_FORMAT}"
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.problem: str | None = None
        self.readable = False
        self.writable = False
        self._bad_rows = 0
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        folder = p.parent if is_file else p
        try:
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(20, "it is a file, not a folder", str(folder))
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._give_up(f"its folder {folder} cannot be used ({_errtext(e)})")
            return
        try:
            why = not_sqlite_reason(self.path)
        except OSError as e:
            why = _errtext(e)
        if why:
            self._give_up(why)
            return
        try:
            self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS features (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key))"
            )
            self._con.commit()
            cols = {r[1] for r in self._con.execute("PRAGMA table_info(features)")}
        except sqlite3.Error as e:
            self._give_up(_errtext(e))
            return
        if not _COLUMNS <= cols:
            self._give_up("its table 'features' is not an itemrep feature cache")
            return
        self.readable = self.writable = True

    # -- failure handling ---------------------------------------------------------------------
    def _give_up(self, why: str) -> None:
        """Stop using the file (warned once per file and problem)."""
        self.readable = self.writable = False
        self.problem = why
        if self._con is not None:
            try:
                self._con.close()
            except sqlite3.Error:
                pass
            self._con = None
        hint = "" if why.startswith("its folder") else " (move or delete it to rebuild the cache)"
        warn_once(
            self.path, "unusable",
            f"image feature cache {self.path} cannot be used: {why}{hint}; running without the cache",
        )  # fmt: skip

    def _stop_writing(self, why: str) -> None:
        self.writable = False
        self.problem = f"read-only ({why})"
        warn_once(
            self.path, "read-only",
            f"image feature cache {self.path} is read-only ({why}); cached features are used, new ones are not stored",
        )  # fmt: skip

    # -- mapping surface ----------------------------------------------------------------------
    def get_many(
        self, keys: Iterable[str], *, valid: Callable[[dict[str, np.ndarray]], bool] | None = None
    ) -> dict[str, dict[str, np.ndarray]]:
        """Records found for ``keys``; missing keys and damaged records are absent from the result.

        Args:
            keys: content keys.
            valid: optional check of a record's arrays (names, shapes, dtypes); a record it rejects
                (or raises on) counts as damaged: a miss, recomputed and replaced by the caller.
        """
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, np.ndarray]] = {}
        bad = 0
        with self._lock:
            if self.readable and self._con is not None:
                try:
                    for i in range(0, len(keys), 500):
                        chunk = keys[i : i + 500]
                        q = f"SELECT key, value FROM features WHERE ns = ? AND key IN ({','.join('?' * len(chunk))})"
                        for k, v in self._con.execute(q, [self.namespace, *chunk]):
                            try:
                                rec = _unpack(v)
                                if valid is not None and not valid(rec):
                                    raise ValueError("record rejected by its check")
                            except Exception:  # noqa: BLE001 - a damaged record is a miss, recomputed and replaced
                                bad += 1
                            else:
                                out[k] = rec
                except sqlite3.Error as e:
                    self._give_up(_errtext(e))
        if bad:
            self._bad_rows += bad
            warn_once(
                self.path, "bad-rows",
                f"image feature cache {self.path} holds damaged records; they are recomputed and replaced",
            )  # fmt: skip
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, records: Mapping[str, Mapping[str, object]]) -> int:
        """Store (or replace) records; one transaction. A no-op when the file cannot be written.

        A SIGINT/SIGTERM of a :func:`stop_on_signals` block arriving during the transaction is
        raised after the commit, so the records are stored whole or not at all.

        Returns:
            The number of records stored (0 when the file cannot be written).
        """
        rows = [(self.namespace, k, _pack(r)) for k, r in records.items()]
        with self._lock, signals_deferred():
            if not self.writable or self._con is None or not rows:
                return 0
            try:
                self._con.executemany("INSERT OR REPLACE INTO features (ns, key, value) VALUES (?, ?, ?)", rows)
                self._con.commit()
                self.stored += len(rows)
                return len(rows)
            except sqlite3.Error as e:
                try:
                    self._con.rollback()
                except sqlite3.Error:
                    pass
                msg = _errtext(e)
                if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
                    self._stop_writing(msg)
                elif isinstance(e, sqlite3.OperationalError) and ("full" in msg or "disk i/o" in msg.lower()):
                    self.writable = False
                    self.problem = msg
                    warn_once(self.path, "write", f"image feature cache {self.path}: cannot store records ({msg}); new features are not stored")
                else:
                    self._give_up(msg)
                return 0

    def __len__(self) -> int:
        with self._lock:
            if not self.readable or self._con is None:
                return 0
            try:
                return int(self._con.execute("SELECT COUNT(*) FROM features WHERE ns = ?", [self.namespace]).fetchone()[0])
            except sqlite3.Error as e:
                self._give_up(_errtext(e))
                return 0

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            if self._con is not None:
                try:
                    self._con.close()
                except sqlite3.Error:
                    pass
                self._con = None
            self.readable = self.writable = False

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
