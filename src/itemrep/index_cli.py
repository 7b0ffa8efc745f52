"""``itemrep index``: a persistent dedup index (build once, add new items every day, look items up).

Contract (other tools depend on it)::

    itemrep index build CATALOG --index DIR [--model-dir M] [--tau-merge T] [--overwrite] [column flags]
    itemrep index add NEW_CATALOG --index DIR --out OUT [--existing error|skip] [column flags]
    itemrep index lookup CATALOG --index DIR [--out OUT] [column flags]

``add`` writes ``OUT/clusters.parquet`` (item_id, cluster_id, representative_id, score, match),
``OUT/changes.parquet`` (time, batch, kind, cluster_id, other_id, item_id, reason) and
``OUT/run.json``; ``lookup`` prints ``item_id,cluster_id,representative_id,score,match`` as CSV
(or writes ``OUT/lookup.parquet``) and never writes to the index. See :mod:`itemrep.dedup.index`.

Mounted by :mod:`itemrep.cli` as ``app.add_typer(index_app, name="index")``; also runnable as
``python -m itemrep.index_cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from itemrep import cli as _cli
from itemrep.cli import (ApiKeyEnv, BaseUrl, CacheDir, ChunkSize, Encoding, Extractor, IdCol, ImageCol, ImageRoot, Images, Jobs,
                         LlmCache, LlmConc, LlmTimeout, MissingValues, ModelName, Ocr, PhashCol, Quiet, Reducer, Seed, Sep,
                         TextCol, TextEncoder, TextOnly, TitleCol, _fail, _prepare)
from itemrep.errors import ItemrepError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Persistent dedup index: build it once, add new items batch by batch (cluster ids never move), look items up.")

IndexDir = typer.Option(..., "--index", help="Index directory (written by `itemrep index build`).")

_MODEL_FLAGS = ("reducer", "images", "ocr", "text_encoder")


def _options(a: dict, **fixed) -> dict:
    """The option dict :func:`itemrep.cli._prepare` reads: the defaults of every ``itemrep dedup``
    option (read from its signature, so options added there reach ``_prepare`` here too), then this
    command's values, then ``fixed``."""
    import inspect

    base = {}
    for name, prm in inspect.signature(_cli.dedup).parameters.items():
        d = prm.default
        base[name] = getattr(d, "default", d) if d is not inspect.Parameter.empty else None
        if base[name] is Ellipsis:
            base[name] = None
    base["label_col"] = None
    base.update({k: v for k, v in a.items() if k in base})
    base.update(fixed)
    return base


def _open(index: Path, kw: dict, readonly: bool, nprobe: int | None = None):
    """Open the index with the run-time overrides (extractor, progress, cache) taken from ``kw``."""
    from itemrep.dedup.index import ClusterIndex

    overrides = {k: kw[k] for k in ("extractor", "progress", "cache_dir", "chunk_size", "n_jobs") if k in kw}
    return ClusterIndex.open(index, readonly=readonly, model_overrides=overrides, nprobe=nprobe)


