"""The opt-in nearest-neighbour rule end to end: its edges are written with terms that add up."""

from pathlib import Path

import numpy as np
import pytest

from itemrep.catalog import Catalog
from itemrep.dedup.cluster import NearDuplicateClusterer
from itemrep.dedup.pipeline import NN_MIN_SHARE, FITRep

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.csv"


def _cat():
    return Catalog.load(EXAMPLE, id_col="item_id", title_col="title", text_col="text", phash_col="phash", label_col="label")


def test_nn_rule_edges_are_written_and_explained(tmp_path):
    strict = FITRep.default(images="off", progress=False, threshold=0.99,
                            clusterer=NearDuplicateClusterer(threshold=0.99, k=10))  # the rule off
    base = strict.dedup(_cat())
    m = FITRep.default(images="off", progress=False, threshold=0.99,
                       clusterer=NearDuplicateClusterer(threshold=0.99, k=10, nn_threshold=0.3))
    res = m.dedup(_cat())
    e = res.edges
    assert len(e) > len(base.edges) and (e["similarity"] < 0.99).any()
    terms = e[[c for c in e.columns if c.startswith("term_")]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(terms, e["similarity"].to_numpy(), atol=1e-5)
    assert res.clusters["cluster_id"].nunique() < base.clusters["cluster_id"].nunique()
    m.save(tmp_path / "m")
    assert FITRep.load(tmp_path / "m").clusterer.nn_threshold == 0.3


def test_tune_chooses_tau_and_nn_threshold_on_a_selection_catalog(tmp_path):
    m = FITRep.default(images="off", progress=False)
    m.tune(_cat(), tau_grid=[0.3, 0.46, 0.9], nn_grid=[None, 0.2])
    info = m.tune_info_
    assert len(info["curve"]) == 6 and info["tau"] in (0.3, 0.46, 0.9)
    best = max(r["mean_item_f1"] for r in info["curve"])
    assert info["select_mean_item_f1"] == best
    assert m.tau == info["tau"] and m.clusterer_.nn_threshold == info["nn_threshold"]
    m.save(tmp_path / "t")
    back = FITRep.load(tmp_path / "t")
    assert back.tau == info["tau"] and back.tune_info_["tau"] == info["tau"]


def test_neighbourhood_blending_keeps_terms_additive_and_absent_slots_empty():
    from itemrep.dedup.blend import blend_slots, blend_weights

    m = FITRep.default(images="off", progress=False, blend_rounds=2)
    res = m.dedup(_cat())
    e = res.edges
    terms = e[[c for c in e.columns if c.startswith("term_")]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(terms, e["similarity"].to_numpy(), atol=1e-5)
    plain = FITRep.default(images="off", progress=False).dedup(_cat())
    enc = FITRep.default(images="off", progress=False).fit_transform(_cat())
    n = len(enc.ids)
    w = blend_weights(n, np.array([0]), np.array([1]), np.array([0.8]), power=1.0)
    b = blend_slots(enc.slots, w)
    for name in b.names:
        np.testing.assert_array_equal(b.presence(name), enc.slots.presence(name))
    assert plain.clusters["cluster_id"].nunique() >= 1


def test_fit_cli_with_select_and_nn_rule(tmp_path):
    from typer.testing import CliRunner

    from itemrep.cli import app

    import pandas as pd

    df = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    groups = sorted(df["label"].unique())
    df[df["label"].isin(groups[::2])].to_csv(tmp_path / "fit.csv", index=False)
    df[~df["label"].isin(groups[::2])].to_csv(tmp_path / "select.csv", index=False)
    r = CliRunner().invoke(app, ["fit", str(tmp_path / "fit.csv"), "--label-col", "label", "--model-dir", str(tmp_path / "m"),
                                 "--select", str(tmp_path / "select.csv"), "--nn-rule", "select", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["fit", str(EXAMPLE), "--label-col", "label", "--model-dir", str(tmp_path / "x"),
                                 "--select", str(EXAMPLE), "--quiet"])
    assert r.exit_code == 2 and "shares item ids" in r.output
    back = FITRep.load(tmp_path / "m")
    assert back.tune_info_ and back.tau == back.tune_info_["tau"]
    r = CliRunner().invoke(app, ["fit", str(EXAMPLE), "--label-col", "label", "--model-dir", str(tmp_path / "n"), "--nn-rule", "select"])
    assert r.exit_code == 2 and "--select" in r.output
    r = CliRunner().invoke(app, ["fit", str(EXAMPLE), "--label-col", "label", "--model-dir", str(tmp_path / "n"), "--nn-rule", "maybe"])
    assert r.exit_code == 2 and "auto, on, off or select" in r.output


def test_nn_min_share_applies_the_rule_only_where_most_items_have_a_duplicate():
    # items 0-1 score 0.9 (an edge at τ 0.5); 2-3 and 4-5 are each other's best at 0.4 (< τ, ≥ the rule's 0.3)
    i, j, s = np.array([0, 2, 4, 1]), np.array([1, 3, 5, 2]), np.array([0.9, 0.4, 0.4, 0.1], np.float32)
    few = NearDuplicateClusterer(threshold=0.5, guard=False, nn_threshold=0.3, nn_min_share=0.5)
    assert few.nearest_edges(6, i, j, s) is None  # 2 of 6 items have an edge >= τ: most have none
    assert few.nn_info_ == {"threshold": 0.3, "min_share": 0.5, "share": round(2 / 6, 4), "applied": False}
    np.testing.assert_array_equal(few.edge_mask(6, i, j, s), [True, False, False, False])
    many = NearDuplicateClusterer(threshold=0.35, guard=False, nn_threshold=0.3, nn_min_share=0.5)
    np.testing.assert_array_equal(many.nearest_edges(6, i, j, s), [True, True, True, False])
    assert many.nn_info_["applied"] and many.nn_info_["share"] == 1.0
    always = NearDuplicateClusterer(threshold=0.5, guard=False, nn_threshold=0.3)
    np.testing.assert_array_equal(always.edge_mask(6, i, j, s), [True, True, True, False])
    with pytest.raises(ValueError, match="nn_min_share"):
        NearDuplicateClusterer(nn_min_share=1.5)


def test_fit_nn_rule_auto_uses_the_logistic_decision_point(tmp_path):
    m = FITRep(images="off").fit(_cat(), nn_rule="auto")
    c = m.clusterer_
    assert c.nn_threshold == round(m.fusion_.tau_logistic_, 4) and c.nn_min_share == NN_MIN_SHARE == 0.4
    m.save(tmp_path / "m")
    back = FITRep.load(tmp_path / "m")
    assert back.clusterer.nn_threshold == c.nn_threshold and back.clusterer.nn_min_share == NN_MIN_SHARE
    run = back.dedup(_cat()).run
    assert run["nn_rule"]["threshold"] == c.nn_threshold and isinstance(run["nn_rule"]["applied"], bool)
    off = FITRep(images="off").fit(_cat(), nn_rule="off")
    assert off.clusterer_.nn_threshold is None
    with pytest.raises(ValueError, match="nn_rule"):
        FITRep(images="off").fit(_cat(), nn_rule="sometimes")


def test_fit_without_learning_keeps_the_rule_and_pair_tau_of_the_given_weights():
    builtin = FITRep.default(images="off")
    m = FITRep.default(images="off").fit(_cat(), learn_alpha=False)
    assert m.clusterer_.nn_threshold == builtin.clusterer_.nn_threshold is not None
    assert m.pair_tau == builtin.pair_tau < m.tau


def test_an_unusable_logistic_decision_point_turns_the_rule_off(monkeypatch):
    from itemrep.dedup.fusion import AttentionFusion

    real = AttentionFusion.fit

    def fit_far(self, *a, **kw):  # a fit whose intercept pushes τ_logistic outside (0, 2]
        real(self, *a, **kw)
        self.tau_logistic_ = -42.0
        return self

    monkeypatch.setattr(AttentionFusion, "fit", fit_far)
    m = FITRep(images="off").fit(_cat(), nn_rule="auto")
    assert m.clusterer_.nn_threshold is None and "no usable τ_logistic" in m.fit_info_["nn_rule"]["note"]
    assert m.pair_tau == m.tau  # not -42
    run = m.dedup(_cat()).run
    assert run["nn_rule"] is None


def test_fit_on_labelled_pairs_alone_keeps_the_prior_rule_threshold():
    import pandas as pd

    cat = _cat()
    ids = list(cat.ids)
    labels = dict(zip(cat.ids, cat.labels))
    pairs = pd.DataFrame([(a, b, int(labels[a] == labels[b])) for a, b in zip(ids[:-1], ids[1:])],
                         columns=["item_a", "item_b", "label"])
    unlabelled = Catalog.load(EXAMPLE, id_col="item_id", title_col="title", text_col="text", phash_col="phash")
    builtin = FITRep.default(images="off")
    m = FITRep(images="off").fit(unlabelled, pairs=pairs, prior=builtin)
    # pairs picked by a reviewer are no calibration sample: the rule keeps the prior's threshold
    assert m.clusterer_.nn_threshold == builtin.clusterer_.nn_threshold
    assert "prior" in m.fit_info_["nn_rule"]["note"]
