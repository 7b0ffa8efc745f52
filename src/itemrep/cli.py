"""Command-line interface: ``itemrep fit``, ``itemrep dedup`` and ``itemrep rec ...``.

Contract (other tools depend on it)::

    itemrep fit CATALOG --label-col COL --model-dir DIR [column flags]
    itemrep fit CATALOG --pairs LABELLED_PAIRS --model-dir DIR [--label-col COL] [--prior builtin|none|DIR]
    itemrep dedup CATALOG --out DIR [--model-dir DIR] [column flags]
    itemrep pairs PAIRS --out scores.parquet [--catalog CATALOG] [--model-dir DIR] [column flags]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from itemrep.errors import Interrupted, ItemrepError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="itemrep: FITRep near-duplicate deduplication and LIRDRec multimodal recommendation.")

# ---------------------------------------------------------------- shared options
IdCol = typer.Option(None, "--id-col", help="Item id column (default: item_id, id, posting_id, article_id or sku).")
TitleCol = typer.Option(None, "--title-col", help="Title column (default: title, name, prod_name or product_name).")
TextCol = typer.Option(None, "--text-col", help="Free-text column (default: text, description, detail_desc or desc).")
ImageCol = typer.Option(None, "--image-col", help="Image path column, relative to the catalog file (default: image, image_path, img or photo).")
PhashCol = typer.Option(None, "--phash-col", help="64-bit perceptual hash column, 16 hex digits (default: image_phash or phash).")
ImageRoot = typer.Option(None, "--image-root", help="Read local images only under DIR: relative image paths resolve there, a path outside it is a per-item failure (default: relative to the catalog's folder, anywhere). http(s) URLs are downloaded either way.")
Sep = typer.Option(None, "--sep", help="CSV delimiter, e.g. ';' or '\\t' (default: sniffed from the header; tab for .tsv).")
Encoding = typer.Option(None, "--encoding", help="Text encoding of a CSV/JSONL catalog, e.g. cp1252 or latin-1 (default: UTF-8).")
MissingValues = typer.Option(None, "--missing-values", help="Comma-separated cell values read as missing, case-insensitive (default: NaN,nan,-nan,+nan,null,None,N/A,#N/A); '' for none.")
Reducer = typer.Option(None, "--reducer", help="SPDR reducer: umap, pca or none (default: the model's, else pca).")
Images = typer.Option(None, "--images", help="Image features: auto, on or off (default: the model's, else auto).")
Ocr = typer.Option(None, "--ocr/--no-ocr", help="Read text in images with OCR (slower).")
Extractor = typer.Option("rules", "--extractor", help="CHIE back-end: rules (offline), openai (OpenAI-compatible server) or hf (local transformers model).")
BaseUrl = typer.Option(None, "--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (--extractor openai).")
ModelName = typer.Option(None, "--model", help="Model name on the server (openai) or a local model directory (hf).")
ApiKeyEnv = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key (never logged).")
LlmCache = typer.Option(None, "--llm-cache", help="SQLite response cache for LLM extraction (default: OUT/llm_cache.sqlite).")
LlmConc = typer.Option(4, "--llm-concurrency", help="Concurrent LLM requests.")
LlmTimeout = typer.Option(60.0, "--llm-timeout", help="Total seconds per LLM request (connect, send, wait and read) before a retry.")
LlmRetryAfter = typer.Option(60.0, "--llm-max-retry-after", help="Longest Retry-After wait honoured (seconds); a server asking for longer fails that request at once.")
LlmRetryBudget = typer.Option(120.0, "--llm-retry-budget", help="Most seconds one LLM request may spend waiting between its retries, in total.")
LlmMaxBytes = typer.Option(4194304, "--llm-max-response-bytes", help="Largest LLM response body read; larger answers are refused.")
TextOnly = typer.Option(False, "--text-only", help="Send no image to the LLM: title + OCR text + image labels only (CPU route).")
TextEncoder = typer.Option(None, "--text-encoder", help="Dense text encoder: use (bundled multilingual USE), st:PATH_OR_NAME (sentence-transformers) or none.")
CacheDir = typer.Option(None, "--cache-dir", help="Image feature cache directory (default: ~/.cache/itemrep).")
Seed = typer.Option(0, "--seed", help="Random seed (same input and seed give the same cluster ids).")
ChunkSize = typer.Option(20000, "--chunk-size", min=100, help="Items per chunk in the per-item stages (bounds their memory).")
Jobs = typer.Option(None, "--jobs", min=1, help="Worker processes for concept extraction and term counting (default: up to 2 cores; rule-based extractor only).")
Quiet = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _prepare(a: dict, out: Path):
    """Load the catalog and build the FITRep keyword arguments from a command's options ``a``.

    Returns ``(catalog, kwargs)``; the LLM response cache defaults to ``out/llm_cache.sqlite``.
    """
    from itemrep.catalog import Catalog

    cat = Catalog.load(a["catalog"], **{f"{c}_col": a[f"{c}_col"] for c in ("id", "title", "text", "image", "phash", "label")},
                       images=a["images"], image_root=a["image_root"], sep=a["sep"], encoding=a["encoding"],
                       missing_values=a["missing_values"], cache_dir=a["cache_dir"])
    for w in cat.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    kw = _model_kwargs({k: v for k, v in a.items() if k != "threshold"}, out / "llm_cache.sqlite")
    return cat, kw


def _summary(result, out: Path) -> None:
    run = result.run
    if run.get("slots_without_weight"):
        typer.secho(
            f"warning: the model gives no weight to slots {', '.join(run['slots_without_weight'])} found in this catalog; "
            "fit a model on labelled items of your own (`itemrep fit CATALOG --label-col COL --model-dir DIR`) to use them",
            fg=typer.colors.YELLOW, err=True)
    if run.get("weighted_slots_absent"):
        gone = run["weighted_slots_absent"]
        typer.secho(
            f"warning: the model weighs slots {', '.join(f'{k} (α {v:.3f})' for k, v in gone.items())} that this catalog lacks; "
            f"their total weight {sum(gone.values()):.3f} was spread over the present slots by renormalising α. "
            "Fit a model on catalogs like this one (`itemrep fit`) for weights made for these slots",
            fg=typer.colors.YELLOW, err=True)
    if run.get("degenerate_extractor"):
        d = run["degenerate_extractor"]
        typer.secho(
            f"warning: the concept extractor gave the same concepts to {d['items']} of {run['n_items']} items "
            f"({d['share']:.0%}); its output looks degenerate (a misconfigured server or model?): check concepts.parquet",
            fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"{run['n_items']} items -> {run['n_clusters']} clusters "
        f"({run['n_duplicates_removed']} duplicates), {run['total_seconds']:.1f} s; "
        f"failed items: {run['failed_items']}" + (f" (see {out / 'failures.csv'})" if run["failed_items"] else ""),
        err=True,
    )
    nn = run.get("nn_rule")
    if nn:
        share = "" if nn.get("share") is None else f"{nn['share']:.0%} of the items have an edge ≥ τ"
        need = "" if nn.get("min_share") is None else f", the rule needs {nn['min_share']:.0%}"
        typer.echo(f"nearest-neighbour rule (best candidate ≥ {nn['threshold']:.3f}): "
                   + ("applied" if nn["applied"] else "not applied") + (f" ({share}{need})" if share else ""), err=True)
    if result.metrics:
        m = result.metrics
        typer.echo(
            f"mean per-item F1 {m['mean_item_f1']:.4f}, pairwise P {m['pairwise_precision']:.4f} "
            f"R {m['pairwise_recall']:.4f} F1 {m['pairwise_f1']:.4f}, ARI {m['adjusted_rand_index']:.4f}",
            err=True,
        )
    from itemrep.dedup.pipeline import OUTPUT_FILES

    written = [f for f in OUTPUT_FILES if (out / f).is_file()]
    typer.echo(f"wrote {out}/" + ", ".join(written), err=True)


@app.command()
def fit(
    catalog: Path = typer.Argument(..., help="Catalog (.csv, .jsonl or .parquet) with a group column (--label-col) or the items --pairs names."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Ground-truth group column: items with the same value are duplicates (this, --pairs, or both)."),
    model_dir: Path = typer.Option(..., "--model-dir", help="Where to write model.json (α, τ, parameters)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Labelled pairs of CATALOG items: CSV/TSV/JSONL/Parquet with item_a, item_b, label (1/0 or true/false; rows with an empty label are skipped), e.g. a filled-in `itemrep review-pairs` file. They join the training pairs of --label-col, or are the only ones; τ is chosen on them too."),
    prior: str = typer.Option("auto", "--prior", help="Model whose weights the fit is pulled toward: builtin, none, or a model dir. auto: the built-in model with --pairs alone (a few pairs correct a model rather than replace it), none otherwise."),
    prior_strength: Optional[float] = typer.Option(None, "--prior-strength", min=0.0, help="Weight of --prior against the pairs' summed log-loss (default 10, chosen on Shopee's select split: docs/dedup.md, review loop)."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    reducer: Optional[str] = Reducer, images: Optional[str] = Images, ocr: Optional[bool] = Ocr,
    text_encoder: Optional[str] = TextEncoder,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, llm_max_retry_after: float = LlmRetryAfter, llm_retry_budget: float = LlmRetryBudget,
    llm_max_response_bytes: int = LlmMaxBytes, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    seed: int = Seed, quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
    select: Optional[Path] = typer.Option(None, "--select", help="A second labelled catalog (other groups, same columns) on which τ is chosen after α is fitted on CATALOG: the select split of a fit / select / report protocol. τ is chosen inside the pool of both catalogs (F1 on the --select items), so it holds in large catalogs."),
    nn_rule: str = typer.Option("auto", "--nn-rule", help="Nearest-neighbour rule (every item keeps its best candidate when that pair scores at least the fitted pair-decision point τ_logistic): auto = applied on catalogs where at least 40 % of the items already have an edge ≥ τ; on = always; off = never; select = chosen on --select among off and thresholds 0.20..0.45 (then applied whatever the catalog). Measured: docs/dedup.md."),
    blend_rounds: int = typer.Option(0, "--blend-rounds", min=0, max=5, help="Rounds of neighbourhood blending of the slot vectors (0 = off; measured gain on Shopee: docs/dedup.md)."),
) -> None:
    """Learn slot weights α and the clustering threshold τ from a labelled catalog (--label-col), labelled pairs (--pairs), or both."""
    import numpy as np

    from itemrep.dedup.pipeline import FITRep

    try:
        a = dict(locals())
        if nn_rule not in ("auto", "on", "off", "select"):
            raise ValueError(f"--nn-rule must be auto, on, off or select; got {nn_rule!r}")
        if nn_rule == "select" and select is None:
            raise ValueError("--nn-rule select needs --select: the rule's threshold is chosen on a second labelled catalog")
        if label_col is None and pairs is None:
            raise ValueError("fit learns from --label-col (a group column), --pairs (labelled pairs) or both; give one")
        if select is not None and label_col is None:
            raise ValueError("--select needs --label-col: τ is chosen there by group F1 (with --pairs alone, τ is chosen on the pairs)")
        cat, kw = _prepare(a, model_dir)
        if label_col is not None:
            cat.require_labels("fit")
        fit_kw, prior_name = _fit_pairs_kwargs(pairs, prior, prior_strength, label_col, encoding)
        sel = None
        if select is not None:
            sel, _ = _prepare(dict(a, catalog=select), model_dir)
            sel.require_labels("fit --select")
        m = FITRep(**kw, blend_rounds=blend_rounds)
        m.fit(cat, **fit_kw, nn_rule="on" if nn_rule == "select" else nn_rule)
        if sel is not None:
            from itemrep.catalog import Catalog

            dup = sorted(set(cat.ids) & set(sel.ids))[:3]
            if dup:
                raise ValueError(f"--select shares item ids with CATALOG (e.g. {', '.join(map(repr, dup))}); "
                                 "use disjoint label groups for fit and select")
            # τ is chosen inside the pool of both catalogs, F1 counted on the --select items: a τ
            # chosen on a small pool is too loose for a large one (docs/dedup.md, pool size)
            pool = Catalog(items=list(cat.items) + list(sel.items), columns=dict(cat.columns))
            nn_grid = ([None] + [round(float(x), 3) for x in np.arange(0.2, 0.5, 0.05)]) if nn_rule == "select" else None
            m.tune(pool, tau_grid=[round(float(x), 3) for x in np.arange(0.2, 0.8, 0.01)], nn_grid=nn_grid,
                   score_on=sel.ids)
            ti = m.tune_info_
            typer.echo(f"chosen on --select ({len(sel)} items, inside the pool of both catalogs): τ = {ti['tau']:.3f}"
                       + (f", nearest-neighbour threshold {ti['nn_threshold']}" if ti["nn_threshold"] is not None else "")
                       + f", select mean per-item F1 {ti['select_mean_item_f1']:.4f}", err=True)
        path = m.save(model_dir)
    except Interrupted as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C); nothing was written", 130)
    except (ItemrepError, ValueError) as e:
        _fail(str(e))
    info = m.fit_info_
    if info.get("n_labelled_pairs"):
        typer.echo(f"fitted on {info['n_items']} items: {info['n_labelled_pairs']} labelled pairs ({info['labelled_positive_pairs']} "
                   f"duplicates)" + (f" + {info['n_candidate_pairs']} candidate pairs of the groups" if info["n_candidate_pairs"] else "")
                   + (f", prior {prior_name} (strength {info['prior']['strength']:g})" if info.get("prior") else "")
                   + f": τ = {info['tau']:.3f} ({info['tau_criterion']} {info['train_tau_score']:.4f})", err=True)
    else:
        typer.echo(f"fitted on {info['n_items']} items ({info['positive_pairs']} duplicate pairs of {info['n_candidate_pairs']} candidates): "
                   f"τ = {info['tau']:.3f}, train mean per-item F1 {info['train_mean_item_f1']:.4f}", err=True)
    typer.echo("α: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(info["alpha"].items(), key=lambda kv: -kv[1])), err=True)
    nn_fit = info.get("nn_rule") or {}
    if nn_fit.get("note") or nn_fit.get("threshold") is not None:
        typer.echo(f"nearest-neighbour rule ({nn_fit.get('mode')}): "
                   + (f"threshold {nn_fit['threshold']:.4f}" if nn_fit.get("threshold") is not None else "off")
                   + ("" if nn_fit.get("min_share") is None else f", applied on catalogs where ≥ {nn_fit['min_share']:.0%} of the items have an edge ≥ τ")
                   + (f"; {nn_fit['note']}" if nn_fit.get("note") else ""), err=True)
    if getattr(m, "tune_info_", None):
        typer.echo(f"the model uses τ = {m.tau:.3f} (chosen on --select)", err=True)
    typer.echo(f"wrote {path}", err=True)


def _fit_pairs_kwargs(pairs: Optional[Path], prior: str, strength: Optional[float], label_col: Optional[str],
                      encoding: Optional[str]) -> tuple[dict, str]:
    """``FITRep.fit`` keyword arguments of ``itemrep fit --pairs/--prior`` (``{}`` without --pairs
    and prior) and the prior used (``--prior auto``: the built-in model with --pairs alone, else none)."""
    from itemrep.dedup.pipeline import DEFAULT_PRIOR_STRENGTH, FITRep
    from itemrep.dedup.review import read_pair_labels

    kw: dict = {}
    if pairs is not None:
        kw["pairs"] = read_pair_labels(pairs, encoding=encoding)
    p = ("builtin" if pairs is not None and label_col is None else "none") if prior == "auto" else prior
    if p != "none":
        kw.update(prior=FITRep.default() if p == "builtin" else FITRep.load(Path(p)),
                  prior_strength=DEFAULT_PRIOR_STRENGTH if strength is None else strength)
    return kw, p


@app.command()
def dedup(
    catalog: Path = typer.Argument(..., help="Catalog to deduplicate (.csv, .jsonl or .parquet)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Model from `itemrep fit` (default: the built-in model fitted on the Shopee development split)."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Ground-truth groups, to write metrics.json."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    reducer: Optional[str] = Reducer, images: Optional[str] = Images, ocr: Optional[bool] = Ocr,
    text_encoder: Optional[str] = TextEncoder,
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override τ, the minimum similarity of an edge."),
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, llm_max_retry_after: float = LlmRetryAfter, llm_retry_budget: float = LlmRetryBudget,
    llm_max_response_bytes: int = LlmMaxBytes, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    seed: int = Seed, quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
    features: bool = typer.Option(False, "--features", help="Also write item_features.parquet: cluster id, cluster size, representative flag, score to the representative and the primary concept values of every item, for CTR models (docs/dedup.md)."),
    report: bool = typer.Option(False, "--report", help="Also write OUT/report.html (charts, cluster gallery, borderline pairs; one offline file) and OUT/review_pairs.csv; `itemrep report OUT` remakes it with other options."),
) -> None:
    """Give every item a stable cluster id; near-duplicates share one."""
    from itemrep.dedup.pipeline import FITRep

    from itemrep.dedup.pipeline import check_out_dir

    try:
        check_out_dir(out)  # before any work: a bad --out fails now, not after the computation
        cat, kw = _prepare(locals(), out)
        if threshold is not None:
            kw["threshold"] = threshold
        m = FITRep.load(model_dir, **kw) if model_dir else FITRep.default(**kw)
        result = m.dedup(cat)
        result.run["model"] = str(model_dir) if model_dir else "built-in"
        result.write(out)
        if features:
            from itemrep.dedup.features import item_features, write_item_features

            write_item_features(item_features(result), out)
    except Interrupted as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C); nothing was written", 130)
    except (ItemrepError, ValueError, OSError) as e:
        _fail(str(e))
    _summary(result, out)
    if features:
        typer.echo(f"wrote {out}/item_features.parquet (features for CTR models, docs/dedup.md)", err=True)
    if report:
        from itemrep.report.cli import write_report

        try:
            write_report(out, cat, seed=seed)
        except (ItemrepError, ValueError, OSError) as e:
            _fail(f"the dedup outputs are written, the report is not: {e}")


def _model_kwargs(a: dict, llm_cache_default: Path) -> dict:
    """FITRep keyword arguments from a command's options ``a`` (the model part of :func:`_prepare`)."""
    kw = {k: a[k] for k in ("reducer", "images", "ocr", "text_encoder") if a[k] is not None}
    kw.update(progress=not a["quiet"], cache_dir=a["cache_dir"], random_state=a["seed"], extractor=None,
              chunk_size=a["chunk_size"], n_jobs=a["jobs"])
    if a.get("threshold") is not None:
        kw["threshold"] = a["threshold"]
    if a["extractor"] != "rules":
        from itemrep.dedup.images import build_extractor

        kw["extractor"] = build_extractor(
            a["extractor"], base_url=a["base_url"], model=a["model"], api_key_env=a["api_key_env"],
            cache_path=a["llm_cache"] or llm_cache_default, concurrency=a["llm_concurrency"],
            timeout_s=a["llm_timeout"], text_only=a["text_only"],
            **({"max_retry_after_s": a["llm_max_retry_after"], "retry_budget_s": a["llm_retry_budget"],
                "max_response_bytes": a["llm_max_response_bytes"]} if a["extractor"] == "openai" else {}))
    return kw


