"""CHIE with a local transformers image-text-to-text model (Qwen2.5-VL family first), batched, CPU or GPU.

FITRep (Zhang et al. 2025, arXiv 2511.21389, Sec. 3.1) runs a multimodal LLM (Qwen2.5-VL) over
each item. :class:`HFExtractor` loads any model folder that ``AutoProcessor`` and
``AutoModelForImageTextToText`` understand (a text-only causal LM folder also works, through
``AutoTokenizer`` + ``AutoModelForCausalLM``, with images skipped) and generates greedily in
batches with left padding. Answers go through the same client-side validation, single repair
round, per-item fallback and SQLite cache as the OpenAI-compatible back-end
(:mod:`itemrep.concepts.openai_compat`).

Loading is local only (``local_files_only=True``): pass a folder on disk. Without ``torchvision``,
transformers >= 5 cannot build the video half of Qwen-VL processors; itemrep then builds the
processor with its image processor (PIL backend), tokenizer and chat template and a stub video
processor that refuses videos, which is all CHIE needs.

Unlike the server back-ends, decoding here is not schema-constrained; validation and the repair
round catch malformed output.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from itemrep.catalog import Item
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.openai_compat import DEFAULT_IMAGE_PIXELS, LLMExtractorBase, load_image
from itemrep.concepts.prompt import ResponseError, messages_for_text, parse_response, repair_message
from itemrep.concepts.schema import ConceptHierarchy


def _image_only_processor(path: Path):
    """Build a multimodal processor without ``torchvision`` (images only; videos raise)."""
    import transformers
    import transformers.video_processing_utils as vpu
    from transformers import AutoImageProcessor, AutoTokenizer

    cfg_file = path / "processor_config.json"
    pcfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    name = pcfg.get("processor_class")
    if not name:
        pre = path / "preprocessor_config.json"
        name = json.loads(pre.read_text()).get("processor_class") if pre.is_file() else None
    if not name or not hasattr(transformers, name):
        raise ValueError(f"{path}: cannot tell the processor class (no processor_class in processor_config.json)")
    cls = getattr(transformers, name)
    image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tpl_file = path / "chat_template.jinja"
    template = tpl_file.read_text() if tpl_file.is_file() else getattr(tokenizer, "chat_template", None)

    class _NoVideoProcessor(vpu.VideoProcessorMixin):
        """Stand-in video processor: carries the merge/patch sizes the processor reads; refuses videos."""

        def __init__(self, ip) -> None:  # noqa: D107 - BaseImageProcessor init not needed
            self.merge_size = getattr(ip, "merge_size", 2)
            self.temporal_patch_size = getattr(ip, "temporal_patch_size", 2)
            self.patch_size = getattr(ip, "patch_size", 14)

        def __call__(self, *a, **k):
            raise RuntimeError("video input needs torchvision, which is not installed")

    if not hasattr(transformers, "VideoProcessorMixin"):
        # transformers only exports it when torchvision is importable; the processor's class check
        # looks it up by name on the package.
        transformers.VideoProcessorMixin = vpu.VideoProcessorMixin
    kwargs = {"image_processor": image_processor, "tokenizer": tokenizer, "chat_template": template}
    if "video_processor" in cls.get_attributes():
        kwargs["video_processor"] = _NoVideoProcessor(image_processor)
    return cls(**kwargs)


class HFExtractor(LLMExtractorBase):
    """CHIE back-end running a local transformers model.

    Args:
        model_path: model folder (config, weights, processor/tokenizer files).
        cache_path: SQLite response cache file, or ``None``.
        batch_size: items per ``generate`` call (>= 1).
        image_pixels: pixel budget each image is resized to before the processor sees it.
        text_only: ignore images (labels/OCR from ``visual`` still go into the prompt).
        fallback: per-item fallback extractor (normally the rule-based one).
        visual: optional image back-end whose labels and OCR text are added to the prompt.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), or a torch dtype name.
        max_new_tokens: generation budget per item; the repair after a cut-off answer doubles it.
        repair: run one repair round for unusable answers before falling back.

    Raises:
        ValueError: invalid setting, or a folder that transformers cannot load (names the folder).
    """

    name = "hf"

    def __init__(
        self,
        *,
        model_path: Path,
        cache_path: Path | None = None,
        batch_size: int = 4,
        image_pixels: int = DEFAULT_IMAGE_PIXELS,
        text_only: bool = False,
        fallback: ConceptExtractor | None = None,
        visual: ConceptExtractor | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 512,
        repair: bool = True,
    ) -> None:
        model_path = Path(model_path)
        if not model_path.is_dir():
            raise ValueError(f"model folder {model_path} does not exist")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        super().__init__(
            model=str(model_path.resolve()),
            cache_path=cache_path,
            image_pixels=image_pixels,
            text_only=text_only,
            fallback=fallback,
            visual=visual,
        )
        self.model_path = model_path
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        self.repair = bool(repair)
        self._load(device, dtype)

    # -- loading -----------------------------------------------------------------------------
    def _load(self, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            tdtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            tdtype = getattr(torch, dtype, None)
            if not isinstance(tdtype, torch.dtype):
                raise ValueError(f"unknown dtype {dtype!r}")
        self.device = device
        path = self.model_path
        self.multimodal = True
        try:
            try:
                self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            except (ImportError, ValueError, AttributeError):
                if importlib.util.find_spec("torchvision") is not None:
                    raise
                self.processor = _image_only_processor(path)
            self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
            self.net = AutoModelForImageTextToText.from_pretrained(path, dtype=tdtype, local_files_only=True)
        except (ValueError, KeyError, OSError) as e_mm:
            try:  # a text-only causal LM folder
                self.processor = self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                self.net = AutoModelForCausalLM.from_pretrained(path, dtype=tdtype, local_files_only=True)
                self.multimodal = False
            except (ValueError, KeyError, OSError) as e_lm:
                raise ValueError(
                    f"cannot load {path} as an image-text-to-text model ({e_mm}) nor as a causal LM ({e_lm})"
                ) from None
        self.net.to(device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = set()
        gen_eos = getattr(self.net.generation_config, "eos_token_id", None)
        for e in gen_eos if isinstance(gen_eos, list) else [gen_eos, self.tokenizer.eos_token_id]:
            if e is not None:
                self.eos_ids.add(int(e))

    # -- generation --------------------------------------------------------------------------
    @staticmethod
    def _hf_messages(messages: list[dict]) -> list[dict]:
        """OpenAI-style messages -> transformers chat-template messages (``{"type": "image"}`` parts)."""
        out = []
        for m in messages:
            c = m["content"]
            if isinstance(c, list):
                parts = [{"type": "image"} if p["type"] == "image_url" else {"type": "text", "text": p["text"]} for p in c]
                out.append({"role": m["role"], "content": parts})
            else:
                out.append({"role": m["role"], "content": [{"type": "text", "text": c}] if m["role"] == "user" else c})
        return out

    def generate(self, batch: list[tuple[list[dict], object | None]], max_new_tokens: int) -> list[tuple[str, str]]:
        """Generate greedily for a batch of conversations.

        Args:
            batch: ``(messages, image)`` pairs; messages in OpenAI form whose last user turn has an
                ``image_url`` part when ``image`` (a PIL image) is given.
            max_new_tokens: budget per sequence.

        Returns:
            ``(text, finish_reason)`` per conversation; ``finish_reason`` is ``"length"`` when the budget
            ran out before an end-of-sequence token, else ``"stop"``.
        """
        import torch

        texts, images = [], []
        for messages, image in batch:
            msgs = self._hf_messages(messages)
            if self.multimodal:
                texts.append(self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
            else:
                flat = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                         " ".join(p.get("text", "") for p in m["content"])} for m in msgs]  # fmt: skip
                texts.append(self.tokenizer.apply_chat_template(flat, add_generation_prompt=True, tokenize=False))
            if image is not None:
                images.append(image)
        if self.multimodal:
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        else:
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.device)
        n_in = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.net.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        new = out[:, n_in:].cpu()
        self._add(
            requests=len(batch),
            prompt_tokens=int(inputs["attention_mask"].sum()),
        )
        results = []
        for row in new.tolist():
            stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            gen = row if stop is None else row[:stop]
            self._add(completion_tokens=len(gen) + (0 if stop is None else 1))
            finish = "length" if stop is None and len(row) >= max_new_tokens else "stop"
            results.append((self.tokenizer.decode(gen, skip_special_tokens=True), finish))
        return results

    # -- extraction --------------------------------------------------------------------------
    def extract_one(self, item: Item) -> ConceptHierarchy:
        """Extract one item (a batch of one)."""
        return self._run([item])[0]

    def extract(self, items: Sequence[Item], *, progress: Callable[[int], None] | None = None) -> list[ConceptHierarchy]:
        """Extract all items in batches of ``batch_size``; output order = input order.

        ``stats_`` afterwards holds the keys of :data:`itemrep.concepts.openai_compat.STAT_KEYS`
        (``requests`` = sequences generated, repairs included).
        """
        t0 = time.perf_counter()
        self._reset_stats()
        self.precompute_visual(items)
        out: list[ConceptHierarchy] = []
        for start in range(0, len(items), self.batch_size):
            chunk = list(items[start : start + self.batch_size])
            out.extend(self._run(chunk))
            if progress is not None:
                progress(len(chunk))
        self._add(items=len(items))
        self.stats_["seconds"] = time.perf_counter() - t0
        return out

    def _image_url(self, path: Path) -> str:
        return "local:" + str(path)  # placeholder: the PIL image is loaded in _run

    def _run(self, items: list[Item]) -> list[ConceptHierarchy]:
        results: list[ConceptHierarchy | None] = [None] * len(items)
        todo = []  # (index, messages, image, image_hash, text_hash, image_error)
        for i, item in enumerate(items):
            try:
                user_text, image_url, image_hash, text_hash, image_error = self.prepare(item)
                cached = self.cache_get(image_hash, text_hash)
                if cached is not None:
                    self._add(cache_hits=1)
                    results[i] = self.success(item, cached, image_error)
                    continue
                image = None
                if image_url is not None and self.multimodal:
                    try:
                        image = load_image(item.image, self.image_pixels)
                    except Exception as e:  # noqa: BLE001 - answer from the text, record it
                        image_error = f"image {item.image}: {type(e).__name__}: {e}"
                        self._add(image_failures=1)
                elif image_url is not None:
                    image_error = "model is text-only; image not used"
                msgs = messages_for_text(user_text, image_url="local:" if image is not None else None, prompt=self.prompt)
                todo.append((i, msgs, image, image_hash, text_hash, image_error))
            except Exception as e:  # noqa: BLE001
                results[i] = self.fall_back(item, f"unexpected {type(e).__name__}: {e}")
        if todo:
            try:
                answers = self.generate([(m, img) for _, m, img, *_ in todo], self.max_new_tokens)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: whole batch falls back, recorded
                for i, *_ in todo:
                    results[i] = self.fall_back(items[i], f"generation failed: {type(e).__name__}: {e}")
                return [r for r in results if r is not None]
            retry = []
            for (i, msgs, img, ih, th, ierr), (text, finish) in zip(todo, answers):
                try:
                    ans = parse_response(text, finish_reason=finish)
                except ResponseError as err:
                    self._add(invalid_responses=1)
                    if self.repair:
                        retry.append((i, [*msgs, {"role": "assistant", "content": text}, repair_message(err)], img, ih, th, ierr, err))
                    else:
                        results[i] = self.fall_back(items[i], f"invalid answer ({err.reason}: {err})")
                    continue
                self.cache_put(ih, th, ans, (0, 0))
                results[i] = self.success(items[i], ans, ierr)
            if retry:
                self._add(repairs=len(retry))
                budget = self.max_new_tokens * (2 if any(r[-1].reason == "truncated" for r in retry) else 1)
                try:
                    answers = self.generate([(m, img) for _, m, img, *_ in retry], budget)
                except Exception as e:  # noqa: BLE001
                    answers = [(None, f"error: {type(e).__name__}: {e}")] * len(retry)
                for (i, _m, _img, ih, th, ierr, first), (text, finish) in zip(retry, answers):
                    try:
                        ans = parse_response(text, finish_reason=finish)
                    except ResponseError as second:
                        self._add(invalid_responses=1)
                        results[i] = self.fall_back(
                            items[i], f"invalid answer ({first.reason}: {first}); repair failed ({second.reason}: {second})"
                        )
                        continue
                    self.cache_put(ih, th, ans, (0, 0))
                    results[i] = self.success(items[i], ans, ierr)
        return [r for r in results if r is not None]
