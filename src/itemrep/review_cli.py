"""``itemrep explain`` (the term table of one pair) and ``itemrep review-pairs`` (borderline pairs to
label for ``itemrep fit --pairs``).

Contract (other tools depend on it)::

    itemrep explain ITEM_A ITEM_B --out OUT [--catalog FILE] [--json]
    itemrep explain ITEM_A ITEM_B --catalog FILE [--model-dir DIR] [--json] [column flags]
    itemrep explain ITEM_A ITEM_B --index DIR [--catalog FILE] [--json]
    itemrep review-pairs OUT [--n 200] [--to FILE] [--exclude LABELLED.csv ...]

``review-pairs`` writes a CSV with columns ``item_a, item_b, label`` (label empty), then ``score,
tau, side, title_a, title_b``. Registered on :data:`itemrep.cli.app` when :mod:`itemrep.cli` is
imported (see ``_mount_subapps`` there). See :mod:`itemrep.dedup.explain` and :mod:`itemrep.dedup.review`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from itemrep import cli as _cli
from itemrep.cli import (ApiKeyEnv, BaseUrl, CacheDir, Encoding, Extractor, IdCol, ImageCol, ImageRoot, Images, LlmCache,
                         MissingValues, ModelName, PhashCol, Quiet, Sep, TextCol, TextEncoder, TextOnly, TitleCol, _fail, app)
from itemrep.errors import Interrupted, ItemrepError

_COLS = ("id", "title", "text", "image", "phash")


def _load_kw(a: dict) -> dict:
    """Catalog.load keyword arguments given on the command line (``None`` = not given)."""
    kw = {f"{c}_col": a[f"{c}_col"] for c in _COLS}
    kw.update(image_root=a["image_root"], sep=a["sep"], encoding=a["encoding"], missing_values=a["missing_values"],
              cache_dir=a["cache_dir"])
    return {k: v for k, v in kw.items() if v is not None}


def _run_kw(a: dict, out: Path) -> dict:
    """Run-time model overrides (extractor, progress, cache) from a command's options; never ones
    that change what a saved model computes (its seed stays the run's)."""
    from itemrep.index_cli import _options

    kw = _cli._model_kwargs(_options(a, catalog=None), out / "llm_cache.sqlite")
    kw.pop("random_state", None)
    return kw


def _explanation_tables(ex: dict):
    """rich renderables of an explanation dict (:func:`itemrep.dedup.explain.explain_pair` + extras)."""
    from rich.table import Table

    a, b = ex["item_a"], ex["item_b"]
    t = Table(title=f"edge score of {a} ~ {b}", title_justify="left")
    t.add_column("term", overflow="fold")
    t.add_column("weight", justify="right")
    t.add_column("value", justify="right")
    t.add_column("contribution", justify="right")
    hidden = 0
    for r in ex["terms"]:
        if r["kind"] != "slot" and r["weight"] == 0 and r["contribution"] == 0:
            hidden += 1  # a bonus or penalty the model does not use
            continue
        t.add_row(r["feature"], f"{r['weight']:.4f}", f"{r['value']:.4f}", f"{r['contribution']:+.4f}")
    t.add_section()
    if ex["scale"] != 1.0:
        t.add_row("×1/ρ (modal slots one side lacks; in every term)", "", f"{ex['scale']:.4f}", "")
    t.add_row("total (Σ contributions)", "", "", f"{ex['score']:.4f}")
    t.add_row("τ", "", "", f"{ex['tau']:.4f}")
    nn = ex.get("nn_threshold")
    verdict = ("[green]passes: an edge[/green]" if ex["passes"] else
               f"[yellow]below τ: an edge only as one item's best candidate (nearest-neighbour rule ≥ {nn:.4f})[/yellow]"
               if nn is not None and ex["score"] >= nn else "[red]below τ: no edge[/red]")
    t.add_row(verdict, "", "", f"{ex['margin']:+.4f}")
    t.caption = ("weight · value: slot α·cos; match_<slot>@t β·max(0, cos − t)/(1 − t); conflict_<slot> −γ·(1 − cos), both items stating it"
                 + (f"; {hidden} bonus/penalty terms of weight 0 not shown (--json lists all)" if hidden else ""))
    c = Table(title="concepts", title_justify="left")
    c.add_column("slot")
    c.add_column(a)
    c.add_column(b)
    titles = ex.get("titles") or {}
    if titles:
        c.add_row("title", titles.get(a, ""), titles.get(b, ""))
    concepts = ex.get("concepts")
    if concepts is None:
        c.caption = "concepts are not stored in an index: pass --catalog FILE to show them"
    else:
        ca, cb = concepts.get(a, {}), concepts.get(b, {})
        for slot in list(dict.fromkeys([*ca, *cb])):
            c.add_row(slot, ", ".join(ca.get(slot, [])), ", ".join(cb.get(slot, [])))
    return t, c


@app.command()
def explain(
    item_a: str = typer.Argument(..., help="First item id."),
    item_b: str = typer.Argument(..., help="Second item id."),
    out: Optional[Path] = typer.Option(None, "--out", help="An `itemrep dedup --out` folder: its model (run.json), catalog and concepts."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="The catalog: with --out, instead of the file run.json recorded; alone, encoded with --model-dir; with --index, for titles and concepts."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="With --catalog alone: model from `itemrep fit` (default: the built-in model)."),
    index: Optional[Path] = typer.Option(None, "--index", help="An index from `itemrep index build`: its stored slot rows and model."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON (every term) instead of tables."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues, images: Optional[str] = Images, text_encoder: Optional[str] = TextEncoder,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, text_only: bool = TextOnly,
    cache_dir: Optional[Path] = CacheDir,
) -> None:
    """Why two items are (not) merged: the term table of one pair against τ, and both items' concepts.

    Each slot's α, cosine and contribution, the near-match bonuses and conflict penalties, the total
    against τ and the verdict, then both items' titles and concepts side by side.

    \b
    itemrep explain A B --out OUT                     # the model and catalog of a dedup run
    itemrep explain A B --catalog C.csv [--model-dir M]
    itemrep explain A B --index IDX [--catalog C.csv]

    The terms add up to the score exactly: the same function scores dedup's edges.parquet, `itemrep pairs` and the index.
    """
    import pandas as pd

    from itemrep.catalog import Catalog
    from itemrep.dedup.explain import (catalog_from_run, check_ids_in_out, concepts_of, edge_score, explain_pair,
                                       model_from_run, positions_in)
    from itemrep.dedup.pipeline import FITRep

    a = dict(locals(), quiet=True, reducer=None, ocr=None)
    try:
        if sum(x is not None for x in (out, index)) > 1:
            raise ValueError("give one of --out OUT or --index DIR (with --catalog FILE alone: a catalog and --model-dir)")
        if out is None and index is None and catalog is None:
            raise ValueError("say where the pair comes from: --out OUT (a dedup output folder), --catalog FILE [--model-dir DIR] or --index DIR")
        if model_dir is not None and (out is not None or index is not None):
            raise ValueError("--model-dir goes with --catalog alone: --out and --index carry their own model")
        extra: dict = {}
        if index is not None:
            from itemrep.dedup.index import ClusterIndex

            run_kw = {k: v for k, v in _run_kw(a, index).items() if k in ("extractor", "progress", "cache_dir")}
            with ClusterIndex.open(index, readonly=True, model_overrides=run_kw) as idx:
                slots = idx.slot_rows([item_a, item_b])
                ex = explain_pair(idx.model, slots, [item_a, item_b], item_a, item_b, tau=idx.tau, source=f"the index {index}")
                if catalog is not None:
                    cat = Catalog.load(catalog, **_load_kw(a))
                    sub = cat.subset(positions_in(cat, [item_a, item_b], f"the catalog {catalog}"))
                    extra["titles"] = {it.item_id: it.title for it in sub.items}
                    extra["concepts"] = concepts_of(idx.model.transform(sub).concepts.to_pandas(), [item_a, item_b])
                else:
                    extra["concepts"] = None
            extra["source"] = f"index {index}"
        elif out is not None:
            cl = check_ids_in_out(out, [item_a, item_b])  # before any costly work
            m, run = model_from_run(out, **_run_kw(a, out))
            cat = catalog_from_run(run, out, catalog, **_load_kw(a))
            enc, _, _ = m.dedup_encoding(cat)
            ex = explain_pair(m, enc.slots, enc.ids.tolist(), item_a, item_b, source=f"the catalog {cat.path}")
            cp = Path(out) / "concepts.parquet"
            extra["concepts"] = concepts_of(pd.read_parquet(cp, columns=["item_id", "slot", "value"]) if cp.is_file()
                                            else enc.concepts.to_pandas(), [item_a, item_b])
            extra["titles"] = {it.item_id: it.title for it in cat.items if it.item_id in (item_a, item_b)}
            extra["clusters"] = {x: str(cl.loc[x, "cluster_id"]) for x in (item_a, item_b)}
            extra["same_cluster"] = extra["clusters"][item_a] == extra["clusters"][item_b]
            extra["edges_parquet_score"] = edge_score(out, item_a, item_b)
            extra["source"] = f"dedup output {out}"
        else:
            kw = _run_kw(a, Path(catalog).parent)
            m = FITRep.load(model_dir, **kw) if model_dir else FITRep.default(**kw)
            cat = Catalog.load(catalog, **_load_kw(a))
            positions_in(cat, [item_a, item_b], f"the catalog {catalog}")  # before any costly work
            enc, _, _ = m.dedup_encoding(cat)
            ex = explain_pair(m, enc.slots, enc.ids.tolist(), item_a, item_b, source=f"the catalog {catalog}")
            extra["concepts"] = concepts_of(enc.concepts.to_pandas(), [item_a, item_b])
            extra["titles"] = {it.item_id: it.title for it in cat.items if it.item_id in (item_a, item_b)}
            extra["source"] = f"catalog {catalog}, model {model_dir or 'built-in'}"
    except Interrupted as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C)", 130)
    except (ItemrepError, ValueError, OSError) as e:
        _fail(str(e))
    ex.update(extra)
    edge = ex.get("edges_parquet_score")
    if edge is not None and abs(edge - ex["score"]) > 1e-6:
        typer.secho(f"warning: {out}/edges.parquet holds {edge:.6f} for this pair, recomputed {ex['score']:.6f}: "
                    "the catalog or itemrep changed since that run", fg=typer.colors.YELLOW, err=True)
    if as_json:
        typer.echo(json.dumps(ex, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    con = Console()
    for t in _explanation_tables(ex):
        con.print(t)
    notes = [f"source: {ex['source']}"]
    if "same_cluster" in ex:
        notes.append("same cluster" if ex["same_cluster"] else "different clusters"
                     + (" (an edge alone does not merge: the chaining guard may split)" if ex["passes"] else ""))
        notes.append(f"edges.parquet: {'%.4f' % edge if edge is not None else 'not an edge'}")
    con.print("; ".join(notes), highlight=False)


@app.command("review-pairs")
def review_pairs(
    out: Path = typer.Argument(..., help="An `itemrep dedup --out` folder."),
    n: int = typer.Option(200, "--n", min=1, help="Number of pairs: half just above τ, half just below."),
    to: Optional[Path] = typer.Option(None, "--to", help="Where to write the CSV (default: OUT/review_pairs.csv)."),
    exclude: Optional[list[Path]] = typer.Option(None, "--exclude", help="Pair files already labelled (item_a, item_b[, label]); their pairs are not proposed again. Repeatable."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="The catalog deduplicated (default: the file OUT/run.json recorded)."),
    id_col: Optional[str] = IdCol, title_col: Optional[str] = TitleCol, text_col: Optional[str] = TextCol,
    image_col: Optional[str] = ImageCol, phash_col: Optional[str] = PhashCol,
    image_root: Optional[Path] = ImageRoot, sep: Optional[str] = Sep, encoding: Optional[str] = Encoding,
    missing_values: Optional[str] = MissingValues, images: Optional[str] = Images, text_encoder: Optional[str] = TextEncoder,
    extractor: str = Extractor, base_url: Optional[str] = BaseUrl, model: Optional[str] = ModelName,
    api_key_env: str = ApiKeyEnv, llm_cache: Optional[Path] = LlmCache, text_only: bool = TextOnly,
    cache_dir: Optional[Path] = CacheDir, quiet: bool = Quiet,
) -> None:
    """Write the pairs a person should label: the candidate pairs scoring just above and just below τ.

    \b
    itemrep review-pairs OUT --n 200                  # OUT/review_pairs.csv, label empty
    itemrep fit CATALOG --pairs OUT/review_pairs.csv --model-dir M2     # after labelling (1 same, 0 different)
    """
    import pandas as pd

    from itemrep.catalog import read_table
    from itemrep.dedup.explain import catalog_from_run, model_from_run
    from itemrep.dedup.pairs import check_pairs
    from itemrep.dedup.review import borderline_pairs, has_labels, write_review_csv

    a = dict(locals(), reducer=None, ocr=None)
    dest = to or out / "review_pairs.csv"
    try:
        _cli._check_out_file(dest, "--to")
        if has_labels(dest):
            raise ValueError(f"{dest} already holds labels: it is not overwritten. Write the new pairs elsewhere "
                             f"(--to FILE) and pass this file with --exclude so its pairs are not proposed again")
        done = [check_pairs(read_table(p, encoding=encoding)[["item_a", "item_b"]], source=str(p)) for p in exclude or []]
        m, run = model_from_run(out, **_run_kw(a, out))
        cat = catalog_from_run(run, out, catalog, **_load_kw(a))
        todo = borderline_pairs(m, cat, n=n, exclude=pd.concat(done, ignore_index=True) if done else None)
        write_review_csv(todo, dest)
    except Interrupted as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C); nothing was written", 130)
    except KeyError as e:
        _fail(f"--exclude file lacks column {e}; it needs item_a, item_b")
    except (ItemrepError, ValueError, OSError) as e:
        _fail(str(e))
    above = int((todo["side"] == "above").sum())
    rng = f", scores {todo['score'].min():.3f} to {todo['score'].max():.3f}" if len(todo) else ""
    typer.echo(f"{len(todo)} pairs ({above} just above τ = {m.tau:.3f}, {len(todo) - above} just below{rng}); "
               f"fill in label (1 same item, 0 different), then `itemrep fit CATALOG --pairs {dest} --model-dir DIR`", err=True)
    typer.echo(f"wrote {dest}", err=True)