def _check_out_file(path: Path, flag: str) -> None:
    """Before any work: ``path`` can be written as a file (its folder is created if needed)."""
    if path.exists() and path.is_dir():
        raise OSError(f"{flag} {path}: is a directory; give a file path, e.g. {path / 'scores.parquet'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".itemrep-write-test-{path.name}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{flag} {path}: cannot write there ({e.strerror or e}); choose a writable path") from None


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then move it into place."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@app.command("pairs")
def pairs_cmd(
    pairs: Path = typer.Argument(..., help="Pairs to score: a table (.csv, .tsv, .jsonl or .parquet) with columns item_a, item_b[, label] naming items of --catalog, or a wdc-pairs / Ditto file (lines 'COL title VAL …<TAB>COL title VAL …<TAB>0|1'; no --catalog: the titles are the catalog)."),
    out: Path = typer.Option(..., "--out", help="Where to write scores.parquet (item_a, item_b, score, match, label when given, term_<feature>…)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog holding the items a pair table names (required for a pair table, refused for a wdc-pairs file)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Model from `itemrep fit` (default: the built-in model fitted on the Shopee development split)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the pair threshold: a pair is a match when its score is ≥ it (default: the model's pair-decision point τ_logistic, the score where its logistic model gives P(duplicate) = 0.5; lower than the clustering τ)."),
    metrics_json: Optional[Path] = typer.Option(None, "--metrics-json", help="With labels: also write precision/recall/F1 (at τ and at the best τ on these pairs) to this JSON file."),
    fmt: str = typer.Option("auto", "--format", help="PAIRS format: auto (a file whose first line starts with 'COL ' is wdc-pairs), wdc or table."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    reducer: Optional[str] = Reducer, images: Optional[str] = Images, ocr: Optional[bool] = Ocr,
    text_encoder: Optional[str] = TextEncoder,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, llm_max_retry_after: float = LlmRetryAfter, llm_retry_budget: float = LlmRetryBudget,
    llm_max_response_bytes: int = LlmMaxBytes, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    seed: int = Seed, quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
) -> None:
    """Score given pairs term by term; with labels, pairwise precision/recall/F1 at τ (product-matching protocol).

    \b
    itemrep pairs PAIRS.csv --catalog CATALOG --out scores.parquet [--model-dir M]
    itemrep pairs computers/valid.txt.small --out scores.parquet          # wdc-pairs: no catalog

    Column flags, --sep and --encoding apply to --catalog (--encoding also to a pair table).
    """
    from itemrep.catalog import Catalog
    from itemrep.dedup.pairs import (best_threshold, is_wdc_pairs_file, pair_metrics, read_pair_table, read_wdc_pairs,
                                     score_pairs, wdc_catalog)
    from itemrep.dedup.pipeline import FITRep

    a = locals()
    try:
        if fmt not in ("auto", "wdc", "table"):
            raise ValueError(f"--format must be one of auto, wdc, table; got {fmt!r}")
        _check_out_file(out, "--out")
        if metrics_json is not None:
            _check_out_file(metrics_json, "--metrics-json")
        if not pairs.is_file():
            raise ValueError(f"{pairs}: pair file not found" + (" (it is a directory)" if pairs.is_dir() else ""))
        wdc = fmt == "wdc" or (fmt == "auto" and is_wdc_pairs_file(pairs))
        if wdc:
            if catalog is not None:
                raise ValueError(f"{pairs} is a wdc-pairs file (titles inline, no item ids): --catalog cannot be used "
                                 "with it; drop --catalog, or give a pair table with columns item_a, item_b[, label]")
            frame, pair_df = read_wdc_pairs(pairs)
            cat = wdc_catalog(frame, source=pairs)
        else:
            if catalog is None:
                raise ValueError(f"{pairs} is a pair table: pass --catalog CATALOG with the items it names "
                                 "(or give a wdc-pairs file, whose titles make the catalog)")
            pair_df = read_pair_table(pairs, encoding=encoding)
            cat = Catalog.load(catalog, **{f"{c}_col": a[f"{c}_col"] for c in ("id", "title", "text", "image", "phash")},
                               images=images, image_root=image_root, sep=sep, encoding=encoding,
                               missing_values=missing_values, cache_dir=cache_dir)
            for w in cat.warnings:
                typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
        kw = _model_kwargs(a, out.parent / "llm_cache.sqlite")
        m = FITRep.load(model_dir, **kw) if model_dir else FITRep.default(**kw)
        scores = score_pairs(m, cat, pair_df, source=str(pairs))
        _write_atomic(out, lambda p: scores.to_parquet(p, index=False))
        info = scores.attrs
        report = None
        if "label" in scores.columns:
            tau = info["tau"]
            report = {"pairs": str(pairs), "model": str(model_dir) if model_dir else "built-in",
                      "at_tau": {"tau": tau, "tau_source": "--threshold" if threshold is not None else "model",
                                 **pair_metrics(scores["label"], scores["match"])}}
            if scores["label"].any():
                bt, _ = best_threshold(scores["score"], scores["label"])
                report["at_best_tau"] = {"tau": bt, "note": "best τ on these pairs (optimistic)",
                                         **pair_metrics(scores["label"], scores["score"] >= bt)}
            if metrics_json is not None:
                _write_atomic(metrics_json, lambda p: p.write_text(json.dumps(report, indent=2)))
        elif metrics_json is not None:
            typer.secho(f"warning: {pairs} has no labels; --metrics-json {metrics_json} not written",
                        fg=typer.colors.YELLOW, err=True)
    except Interrupted as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C); nothing was written", 130)
    except (ItemrepError, ValueError, OSError) as e:
        _fail(str(e))
    if info.get("weighted_slots_absent"):
        gone = info["weighted_slots_absent"]
        typer.secho(
            f"warning: the model weighs slots {', '.join(f'{k} (α {v:.3f})' for k, v in gone.items())} that these items lack; "
            f"their total weight {sum(gone.values()):.3f} was spread over the present slots by renormalising α",
            fg=typer.colors.YELLOW, err=True)
    if info.get("slots_without_weight"):
        typer.secho(f"warning: the model gives no weight to slots {', '.join(info['slots_without_weight'])} found in these items",
                    fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{len(scores)} pairs of {info['n_items']} items scored: {int(scores['match'].sum())} matches at "
               f"τ = {info['tau']:.3f}; failed items: {info['failed_items']}", err=True)
    if report is not None:
        r = report["at_tau"]
        typer.echo(f"{'--threshold' if threshold is not None else 'model pair-decision'} τ = {r['tau']:.3f}: "
                   f"P {r['precision']:.4f} R {r['recall']:.4f} F1 {r['f1']:.4f} "
                   f"({r['n_positive']} matching pairs of {r['n_pairs']})", err=True)
        if "at_best_tau" in report:
            r = report["at_best_tau"]
            typer.echo(f"best τ on these pairs (optimistic): τ = {r['tau']:.3f}, "
                       f"P {r['precision']:.4f} R {r['recall']:.4f} F1 {r['f1']:.4f}", err=True)
        else:
            typer.echo("no matching pair (label 1): no best τ", err=True)
    typer.echo(f"wrote {out}" + (f", {metrics_json}" if report is not None and metrics_json is not None else ""), err=True)


def _mount_subapps() -> None:
    try:
        from itemrep.recsys.cli import app as rec_app
    except ImportError as e:  # recsys dependencies missing
        print(f"warning: `itemrep rec` unavailable: {e}", file=sys.stderr)
    else:
        app.add_typer(rec_app, name="rec", help="Multimodal recommendation (LIRDRec and baselines).")
    try:
        from itemrep.index_cli import app as index_app
    except ImportError as e:  # pragma: no cover - part of the package
        print(f"warning: `itemrep index` unavailable: {e}", file=sys.stderr)
        return
    app.add_typer(index_app, name="index", help="Persistent index: build once, add tomorrow's items, look up clusters.")
    import itemrep.review_cli  # noqa: F401  (registers `itemrep explain` and `itemrep review-pairs` on this app)


_mount_subapps()
from itemrep.report.cli import report_command  # noqa: E402

app.command("report")(report_command)

if __name__ == "__main__":
    app()
