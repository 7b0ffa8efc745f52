"""The rule-based extractor on the real Shopee listings (skipped when ../shared/data is absent)."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from itemrep.catalog import Catalog
from itemrep.concepts.rules import RuleBasedExtractor

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

DATA = Path(os.environ.get("ITEMREP_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
SHOPEE = DATA / "shopee" / "train.csv"


@pytest.fixture(scope="module")
def extracted():
    if not SHOPEE.exists():
        pytest.skip(f"{SHOPEE} not found (set ITEMREP_DATA to the shared data folder)")
    cat = Catalog.load(SHOPEE, label_col="label_group", check_images=False)
    ex = RuleBasedExtractor()
    t0 = time.process_time()
    hs = ex.extract(cat.items)
    return cat, ex, hs, time.process_time() - t0


def test_every_listing_extracted_fast(extracted):
    cat, ex, hs, cpu = extracted
    assert len(hs) == len(cat.items)
    assert ex.stats_["failures"] == 0
    assert [h.item_id for h in hs] == cat.ids
    assert sum(1 for h in hs if h.primary) >= 0.99 * len(hs)
    # budget: the whole dedup pipeline must run in < 60 s on 2 cores; this stage gets < 10 s
    assert cpu < 10.0, f"{cpu:.1f} s CPU for {len(hs)} listings"


def test_auxiliary_values_are_shared_across_products(extracted):
    """Auxiliary values (promo, stock, shipping ...) recur across many products; primary ones are
    specific: P(same product | two listings share a value) is far lower for auxiliary slots."""
    cat, _, hs, _ = extracted
    labels = cat.labels
    n = len(labels)
    base = sum(k * (k - 1) for k in Counter(labels).values()) / (n * (n - 1))
    post: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, h in enumerate(hs):
        for key in {(c.level, c.value) for c in h.concepts}:
            post[key].append(i)
    lift: dict[str, list[float]] = defaultdict(list)
    for (level, _), ids in post.items():
        if len(ids) >= 20:
            c = Counter(labels[i] for i in ids)
            same = sum(k * (k - 1) for k in c.values()) / (len(ids) * (len(ids) - 1))
            lift[level].extend([same / base] * len(ids))
    aux = sum(lift["auxiliary"]) / len(lift["auxiliary"])
    prim = sum(lift["primary"]) / len(lift["primary"])
    assert aux * 3 < prim, (aux, prim)


def test_same_product_pairs_share_more_primary_tokens_than_title_tokens(extracted):
    cat, _, hs, _ = extracted
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(cat.labels):
        groups[g].append(i)
    pairs = [(m[0], m[1]) for m in groups.values() if len(m) >= 2]

    def jac(a: set, b: set) -> float:
        return len(a & b) / len(a | b) if a | b else 0.0

    raw = [set(it.title.lower().split()) for it in cat.items]
    prim = [{t for c in h.primary for t in c.value.split()} for h in hs]
    j_raw = sum(jac(raw[i], raw[j]) for i, j in pairs) / len(pairs)
    j_prim = sum(jac(prim[i], prim[j]) for i, j in pairs) / len(pairs)
    assert j_prim > j_raw + 0.03, (j_prim, j_raw)
