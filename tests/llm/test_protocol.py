"""OpenAI-compatible back-end against a loopback server the test controls: protocol edge cases."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image

from itemrep.catalog import Item
from itemrep.concepts.openai_compat import OpenAICompatExtractor, encode_image, parse_retry_after
from itemrep.concepts.schema import ConceptHierarchy

from llmtestlib import StubRules, completion, good_answer


def make(server, **kw) -> OpenAICompatExtractor:
    kw.setdefault("fallback", StubRules())
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    return OpenAICompatExtractor(base_url=server.base_url, model="test-model", **kw)


def ok(body=None, n=0):
    return 200, {}, completion(json.dumps(good_answer())), 0.0


def test_valid_answer_maps_onto_schema(chat_server, items):
    ex = make(chat_server)
    out = ex.extract(items[:1])
    h = out[0]
    assert isinstance(h, ConceptHierarchy) and h.item_id == "a" and h.error is None
    assert h.extractor == "openai/1+chie-v1"
    assert {c.level for c in h.concepts} == {"primary", "auxiliary"}
    assert all(c.source == "llm" and 0 <= c.salience <= 1 for c in h.concepts)
    assert h.slot_values("spec") == ["0.397 kg"] and h.slot_values("color") == ["red"]
    req = chat_server.requests[0]
    assert req["model"] == "test-model" and req["temperature"] == 0 and req["seed"] == 0
    assert req["response_format"]["type"] == "json_schema"
    assert req["response_format"]["json_schema"]["schema"]["required"] == ["primary", "auxiliary"]
    assert "Botol Minum Tupperware" in req["messages"][-1]["content"]
    s = ex.stats_
    assert (s["requests"], s["failures"], s["fallbacks"], s["prompt_tokens"], s["completion_tokens"]) == (1, 0, 0, 50, 20)
    assert s["items"] == 1 and s["seconds"] > 0


def test_image_sent_as_resized_data_url(chat_server, tmp_path):
    img = tmp_path / "big.png"
    Image.new("RGBA", (1200, 900), (255, 0, 0, 128)).save(img)
    ex = make(chat_server, image_pixels=64 * 64)
    ex.extract([Item(item_id="i", title="kaos merah", image=img)])
    content = chat_server.requests[0]["messages"][-1]["content"]
    assert content[0]["type"] == "image_url" and content[1]["type"] == "text"
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert im.mode == "RGB" and im.size[0] * im.size[1] <= 64 * 64 and abs(im.size[0] / im.size[1] - 4 / 3) < 0.1


def test_unreadable_image_answers_from_text_and_records_it(chat_server, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    ex = make(chat_server)
    h = ex.extract([Item(item_id="i", title="kaos merah", image=bad)])[0]
    assert h.concepts and "answered without image" in h.error and "bad.jpg" in h.error
    assert isinstance(chat_server.requests[0]["messages"][-1]["content"], str)
    assert ex.stats_["image_failures"] == 1 and ex.stats_["failures"] == 0


def test_text_only_sends_no_image(chat_server, tmp_path):
    img = tmp_path / "x.png"
    Image.new("RGB", (10, 10)).save(img)
    make(chat_server, text_only=True).extract([Item(item_id="i", title="kaos", image=img)])
    assert isinstance(chat_server.requests[0]["messages"][-1]["content"], str)


def test_invalid_json_repaired_once(chat_server, items):
    chat_server.responder = lambda body, n: (200, {}, completion("{primary: [oops"), 0.0) if n == 1 else ok()
    ex = make(chat_server)
    h = ex.extract(items[:1])[0]
    assert h.error is None and h.concepts
    repair = chat_server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "{primary: [oops"}
    assert "not valid" in repair[-1]["content"]
    assert ex.stats_["repairs"] == 1 and ex.stats_["requests"] == 2


def test_prose_with_200_falls_back_after_repair(chat_server, items):
    chat_server.responder = lambda body, n: (200, {}, completion("Sure! This is a nice water bottle."), 0.0)
    ex = make(chat_server)
    h = ex.extract(items[:1])[0]
    assert h.extractor == "stubrules/0" and h.slot_values("name")
    assert h.error.startswith("llm failed: invalid answer (not_json") and "fell back to stubrules/0" in h.error
    s = ex.stats_
    assert (s["requests"], s["failures"], s["fallbacks"], s["invalid_responses"]) == (2, 1, 1, 2)


def test_schema_mismatch_is_invalid(chat_server, items):
    bad = good_answer()
    bad["primary"][0]["salience"] = "high"  # not a number
    chat_server.responder = lambda body, n: (200, {}, completion(json.dumps(bad)), 0.0)
    h = make(chat_server).extract(items[:1])[0]
    assert "schema" in h.error and "salience" in h.error


def test_json_in_prose_or_fence_is_accepted(chat_server, items):
    text = "Here you go:\n```json\n" + json.dumps(good_answer()) + "\n```"
    chat_server.responder = lambda body, n: (200, {}, completion(text), 0.0)
    h = make(chat_server).extract(items[:1])[0]
    assert h.error is None and h.concepts


def test_429_honours_retry_after(chat_server, items):
    chat_server.responder = lambda body, n: (429, {"Retry-After": "1"}, {"error": "slow down"}, 0.0) if n == 1 else ok()
    ex = make(chat_server, backoff_s=0.0)
    t0 = time.perf_counter()
    h = ex.extract(items[:1])[0]
    assert time.perf_counter() - t0 >= 0.95
    assert h.error is None and ex.stats_["retries"] == 1 and ex.stats_["requests"] == 2


def test_500_retried_then_fallback(chat_server, items):
    chat_server.responder = lambda body, n: (500, {}, {"error": "boom"}, 0.0)
    ex = make(chat_server, max_retries=2)
    h = ex.extract(items[:1])[0]
    assert len(chat_server.requests) == 3
    assert "HTTP 500" in h.error and h.extractor == "stubrules/0"
    assert ex.stats_["retries"] == 2 and ex.stats_["fallbacks"] == 1


def test_503_then_success(chat_server, items):
    chat_server.responder = lambda body, n: (503, {}, "overloaded", 0.0) if n <= 2 else ok()
    h = make(chat_server, max_retries=3).extract(items[:1])[0]
    assert h.error is None and len(chat_server.requests) == 3


def test_timeout_falls_back(chat_server, items):
    chat_server.responder = lambda body, n: (200, {}, completion(json.dumps(good_answer())), 1.5)
    ex = make(chat_server, timeout_s=0.3, max_retries=1)
    t0 = time.perf_counter()
    h = ex.extract(items[:1])[0]
    assert time.perf_counter() - t0 < 1.5
    assert "timeout" in h.error and ex.stats_["failures"] == 1 and ex.stats_["requests"] == 2


def test_truncated_output_repaired_with_bigger_budget(chat_server, items):
    half = json.dumps(good_answer())[:60]
    chat_server.responder = lambda body, n: (200, {}, completion(half, "length"), 0.0) if n == 1 else ok()
    ex = make(chat_server, max_tokens=100)
    h = ex.extract(items[:1])[0]
    assert h.error is None
    assert chat_server.requests[0]["max_tokens"] == 100 and chat_server.requests[1]["max_tokens"] == 200
    assert "cut off" in chat_server.requests[1]["messages"][-1]["content"]


def test_truncated_twice_falls_back(chat_server, items):
    chat_server.responder = lambda body, n: (200, {}, completion('{"primary": [', "length"), 0.0)
    h = make(chat_server).extract(items[:1])[0]
    assert "truncated" in h.error and h.extractor == "stubrules/0"


@pytest.mark.parametrize("status", [422, 500])  # llama-cpp-python's server answers 500 here
def test_structured_mode_steps_down_when_format_refused(chat_server, items, status):
    def responder(body, n):
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            return status, {}, {"detail": "('body', 'response_format', 'type'): Input should be 'text' or 'json_object'"}, 0.0
        return ok()

    chat_server.responder = responder
    ex = make(chat_server, concurrency=2)
    out = ex.extract(items)
    assert all(h.error is None for h in out)
    assert ex.structured_mode == "llama_cpp"
    last = chat_server.requests[-1]["response_format"]
    assert last["type"] == "json_object" and last["schema"]["required"] == ["primary", "auxiliary"]


@pytest.mark.parametrize("mode,key", [("vllm", "structured_outputs"), ("ollama", "format")])
def test_server_specific_structured_modes(chat_server, items, mode, key):
    make(chat_server, structured=mode).extract(items[:1])
    body = chat_server.requests[0]
    assert key in body and "response_format" not in body


def test_cache_second_run_sends_nothing(chat_server, items, tmp_path):
    db = tmp_path / "cache.sqlite"
    first = make(chat_server, cache_path=db).extract(items)
    assert len(chat_server.requests) == 3
    ex2 = make(chat_server, cache_path=db)
    second = ex2.extract(items)
    assert len(chat_server.requests) == 3  # nothing new was asked
    assert ex2.stats_["cache_hits"] == 3 and ex2.stats_["requests"] == 0
    assert [h.model_dump() for h in first] == [h.model_dump() for h in second]
    # a different model name is a different key
    ex3 = OpenAICompatExtractor(base_url=chat_server.base_url, model="other", cache_path=db, fallback=StubRules())
    ex3.extract(items[:1])
    assert len(chat_server.requests) == 4


def test_failures_are_not_cached(chat_server, items, tmp_path):
    db = tmp_path / "c.sqlite"
    chat_server.responder = lambda body, n: (200, {}, completion("nope"), 0.0)
    make(chat_server, cache_path=db).extract(items[:1])
    chat_server.responder = lambda body, n: ok()
    ex = make(chat_server, cache_path=db)
    assert ex.extract(items[:1])[0].error is None and ex.stats_["cache_hits"] == 0


def test_concurrency_is_bounded_and_order_kept(chat_server):
    many = [Item(item_id=str(i), title=f"barang nomor {i}") for i in range(12)]
    chat_server.responder = lambda body, n: (200, {}, completion(json.dumps(good_answer())), 0.1)
    done = []
    out = make(chat_server, concurrency=3).extract(many, progress=done.append)
    assert [h.item_id for h in out] == [str(i) for i in range(12)]
    assert 2 <= chat_server.max_in_flight <= 3 and sum(done) == 12


def test_api_key_sent_never_leaked(chat_server, items, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-123")
    chat_server.responder = lambda body, n: (401, {}, {"error": "bad key"}, 0.0)
    ex = make(chat_server, api_key_env="MY_LLM_KEY")
    h = ex.extract(items[:1])[0]
    assert chat_server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "MY_LLM_KEY" in h.error and "sk-secret" not in h.error and "sk-secret" not in repr(ex)
    assert len(chat_server.requests) == 1  # 401 is not retried


def test_no_key_no_header(chat_server, items, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    make(chat_server).extract(items[:1])
    assert "Authorization" not in chat_server.headers[0]


def test_dead_server_circuit_breaker(items):
    from itemrep.concepts.gguf import free_port

    many = [Item(item_id=str(i), title=f"barang {i}") for i in range(20)]
    ex = OpenAICompatExtractor(
        base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", fallback=StubRules(),
        max_retries=1, backoff_s=0.01, breaker=3, concurrency=1,
    )  # fmt: skip
    out = ex.extract(many)
    assert len(out) == 20 and all(h.extractor == "stubrules/0" for h in out)
    assert "cannot reach" in out[0].error and "circuit open" in out[-1].error
    assert ex.stats_["requests"] == 6 and ex.stats_["fallbacks"] == 20


def test_no_fallback_gives_empty_hierarchy_with_error(chat_server, items):
    chat_server.responder = lambda body, n: (200, {}, completion("prose"), 0.0)
    ex = OpenAICompatExtractor(base_url=chat_server.base_url, model="m", fallback=None)
    h = ex.extract(items[:1])[0]
    assert h.concepts == [] and h.error.startswith("llm failed")


def test_extract_one_outside_extract(chat_server, items):
    h = make(chat_server).extract_one(items[1])
    assert h.error is None and h.item_id == "b"


def test_retry_after_parsing():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_encode_image_errors(tmp_path):
    p = tmp_path / "t.jpg"
    Image.new("RGB", (100, 50)).save(p)
    p.write_bytes(p.read_bytes()[:40])  # truncated
    with pytest.raises(OSError):
        encode_image(p, 1000)
    with pytest.raises(ValueError):
        encode_image(p, 0)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"base_url": "localhost:8000"}, "base_url"),
        ({"model": ""}, "model"),
        ({"concurrency": 0}, "concurrency"),
        ({"structured": "magic"}, "structured"),
    ],
)
def test_bad_settings(kw, msg):
    args = {"base_url": "http://127.0.0.1:1/v1", "model": "m"} | kw
    with pytest.raises(ValueError, match=msg):
        OpenAICompatExtractor(**args)


def test_text_only_route_puts_image_labels_and_ocr_in_prompt(chat_server, tmp_path):
    from itemrep.concepts.base import ConceptExtractor
    from itemrep.concepts.schema import Concept

    class FakeVisual(ConceptExtractor):
        name, version = "image", "0"

        def __init__(self):
            super().__init__()
            self.calls: list[int] = []

        def extract(self, items, *, progress=None):
            self.calls.append(len(items))
            return [self.extract_one(it) for it in items]

        def extract_one(self, item):
            return ConceptHierarchy(item_id=item.item_id, extractor="image/0", concepts=[
                Concept(slot="visual_object", value="water bottle", level="primary", source="image"),
                Concept(slot="ocr_primary", value="tupperware 500 ml", raw="TUPPERWARE 500ml", source="ocr"),
            ])  # fmt: skip

    img = tmp_path / "x.png"
    Image.new("RGB", (10, 10)).save(img)
    vis = FakeVisual()
    ex = make(chat_server, text_only=True, visual=vis)
    ex.extract([Item(item_id="i", title="botol", image=img), Item(item_id="j", title="no photo")])
    by_title = {("botol" if "title: botol" in c else "other"): c for c in (r["messages"][-1]["content"] for r in chat_server.requests)}
    assert "image: labels: water bottle; text in image: TUPPERWARE 500ml" in by_title["botol"]
    assert "image:" not in by_title["other"] and vis.calls == [1]