@app.command()
def build(
    catalog: Path = typer.Argument(..., help="Catalog to index (.csv, .jsonl or .parquet)."),
    index: Path = IndexDir,
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Model from `itemrep fit` (default: the built-in model)."),
    tau_merge: Optional[float] = typer.Option(None, "--tau-merge", help="Edge score a new item needs to both of two existing clusters to merge them (default: τ + 0.1)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an index that exists in --index."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    reducer: Optional[str] = Reducer, images: Optional[str] = Images, ocr: Optional[bool] = Ocr,
    text_encoder: Optional[str] = TextEncoder,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    seed: int = Seed, quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
) -> None:
    """Deduplicate CATALOG and write an index that new items can be added to."""
    from itemrep.dedup.index import ClusterIndex
    from itemrep.dedup.pipeline import FITRep

    try:
        cat, kw = _prepare(_options(locals()), index)
        m = FITRep.load(model_dir, **kw) if model_dir else FITRep.default(**kw)
        idx = ClusterIndex.build(cat, m, index, tau_merge=tau_merge, overwrite=overwrite)
        n, c = idx.n_rows, idx.registry.clusters_info()["cluster_id"].nunique()
        idx.close()
    except (ItemrepError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"{n} items -> {c} clusters ({n - c} duplicates); index written to {index} (generation 1)", err=True)


@app.command()
def add(
    new_catalog: Path = typer.Argument(..., help="New items (.csv, .jsonl or .parquet); their ids must not be indexed yet."),
    index: Path = IndexDir,
    out: Path = typer.Option(..., "--out", help="Output directory for clusters.parquet, changes.parquet and run.json of this run."),
    existing: str = typer.Option("error", "--existing", help="Ids already in the index: error (default) or skip them."),
    batch_size: int = typer.Option(0, "--batch-size", min=0,
                                   help="Commit the items in batches of this many, each its own generation (0: one batch). "
                                        "The next batch is encoded while the current one is committed."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", min=1,
                                         help="IVF lists each new item visits (default 32; more: slower, slightly higher recall)."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
) -> None:
    """Assign new items to existing clusters (ids never change) or to new ones, in atomic batches."""
    from itemrep.dedup.index import AddResult
    from itemrep.dedup.pipeline import check_out_dir

    results = []
    try:
        check_out_dir(out)  # before a batch is committed: a bad --out must not leave a batch without its outputs
        cat, kw = _prepare(_options(locals(), catalog=new_catalog), out)
        with _open(index, kw, readonly=False, nprobe=nprobe) as idx:
            if not batch_size or len(cat) <= batch_size:
                results.append(idx.add(cat, existing=existing))
                results[-1].write(out)
            else:
                # encode ahead in a background thread, except for image runs (their encoding
                # stops cleanly on Ctrl-C only in the main thread)
                ahead = not cat.columns.get("image") or kw.get("images") == "off"
                for res in idx.add_batches(cat.batches(batch_size), existing=existing, ahead=ahead):
                    results.append(res)
                    # the outputs are rewritten after every batch: what is committed is on disk
                    AddResult.combine(results, idx.registry).write(out)
                    s = res.stats
                    if not s.get("committed"):
                        typer.echo(f"skipped {s.get('n_skipped_existing', 0)} items, all indexed already", err=True)
                    else:
                        typer.echo(f"batch {res.batch}: {s.get('n_items', 0)} items, {s.get('n_joined_existing', 0)} joined "
                                   f"existing clusters, {s.get('n_new_clusters', 0)} new clusters; "
                                   f"{s.get('total_seconds', 0.0):.1f} s", err=True)
    except (ItemrepError, ValueError, OSError) as e:
        done = [r.batch for r in results if r.stats.get("committed")]
        _fail(str(e) + (f" (batches {done[0]}-{done[-1]} were committed and their items written to {out}; "
                        f"re-run with --existing skip and another --out to add the rest)" if done else ""))
    res = AddResult.combine(results, None) if len(results) > 1 else results[0]
    s = res.stats
    if not s.get("committed"):
        typer.echo(f"nothing to add: all {s['n_skipped_existing']} items are indexed already; wrote {out}", err=True)
        return
    done = [r.batch for r in results if r.stats.get("committed")]
    which = f"batch {res.batch}" if len(done) <= 1 else f"batches {done[0]}-{done[-1]}"
    typer.echo(f"{which}: {s['n_items']} items, {s['n_joined_existing']} joined existing clusters, "
               f"{s['n_items_in_new_clusters']} in {s['n_new_clusters']} new clusters, {s['n_merges']} merges"
               + (f", {s['n_skipped_existing']} skipped (indexed already)" if s["n_skipped_existing"] else "")
               + f"; {s['total_seconds']:.1f} s", err=True)
    typer.echo(f"wrote {out}/clusters.parquet, changes.parquet, run.json", err=True)


@app.command()
def lookup(
    catalog: Path = typer.Argument(..., help="Items to look up (.csv, .jsonl or .parquet)."),
    index: Path = IndexDir,
    out: Optional[Path] = typer.Option(None, "--out", help="Write OUT/lookup.parquet instead of printing CSV."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, llm_concurrency: int = LlmConc,
    llm_timeout: float = LlmTimeout, text_only: bool = TextOnly, cache_dir: Optional[Path] = CacheDir,
    quiet: bool = Quiet, chunk_size: int = ChunkSize, jobs: Optional[int] = Jobs,
) -> None:
    """Which cluster each item would join (match: indexed, existing or none); writes nothing to the index."""
    try:
        cat, kw = _prepare(_options(locals(), quiet=True if out is None else quiet), out or index)
        with _open(index, kw, readonly=True) as idx:
            df = idx.lookup(cat)
    except (ItemrepError, ValueError) as e:
        _fail(str(e))
    if out is None:
        df.to_csv(sys.stdout, index=False)
    else:
        out.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out / "lookup.parquet", index=False)
        typer.echo(f"{len(df)} items: {(df['match'] != 'none').sum()} in or matching a cluster; wrote {out}/lookup.parquet", err=True)


if __name__ == "__main__":
    app()
