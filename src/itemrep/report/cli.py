"""``itemrep report OUT``: write ``OUT/report.html`` and ``OUT/review_pairs.csv`` from a dedup output.

Registered on the main app by :mod:`itemrep.cli`; ``itemrep dedup … --report`` calls
:func:`write_report` after the dedup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from itemrep.errors import ItemrepError


def write_report(out: Path, catalog=None, *, quiet: bool = False, **kw) -> None:
    """Build the report of ``out`` (see :func:`itemrep.report.build_report`) and print what was written.

    Raises:
        ReportError, CatalogError, OSError, ValueError: as :func:`~itemrep.report.build_report`.
    """
    from itemrep.report import build_report

    info = build_report(out, catalog, **kw)
    for n in info.notes:
        typer.secho(f"note: {n}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {info.html} ({info.size_bytes / 1e6:.1f} MB, {info.n_clusters_shown} clusters in the gallery, "
               f"{info.thumbnails} thumbnails)" + (f", {info.review_pairs} ({info.n_review_pairs} pairs to label)"
                                                   if info.review_pairs else ""), err=True)


def report_command(
    out: Path = typer.Argument(..., help="The --out directory of `itemrep dedup`."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog for titles, thumbnails and labels (default: the catalog recorded in OUT/run.json, when it is still there)."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Label column of --catalog: lists false merges and missed pairs (default: the one the dedup run used)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Item id column of --catalog (default: as recorded, else item_id, id, posting_id, article_id or sku)."),
    title_col: Optional[str] = typer.Option(None, "--title-col", help="Title column of --catalog."),
    image_col: Optional[str] = typer.Option(None, "--image-col", help="Image path column of --catalog (thumbnails)."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Resolve relative image paths under DIR and read none outside it."),
    sep: Optional[str] = typer.Option(None, "--sep", help="CSV delimiter of --catalog (default: sniffed)."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Text encoding of --catalog (default: UTF-8)."),
    max_clusters: int = typer.Option(200, "--max-clusters", min=0, help="Most clusters in the gallery; more are sampled: the largest, those closest to τ and a seeded random sample."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random cluster sample (same outputs and seed give the same report)."),
    review_pairs: int = typer.Option(200, "--review-pairs", min=0, help="Pairs closest to τ written to OUT/review_pairs.csv for labelling."),
    max_thumbnails: int = typer.Option(2000, "--max-thumbnails", min=0, help="Most thumbnails embedded in the page."),
) -> None:
    """Write OUT/report.html (one offline file: charts, cluster gallery, borderline pairs, errors against labels, failures, search) and OUT/review_pairs.csv.

    \b
    itemrep dedup catalog.csv --out out/ --report        # dedup, then the report
    itemrep report out/ [--catalog catalog.csv --label-col group]
    """
    try:
        write_report(out, catalog, max_clusters=max_clusters, seed=seed, n_review_pairs=review_pairs,
                     max_thumbnails=max_thumbnails, label_col=label_col, id_col=id_col, title_col=title_col,
                     image_col=image_col, image_root=image_root, sep=sep, encoding=encoding)
    except KeyboardInterrupt:
        typer.secho("error: interrupted (Ctrl-C); the report was not written", fg=typer.colors.RED, err=True)
        raise typer.Exit(130)
    except (ItemrepError, ValueError, OSError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
