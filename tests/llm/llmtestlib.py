"""Helpers for the LLM back-end tests: a scriptable loopback chat server and a stub fallback.

(Imported by the tests as a top-level module: pytest puts tests/llm on sys.path.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from itemrep.catalog import Item
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.prompt import load_prompt
from itemrep.concepts.schema import Concept, ConceptHierarchy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llm"


class StubRules(ConceptExtractor):
    """Stand-in for the rule-based fallback: the whole title as one ``name`` concept."""

    name = "stubrules"
    version = "0"

    def extract_one(self, item: Item) -> ConceptHierarchy:
        return ConceptHierarchy(
            item_id=item.item_id,
            concepts=[Concept(slot="name", value=(item.title or "?").lower()[:500], source="title")],
            extractor=self.identifier,
        )


def good_answer() -> dict:
    """A valid answer (the prompt's own few-shot answer)."""
    return json.loads(json.dumps(load_prompt().example["answer"]))


def completion(content: str | None, finish_reason: str = "stop", pt: int = 50, ct: int = 20) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
    }


Reply = tuple[int, dict, bytes | dict | str, float]  # status, headers, body, delay seconds


class ChatServer:
    """A loopback HTTP server whose replies a test scripts with ``responder(body, n) -> Reply``.

    Records every request body and headers; tracks the largest number of requests in flight.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.responder: Callable[[dict, int], Reply] = lambda body, n: (200, {}, completion(json.dumps(good_answer())), 0.0)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, headers, payload, delay = server.responder(body, n)
                    if delay:
                        time.sleep(delay)
                    if isinstance(payload, dict):
                        data = json.dumps(payload).encode()
                    elif isinstance(payload, str):
                        data = payload.encode()
                    else:
                        data = payload
                    try:
                        self.send_response(status)
                        for k, v in headers.items():
                            self.send_header(k, v)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()




def build_tiny_vlm(out: Path, seed: int = 0) -> Path:
    """Write a tiny randomly initialised Qwen2.5-VL model folder (no download).

    A byte-level BPE tokenizer (vocab <= 1500) is trained on the prompt text with Qwen's special tokens; the
    model has one text layer and one vision block of width 32. About 200 kB on disk.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from itemrep.concepts.hf import _image_only_processor  # noqa: F401 - ensures the shim is importable

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    from itemrep.concepts.prompt import load_prompt

    p = load_prompt()
    tok.train_from_iterator([p.system, p.user_template, json.dumps(p.example, ensure_ascii=False)] * 3, trainer)
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = template
    ids = {t: fast.convert_tokens_to_ids(t) for t in special}
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=8192,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0], window_size=56),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    (out / "chat_template.jinja").write_text(template)
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    ip.save_pretrained(out)
    cfg_proc = {"processor_class": "Qwen2_5_VLProcessor", "image_processor": ip.to_dict()}
    cfg_proc["image_processor"]["image_processor_type"] = "Qwen2VLImageProcessor"
    (out / "processor_config.json").write_text(json.dumps(cfg_proc, indent=1))
    return out
