"""The persistent dedup index: build -> add keeps old ids, bridge merges, lookup writes nothing,
a killed `add` leaves the index as it was, shuffled rows give the same ids, the CLI."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from itemrep.catalog import Catalog
from itemrep.dedup.index import HOOK_ENV, INDEX_FILE, ClusterIndex, IndexDirError
from itemrep.dedup.metrics import mean_item_f1
from itemrep.dedup.registry import CHANGE_COLUMNS

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = FIX / "catalog_small.csv"
runner = CliRunner()


def _small() -> Catalog:
    return Catalog.load(SMALL, label_col="label")


def _model():
    from itemrep.dedup.pipeline import FITRep

    return FITRep.default()


def _tree_digest(d: Path) -> dict:
    """path -> sha256 of every file under d, except SQLite's shared-memory file and the writer lock."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.name.endswith("-shm") and p.name != ".lock":
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _registry_dump(idx: ClusterIndex) -> tuple:
    reg = idx.registry
    items = reg.items_frame().sort_values("item_id").reset_index(drop=True)
    clusters = reg.clusters_info().sort_values("cluster_id").reset_index(drop=True)
    ch = reg.changes().drop(columns="time")
    return (reg.generation, reg.get_meta("manifest"), items.to_csv(), clusters.to_csv(), ch.to_csv())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of the first 30 listings of the small catalog (built-in model)."""
    d = tmp_path_factory.mktemp("index") / "idx"
    ClusterIndex.build(_small().subset(range(30)), _model(), d).close()
    return d


@pytest.fixture
def index_copy(built, tmp_path):
    import shutil

    d = tmp_path / "idx"
    shutil.copytree(built, d)
    return d


# ---------------------------------------------------------------- build / add with the real model
def test_build_then_add_keeps_old_ids(index_copy, tmp_path):
    cat = _small()
    with ClusterIndex.open(index_copy) as idx:
        before = idx.assignments().set_index("item_id")["cluster_id"]
        assert idx.generation == 1 and idx.n_rows == 30
        res = idx.add(cat.subset(range(30, 43)))
        assert res.batch == 2 and idx.generation == 2 and idx.n_rows == 43
        after = idx.assignments().set_index("item_id")["cluster_id"]
        changes = idx.changes()
    merged = set(changes.loc[changes["kind"] == "alias", "cluster_id"])
    for item, cid in before.items():  # every old id unchanged, or aliased by a logged merge
        assert after[item] == cid or (cid in merged), item
    assert set(res.clusters["item_id"]) == set(cat.ids[30:])
    assert set(res.clusters["match"]) <= {"existing", "new"}
    # the new listings' clusters: joined the old ones or new ids, and the result is as good as one batch dedup
    f1_incr = mean_item_f1(cat.labels, after.loc[cat.ids].tolist())
    f1_batch = mean_item_f1(cat.labels, _model().dedup(cat).clusters["cluster_id"].tolist())
    assert f1_incr >= f1_batch - 0.05, (f1_incr, f1_batch)
    out = tmp_path / "out"
    res.write(out)
    cl = pd.read_parquet(out / "clusters.parquet")
    assert list(cl.columns) == ["item_id", "cluster_id", "representative_id", "score", "match"] and len(cl) == 13
    ch = pd.read_parquet(out / "changes.parquet")
    assert list(ch.columns) == CHANGE_COLUMNS and (ch["batch"] == 2).all()
    assert set(ch.loc[ch["kind"] == "new", "cluster_id"]) == set(cl.loc[cl["match"] == "new", "cluster_id"])
    # reopening sees the committed state
    with ClusterIndex.open(index_copy, readonly=True) as idx:
        assert idx.generation == 2 and idx.assignments().set_index("item_id")["cluster_id"].equals(after)


def test_adding_an_indexed_id_is_refused_by_name(index_copy):
    cat = _small()
    with ClusterIndex.open(index_copy) as idx:
        with pytest.raises(IndexDirError, match=r"item 'p005' is already in the index"):
            idx.add(cat.subset([4, 35]))
        assert idx.generation == 1 and idx.n_rows == 30
        res = idx.add(cat.subset([4, 35]), existing="skip")
        assert res.stats["n_skipped_existing"] == 1 and list(res.clusters["item_id"]) == ["p036"]
        res = idx.add(cat.subset([4]), existing="skip")
        assert res.stats["committed"] is False and idx.generation == 2


def test_add_batches_equals_add_one_by_one(built, tmp_path):
    """Encoding the next batch ahead (add_batches) changes nothing: same generations, ids, scores,
    registry and change log as calling add on each batch in turn."""
    import shutil

    cat = _small()
    parts = cat.subset(range(30, 43)).batches(5)
    assert [len(p) for p in parts] == [5, 5, 3]
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(built, a)
    shutil.copytree(built, b)
    with ClusterIndex.open(a) as idx:
        one = [idx.add(p) for p in parts]
        dump_a = _registry_dump(idx)
    with ClusterIndex.open(b) as idx:
        streamed = list(idx.add_batches(parts))
        dump_b = _registry_dump(idx)
    assert [r.batch for r in streamed] == [2, 3, 4]
    assert [r.stats["encode_overlapped"] for r in streamed] == [True, True, True]
    for x, y in zip(one, streamed):
        pd.testing.assert_frame_equal(x.clusters, y.clusters)
    assert dump_a == dump_b
    comb = pd.concat([r.clusters for r in streamed], ignore_index=True)
    assert sorted(comb["item_id"]) == sorted(cat.ids[30:])


def test_add_batches_stops_at_a_refused_batch(index_copy):
    """A batch with an indexed id (existing='error') is refused by name; the batches before it
    stay committed, the ones after it are not started."""
    cat = _small()
    parts = [cat.subset(range(30, 35)), cat.subset([3, 36]), cat.subset(range(37, 40))]
    with ClusterIndex.open(index_copy) as idx:
        done = []
        with pytest.raises(IndexDirError, match=r"item 'p004' is already in the index"):
            for r in idx.add_batches(parts):
                done.append(r.batch)
        assert done == [2] and idx.generation == 2 and idx.n_rows == 35
        res = list(idx.add_batches(parts[1:], existing="skip"))
        assert [r.stats["n_items"] for r in res] == [1, 3] and [r.stats["encode_overlapped"] for r in res] == [True, True]


def test_lookup_writes_nothing_and_agrees_with_add(index_copy):
    cat = _small()
    digest = _tree_digest(index_copy)
    with ClusterIndex.open(index_copy, readonly=True) as idx:
        dump = _registry_dump(idx)
        res = idx.lookup(cat.subset([0, 30, 31, 32, 42]))
        assert list(res.columns) == ["item_id", "cluster_id", "representative_id", "score", "match"]
        assert list(res["item_id"]) == ["p001", "p031", "p032", "p033", "p043"]
        assert res.iloc[0]["match"] == "indexed"
        assert res.iloc[0]["cluster_id"] == idx.registry.get_clusters(["p001"])["p001"]
        with pytest.raises(IndexDirError, match="read-only"):
            idx.add(cat.subset([35]))
        assert _registry_dump(idx) == dump
    assert _tree_digest(index_copy) == digest
    with ClusterIndex.open(index_copy) as idx:
        added = idx.add(cat.subset(range(30, 43))).clusters.set_index("item_id")
    for _, r in res[res["match"] == "existing"].iterrows():
        assert added.loc[r["item_id"], "cluster_id"] == r["cluster_id"]


def _run_add_and_kill(index_dir: Path, batch_csv: Path, out: Path, point: str, tmp_path: Path) -> None:
    flag = tmp_path / f"flag-{point}"
    env = dict(os.environ, **{HOOK_ENV: f"{point}:{flag}", HOOK_ENV + "_SLEEP": "300"})
    p = subprocess.Popen([sys.executable, "-m", "itemrep.index_cli", "add", str(batch_csv), "--index", str(index_dir),
                          "--out", str(out), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not flag.exists():
            if p.poll() is not None:
                raise AssertionError(f"add ended before reaching {point}: {p.communicate()[1].decode()[-2000:]}")
            if time.time() > deadline:
                raise AssertionError(f"add never reached {point}")
            time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_search", "in_transaction"])
def test_kill_during_add_leaves_the_index_unchanged(index_copy, tmp_path, point):
    import shutil

    cat = _small()
    batch_csv = tmp_path / "batch.csv"
    pd.read_csv(SMALL, dtype=str, keep_default_na=False).iloc[30:].to_csv(batch_csv, index=False)
    pristine = tmp_path / "pristine"
    shutil.copytree(index_copy, pristine)
    with ClusterIndex.open(index_copy, readonly=True) as idx:
        dump = _registry_dump(idx)
    digest = _tree_digest(index_copy)

    _run_add_and_kill(index_copy, batch_csv, tmp_path / "out", point, tmp_path)

    # the killed batch left files of generation 2 behind; the registry still says generation 1
    assert (index_copy / "segments" / "g00000002").exists()
    with ClusterIndex.open(index_copy, readonly=True) as idx:  # a reader ignores them
        assert _registry_dump(idx) == dump and idx.n_rows == 30
    with ClusterIndex.open(index_copy) as idx:  # a writer removes them
        assert _registry_dump(idx) == dump
    assert _tree_digest(index_copy) == digest
    # and the batch re-runs to the same result as on an index that never crashed
    with ClusterIndex.open(index_copy) as idx:
        redo = idx.add(cat.subset(range(30, 43))).clusters
    with ClusterIndex.open(pristine) as idx:
        clean = idx.add(cat.subset(range(30, 43))).clusters
    pd.testing.assert_frame_equal(redo, clean)


def test_ctrl_c_during_add_rolls_back(index_copy, monkeypatch):
    import itemrep.dedup.index as ix

    cat = _small()
    with ClusterIndex.open(index_copy) as idx:
        dump = _registry_dump(idx)

        def interrupt(point):
            if point == "in_transaction":
                raise KeyboardInterrupt

        monkeypatch.setattr(ix, "_hook", interrupt)
        with pytest.raises(KeyboardInterrupt):
            idx.add(cat.subset(range(30, 43)))
        assert _registry_dump(idx) == dump and idx.n_rows == 30 and idx.generation == 1
        assert not (index_copy / "segments" / "g00000002").exists()
        monkeypatch.setattr(ix, "_hook", lambda point: None)
        assert idx.add(cat.subset(range(30, 43))).batch == 2  # the in-memory state was restored


def test_shuffled_rows_give_the_same_ids(tmp_path):
    cat = _small()
    perm = np.random.default_rng(3).permutation(30)
    perm2 = 30 + np.random.default_rng(4).permutation(13)
    results = []
    for name, first, second in (("a", range(30), range(30, 43)), ("b", perm, perm2)):
        with ClusterIndex.build(cat.subset(first), _model(), tmp_path / name) as idx:
            idx.add(cat.subset(second))
            results.append(idx.assignments().sort_values("item_id").reset_index(drop=True))
    pd.testing.assert_frame_equal(results[0], results[1])


# ---------------------------------------------------------------- exact rules with a small stand-in model
@dataclass
class _Encoded:
    ids: np.ndarray
    slots: object
    vectors: np.ndarray
    keys: np.ndarray
    concepts: object = None
    failures: list = field(default_factory=list)


class ToyModel:
    """The FITRep interface with a transparent score: 0.7 cos(title char n-grams) + 0.3 cos(phash)."""

    W = (0.7, 0.3)

    def __init__(self, threshold=0.87, guard_margin=0.1, k=10):
        self.threshold, self.guard_margin, self.k, self.guard = threshold, guard_margin, k, True

    def fit_encoders(self, catalog):
        return self

    def fit_transform(self, catalog):
        return self.fit_encoders(catalog).transform(catalog)

    def transform(self, catalog):
        from sklearn.feature_extraction.text import HashingVectorizer

        from itemrep.dedup.slots import SlotSet, phash_bits

        items = sorted(catalog.items, key=lambda it: it.item_id)
        titles = [it.title.lower() for it in items]
        hv = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=2**18, alternate_sign=False, norm="l2")
        t = hv.transform(titles).astype(np.float32).tocsr()
        t.sort_indices()
        ph = phash_bits([it.phash for it in items])
        slots = SlotSet(matrices={"title": t, "phash": ph}, levels={"title": "primary", "phash": "primary"})
        v = np.hstack([np.sqrt(self.W[0]) * t.toarray(), np.sqrt(self.W[1]) * ph]).astype(np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return _Encoded(ids=np.asarray([it.item_id for it in items], dtype=object), slots=slots, vectors=v,
                        keys=np.asarray([int(hashlib.sha256(f"{t}|{it.phash}".encode()).hexdigest()[:15], 16)
                                         for t, it in zip(titles, items)], dtype=np.uint64))

    def score_pairs(self, slots, i, j):
        terms = slots.pair_cosines(i, j) * np.asarray(self.W, np.float32)[None, :]
        return terms.sum(axis=1), terms

    def save(self, d):
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "model.json").write_text(json.dumps({"threshold": self.threshold, "guard_margin": self.guard_margin, "k": self.k}))

    @classmethod
    def load(cls, d):
        return cls(**json.loads((Path(d) / "model.json").read_text()))


def _cat(rows: dict) -> Catalog:
    return Catalog.from_frame(pd.DataFrame({"item_id": list(rows), "title": list(rows.values()), "phash": "c3d4e5f60718293a"}))


# pairwise toy scores: a*-a* 0.95, b*-b* 0.95, a*-b* 0.76..0.84 (< τ 0.87), x-a* 0.89/0.93, x-b* 0.90/0.94
A = {"a1": "blue cotton shirt slim", "a2": "blue cotton shirt slim fit"}
B = {"b1": "blue cotton shirt loose", "b2": "blue cotton shirts loose"}
X = {"x": "blue cotton shirt slim loose"}


def _toy_index(tmp_path, tau_merge):
    idx = ClusterIndex.build(_cat(A), ToyModel(), tmp_path / "toy", tau_merge=tau_merge)
    idx.add(_cat(B))  # B is younger: created in batch 2
    return idx


def test_bridge_merge_keeps_the_older_id_and_logs_the_alias(tmp_path):
    with _toy_index(tmp_path, tau_merge=0.88) as idx:
        a = idx.assignments().set_index("item_id")["cluster_id"]
        ca, cb = a["a1"], a["b1"]
        assert ca == a["a2"] and cb == a["b2"] and ca != cb
        res = idx.add(_cat(X))
        assert res.stats["n_merges"] == 1
        assert res.clusters.set_index("item_id").loc["x", "cluster_id"] == ca
        after = idx.assignments().set_index("item_id")["cluster_id"]
        assert set(after) == {ca}  # B's items moved to the survivor
        assert idx.registry.resolve([cb]) == [ca]
        ch = res.changes.set_index("kind")
        assert ch.loc["merge", "cluster_id"] == ca and ch.loc["merge", "other_id"] == cb and ch.loc["merge", "item_id"] == "x"
        assert ch.loc["alias", "cluster_id"] == cb and ch.loc["alias", "other_id"] == ca
        sizes = idx.registry.clusters_info([ca, cb]).set_index("cluster_id")["size"]
        assert sizes[ca] == 5 and sizes[cb] == 0
        # lookups of B's items and of a near-copy of b1 answer with the survivor
        look = idx.lookup(_cat({"b2": "blue cotton shirts loose", "b9": "blue cotton shirt loose"})).set_index("item_id")
        assert look.loc["b2", "cluster_id"] == ca and look.loc["b9", "cluster_id"] == ca
        assert look.loc["b2", "match"] == "indexed" and look.loc["b9", "match"] == "existing"


def test_combined_batches_show_live_ids_after_a_later_merge(tmp_path):
    """add_batches of B then X (X merges B into A): the combined output gives B's rows the
    survivor's id and representative, and a NaN score (their score was to B's representative)."""
    from itemrep.dedup.index import AddResult

    idx = ClusterIndex.build(_cat(A), ToyModel(), tmp_path / "toy", tau_merge=0.88)
    with idx:
        res = list(idx.add_batches([_cat(B), _cat(X)]))
        assert [r.batch for r in res] == [2, 3] and res[1].stats["n_merges"] == 1
        ca = idx.assignments().set_index("item_id").loc["a1", "cluster_id"]
        comb = AddResult.combine(res, idx.registry)
    cl = comb.clusters.set_index("item_id")
    assert set(cl["cluster_id"]) == {ca} and (cl.loc[["b1", "b2"], "representative_id"] == "a1").all()
    assert cl.loc[["b1", "b2"], "score"].isna().all() and cl.loc["x", "score"] > 0.87
    assert cl["score"].dtype == np.float32 and comb.batch == 3 and comb.stats["n_merges"] == 1
    assert [b["batch"] for b in comb.stats["batches"]] == [2, 3]


def test_bridge_below_tau_merge_does_not_merge(tmp_path):
    with _toy_index(tmp_path, tau_merge=0.95) as idx:
        a = idx.assignments().set_index("item_id")["cluster_id"]
        res = idx.add(_cat(X))
        assert res.stats["n_merges"] == 0 and res.stats["n_bridges_rejected"] == 1
        assert res.clusters.set_index("item_id").loc["x", "cluster_id"] == a["b1"]  # its best edge (0.94)
        assert list(res.changes["kind"]) == ["bridge_rejected"]
        assert "τ_merge 0.950" in res.changes.iloc[0]["reason"]
        after = idx.assignments().set_index("item_id")["cluster_id"]
        assert after[list(A) + list(B)].equals(a[list(A) + list(B)])


def test_new_items_cluster_among_themselves_once(tmp_path):
    with ClusterIndex.build(_cat(A), ToyModel(), tmp_path / "toy") as idx:
        res = idx.add(_cat({"h1": "red wool hat", "h2": "red wool hats", "h3": "green canvas bag"}))
        cl = res.clusters.set_index("item_id")
        assert (cl["match"] == "new").all()
        assert cl.loc["h1", "cluster_id"] == cl.loc["h2", "cluster_id"] != cl.loc["h3", "cluster_id"]
        news = res.changes[res.changes["kind"] == "new"]
        assert sorted(news["cluster_id"]) == sorted(set(cl["cluster_id"]))
        # a later item joins the minted id; the id does not move
        res2 = idx.add(_cat({"h4": "red wool hat"}))
        assert res2.clusters.iloc[0]["cluster_id"] == cl.loc["h1", "cluster_id"]
        assert res2.clusters.iloc[0]["match"] == "existing" and len(res2.changes) == 0


class ToyRuleModel(ToyModel):
    """ToyModel whose clusterer has the nearest-neighbour rule (threshold 0.8, always applied)."""

    def __init__(self, threshold=0.87, guard_margin=0.1, k=10, nn=0.8):
        super().__init__(threshold, guard_margin, k)
        from itemrep.dedup.cluster import NearDuplicateClusterer

        self.clusterer = NearDuplicateClusterer(threshold=threshold, k=k, guard_margin=guard_margin, nn_threshold=nn)


@pytest.mark.parametrize("rule", [True, False])
def test_add_applies_the_nearest_neighbour_rule_as_build_did(tmp_path, rule):
    # toy scores: y-a1 0.833, y-a2 0.79, y-b* < 0.7 (all < τ 0.87); g1-g2 0.831 (< τ), far from the rest
    model = ToyRuleModel() if rule else ToyModel()
    with ClusterIndex.build(_cat({**A, **B}), model, tmp_path / "toy") as idx:
        assert (json.loads((tmp_path / "toy" / INDEX_FILE).read_text())["nn_rule"] or {}).get("applied", False) is rule
        a = idx.assignments().set_index("item_id")["cluster_id"]
        new = _cat({"y": "blue cotton polo slim", "g1": "green canvas bag", "g2": "green canvas tote"})
        looked = idx.lookup(new).set_index("item_id")
        res = idx.add(new)
        cl = res.clusters.set_index("item_id")
        if rule:  # y's best candidate (a1, 0.833 >= 0.8) is an edge; so is g1-g2, each other's best
            assert cl.loc["y", "cluster_id"] == a["a1"] and cl.loc["y", "match"] == "existing"
            assert looked.loc["y", "cluster_id"] == a["a1"] and looked.loc["y", "match"] == "existing"
            assert cl.loc["g1", "cluster_id"] == cl.loc["g2", "cluster_id"]
        else:
            assert cl.loc["y", "match"] == "new" and looked.loc["y", "match"] == "none"
            assert cl.loc["g1", "cluster_id"] != cl.loc["g2", "cluster_id"]
        assert res.stats["n_merges"] == 0
        after = idx.assignments().set_index("item_id")["cluster_id"]
        assert after[list(A) + list(B)].equals(a[list(A) + list(B)])  # indexed items never move


# ---------------------------------------------------------------- errors
def test_open_errors_name_the_path(tmp_path, built):
    with pytest.raises(IndexDirError, match=r"nowhere: index directory not found"):
        ClusterIndex.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexDirError, match=r"empty: not an itemrep index"):
        ClusterIndex.open(tmp_path / "empty")
    import shutil

    d = tmp_path / "v99"
    shutil.copytree(built, d)
    meta = json.loads((d / INDEX_FILE).read_text())
    (d / INDEX_FILE).write_text(json.dumps(dict(meta, format=99)))
    with pytest.raises(IndexDirError, match=r"v99/index.json: index format 99, this itemrep reads format 1"):
        ClusterIndex.open(d)
    for bad in ("yes", {"applied": True, "threshold": "0.3"}, {"applied": True}, {"applied": "true", "threshold": 0.3},
                {"applied": True, "threshold": float("nan")}):
        (d / INDEX_FILE).write_text(json.dumps(dict(meta, nn_rule=bad)))
        with pytest.raises(IndexDirError, match=r"v99/index.json: nn_rule must be null or"):
            ClusterIndex.open(d)
    with pytest.raises(IndexDirError, match=r"an index exists here already"):
        ClusterIndex.build(_cat(A), ToyModel(), built)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    with pytest.raises(IndexDirError, match=r"foreign: directory is not empty and not an itemrep index \(notes.txt\)"):
        ClusterIndex.build(_cat(A), ToyModel(), tmp_path / "foreign")


# ---------------------------------------------------------------- CLI
def test_cli_build_add_lookup(tmp_path):
    from itemrep.index_cli import app

    df = pd.read_csv(SMALL, dtype=str, keep_default_na=False)
    df.iloc[:30].to_csv(tmp_path / "day1.csv", index=False)
    df.iloc[30:].to_csv(tmp_path / "day2.csv", index=False)
    idx, out = tmp_path / "idx", tmp_path / "out"
    r = runner.invoke(app, ["build", str(tmp_path / "day1.csv"), "--index", str(idx), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "30 items ->" in r.output
    r = runner.invoke(app, ["build", str(tmp_path / "day1.csv"), "--index", str(idx), "--quiet"])
    assert r.exit_code == 2 and "an index exists here already" in r.output
    r = runner.invoke(app, ["add", str(tmp_path / "day2.csv"), "--index", str(idx), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert {"clusters.parquet", "changes.parquet", "run.json"} <= {p.name for p in out.iterdir()}
    r = runner.invoke(app, ["add", str(tmp_path / "day2.csv"), "--index", str(idx), "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "is already in the index" in r.output
    r = runner.invoke(app, ["lookup", str(tmp_path / "day2.csv"), "--index", str(idx)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "item_id,cluster_id,representative_id,score,match" and len(lines) == 14
    r = runner.invoke(app, ["lookup", str(tmp_path / "day2.csv"), "--index", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "missing: index directory not found" in r.output


def test_cli_add_in_batches(tmp_path):
    """--batch-size commits one generation per batch and writes all of them, with live ids."""
    from itemrep.index_cli import app

    df = pd.read_csv(SMALL, dtype=str, keep_default_na=False)
    df.iloc[:30].to_csv(tmp_path / "day1.csv", index=False)
    df.iloc[30:].to_csv(tmp_path / "day2.csv", index=False)
    idx, out = tmp_path / "idx", tmp_path / "out"
    assert runner.invoke(app, ["build", str(tmp_path / "day1.csv"), "--index", str(idx), "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["add", str(tmp_path / "day2.csv"), "--index", str(idx), "--out", str(out), "--quiet",
                            "--batch-size", "4", "--nprobe", "8"])
    assert r.exit_code == 0, r.output
    assert r.output.count("batch ") >= 4
    cl = pd.read_parquet(out / "clusters.parquet")
    run = json.loads((out / "run.json").read_text())
    assert len(cl) == 13 and [b["batch"] for b in run["batches"]] == [2, 3, 4, 5] and run["n_items"] == 13
    with ClusterIndex.open(idx, readonly=True) as ix:
        assert ix.generation == 5
        live = ix.assignments().set_index("item_id")["cluster_id"]
    assert (cl.set_index("item_id")["cluster_id"] == live.loc[cl["item_id"]]).all()


def test_cli_add_checks_out_before_committing(tmp_path):
    """An --out that is a file fails before the batch is committed: the index keeps its generation."""
    from itemrep.index_cli import app

    df = pd.read_csv(SMALL, dtype=str, keep_default_na=False)
    df.iloc[:30].to_csv(tmp_path / "day1.csv", index=False)
    df.iloc[30:].to_csv(tmp_path / "day2.csv", index=False)
    idx, bad = tmp_path / "idx", tmp_path / "file"
    bad.write_text("x")
    assert runner.invoke(app, ["build", str(tmp_path / "day1.csv"), "--index", str(idx), "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["add", str(tmp_path / "day2.csv"), "--index", str(idx), "--out", str(bad), "--quiet"])
    assert r.exit_code == 2 and "not a directory" in r.output
    with ClusterIndex.open(idx) as ix:
        assert ix.registry.generation == 1
