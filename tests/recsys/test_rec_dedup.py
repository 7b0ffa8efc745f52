"""Issue 13, parts 2 and 3: de-duplicated top-K lists, cluster metrics, shared cluster embeddings.

Fixtures: the planted-group synthetic dataset of conftest.py (item ``i`` is in group ``i % 4``;
users of group ``g`` like group-``g`` items) with clusters of two same-group items
``{i, i + 4}`` -- near-duplicates that share taste.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from itemrep.recsys.cli import app
from itemrep.recsys.clusters import ItemClusters, clusters_from_labels, dataset_item_ids, hold_out_cluster_items, load_clusters
from itemrep.recsys.data import RecDataError, RecDataset
from itemrep.recsys.evaluator import TopKEvaluator
from itemrep.recsys.models import BPRMF, build_model
from itemrep.recsys.rerank import dedup_topk, mmr_topk, rank_topk
from itemrep.recsys.trainer import Trainer

FAST = {"epochs": 30, "stopping_step": 30, "train_batch_size": 256, "learning_rate": 0.01, "threads": 1}
N_ITEMS = 60
#: pairs {i, i+4} of same-group items: 30 clusters of 2
PAIRS = (np.arange(N_ITEMS) % 4) + 4 * (np.arange(N_ITEMS) // 8)


def _greedy(scores: np.ndarray, cluster_of: np.ndarray, k: int) -> list[int]:
    """Reference: walk the ranking, skip items whose cluster is already shown."""
    out, shown = [], set()
    for i in np.argsort(-scores, kind="stable"):
        if cluster_of[i] not in shown:
            out.append(int(i))
            shown.add(cluster_of[i])
        if len(out) == k:
            break
    return out


# ----------------------------------------------------------------------------- list policies
def test_dedup_topk_is_the_greedy_walk_with_distinct_clusters():
    rng = np.random.default_rng(0)
    cl = rng.integers(0, 12, size=40)
    cl = pd.factorize(cl)[0].astype(np.int64)
    n_cl = int(cl.max()) + 1
    scores = rng.normal(size=(7, 40)).astype(np.float32)
    scores[:, :3] = -np.inf  # masked training items rank last
    top = dedup_topk(torch.from_numpy(scores), torch.from_numpy(cl), n_cl, 8).numpy()
    for u in range(7):
        assert top[u].tolist() == _greedy(scores[u], cl, 8)
        assert len(set(cl[top[u]])) == 8
    # more slots than clusters: every cluster once, then empty slots (-1)
    top = dedup_topk(torch.from_numpy(scores), torch.from_numpy(cl), n_cl, n_cl + 3).numpy()
    assert (top[:, n_cl:] == -1).all() and all(len(set(cl[r[:n_cl]])) == n_cl for r in top)


def test_mmr_spans_plain_to_dedup():
    rng = np.random.default_rng(1)
    cl = torch.from_numpy((np.arange(50) // 2).astype(np.int64))  # 25 clusters of 2
    scores = torch.from_numpy(rng.normal(size=(5, 50)).astype(np.float32))
    plain = torch.topk(scores, 10, dim=1).indices
    assert torch.equal(mmr_topk(scores, cl, 25, 10, mmr_lambda=1.0), plain)
    assert torch.equal(rank_topk(scores, 10, "none"), plain)
    strict = mmr_topk(scores, cl, 25, 10, mmr_lambda=0.5)
    assert all(len(set(cl[r].tolist())) == 10 for r in strict)
    assert torch.equal(strict, dedup_topk(scores, cl, 25, 10))
    with pytest.raises(ValueError, match="mmr_lambda"):
        mmr_topk(scores, cl, 25, 10, mmr_lambda=0.0)
    with pytest.raises(ValueError, match="needs item clusters"):
        rank_topk(scores, 10, "dedup")


def test_evaluator_cluster_metrics_hand_computed():
    # 6 items, clusters {0,1} {2,3} {4} {5}; user 0 prefers higher ids, truth {4, 1}
    cl = np.array([0, 0, 1, 1, 2, 3])
    train = sp.csr_matrix((1, 6))
    truth = sp.csr_matrix((np.ones(2), ([0, 0], [4, 1])), shape=(1, 6))

    def score(users):
        return torch.arange(6, dtype=torch.float32).repeat(len(users), 1)

    plain, top = TopKEvaluator(train, truth, ks=(2, 3), clusters=cl).evaluate(score, return_topk=True)
    assert top[0].tolist() == [5, 4, 3]
    assert plain["recall@3"] == pytest.approx(0.5) and plain["distinct_clusters@3"] == 3
    dedup, top = TopKEvaluator(train, truth, ks=(2, 3), clusters=cl, rerank="dedup").evaluate(score, return_topk=True)
    assert top[0].tolist() == [5, 4, 3]  # 3 is its cluster's best; 2 is skipped later
    # cluster recall: item 1's cluster {0, 1} is not shown, item 4 is -> 0.5; at 2: [5, 4] -> 0.5
    assert dedup["cluster_recall@3"] == pytest.approx(0.5) and dedup["min_distinct_clusters@3"] == 3
    truth2 = sp.csr_matrix((np.ones(1), ([0], [2])), shape=(1, 6))
    r2, _ = TopKEvaluator(train, truth2, ks=(3,), clusters=cl, rerank="dedup").evaluate(score)
    assert r2["recall@3"] == 0.0 and r2["cluster_recall@3"] == 1.0  # a hit on item 3, 2's near-duplicate
    with pytest.raises(ValueError, match="one cluster id per item"):
        TopKEvaluator(train, truth, clusters=cl[:4])


# ----------------------------------------------------------------------------- trainer
def test_dedup_training_lists_distinct_clusters_and_cluster_recall_bounds(synth):
    res = Trainer("bpr", {**FAST, "rerank": "dedup"}, seed=0, progress=False, clusters=PAIRS).fit(synth)
    for k in (5, 10, 20):
        assert res.test[f"min_distinct_clusters@{k}"] == k and res.valid[f"min_distinct_clusters@{k}"] == k
    for r in (res.test, res.test_plain, res.valid):
        for k in (5, 10, 20, 50):
            assert r[f"cluster_recall@{k}"] >= r[f"recall@{k}"] - 1e-12
    # the plain list of the same model repeats clusters; the de-duplicated one does not
    assert res.test_plain["min_distinct_clusters@20"] < 20
    again = Trainer("bpr", {**FAST, "rerank": "dedup"}, seed=0, progress=False, clusters=PAIRS).fit(synth)
    assert again.test == res.test  # same seed, same output


class _LenOnly:
    """Stands in for the test split while it is sealed: its size can be read, nothing else."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name}) before the end of training")

    def __getitem__(self, key):
        raise AssertionError("the test split was indexed before the end of training")

    def __array__(self, *a, **k):
        raise AssertionError("the test split was converted to an array before the end of training")


