"""The opt-in nearest-neighbour rule end to end: its edges are written with terms that add up."""

from pathlib import Path

import numpy as np

from itemrep.catalog import Catalog
from itemrep.dedup.cluster import NearDuplicateClusterer
from itemrep.dedup.pipeline import FITRep

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "catalog.csv"


def _cat():
    return Catalog.load(EXAMPLE, id_col="item_id", title_col="title", text_col="text", phash_col="phash", label_col="label")


def test_nn_rule_edges_are_written_and_explained(tmp_path):
    strict = FITRep.default(images="off", progress=False, threshold=0.99)
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
