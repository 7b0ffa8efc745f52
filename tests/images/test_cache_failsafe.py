"""A damaged, foreign or read-only feature cache never stops a run (issue 11, item 6).

The cache warns once, naming the file, and the run goes on without it (or without writing to it);
damaged records are misses and get recomputed and replaced.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

import itemrep.cache as cache_mod
from itemrep.cache import CacheWarning, FeatureCache

REC = {"v": np.arange(4, dtype=np.float32), "s": np.array("hello")}


def _cache_warnings(rec) -> list[str]:
    return [str(w.message) for w in rec if issubclass(w.category, CacheWarning)]


def _exercise(c: FeatureCache) -> None:
    """What the image back-end does with a cache: look up, store, count, close."""
    assert c.get_many(["k1", "k2"]) == {}
    c.put_many({"k1": REC})
    assert len(c) >= 0
    c.close()


def test_non_sqlite_file_warns_once_and_runs_without_cache(tmp_path):
    (tmp_path / "features.sqlite").write_text("these are my notes, not a database\n" * 40)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        c = FeatureCache(tmp_path, "image/test-v1")
        _exercise(c)
        FeatureCache(tmp_path, "ocr/test-v1").close()  # the second namespace of the same run: no second warning
    msgs = _cache_warnings(rec)
    assert len(msgs) == 1, msgs
    assert str(tmp_path / "features.sqlite") in msgs[0] and "not a SQLite database" in msgs[0]
    assert "without" in msgs[0]
    assert (tmp_path / "features.sqlite").read_text().startswith("these are my notes")  # the user's file is untouched


def test_cache_dir_that_is_a_file(tmp_path):
    f = tmp_path / "cachefile"
    f.write_text("x")
    with pytest.warns(CacheWarning, match="cachefile"):
        c = FeatureCache(f, "image/test-v1")
    _exercise(c)


def test_corrupt_row_is_a_miss_and_is_rebuilt(tmp_path):
    c = FeatureCache(tmp_path, "image/test-v1")
    c.put_many({"k1": REC, "k2": REC})
    c._con.execute("UPDATE features SET value = ? WHERE key = 'k1'", [b"PK\x03\x04 garbage, not an npz"])
    c._con.commit()
    with pytest.warns(CacheWarning, match="features.sqlite") as rec:
        got = c.get_many(["k1", "k2"])
        got2 = c.get_many(["k1"])  # same problem again: no second warning
    assert set(got) == {"k2"} and got2 == {} and c.misses == 2
    assert len(_cache_warnings(rec)) == 1
    c.put_many({"k1": REC})  # the recomputed record replaces the damaged one
    np.testing.assert_array_equal(c.get_many(["k1"])["k1"]["v"], REC["v"])
    c.close()


def test_malformed_database_pages(tmp_path):
    c = FeatureCache(tmp_path, "image/test-v1")
    c.put_many({str(i): {"v": np.frombuffer(os.urandom(3000), np.uint8)} for i in range(200)})
    c.close()
    p = tmp_path / "features.sqlite"
    b = bytearray(p.read_bytes())
    for off in range(4096 * 3, len(b), 4096):
        b[off : off + 100] = b"\xff" * 100
    p.write_bytes(bytes(b))
    with pytest.warns(CacheWarning, match=str(p)):
        c = FeatureCache(tmp_path, "image/test-v1")
        c.get_many([str(i) for i in range(200)])
        c.put_many({"new": REC})
    c.close()


def test_foreign_sqlite_with_other_table_layout(tmp_path):
    p = tmp_path / "features.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE features (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.warns(CacheWarning, match="features.sqlite"):
        c = FeatureCache(tmp_path, "image/test-v1")
    _exercise(c)


def test_read_only_database_reads_but_does_not_write(tmp_path, monkeypatch):
    c = FeatureCache(tmp_path, "image/test-v1")
    c.put_many({"k1": REC})
    c.close()
    real = sqlite3.connect

    def ro_connect(database, *a, **kw):  # the file turned read-only (works even as root)
        kw["uri"] = True
        return real(f"file:{database}?mode=ro", *a, **kw)

    monkeypatch.setattr(cache_mod.sqlite3, "connect", ro_connect)
    with pytest.warns(CacheWarning, match="read-only") as rec:
        c = FeatureCache(tmp_path, "image/test-v1")
        assert set(c.get_many(["k1", "k2"])) == {"k1"}
        c.put_many({"k2": REC})
        c.put_many({"k3": REC})
        c.close()
    msgs = _cache_warnings(rec)
    assert len(msgs) == 1 and str(tmp_path / "features.sqlite") in msgs[0]


def test_uncreatable_cache_dir(tmp_path, monkeypatch):
    target = tmp_path / "ro" / "itemrep"
    real_mkdir = Path.mkdir

    def deny(self, *a, **kw):
        if str(self).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", deny)
    with pytest.warns(CacheWarning, match="ro/itemrep"):
        c = FeatureCache(target, "image/test-v1")
    _exercise(c)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory_for_real(tmp_path):
    d = tmp_path / "cache"
    c = FeatureCache(d, "image/test-v1")
    c.put_many({"k1": REC})
    c.close()
    os.chmod(d, 0o555)
    os.chmod(d / "features.sqlite", 0o444)
    try:
        with pytest.warns(CacheWarning, match="features.sqlite"):
            c = FeatureCache(d, "image/test-v1")
            c.get_many(["k1"])
            c.put_many({"k2": REC})
            c.close()
    finally:
        os.chmod(d, 0o755)


def test_record_check_rejects_wrong_layout(tmp_path):
    c = FeatureCache(tmp_path, "image/test-v1")
    c.put_many({"good": REC, "short": {"v": np.arange(2, dtype=np.float32), "s": np.array("x")}, "other": {"w": np.zeros(1)}})
    with pytest.warns(CacheWarning, match="damaged"):
        got = c.get_many(["good", "short", "other"], valid=lambda r: r["v"].shape == (4,))
    assert set(got) == {"good"}
    c.close()
