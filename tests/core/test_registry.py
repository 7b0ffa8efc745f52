"""The cluster registry: alias resolution, change log, one transaction per batch (both back-ends)."""

import os
import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from itemrep.dedup.registry import (CHANGE_COLUMNS, ClusterRegistry, MemoryRegistry, RegistryError, SQLiteRegistry,
                                    make_registry, register_backend)


@pytest.fixture(params=["sqlite", "memory"])
def reg(request, tmp_path):
    r = make_registry({"type": request.param, "path": "reg.sqlite"} if request.param == "sqlite" else {"type": "memory"},
                      base_dir=tmp_path)
    yield r
    r.close()


def _seed(reg):
    """Three clusters from batch 1 (A oldest id-wise), two items each."""
    with reg.transaction():
        reg.mint_clusters([("cA", "a1", 1, 2), ("cB", "b1", 1, 2), ("cC", "c1", 2, 2)])
        reg.put_assignments(["a1", "a2", "b1", "b2", "c1", "c2"], ["cA", "cA", "cB", "cB", "cC", "cC"], 1,
                            [1.0, 0.9, 1.0, 0.8, 1.0, 0.7])
        reg.set_generation(1)


def test_assignments_and_lookups(reg):
    _seed(reg)
    assert reg.generation == 1 and reg.n_items() == 6
    assert reg.get_clusters(["a2", "b1", "nope"]) == {"a2": "cA", "b1": "cB"}
    info = reg.clusters_info(["cB", "cA"]).set_index("cluster_id")
    assert info.loc["cA", "representative_id"] == "a1" and info.loc["cB", "size"] == 2
    assert reg.has_clusters(["cA", "cX"]) == {"cA"}
    items = reg.get_items(["a2"])
    assert items.iloc[0].to_dict() == {"item_id": "a2", "cluster_id": "cA", "batch": 1, "score": pytest.approx(0.9)}


def test_duplicate_item_and_cluster_are_refused_by_name(reg):
    _seed(reg)
    with pytest.raises(RegistryError, match="'a1'"):
        with reg.transaction():
            reg.put_assignments(["zz", "a1"], ["cA", "cA"], 2)
    assert reg.get_clusters(["zz"]) == {}  # the whole batch rolled back
    with pytest.raises(RegistryError, match="cB.*minted once"):
        with reg.transaction():
            reg.mint_cluster("cB", "x", 2)


def test_alias_resolution_follows_chains(reg):
    _seed(reg)
    with reg.transaction():
        reg.add_alias("cB", "cA")          # B merged into A
        assert reg.reassign("cB", "cA") == 2
    assert reg.resolve(["cB", "cA", "unknown"]) == ["cA", "cA", "unknown"]
    assert reg.get_clusters(["b2"]) == {"b2": "cA"}
    with reg.transaction():
        reg.add_alias("cA", "cC")          # later A merged into C: B must now resolve to C in one step
    assert reg.resolve(["cB", "cA"]) == ["cC", "cC"]
    info = reg.clusters_info().set_index("cluster_id")
    assert info.loc["cB", "alias_of"] == "cC" and info.loc["cA", "alias_of"] == "cC" and info.loc["cC", "alias_of"] is None
    with pytest.raises(RegistryError, match="itself an alias"):
        with reg.transaction():
            reg.add_alias("cC", "cB")
    with pytest.raises(RegistryError, match="does not exist"):
        with reg.transaction():
            reg.add_alias("cZ", "cC")


def test_merge_clusters_moves_items_sizes_and_aliases(reg):
    _seed(reg)
    with reg.transaction():
        reg.merge_clusters([("cB", "cA"), ("cA", "cC")])  # B into A, then A (with B's items) into C
    assert reg.resolve(["cA", "cB", "cC"]) == ["cC", "cC", "cC"]
    # item rows keep the id they were assigned; resolved they are all in C
    assert reg.get_clusters(["a1", "b2", "c1"], resolve=False) == {"a1": "cA", "b2": "cB", "c1": "cC"}
    assert set(reg.get_clusters(["a1", "b2", "c1"]).values()) == {"cC"}
    info = reg.clusters_info().set_index("cluster_id")
    assert info["size"].to_dict() == {"cA": 0, "cB": 0, "cC": 6}
    assert info.loc["cB", "alias_of"] == "cC" and info.loc["cA", "alias_of"] == "cC"  # chains stay one step long
    with pytest.raises(RegistryError, match="does not exist|one cluster already"):
        with reg.transaction():
            reg.merge_clusters([("cZ", "cC")])
    with pytest.raises(RegistryError):
        with reg.transaction():
            reg.merge_clusters([("cB", "cC")])  # B is C already
    assert reg.clusters_info(["cC"]).iloc[0]["size"] == 6


def test_change_log_in_order_and_by_batch(reg):
    _seed(reg)
    with reg.transaction():
        reg.record_changes([{"batch": 1, "kind": "new", "cluster_id": "cA", "item_id": "a1", "reason": "build"},
                            {"batch": 2, "kind": "merge", "cluster_id": "cA", "other_id": "cB", "item_id": "x", "reason": "bridge"},
                            {"batch": 2, "kind": "alias", "cluster_id": "cB", "other_id": "cA", "item_id": "x", "reason": "merged"}])
    ch = reg.changes()
    assert list(ch.columns) == CHANGE_COLUMNS and list(ch["kind"]) == ["new", "merge", "alias"]
    assert ch["time"].notna().all()
    b2 = reg.changes(batch=2)
    assert list(b2["kind"]) == ["merge", "alias"] and b2.iloc[0]["other_id"] == "cB"


