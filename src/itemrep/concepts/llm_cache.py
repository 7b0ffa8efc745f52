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
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

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
        sqlite3.DatabaseError: when ``path`` exists but is not a SQLite database (message names the file).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as e:
            raise sqlite3.DatabaseError(f"LLM cache {self.path} is not usable: {e}") from None

    @staticmethod
    def _key(backend: str, model: str, prompt_version: str, image_hash: str, text_hash: str) -> tuple[str, ...]:
        return (backend, model, prompt_version, image_hash, text_hash)

    def get(self, backend: str, model: str, prompt_version: str, image_hash: str, text_hash: str) -> dict | None:
        """The stored answer (parsed JSON dict) for the key, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT answer FROM responses WHERE backend=? AND model=? AND prompt_version=? "
                "AND image_hash=? AND text_hash=?",
                self._key(backend, model, prompt_version, image_hash, text_hash),
            ).fetchone()
        return None if row is None else json.loads(row[0])

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
        """Store (or replace) the validated answer for the key; committed immediately."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    *self._key(backend, model, prompt_version, image_hash, text_hash),
                    json.dumps(answer, ensure_ascii=False, sort_keys=True),
                    int(prompt_tokens),
                    int(completion_tokens),
                    time.time(),
                ),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connection (further calls raise ``sqlite3.ProgrammingError``)."""
        with self._lock:
            self._conn.close()
