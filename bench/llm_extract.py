"""Rule-based CHIE vs the LLM route (bundled GGUF model behind llama-cpp-python's server) on Shopee.

What it measures, in one run and one table:

* **items/s** of each extractor on the same listings (the LLM cold, i.e. with a fresh response cache,
  and warm, i.e. the same extraction again answered from the SQLite cache);
* **mean per-item F1** (the Shopee competition metric) of deduplication driven by each extractor's
  concepts, two ways:
  1. ``primary TF-IDF``: the primary concept values of each item joined into one string, TF-IDF over
     character 2-4-grams (``char_wb``), cosine >= t, connected components; t tuned per extractor on
     the same sample (grid 0.30..0.95). Simple, transparent, and it isolates the concepts;
  2. ``FITRep``: the project's pipeline (:class:`itemrep.dedup.pipeline.FITRep`, slot encoders + fusion +
     clustering, images off, phash on) fitted (α, τ) and evaluated on the same sample, with the
     extractor's hierarchies fed in. Skipped if the pipeline is not importable.
  Both are tuned in-sample, identically for every extractor, so they compare extractors, not
  absolute dedup quality (``bench/shopee.py`` does that on a held-out split).
  A whole-title TF-IDF row is the concept-free reference.

Data: ``$ITEMREP_DATA/shopee/train.csv``; the development split is the 70 % part of
``GroupShuffleSplit(train_size=0.7, random_state=0)`` over ``label_group`` (as ``bench/shopee.py``).
The sample is whole label groups drawn in a seeded random order until ``--n`` listings (so every
sampled listing keeps its true duplicates in the sample).

Run (CPU, after ``scripts/install_llm.sh`` with ``ITEMREP_LLM_MODELS=qwen2.5-coder-1.5b``)::

    python bench/llm_extract.py --n 500 --model qwen2.5-coder-1.5b

or against any running OpenAI-compatible server (vLLM on a GPU, see docs/llm.md)::

    python bench/llm_extract.py --n 500 --base-url http://127.0.0.1:8000/v1 --served-model Qwen/Qwen2.5-VL-7B-Instruct
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GroupShuffleSplit

from itemrep.catalog import Catalog, Item
from itemrep.concepts.base import ConceptExtractor
from itemrep.concepts.schema import ConceptHierarchy
from itemrep.dedup.metrics import mean_item_f1
from itemrep.paths import dataset

console = Console(stderr=True)


class Precomputed(ConceptExtractor):
    """Hands out hierarchies computed before (so the pipeline does not extract twice)."""

    def __init__(self, hierarchies: list[ConceptHierarchy], identifier: str) -> None:
        super().__init__()
        self._by_id = {h.item_id: h for h in hierarchies}
        self.name, self.version = identifier.split("/", 1)

    def extract_one(self, item: Item) -> ConceptHierarchy:
        return self._by_id[item.item_id]


def sample_dev(cat: Catalog, n: int, seed: int) -> Catalog:
    """Whole label groups of the 70 % development split, in seeded random order, up to ``n`` listings."""
    labels = np.asarray(cat.labels)
    dev, _ = next(GroupShuffleSplit(n_splits=1, train_size=0.7, random_state=0).split(np.zeros(len(cat)), groups=labels))
    dev = np.sort(dev)
    groups: dict[str, list[int]] = {}
    for i in dev:
        groups.setdefault(labels[i], []).append(int(i))
    order = sorted(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    picked: list[int] = []
    for g in order:
        if len(picked) + len(groups[g]) <= n:
            picked.extend(groups[g])
        if len(picked) == n:
            break
    return cat.subset(np.sort(np.asarray(picked)))


def run_extractor(ex: ConceptExtractor, items: list[Item], label: str) -> tuple[list[ConceptHierarchy], float]:
    """Extract with a progress bar; returns (hierarchies, seconds)."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as prog:  # fmt: skip
        task = prog.add_task(label, total=len(items))
        t0 = time.perf_counter()
        out = ex.extract(items, progress=lambda k: prog.advance(task, k))
        return out, time.perf_counter() - t0


def tfidf_f1(texts: list[str], labels: list[str]) -> tuple[float, float]:
    """Best mean per-item F1 over thresholds of char-TF-IDF cosine + connected components; (f1, t)."""
    texts = [t if t.strip() else "∅" for t in texts]
    x = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1).fit_transform(texts)
    sim = (x @ x.T).tocoo()
    best = (0.0, 0.0)
    for t in np.round(np.arange(0.30, 0.96, 0.05), 2):
        keep = sim.data >= t
        g = (sim.row[keep], sim.col[keep])
        from scipy.sparse import coo_matrix

        adj = coo_matrix((np.ones(keep.sum()), g), shape=sim.shape)
        _, comp = connected_components(adj, directed=False)
        f1 = mean_item_f1(labels, comp)
        if f1 > best[0]:
            best = (f1, float(t))
    return best


def fitrep_f1(cat: Catalog, hierarchies: list[ConceptHierarchy], identifier: str) -> float | None:
    """Mean per-item F1 of FITRep fitted and evaluated on ``cat`` with the given hierarchies."""
    try:
        from itemrep.dedup.pipeline import FITRep
    except ImportError as e:
        console.print(f"[yellow]FITRep pipeline not importable ({e}); skipping the FITRep column")
        return None
    try:
        m = FITRep(extractor=Precomputed(hierarchies, identifier), images="off", random_state=0)
        m.fit(cat, nn_rule="off")  # as docs/llm.md measured it (before the rule became fit's default)
        res = m.dedup(cat)
        return float(res.metrics["mean_item_f1"])
    except Exception as e:  # noqa: BLE001 - report, do not hide the other columns
        console.print(f"[yellow]FITRep failed for {identifier}: {type(e).__name__}: {e}")
        return None