class _SealedTest(RecDataset):
    sealed = False

    def __getattribute__(self, name):
        if name == "test" and object.__getattribute__(self, "sealed"):
            return _LenOnly(len(object.__getattribute__(self, "__dict__")["test"]))
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("rerank", ["none", "dedup"])
def test_nothing_reads_test_labels_before_the_end(synth, monkeypatch, rerank):
    ds = _SealedTest(synth.n_users, synth.n_items, synth.train, synth.valid, synth.test, dict(synth.features), name="sealed")
    ds.sealed = True
    n_epochs = 4
    events: list = []
    orig = BPRMF.on_epoch_end

    def on_epoch_end(self, epoch):
        events.append(("epoch", epoch))
        orig(self, epoch)
        if epoch == n_epochs:
            ds.sealed = False  # training is over: the test split may be read now

    monkeypatch.setattr(BPRMF, "on_epoch_end", on_epoch_end)
    orig_eval = TopKEvaluator.evaluate

    def evaluate(self, *a, **k):
        events.append(("eval", "test" if (self.truth != synth.user_items("test")).nnz == 0 else "valid"))
        return orig_eval(self, *a, **k)

    monkeypatch.setattr(TopKEvaluator, "evaluate", evaluate)
    cfg = {**FAST, "epochs": n_epochs, "stopping_step": 100, "cluster_emb": "add", "rerank": rerank}
    res = Trainer("bpr", cfg, seed=0, progress=False, clusters=PAIRS).fit(ds)
    assert res.test["recall@20"] > 0
    last_epoch = max(i for i, e in enumerate(events) if e[0] == "epoch")
    tests = [i for i, e in enumerate(events) if e == ("eval", "test")]
    assert tests and min(tests) > last_epoch
    assert all(e == ("eval", "valid") for e in events[:last_epoch] if e[0] == "eval")


