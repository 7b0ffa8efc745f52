"""Local transformers back-end on a tiny randomly initialised Qwen2.5-VL built here (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the hf back-end needs transformers (pip install transformers)")

from llmtestlib import StubRules, build_tiny_vlm, good_answer  # noqa: E402
from PIL import Image  # noqa: E402

from itemrep.catalog import Item  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "p.jpg"
    Image.new("RGB", (400, 300), (20, 40, 200)).save(p)
    return p


@pytest.mark.slow
def test_real_load_batch_generate_and_fallback(tiny_vlm, photo, tmp_path):
    from itemrep.concepts.hf import HFExtractor

    ex = HFExtractor(model_path=tiny_vlm, batch_size=2, fallback=StubRules(), max_new_tokens=6, cache_path=tmp_path / "c.sqlite")
    assert ex.multimodal and ex.device == "cpu"
    items = [
        Item(item_id="1", title="botol minum 500ml merah", image=photo),
        Item(item_id="2", title="kaos polos hitam"),
        Item(item_id="3", title="保温杯", image=photo),
    ]
    seen = []
    out = ex.extract(items, progress=seen.append)
    assert [h.item_id for h in out] == ["1", "2", "3"] and seen == [2, 1]
    # random weights cannot write the schema: each item is generated, repaired once, then falls back
    assert all(h.extractor == "stubrules/0" and h.error.startswith("llm failed: invalid answer") for h in out)
    s = ex.stats_
    assert s["requests"] == 6 and s["repairs"] == 3 and s["fallbacks"] == 3
    assert s["completion_tokens"] > 0 and s["prompt_tokens"] > 500
    # images really reach the model: the same text with and without a photo gives different prompts
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "local:"}}, {"type": "text", "text": "hi"}]}]
    from itemrep.concepts.openai_compat import load_image

    (with_img, _), = ex.generate([(msgs, load_image(photo, 112 * 112))], 2)
    assert isinstance(with_img, str)


@pytest.mark.slow
def test_valid_answer_path_and_cache(tiny_vlm, tmp_path, monkeypatch):
    from itemrep.concepts.hf import HFExtractor

    ex = HFExtractor(model_path=tiny_vlm, batch_size=4, fallback=StubRules(), cache_path=tmp_path / "c.sqlite")
    answer = json.dumps(good_answer())
    calls = []

    def fake_generate(batch, max_new_tokens):
        calls.append(len(batch))
        return [("```json\n" + answer + "\n```", "stop") if i % 2 == 0 else ("{bad", "stop") for i in range(len(batch))]

    monkeypatch.setattr(ex, "generate", fake_generate)
    items = [Item(item_id=str(i), title=f"barang {i}") for i in range(3)]
    out = ex.extract(items)
    assert out[0].error is None and out[0].extractor == "hf/1+chie-v1" and out[0].slot_values("spec") == ["0.397 kg"]
    assert out[2].error is None
    assert out[1].extractor == "hf/1+chie-v1"  # repaired: the repair batch's first answer is valid
    assert calls == [3, 1]
    ex2 = HFExtractor(model_path=tiny_vlm, fallback=StubRules(), cache_path=tmp_path / "c.sqlite")
    monkeypatch.setattr(ex2, "generate", lambda *a: pytest.fail("cache should answer"))
    again = ex2.extract(items)
    assert ex2.stats_["cache_hits"] == 3 and [h.model_dump() for h in again] == [h.model_dump() for h in out]


def test_missing_folder_is_a_clear_error(tmp_path):
    from itemrep.concepts.registry import ExtractorConfigError, build_extractor

    with pytest.raises(ExtractorConfigError, match="no such model folder"):
        build_extractor("hf", model=str(tmp_path / "nope"), fallback=StubRules())
