"""Fail-safe behaviour of the OpenAI-compatible back-end and its response cache (issue 11, items 1, 5, 8, 12, 13).

Every case runs against a loopback server the test controls: ``ChatServer`` from ``llmtestlib`` for scripted
answers, and a raw-socket server here for a peer that trickles bytes.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from llmtestlib import StubRules, completion, good_answer

from itemrep.catalog import Item
from itemrep.concepts.llm_cache import ResponseCache
from itemrep.concepts.openai_compat import LLMRequestError, OpenAICompatExtractor, redact_secrets
from itemrep.concepts.prompt import PROMPT_VERSION
from itemrep.errors import ItemrepError

KEY = "sk-live-4f9Q2xTz7LmN0pR8"
ENV = "ITEMREP_TEST_KEY"


def make(server_url: str, **kw) -> OpenAICompatExtractor:
    kw.setdefault("fallback", StubRules())
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("api_key_env", ENV)
    return OpenAICompatExtractor(base_url=server_url, model="test-model", **kw)


def ok(body=None, n=0):
    return 200, {}, completion(json.dumps(good_answer())), 0.0


def _strings(h) -> list[str]:
    """Every string of a hierarchy that reaches an output (error column, concept values)."""
    out = [h.error or "", h.extractor]
    for c in h.concepts:
        out += [c.value, c.raw or ""]
    return out


def _assert_clean(text: str) -> None:
    assert KEY not in text and KEY.lower() not in text.lower()
    assert KEY[3:].lower() not in text.lower()  # no tail of it either
    assert "bearer" not in text.lower() or "bearer [redacted]" in text.lower()
    assert "Bearer sk" not in text and "Bearer 4f9" not in text


# --------------------------------------------------------------------------------------------- item 1
ECHOES = {
    # a 400 whose body echoes the request headers
    "400-echo": lambda body, n: (400, {}, {"error": "bad request", "headers": {"Authorization": f"Bearer {KEY}"}}, 0.0),
    # a 200 that is not a chat completion, echoing the header as text
    "200-not-chat": lambda body, n: (200, {}, f"Authorization: Bearer {KEY}\nHost: 127.0.0.1", 0.0),
    # a 500 (retried) echoing the bare key
    "500-echo": lambda body, n: (500, {}, {"error": f"upstream rejected key {KEY}"}, 0.0),
    # the key inside the answer text (prose, so it fails validation and is quoted in the error)
    "answer-prose": lambda body, n: (200, {}, completion(f"Your key is {KEY} (sent as Bearer {KEY})."), 0.0),
    # the key inside a valid answer: becomes a concept value
    "answer-value": lambda body, n: (200, {}, completion(json.dumps({
        "primary": [{"slot": "name", "value": f"token {KEY}", "facet": "content", "kind": "objective", "salience": 1.0},
                    {"slot": "brand", "value": f"Bearer {KEY}", "facet": "content", "kind": "objective", "salience": 0.5}],
        "auxiliary": []})), 0.0),
    # a 429 echoing a Bearer value of another key
    "429-other-bearer": lambda body, n: (429, {}, {"error": "rate limited for Authorization: Bearer sk-other-zzzzzzzz"}, 0.0),
}


@pytest.mark.parametrize("case", list(ECHOES))
def test_api_key_never_reaches_outputs_cache_or_logs(chat_server, items, monkeypatch, tmp_path, caplog, case):
    monkeypatch.setenv(ENV, KEY)
    chat_server.responder = ECHOES[case]
    db = tmp_path / "c.sqlite"
    caplog.set_level(logging.DEBUG)
    ex = make(chat_server.base_url, cache_path=db, max_retries=1)
    out = ex.extract(items[:2])
    assert chat_server.headers[0]["Authorization"] == f"Bearer {KEY}"  # the key is sent
    for h in out:
        for s in _strings(h):
            _assert_clean(s)
            assert "sk-other-zzzzzzzz" not in s
    if case != "answer-value":
        assert all(h.error for h in out)  # the failure is still recorded, only redacted
    for r in chat_server.requests:  # a repair never sends the key back either
        _assert_clean(json.dumps(r))
    ex.cache.close()
    for f in tmp_path.glob("c.sqlite*"):
        _assert_clean(f.read_bytes().decode("latin-1"))
    _assert_clean(caplog.text)
    _assert_clean(repr(ex))


def test_request_error_messages_are_redacted(chat_server, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    chat_server.responder = lambda body, n: (200, {}, {"echo": {"authorization": f"Bearer {KEY}", "key": KEY}}, 0.0)
    ex = make(chat_server.base_url)
    ex._client = ex._make_client()
    try:
        with pytest.raises(LLMRequestError) as ei:
            ex.chat([{"role": "user", "content": "hi"}])
    finally:
        ex._client.close()
        ex._client = None
    _assert_clean(str(ei.value))
    assert "not a chat-completion" in str(ei.value)


def test_failures_csv_and_concepts_parquet_hold_no_key(chat_server, monkeypatch, tmp_path):
    """End to end through the pipeline: the written files never contain the key."""
    pd = pytest.importorskip("pandas")
    from itemrep.catalog import Catalog
    from itemrep.dedup.pipeline import FITRep

    monkeypatch.setenv(ENV, KEY)
    chat_server.responder = lambda body, n: (
        (400, {}, {"error": "bad", "echo": f"Authorization: Bearer {KEY}"}, 0.0) if n % 2
        else (200, {}, completion(f"I saw Bearer {KEY}"), 0.0)
    )
    csv = tmp_path / "cat.csv"
    pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["botol merah 500ml", "kaos hitam xl", "botol merah 500 ml"]}).to_csv(csv, index=False)
    ex = make(chat_server.base_url, cache_path=tmp_path / "llm.sqlite", max_retries=0, breaker=0)
    m = FITRep.default(extractor=ex, images="off", text_encoder="none", progress=False)
    out = tmp_path / "out"
    m.dedup(Catalog.load(csv)).write(out)
    fails = pd.read_csv(out / "failures.csv")
    assert len(fails) == 3
    concepts = pd.read_parquet(out / "concepts.parquet")
    assert concepts["error"].notna().all()
    for f in out.rglob("*"):
        if f.is_file():
            _assert_clean(f.read_bytes().decode("latin-1"))


def test_redact_secrets_forms():
    s = redact_secrets(
        f'Authorization: Bearer {KEY}; json {json.dumps({"k": KEY})}; url key%3D{KEY}; basic: Basic dXNlcjpwYXNzd29yZA==; '
        "x-api-key: abcdefgh12345",
        [KEY],
    )
    assert KEY not in s and "dXNlcjpwYXNzd29yZA" not in s and "abcdefgh12345" not in s
    assert redact_secrets("plain text 2x500ml", ["x"]) == "plain text 2x500ml"  # a 1-char dummy key is no secret


# --------------------------------------------------------------------------------------------- item 5
class TrickleServer:
    """A loopback HTTP peer that answers one byte every ``interval`` seconds (headers or body)."""

    def __init__(self, *, interval: float = 0.2, stall_headers: bool = False) -> None:
        self.interval = interval
        self.stall_headers = stall_headers
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        body = json.dumps(completion(json.dumps(good_answer()))).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            if self.stall_headers:
                stream = head + body
            else:
                conn.sendall(head)
                stream = body
            for i in range(len(stream)):
                if self.stop.is_set():
                    break
                conn.sendall(stream[i : i + 1])
                time.sleep(self.interval)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("stall_headers", [False, True], ids=["body", "headers"])
def test_timeout_is_a_total_deadline_per_request(items, stall_headers):
    srv = TrickleServer(interval=0.2, stall_headers=stall_headers)  # each read succeeds well within the timeout
    try:
        ex = make(srv.base_url, timeout_s=1.0, max_retries=1, backoff_s=0.0)
        t0 = time.perf_counter()
        h = ex.extract(items[:1])[0]
        took = time.perf_counter() - t0
    finally:
        srv.close()
    assert took < 3.5, took  # two attempts of 1 s each; reading the whole answer would take minutes
    assert "timeout" in h.error and h.extractor == "stubrules/0"
    assert ex.stats_["requests"] == 2


def test_timeout_deadline_keeps_concurrency(items):
    srv = TrickleServer(interval=0.2)
    try:
        many = [Item(item_id=str(i), title=f"barang {i}") for i in range(8)]
        ex = make(srv.base_url, timeout_s=0.8, max_retries=0, concurrency=4, breaker=0)
        t0 = time.perf_counter()
        out = ex.extract(many)
        took = time.perf_counter() - t0
    finally:
        srv.close()
    assert took < 4.0, took  # 8 items, 4 at a time, 0.8 s each
    assert all("timeout" in h.error for h in out)


# -------------------------------------------------------------------------------------------- item 12
def test_oversized_body_is_not_read_and_not_echoed(chat_server, items):
    big = "x" * 300_000
    chat_server.responder = lambda body, n: (200, {}, completion(big), 0.0)
    ex = make(chat_server.base_url, max_response_bytes=64 * 1024)
    h = ex.extract(items[:1])[0]
    assert "larger than" in h.error and "65536" in h.error and h.extractor == "stubrules/0"
    assert len(chat_server.requests) == 1  # no repair request quoting it
    assert ex.stats_["repairs"] == 0


def test_oversized_body_default_cap(chat_server, items):
    huge = completion("y" * (6 << 20))  # 6 MB answer: over the default cap
    chat_server.responder = lambda body, n: (200, {}, huge, 0.0)
    ex = make(chat_server.base_url)
    h = ex.extract(items[:1])[0]
    assert "larger than" in h.error and len(chat_server.requests) == 1
    assert len(h.error) < 400


def test_long_invalid_answer_is_not_echoed_in_repair(chat_server, items):
    long_prose = "blah " * 40_000  # 200 kB: under the byte cap, but far beyond max_tokens
    chat_server.responder = lambda body, n: (200, {}, completion(long_prose), 0.0) if n == 1 else ok()
    ex = make(chat_server.base_url, max_tokens=256)
    h = ex.extract(items[:1])[0]
    assert h.error is None and len(chat_server.requests) == 2
    repair = json.dumps(chat_server.requests[1])
    assert "blah blah" not in repair and len(repair) < 20_000
    assert "too long" in chat_server.requests[1]["messages"][-1]["content"]


def test_error_body_is_read_only_in_part(chat_server, items):
    chat_server.responder = lambda body, n: (400, {}, "e" * 5_000_000, 0.0)
    h = make(chat_server.base_url).extract(items[:1])[0]
    assert "HTTP 400" in h.error and len(h.error) < 400


def test_max_response_bytes_validated():
    with pytest.raises(ValueError, match="max_response_bytes"):
        OpenAICompatExtractor(base_url="http://127.0.0.1:1/v1", model="m", max_response_bytes=10)


# -------------------------------------------------------------------------------------------- item 13
def test_retry_after_beyond_bound_gives_up_at_once(chat_server, items):
    chat_server.responder = lambda body, n: (429, {"Retry-After": "30"}, {"error": "slow down"}, 0.0)
    ex = make(chat_server.base_url, max_retries=3, max_retry_after_s=2.0)
    t0 = time.perf_counter()
    h = ex.extract(items[:1])[0]
    assert time.perf_counter() - t0 < 1.0
    assert len(chat_server.requests) == 1
    assert "Retry-After" in h.error and "30" in h.error and "--llm-max-retry-after" in h.error


def test_retry_after_within_bound_is_honoured(chat_server, items):
    chat_server.responder = lambda body, n: (429, {"Retry-After": "1"}, {"error": "slow"}, 0.0) if n == 1 else ok()
    ex = make(chat_server.base_url, max_retry_after_s=1.0)
    t0 = time.perf_counter()
    h = ex.extract(items[:1])[0]
    assert time.perf_counter() - t0 >= 0.95 and h.error is None


def test_total_retry_budget(chat_server, items):
    chat_server.responder = lambda body, n: (503, {"Retry-After": "1"}, "busy", 0.0)
    ex = make(chat_server.base_url, max_retries=10, retry_budget_s=1.5)
    t0 = time.perf_counter()
    h = ex.extract(items[:1])[0]
    took = time.perf_counter() - t0
    assert 0.95 <= took < 2.0, took
    assert len(chat_server.requests) == 2  # waited 1 s once; a second wait would pass the 1.5 s budget
    assert "retry budget" in h.error and "--llm-retry-budget" in h.error


def test_retry_settings_validated():
    for kw in ({"max_retry_after_s": -1}, {"retry_budget_s": -1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            OpenAICompatExtractor(base_url="http://127.0.0.1:1/v1", model="m", **kw)


# --------------------------------------------------------------------------------------------- item 8
def test_llm_cache_directory_is_a_clear_error(tmp_path):
    d = tmp_path / "cachedir"
    d.mkdir()
    with pytest.raises(ItemrepError, match="cachedir.*is a directory"):
        ResponseCache(d)


def test_llm_cache_not_sqlite_is_a_clear_error(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("hello, not a database\n" * 50)
    with pytest.raises(ItemrepError, match="notes.sqlite.*not a SQLite database") as ei:
        ResponseCache(p)
    assert isinstance(ei.value, sqlite3.DatabaseError)  # still what callers caught before


def test_llm_cache_under_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ItemrepError, match="afile"):
        ResponseCache(f / "c.sqlite")


def test_llm_cache_foreign_sqlite_is_a_clear_error(tmp_path):
    p = tmp_path / "other.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE responses (id INTEGER, body TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ItemrepError, match="other.sqlite"):
        ResponseCache(p)


@pytest.mark.parametrize("kind", ["dir", "text"])
def test_build_extractor_llm_cache_errors_name_the_path(tmp_path, kind):
    from itemrep.concepts.registry import build_extractor

    p = tmp_path / "my-llm-cache"
    if kind == "dir":
        p.mkdir()
    else:
        p.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ItemrepError, match="my-llm-cache"):
        build_extractor("openai", base_url="http://127.0.0.1:1/v1", model="m", cache_path=p, fallback=StubRules())


def test_cli_llm_cache_directory_exits_with_message(tmp_path):
    pd = pytest.importorskip("pandas")
    from typer.testing import CliRunner

    from itemrep.cli import app

    csv = tmp_path / "cat.csv"
    pd.DataFrame({"item_id": ["1", "2"], "title": ["a b", "c d"]}).to_csv(csv, index=False)
    d = tmp_path / "cache-as-dir"
    d.mkdir()
    r = CliRunner().invoke(app, ["dedup", str(csv), "--out", str(tmp_path / "out"), "--extractor", "openai",
                                 "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--llm-cache", str(d), "--quiet"])
    assert r.exit_code == 2, r.output
    assert "cache-as-dir" in r.output and "directory" in r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def test_llm_cache_corrupt_row_is_a_miss(tmp_path):
    db = tmp_path / "c.sqlite"
    c = ResponseCache(db)
    c.put("b", "m", PROMPT_VERSION, "", "t", {"ok": 1})
    c._conn.execute("UPDATE responses SET answer = '{not json'")
    c._conn.commit()
    assert c.get("b", "m", PROMPT_VERSION, "", "t") is None
    c.close()


def test_llm_cache_write_failure_warns_once_and_keeps_answers(chat_server, items, tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    ex = make(chat_server.base_url, cache_path=db)
    real = ex.cache._conn
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    ex.cache._conn = ro  # the file turned read-only under us
    with pytest.warns(UserWarning, match="c.sqlite") as rec:
        out = ex.extract(items)
    assert all(h.error is None and h.concepts for h in out)
    assert len([w for w in rec if "c.sqlite" in str(w.message)]) == 1
    real.close()


def test_password_in_base_url_never_shown(items):
    from itemrep.concepts.gguf import free_port

    ex = OpenAICompatExtractor(base_url=f"http://user:pw-Zq81xK@127.0.0.1:{free_port()}/v1?api_key=qs-secret-77", model="m",
                               fallback=StubRules(), max_retries=0)  # fmt: skip
    h = ex.extract(items[:1])[0]
    assert "cannot reach" in h.error
    for s in (h.error, repr(ex)):
        assert "pw-Zq81xK" not in s and "qs-secret-77" not in s