# ----------------------------------------------------------------------------- cluster embeddings
def _group_auc(model, held: np.ndarray, n_users: int) -> float:
    """Mean over held-out items of the AUC of their scores: users of the item's group vs the rest."""
    model.eval()
    model.prepare_eval()
    s = model.score_users(torch.arange(n_users)).numpy()
    ug = np.arange(n_users) % 4
    aucs = [(s[ug == x % 4, x][:, None] > s[ug != x % 4, x][None, :]).mean() for x in held]
    return float(np.mean(aucs))


def test_cold_split_holds_out_items_with_cluster_history(synth):
    cold, held = hold_out_cluster_items(synth, PAIRS, frac=0.2, seed=0)
    assert len(held) > 0 and (held == hold_out_cluster_items(synth, PAIRS, 0.2, 0)[1]).all()
    assert not np.isin(cold.train[:, 1], held).any() and not np.isin(cold.valid[:, 1], held).any()
    assert np.isin(cold.test[:, 1], held).all()
    n_all = sum(np.isin(s[:, 1], held).sum() for s in (synth.train, synth.valid, synth.test))
    assert len(cold.test) == n_all
    train_items = set(cold.train[:, 1].tolist())
    for x in held:  # every held-out item keeps a cluster mate with training interactions
        assert any(PAIRS[j] == PAIRS[x] and j in train_items for j in range(N_ITEMS) if j != x)
    with pytest.raises(ValueError, match="frac"):
        hold_out_cluster_items(synth, PAIRS, frac=1.0)


@pytest.mark.parametrize("model,mode", [("bpr", "add"), ("bpr", "replace"), ("lightgcn", "add"), ("lightgcn", "replace"), ("lirdrec", "add")])
def test_cluster_embedding_gives_new_items_their_cluster_score(synth, model, mode):
    cold, held = hold_out_cluster_items(synth, PAIRS, frac=0.2, seed=0)
    if model == "lirdrec":  # content that says nothing: only the cluster branch can place a new item
        rng = np.random.default_rng(5)
        cold = RecDataset(cold.n_users, cold.n_items, cold.train, cold.valid, cold.test,
                          {"image": rng.normal(size=(N_ITEMS, 8)).astype(np.float32)}, name="noise")  # fmt: skip
    cfg = {**FAST, "knn_k": 5}
    t_none = Trainer(model, {**cfg, "cluster_emb": "none"}, seed=0, progress=False, clusters=PAIRS)
    t_none.fit(cold)
    t = Trainer(model, {**cfg, "cluster_emb": mode}, seed=0, progress=False, clusters=PAIRS)
    t.fit(cold)
    auc_none, auc = _group_auc(t_none.model_, held, cold.n_users), _group_auc(t.model_, held, cold.n_users)
    # new items rank for the users of their cluster mates' group; without the cluster embedding
    # their ID vector only ever saw negative samples (about chance)
    assert auc > 0.8 and auc > auc_none + 0.2, (auc, auc_none)
    if mode == "replace":
        assert t.model_.item_emb is None
    if (model, mode) == ("bpr", "replace"):  # one vector per cluster: a new item scores exactly as its mate
        s = t.model_.score_users(torch.arange(cold.n_users))
        x = held[0]
        mate = next(j for j in range(N_ITEMS) if j != x and PAIRS[j] == PAIRS[x])
        assert torch.allclose(s[:, x], s[:, mate])


