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
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

#: Bumped when the on-disk layout changes.
CACHE_FORMAT = "1"


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


class FeatureCache:
    """A persistent mapping ``content_key -> dict of arrays`` inside one namespace.

    Args:
        path: directory (``features.sqlite`` is created inside) or a ``.sqlite`` file path.
        namespace: extractor identity and version, e.g. ``"image/effnet-lite0-224-v1"``; records
            written under another namespace are invisible.

    Attributes:
        hits, misses: counters of :meth:`get_many` lookups since construction.

    Thread-safe for use from one process (a lock around the connection); safe across processes
    through SQLite's own locking.
    """

    def __init__(self, path: str | Path, namespace: str) -> None:
        p = Path(path)
        if p.suffix not in (".sqlite", ".db"):
            p.mkdir(parents=True, exist_ok=True)
            p = p / "features.sqlite"
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self.namespace = f"{namespace}#fmt{CACHE_FORMAT}"
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(p), timeout=60, check_same_thread=False)
        with self._lock:
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS features (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ns, key))"
            )
            self._con.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """Records found for ``keys`` (missing keys are simply absent from the result)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, np.ndarray]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, value FROM features WHERE ns = ? AND key IN ({','.join('?' * len(chunk))})"
                for k, v in self._con.execute(q, [self.namespace, *chunk]):
                    out[k] = _unpack(v)
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, records: Mapping[str, Mapping[str, object]]) -> None:
        """Store (or replace) records; one transaction."""
        rows = [(self.namespace, k, _pack(r)) for k, r in records.items()]
        with self._lock:
            self._con.executemany("INSERT OR REPLACE INTO features (ns, key, value) VALUES (?, ?, ?)", rows)
            self._con.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT COUNT(*) FROM features WHERE ns = ?", [self.namespace]).fetchone()[0])

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
