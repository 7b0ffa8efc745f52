"""Transfer to other catalogs (issue #10, item 4): description text has its own slot, and pair
scores are renormalised over the modal slots (photo, description) both items have."""

import numpy as np
import pytest
import scipy.sparse as sp

from itemrep.catalog import Catalog
from itemrep.dedup.fusion import AttentionFusion
from itemrep.dedup.pipeline import FITRep
from itemrep.dedup.slots import DESCRIPTION_LEVEL, SlotSet, concept_texts, phash_bits


def test_description_concepts_feed_only_the_description_slot():
    concepts = [[("brand", "acme", "primary"), ("name", "kettle", "primary"), ("promo", "sale", "auxiliary"),
                 ("brand", "other", DESCRIPTION_LEVEL), ("name", "stainless steel body", DESCRIPTION_LEVEL)]]
    out = concept_texts(concepts, ["primary_text", "auxiliary_text", "description_text", "concepts:brand"])
    assert out["primary_text"] == ["acme kettle"]
    assert out["auxiliary_text"] == ["sale"]
    assert out["description_text"] == ["other stainless steel body"]
    assert out["concepts:brand"] == ["acme"]  # attributes come from the title only


def _catalog(texts):
    titles = ["Acme electric kettle 1.7l steel", "Acme kettle 1.7 l stainless", "Zeta blender 600w red"]
    return Catalog.from_frame(__import__("pandas").DataFrame({"item_id": ["a", "b", "c"], "title": titles, "text": texts}),
                              id_col="item_id", title_col="title", text_col="text")


def test_a_long_description_does_not_change_the_title_slots():
    plain = FITRep(images="off", progress=False)
    desc = FITRep(images="off", progress=False)
    e1 = plain.fit_transform(_catalog(["", "", ""]))
    long = "free shipping worldwide best price guaranteed " * 20
    e2 = desc.fit_transform(_catalog([long, long + " blender", long]))
    assert "description" in e2.slots.names and "description" not in e1.slots.names
    for name in ("primary_words", "primary_chars", "spec"):
        a, b = e1.slots.matrices[name], e2.slots.matrices[name]
        assert (a != b).nnz == 0 if sp.issparse(a) else np.array_equal(a, b)


def test_scores_are_renormalised_over_modal_slots_both_items_have():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 8)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    ph = phash_bits(["0" * 16, "0" * 15 + "1", None])
    alpha = {"text": 0.8, "phash": 0.2}
    s_modal = SlotSet(matrices={"text": t, "phash": ph}, levels={"text": "primary", "phash": "primary"}, modal_slots=["phash"])
    s_plain = SlotSet(matrices={"text": t, "phash": ph}, levels={"text": "primary", "phash": "primary"})
    f = AttentionFusion(alpha=alpha)
    i, j = np.array([0, 0]), np.array([1, 2])
    sim, terms = f.pair_similarity(s_modal, i, j)
    raw, _ = f.pair_similarity(s_plain, i, j)
    assert sim[0] == pytest.approx(raw[0], abs=1e-6)  # both have a photo: unchanged
    assert sim[1] == pytest.approx(raw[1] / 0.8, abs=1e-6)  # item 2 has none: text carries the whole score
    assert sim[1] == pytest.approx(float(t[0] @ t[2]), abs=1e-6)
    np.testing.assert_allclose(terms.sum(axis=1), sim, atol=1e-6)