def test_cluster_emb_options_are_checked(synth):
    with pytest.raises(ValueError, match="needs item clusters"):
        build_model("bpr", synth, {"cluster_emb": "add"})
    with pytest.raises(ValueError, match="unknown cluster_emb"):
        build_model("lightgcn", synth, {"cluster_emb": "mean"}, clusters=PAIRS)
    with pytest.raises(ValueError, match="does not support cluster_emb=replace"):
        build_model("lirdrec", synth, {"cluster_emb": "replace", "knn_k": 5}, clusters=PAIRS)
    with pytest.raises(ValueError, match="does not support"):
        build_model("vbpr", synth, {"cluster_emb": "add"}, clusters=PAIRS)
    with pytest.raises(ValueError, match="one non-negative cluster id per item"):
        build_model("bpr", synth, {"cluster_emb": "add"}, clusters=PAIRS[:10])
    m = build_model("lirdrec", synth, {"cluster_emb": "add", "knn_k": 5}, clusters=PAIRS)
    assert m.n_branches == len(synth.features) + 2
    assert m.item_branches().shape == (N_ITEMS, 64 * m.n_branches)


# ----------------------------------------------------------------------------- loading clusters
def test_load_clusters_maps_ids_and_reports_missing(tmp_path):
    ids = ["0108775015", "0108775044", "0111565001", "0111586001"]
    f = tmp_path / "clusters.parquet"
    # ids lost their zero padding (read as integers); one unknown id; the last item is missing
    pd.DataFrame({"item_id": [108775015, 108775044, 111565001, 999], "cluster_id": ["a", "a", "b", "c"]}).to_parquet(f)
    ic = load_clusters(f, ids)
    assert ic.cluster_of.tolist() == [0, 0, 1, 2]
    assert (ic.n_clusters, ic.n_missing, ic.n_unmatched) == (3, 1, 1)
    assert ic.summary()["multi_item_clusters"] == 1
    c = tmp_path / "c.csv"
    pd.DataFrame({"item_id": ids[:2], "cluster_id": ["a", "b"]}).to_csv(c, index=False)
    c2 = tmp_path / "c2.csv"
    pd.DataFrame({"item_id": [ids[0], ids[0]], "cluster_id": ["a", "b"]}).to_csv(c2, index=False)
    with pytest.raises(RecDataError, match="two cluster ids"):
        load_clusters(c2, ids)
    with pytest.raises(RecDataError, match="names an item of the dataset"):
        load_clusters(c, ["x", "y"])
    with pytest.raises(RecDataError, match="missing column 'cluster_id_x'"):
        load_clusters(c, ids, cluster_col="cluster_id_x")
    with pytest.raises(RecDataError, match="not found"):
        load_clusters(tmp_path / "none.parquet", ids)
    lab = clusters_from_labels(["p1", None, "p1", "", "p2"], source="product_code")
    assert isinstance(lab, ItemClusters) and lab.cluster_of.tolist() == [0, 1, 0, 2, 3] and lab.n_missing == 2


def test_cli_train_with_clusters(tmp_path, synth_dir):
    data = tmp_path / "data"
    data.mkdir()
    for f in synth_dir.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    pd.DataFrame({"itemID": np.arange(N_ITEMS), "source_id": [f"it{i}" for i in range(N_ITEMS)]}).to_csv(data / "items.csv", index=False)
    assert dataset_item_ids(data)[:2] == ["it0", "it1"]
    cf = tmp_path / "clusters.parquet"  # items 58, 59 left out: singletons
    pd.DataFrame({"item_id": [f"it{i}" for i in range(N_ITEMS - 2)], "cluster_id": [f"c{PAIRS[i]}" for i in range(N_ITEMS - 2)]}).to_parquet(cf)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--data", str(data), "--model", "lightgcn", "--out", str(out), "--epochs", "3",
                                 "--no-progress", "--clusters", str(cf), "--cluster-emb", "add"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "2 items missing" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["min_distinct_clusters@20"] == 20 and "test_plain" in m
    assert m["clusters"]["missing_items_made_singletons"] == 2
    assert json.loads((out / "config.json").read_text())["rerank"] == "dedup"
    r = CliRunner().invoke(app, ["train", "--data", str(data), "--model", "bpr", "--out", str(out), "--epochs", "1",
                                 "--no-progress", "--cluster-emb", "add"])  # fmt: skip
    assert r.exit_code == 2 and "needs item clusters" in r.output
