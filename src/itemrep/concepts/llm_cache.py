"""SQLite cache of validated LLM answers, so a re-run or an interrupted run resumes without re-asking.

The key is ``(backend, model, prompt_version, image_hash, text_hash)``:

* ``backend``: the back-end and its output-changing settings, e.g. ``"openai/chie-v1|px=200704"``;
* ``model``: the model name or path as given;
* ``prompt_version``: :data:`itemrep.concepts.prompt.PROMPT_VERSION`;
* ``image_hash``: SHA-256 of the image file's bytes (``""`` without image) — the same photo shared by
  two listings or two catalogs is asked about once;
* ``text_hash``: SHA-256 of the exact user text sent (title, text, OCR/labels).

Only answers that passed client-side validation are stored (as the validated JSON), so a hit never
needs re-validation and failures are retried on the next run. Writes are committed per answer (WAL
journal), so a killed run loses at most the answers in flight. The cache is safe to share between
threads of one process (one connection guarded by a lock) and between processes (SQLite locking).

A path that cannot hold the cache (a directory, a file that is not SQLite or holds another program's
``responses`` table, a folder that cannot be created) is an :class:`LLMCacheError` naming the path,
at construction. Problems met later never stop a run: a damaged row is a miss; a database that turns
unreadable or unwritable (read-only file, full disk) gives one :class:`~itemrep.cache.CacheWarning`
naming the file, and the run goes on without reading or storing answers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from itemrep.cache import not_sqlite_reason, warn_once
from itemrep.errors import ItemrepError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    image_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    answer TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    PRIMARY KEY (backend, model, prompt_version, image_hash, text_hash)
)
"""

_COLUMNS = {"backend", "model", "prompt_version", "image_hash", "text_hash", "answer", "prompt_tokens", "completion_tokens", "created"}


class LLMCacheError(ItemrepError, sqlite3.DatabaseError):
    """The LLM response cache path cannot be used (the message names the path and says what to do)."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_hash(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content (read in 1 MiB chunks).

    Raises:
        OSError: when the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


class ResponseCache:
    """A SQLite file of validated LLM answers.

    Args:
        path: the database file; parent folders are created. ``":memory:"`` for a throw-away cache.

    Raises:
        LLMCacheError: (a ``sqlite3.DatabaseError`` and an :class:`~itemrep.errors.ItemrepError`) when
            ``path`` is a directory, exists but is not a SQLite database (or not an itemrep cache), or
            cannot be created; the message names the path.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._readable = self._writable = True
        if self.path != ":memory:":
            self._check_path(Path(self.path))
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as e:
            raise LLMCacheError(f"LLM response cache {self.path} cannot be opened: {e}") from None
        try:
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(responses)")}
        except sqlite3.Error as e:
            self._conn.close()
            raise LLMCacheError(
                f"LLM response cache {self.path} is not usable ({e}); delete or move it, or pass another --llm-cache path"
            ) from None
        if not _COLUMNS <= cols:
            self._conn.close()
            raise LLMCacheError(
                f"LLM response cache {self.path} holds a 'responses' table that is not itemrep's; pass another --llm-cache path"
            )

    @staticmethod
    def _check_path(p: Path) -> None:
        if p.is_dir():
            raise LLMCacheError(
                f"LLM response cache {p} is a directory; pass a file path, e.g. --llm-cache {p / 'llm_cache.sqlite'}"
            )
        parent = p.parent
        try:
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(20, "it is a file, not a folder", str(parent))
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LLMCacheError(
                f"LLM response cache {p}: its folder {parent} cannot be used ({e.strerror or e})"
            ) from None
        try:
            why = not_sqlite_reason(p)
        except OSError as e:
            raise LLMCacheError(f"LLM response cache {p} cannot be read ({e.strerror or e})") from None
        if why:
            raise LLMCacheError(
                f"LLM response cache {p} is {why if why.startswith('not') else 'unusable: ' + why}; "
                "delete or move it, or pass another --llm-cache path"
            )

    def _give_up(self, what: str, e: BaseException) -> None:
        """Stop reading (``what="read"``) or writing (``"write"``) after a database error; warn once."""
        if what == "read":
            self._readable = False
            msg = f"LLM response cache {self.path} cannot be read ({e}); answers are asked again"
        else:
            self._writable = False
            msg = f"LLM response cache {self.path} cannot be written ({e}); new answers are not stored"
        warn_once(self.path, what, msg)

    @staticmethod
    def _key(backend: str, model: str, prompt_version: str, image_hash: str, text_hash: str) -> tuple[str, ...]:
        return (backend, model, prompt_version, image_hash, text_hash)

    def get(self, backend: str, model: str, prompt_version: str, image_hash: str, text_hash: str) -> dict | None:
        """The stored answer (parsed JSON dict) for the key, or ``None`` (also for a damaged row)."""
        with self._lock:
            if not self._readable:
                return None
            try:
                row = self._conn.execute(
                    "SELECT answer FROM responses WHERE backend=? AND model=? AND prompt_version=? "
                    "AND image_hash=? AND text_hash=?",
                    self._key(backend, model, prompt_version, image_hash, text_hash),
                ).fetchone()
            except sqlite3.Error as e:
                self._give_up("read", e)
                return None
        if row is None:
            return None
        try:
            got = json.loads(row[0])
        except (TypeError, ValueError):
            return None
        return got if isinstance(got, dict) else None

    def put(
        self,
        backend: str,
        model: str,
        prompt_version: str,
        image_hash: str,
        text_hash: str,
        answer: dict,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Store (or replace) the validated answer for the key; committed immediately.

        A database that cannot be written (read-only, full disk) is warned about once; the answer
        is then simply not stored.
        """
        row = (
            *self._key(backend, model, prompt_version, image_hash, text_hash),
            json.dumps(answer, ensure_ascii=False, sort_keys=True),
            int(prompt_tokens),
            int(completion_tokens),
            time.time(),
        )
        with self._lock:
            if not self._writable:
                return
            try:
                self._conn.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?)", row)
                self._conn.commit()
            except sqlite3.Error as e:
                try:
                    self._conn.rollback()
                except sqlite3.Error:
                    pass
                self._give_up("write", e)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connection (further calls raise ``sqlite3.ProgrammingError``)."""
        with self._lock:
            self._conn.close()