def primary_text(h: ConceptHierarchy) -> str:
    return " ".join(c.value for c in h.concepts if c.level == "primary")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="listings in the sample (whole groups)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b", help="bundled GGUF key (itemrep.concepts.gguf.BUNDLED)")
    ap.add_argument("--base-url", default=None, help="use this running server instead of starting llama_cpp.server")
    ap.add_argument("--served-model", default="local-gguf", help="model name on --base-url")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("runs/llm_extract"))
    ap.add_argument("--resume", action="store_true", help="keep the response cache of an earlier run (cold numbers then are not cold)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the llama server

    root = dataset("shopee")
    if root is None or not (root / "train.csv").is_file():
        console.print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README)")
        return 0
    cat = Catalog.load(root / "train.csv", id_col="posting_id", label_col="label_group", image_col=None, phash_col="image_phash")
    sample = sample_dev(cat, args.n, args.seed)
    items, labels = sample.items, list(sample.labels)
    console.print(f"sample: {len(items)} listings in {len(set(labels))} groups of the development split (seed {args.seed})")
    args.out.mkdir(parents=True, exist_ok=True)

    from itemrep.concepts.rules import RuleBasedExtractor

    rows = []
    rules = RuleBasedExtractor()
    h_rules, s_rules = run_extractor(rules, items, "rules")

    from itemrep.concepts import gguf
    from itemrep.concepts.openai_compat import OpenAICompatExtractor

    cache = args.out / f"llm_cache_{args.model if not args.base_url else 'server'}.sqlite"
    if not args.resume:
        for suffix in ("", "-wal", "-shm"):
            Path(str(cache) + suffix).unlink(missing_ok=True)
    server = None
    if args.base_url is None:
        try:
            server = gguf.LlamaServer(gguf.model_path(args.model), n_ctx=4096, n_threads=args.threads,
                                      log_path=args.out / "llama_server.log").start()  # fmt: skip
        except (gguf.ModelNotInstalled, RuntimeError) as e:
            console.print(f"[red]cannot start the LLM server: {e}")
            return 1
        base_url, served = server.base_url, server.alias
        model_label = f"{args.model} (llama.cpp, {args.threads} threads)"
    else:
        base_url, served, model_label = args.base_url, args.served_model, args.served_model
    try:
        def make():
            return OpenAICompatExtractor(base_url=base_url, model=served, cache_path=cache, text_only=True,
                                         concurrency=args.concurrency, timeout_s=300.0, fallback=RuleBasedExtractor(),
                                         max_tokens=args.max_tokens)  # fmt: skip

        llm = make()
        h_llm, s_llm = run_extractor(llm, items, "LLM (cold cache)")
        stats_cold = dict(llm.stats_)
        llm_warm = make()
        _, s_warm = run_extractor(llm_warm, items, "LLM (warm cache)")
        stats_warm = dict(llm_warm.stats_)
    finally:
        if server is not None:
            server.stop()

    n = len(items)
    title_f1, title_t = tfidf_f1([it.title for it in items], labels)
    rows.append({"extractor": "(whole title, no concepts)", "items_per_s": None, "tfidf_f1": title_f1, "tfidf_t": title_t, "fitrep_f1": None})
    for name, hs, secs, ident in (("rules", h_rules, s_rules, rules.identifier), (f"LLM {model_label}", h_llm, s_llm, llm.identifier)):
        f1, t = tfidf_f1([primary_text(h) for h in hs], labels)
        rows.append({"extractor": name, "items_per_s": n / secs, "tfidf_f1": f1, "tfidf_t": t,
                     "fitrep_f1": fitrep_f1(sample, hs, ident),
                     "concepts_per_item": float(np.mean([len(h.concepts) for h in hs])),
                     "primary_per_item": float(np.mean([len(h.primary) for h in hs]))})  # fmt: skip
    rows.append({"extractor": "LLM, warm cache", "items_per_s": n / s_warm, "tfidf_f1": None, "tfidf_t": None, "fitrep_f1": None})

    table = Table(title=f"CHIE extractors on {n} Shopee dev listings ({len(set(labels))} groups), mean per-item F1")
    for col in ("extractor", "items/s", "primary TF-IDF F1 (t)", "FITRep F1", "concepts/item"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["extractor"],
            "" if r["items_per_s"] is None else f"{r['items_per_s']:.2f}",
            "" if r["tfidf_f1"] is None else f"{r['tfidf_f1']:.4f} ({r['tfidf_t']:.2f})",
            "" if r.get("fitrep_f1") is None else f"{r['fitrep_f1']:.4f}",
            "" if r.get("concepts_per_item") is None else f"{r['concepts_per_item']:.1f}",
        )
    Console().print(table)
    keys = ("requests", "cache_hits", "failures", "fallbacks", "repairs", "prompt_tokens", "completion_tokens", "seconds")
    console.print("LLM cold stats: " + ", ".join(f"{k} {stats_cold.get(k, 0):.0f}" for k in keys))
    console.print("LLM warm stats: " + ", ".join(f"{k} {stats_warm.get(k, 0):.0f}" for k in keys))
    (args.out / "results.json").write_text(json.dumps({"n": n, "groups": len(set(labels)), "rows": rows, "llm_cold": stats_cold,
                                                       "llm_warm": stats_warm, "argv": sys.argv}, indent=1))  # fmt: skip
    examples = [{"title": it.title, "rules": primary_text(a), "llm": primary_text(b), "llm_error": b.error}
                for it, a, b in list(zip(items, h_rules, h_llm))[:15]]  # fmt: skip
    (args.out / "examples.json").write_text(json.dumps(examples, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