def test_transaction_rollback_and_write_outside(reg):
    _seed(reg)
    with pytest.raises(RegistryError, match="outside a transaction"):
        reg.set_meta("k", "v")
    with pytest.raises(KeyboardInterrupt):
        with reg.transaction():
            reg.mint_cluster("cN", "n1", 2, 1)
            reg.put_assignments(["n1"], ["cN"], 2)
            reg.add_sizes({"cA": 5})
            reg.record_changes([{"batch": 2, "kind": "new", "cluster_id": "cN"}])
            reg.set_generation(2)
            raise KeyboardInterrupt  # Ctrl-C mid-batch
    assert reg.generation == 1 and reg.get_clusters(["n1"]) == {} and reg.has_clusters(["cN"]) == set()
    assert reg.clusters_info(["cA"]).iloc[0]["size"] == 2 and len(reg.changes()) == 0
    assert not reg.in_transaction
    reg.begin()
    with pytest.raises(RegistryError, match="already open"):
        reg.begin()
    reg.rollback()


def test_sqlite_persists_commits_and_drops_a_killed_transaction(tmp_path):
    path = tmp_path / "reg.sqlite"
    r = SQLiteRegistry(path)
    _seed(r)
    r.close()
    # a process killed (os._exit) inside a transaction: nothing of it survives
    code = textwrap.dedent(f"""
        import os
        from itemrep.dedup.registry import SQLiteRegistry
        r = SQLiteRegistry({str(path)!r})
        r.begin()
        r.put_assignments(["k1"], ["cA"], 2)
        r.set_generation(2)
        os._exit(9)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 9, p.stderr
    r = SQLiteRegistry(path, create=False)
    assert r.generation == 1 and r.get_clusters(["k1"]) == {} and r.get_clusters(["a1"]) == {"a1": "cA"}
    assert r._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    r.close()
    ro = SQLiteRegistry(path, readonly=True)
    assert ro.n_items() == 6
    with pytest.raises(RegistryError, match="read-only"):
        ro.begin()
    ro.close()


def test_sqlite_errors_name_the_path(tmp_path):
    with pytest.raises(RegistryError, match="missing.sqlite.*not found"):
        SQLiteRegistry(tmp_path / "missing.sqlite", create=False)
    bad = tmp_path / "other.sqlite"
    con = sqlite3.connect(bad)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('format', '99')")
    con.commit()
    con.close()
    with pytest.raises(RegistryError, match=r"other\.sqlite: registry format 99, this itemrep reads formats 1 and 2"):
        SQLiteRegistry(bad)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(RegistryError, match="junk.sqlite"):
        SQLiteRegistry(junk)


def test_factory_and_pluggable_backends(tmp_path):
    with pytest.raises(RegistryError, match="unknown registry type 'redis'; known: memory, sqlite"):
        make_registry({"type": "redis"})

    class Custom(MemoryRegistry):
        def __init__(self, label):
            super().__init__()
            self.label = label

    register_backend("custom", Custom)
    r = make_registry({"type": "custom", "label": "x"})
    assert isinstance(r, ClusterRegistry) and r.label == "x"
    with pytest.raises(TypeError):
        register_backend("bad", dict)
    assert isinstance(make_registry({"type": "sqlite", "path": "a/b.sqlite"}, base_dir=tmp_path), SQLiteRegistry)
    assert (tmp_path / "a" / "b.sqlite").is_file()


def test_items_frame_and_sizes(reg):
    _seed(reg)
    with reg.transaction():
        reg.add_sizes({"cA": 3, "cB": -1})
    info = reg.clusters_info().set_index("cluster_id")["size"].to_dict()
    assert info == {"cA": 5, "cB": 1, "cC": 2}
    df = reg.items_frame(batch=1)
    assert isinstance(df, pd.DataFrame) and len(df) == 6 and set(df["cluster_id"]) == {"cA", "cB", "cC"}
    assert len(reg.items_frame(batch=7)) == 0


def test_format_1_registry_is_upgraded_by_a_writer(tmp_path):
    """A format-1 file (item rows rewritten on merges, items.cluster_id indexed) reads the same;
    the first write transaction drops the index and marks it format 2; an unknown format is
    refused by name."""
    p = tmp_path / "reg.sqlite"
    r = SQLiteRegistry(p)
    _seed(r)
    r.close()
    con = sqlite3.connect(p)
    con.execute("CREATE INDEX items_cluster ON items(cluster_id)")
    con.execute("UPDATE meta SET value='1' WHERE key='format'")
    con.commit()
    con.close()
    ro = SQLiteRegistry(p, readonly=True)
    assert ro.get_clusters(["a2"]) == {"a2": "cA"} and ro.get_meta("format") == "1"
    ro.close()
    rw = SQLiteRegistry(p)
    assert rw.get_meta("format") == "1" and rw.get_clusters(["b2"]) == {"b2": "cB"}  # opening writes nothing
    with rw.transaction():
        rw.set_generation(2)
    assert rw.get_meta("format") == "2"  # the first write transaction upgrades
    rw.close()
    con = sqlite3.connect(p)
    assert con.execute("SELECT name FROM sqlite_master WHERE type='index' AND name='items_cluster'").fetchone() is None
    con.execute("UPDATE meta SET value='9' WHERE key='format'")
    con.commit()
    con.close()
    with pytest.raises(RegistryError, match="registry format 9"):
        SQLiteRegistry(p)
