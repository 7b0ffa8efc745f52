"""The HTML report of an ``itemrep dedup`` run: ``OUT/report.html`` and ``OUT/review_pairs.csv``.

>>> from itemrep.report import build_report
>>> info = build_report("out/")                      # doctest: +SKIP
>>> info.html, info.size_bytes                        # doctest: +SKIP

The report reads only the files ``itemrep dedup --out OUT`` wrote (and, optionally, the catalog for
titles, images and labels; by default the catalog recorded in ``run.json``), so it can be made again
at any time with other options. Modules: :mod:`~itemrep.report.data` (reading and counting),
:mod:`~itemrep.report.charts` (one function per chart), :mod:`~itemrep.report.html` (the page),
:mod:`~itemrep.report.thumbs` (thumbnails). Imports go one way: the report imports from
:mod:`itemrep.dedup` and :mod:`itemrep.catalog`, never the other way round.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from itemrep.dedup.review import has_labels

__all__ = ["build_report", "ReportInfo", "ReportError", "REVIEW_COLUMNS", "load_outputs"]


def __getattr__(name: str):  # pandas is imported only when a report is made (keeps `itemrep --help` fast)
    if name in ("ReportError", "load_outputs"):
        from itemrep.report import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: The first three columns of ``review_pairs.csv`` (read by ``itemrep fit --pairs``).
REVIEW_COLUMNS = ("item_a", "item_b", "label")


@dataclass
class ReportInfo:
    """What :func:`build_report` wrote.

    Attributes:
        html: path of ``report.html``.
        review_pairs: path of ``review_pairs.csv`` (``None`` when there was no pair to export).
        size_bytes: size of ``report.html``.
        n_clusters_shown: clusters in the gallery.
        n_review_pairs: rows of ``review_pairs.csv``.
        thumbnails: thumbnails embedded.
        catalog: the catalog used for titles / images / labels, or ``None``.
        notes: remarks printed by the CLI (e.g. a recorded catalog that no longer exists).
    """

    html: Path
    review_pairs: Path | None
    size_bytes: int
    n_clusters_shown: int
    n_review_pairs: int
    thumbnails: int
    catalog: str | None
    notes: list[str] = field(default_factory=list)


def _write_atomic(path: Path, text: str | None = None, frame=None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if frame is not None:
            frame.to_csv(tmp, index=False)
        else:
            Path(tmp).write_text(text or "", encoding="utf-8")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_report_catalog(outputs, catalog=None, *, id_col=None, title_col=None, image_col=None, label_col=None,
                        image_root=None, sep=None, encoding=None):
    """The catalog for a report: ``catalog`` (a :class:`~itemrep.catalog.Catalog` or a path), else
    the catalog recorded in ``run.json`` when that file still exists, else ``None``.

    A path is read with ``images="off"`` (image paths kept as written, no file or URL is opened:
    thumbnails are read later, only for the items shown). Column names default to those recorded in
    ``run.json`` for that catalog, else to the usual column names.

    Returns:
        ``(catalog or None, notes)``.

    Raises:
        CatalogError: a given catalog path cannot be read (the message names the file).
    """
    from itemrep.catalog import Catalog

    notes: list[str] = []
    if catalog is not None and not isinstance(catalog, (str, os.PathLike)):
        return catalog, notes
    rec = outputs.run.get("catalog") or {}
    rec_cols = dict(rec.get("columns") or {})
    path = Path(catalog) if catalog is not None else None
    if path is None:
        p = rec.get("path")
        if not p:
            notes.append("no catalog given and none recorded in run.json: titles are the items' concepts, no images or labels")
            return None, notes
        if not Path(p).is_file():
            notes.append(f"the catalog recorded in run.json, {p}, is not there any more: titles are the items' concepts "
                         "(give it with --catalog)")
            return None, notes
        path = Path(p)
    same = rec.get("path") and Path(rec["path"]).resolve() == path.resolve()
    cols = {k: (rec_cols.get(k) if same else None) for k in ("id", "title", "text", "image", "phash", "label")}
    for k, v in (("id", id_col), ("title", title_col), ("image", image_col), ("label", label_col)):
        if v is not None:
            cols[k] = v
    cat = Catalog.load(path, id_col=cols["id"], title_col=cols["title"], text_col=cols["text"], image_col=cols["image"],
                       phash_col=cols["phash"], label_col=cols["label"], images="off", image_root=image_root, sep=sep,
                       encoding=encoding)
    return cat, notes


def build_report(out_dir: str | Path, catalog=None, *, max_clusters: int = 200, seed: int = 0, n_review_pairs: int = 200,
                 n_borderline: int = 25, n_label_errors: int = 15, max_thumbnails: int = 2000, **catalog_options) -> ReportInfo:
    """Write ``out_dir/report.html`` and ``out_dir/review_pairs.csv`` from an ``itemrep dedup`` output.

    Args:
        out_dir: the ``--out`` directory of ``itemrep dedup``.
        catalog: a :class:`~itemrep.catalog.Catalog`, a catalog path, or ``None`` for the catalog
            recorded in ``run.json`` (when it still exists).
        max_clusters: the most clusters in the gallery; more are sampled: the largest, the ones
            whose weakest link is closest to τ, and a random sample drawn with ``seed``.
        seed: seed of the random sample (same outputs and seed give the same report).
        n_review_pairs: rows of ``review_pairs.csv`` (the pairs closest to τ, half merged, half not).
        n_borderline: pairs shown on each side of τ.
        n_label_errors: false merges and missed pairs shown (with labels).
        max_thumbnails: the most thumbnails embedded.
        **catalog_options: ``id_col``, ``title_col``, ``image_col``, ``label_col``, ``image_root``,
            ``sep``, ``encoding`` for reading a catalog path.

    Returns:
        :class:`ReportInfo`.

    Raises:
        ReportError: ``out_dir`` is not an ``itemrep dedup`` output (the message names the missing
            or unreadable file), or the catalog shares no item with it.
        CatalogError: the catalog cannot be read.
        OSError: ``out_dir`` cannot be written.
    """
    import pandas as pd

    from itemrep import __version__
    from itemrep.catalog import csv_safe
    from itemrep.report import charts as C
    from itemrep.report import data as D
    from itemrep.report.html import PageBuilder, TermBars, esc, page
    from itemrep.report.thumbs import Thumbnails

    if max_clusters < 0 or n_review_pairs < 0:
        raise ValueError("max_clusters and n_review_pairs must be ≥ 0")
    out = Path(out_dir)
    o = D.load_outputs(out)
    cat, notes = load_report_catalog(o, catalog, **catalog_options)
    items = D.items_frame(o, cat)
    if cat is not None:
        n_missing = int((items["title_source"] == "missing").sum())
        if n_missing:
            notes.append(f"{n_missing} clustered items are not in the catalog {getattr(cat, 'path', '')}")
    run, tau = o.run, o.tau
    keep_review = has_labels(out / "review_pairs.csv")  # never overwrite a reviewer's work
    if keep_review:
        notes.append(f"{out / 'review_pairs.csv'} already holds labels: kept as it is; the new borderline pairs were "
                     "not written (move it away to get a fresh one)")
    book = D.pair_book(o)
    nn = D.nearest_neighbour_table(o, book)
    ct = D.cluster_table(o)
    shown = D.sample_clusters(ct, tau, max_clusters, seed)
    groups = C.term_groups(o.term_columns)
    colours = C.palette(list(groups))
    alpha = {k: float(v) for k, v in (run.get("alpha") or {}).items()}

    # ------------------------------------------------------------ term bar scale (all pairs on the page)
    above, below = D.borderline_pairs(book, tau, n_borderline)
    lab = D.label_errors(book, items, n_label_errors)
    g = C.grouped_terms(book.pairs, groups) if len(book.pairs) else pd.DataFrame()
    pos_max = float(g.clip(lower=0).sum(axis=1).max()) if len(g) else 1.0
    neg_max = float((-g.clip(upper=0)).sum(axis=1).max()) if len(g) else 0.0
    bars = TermBars(groups=groups, colours=colours, tau=tau, pos_max=max(pos_max, tau, 1e-6) * 1.02,
                    neg_max=max(neg_max, 0.02 * max(pos_max, 1.0)))
    thumbs = Thumbnails(max_count=max_thumbnails) if (items["image"].notna().any()) else None
    pb = PageBuilder(items, bars, thumbs)

    # ------------------------------------------------------------ charts
    specs = {"chart-size": C.to_vega(C.cluster_size_chart(ct["size"]))}
    if alpha:
        specs["chart-alpha"] = C.to_vega(C.alpha_chart(alpha, colours))
    if nn is not None and len(nn):
        specs["chart-nn"] = C.to_vega(C.nn_score_chart(nn, tau))
        specs["chart-slots-by-score"] = C.to_vega(C.slot_by_score_chart(nn, groups, colours, tau))
        specs["chart-slot-nn"] = C.to_vega(C.slot_nn_chart(nn, groups, colours, alpha))
    svgs = {k: C.to_svg(v) for k, v in specs.items()}

    n_items = int(run.get("n_items", len(items)))
    n_clusters = int(run.get("n_clusters", len(ct)))
    removed = int(run.get("n_duplicates_removed", n_items - n_clusters))
    metrics = o.metrics or {}
    model = run.get("model") or "not recorded in run.json"
    top_alpha = ", ".join(f"{k} {v:.2f}" for k, v in sorted(alpha.items(), key=lambda kv: -kv[1])[:3] if v > 0)
    stats = [("items", f"{n_items:,}"), ("clusters", f"{n_clusters:,}"),
             ("duplicates removed", f"{removed:,} ({100.0 * removed / max(n_items, 1):.1f} %)"),
             ("τ (threshold)", f"{tau:.3f}"), ("run time", f"{float(run.get('total_seconds', float('nan'))):.1f} s"),
             ("failed items", f"{int(run.get('failed_items', len(o.failures))):,}")]
    if "mean_item_f1" in metrics:
        stats.append(("mean per-item F1", f"{metrics['mean_item_f1']:.3f}"))
    cat_note = (f"catalog {esc(getattr(cat, 'path', '') or 'in memory')}" if cat is not None else "no catalog")
    header_notes = (f"model: <b>{esc(model)}</b> · largest α: {esc(top_alpha or '–')} · extractor "
                    f"{esc(run.get('parameters', {}).get('extractor', '?'))} · {cat_note} · output {esc(out)} · itemrep {esc(__version__)}")
    if notes:
        header_notes += "<br>" + "<br>".join(esc(n) for n in notes)

    # ------------------------------------------------------------ sections
    def chart(id_: str) -> str:
        return f'<div class="chart" id="{id_}">{svgs[id_]}</div>' if id_ in specs else ""

    beta = {k: v for k, v in (run.get("beta") or {}).items() if v}
    gamma = {k: v for k, v in (run.get("gamma") or {}).items() if v}
    wt = ""
    if beta or gamma:
        wt = ('<details><summary>near-match bonuses β and conflict penalties γ</summary><table class="kv">'
              + "".join(f"<tr><td>β {esc(k)}</td><td class=num>{v:.4f}</td></tr>" for k, v in beta.items())
              + "".join(f"<tr><td>γ {esc(k)}</td><td class=num>{v:.4f}</td></tr>" for k, v in gamma.items())
              + "</table></details>")
    if nn is not None:
        nn_note = (f"The nearest neighbour of an item is its best-scoring pair among the k = {run.get('parameters', {}).get('k', '?')} "
                   "candidates of the kNN search (read from <code>neighbours.parquet</code>, scored exactly as edges are), not an "
                   "exhaustive search. The score is the sum of the <code>term_*</code> values: a slot's contribution is "
                   "α·cos (plus its near-match bonus β), a conflict is a negative penalty −γ; τ applies to the sum.")
    else:
        nn_note = ("<b>This output has no <code>neighbours.parquet</code></b> (written by itemrep dedup since the report "
                   "existed): the nearest-neighbour charts and the pairs below τ need it; re-run <code>itemrep dedup</code>.")
    charts_html = (f'<div class="charts">{chart("chart-size")}{chart("chart-alpha")}</div>{wt}'
                   f'<p class="note">{nn_note}</p><div class="charts">{chart("chart-nn")}{chart("chart-slots-by-score")}</div>'
                   f'<div class="charts">{chart("chart-slot-nn")}</div>')

    n_multi = int((ct["size"] >= 2).sum())
    n_single = int((ct["size"] == 1).sum())
    reasons = shown["reason"].value_counts().to_dict()
    if len(shown) < n_multi:
        samp = (f"{len(shown):,} of the {n_multi:,} clusters of two or more items are shown: the {reasons.get('largest', 0)} largest, "
                f"{reasons.get('borderline', 0)} whose weakest link is closest to τ, and {reasons.get('random', 0)} drawn at random "
                f"(seed {seed}); the search finds every item.")
    else:
        samp = f"All {n_multi:,} clusters of two or more items are shown."
    members = items[items["cluster_id"].isin(set(shown["cluster_id"].tolist()))]
    by_cluster: dict[str, list] = {}
    for cid_, iid_, sc_ in zip(members["cluster_id"].tolist(), members["item_id"].tolist(), members["score"].tolist()):
        by_cluster.setdefault(cid_, []).append((iid_, sc_))
    cards = "".join(pb.cluster_card(c, by_cluster[c["cluster_id"]], book, tau) for c in shown.to_dict("records"))
    gallery = (f'<p class="note">{samp} {n_single:,} items are alone in their cluster (not shown). Each card shows the '
               "representative first, then every member with its score to the representative and the term bar of that "
               "pair (or of the member's strongest edge in the cluster when the pair to the representative was not scored). "
               "The <i>weakest link</i> is the lowest edge of the cluster's maximum spanning tree: raise τ above it and "
               "the cluster splits. Hover a bar for its exact terms.</p>" + bars.legend() + cards)

    review = D.review_pairs(book, items, tau, 0 if keep_review else n_review_pairs)
    csv_note = ("<code>review_pairs.csv</code> beside this report already holds labels and was kept as it is"
                if keep_review else
                f"<code>review_pairs.csv</code> beside this report holds the {len(review):,} pairs closest to τ with an "
                "empty <code>label</code> column: fill in 1 (same product) or 0 and give it to <code>itemrep fit --pairs</code>")
    borderline = ('<p class="note">The pairs a reviewer should look at: merged pairs with the lowest scores, and the best '
                  'pairs that were not merged (each item\'s best non-edge pair, from <code>neighbours.parquet</code>). '
                  f'{csv_note}.</p>'
                  + bars.legend()
                  + "<h3>Merged, lowest scores (just above τ, or below it by the nearest-neighbour rule)</h3>" + pb.pair_table(above, tau, "no edge")
                  + "<h3>Not merged, just below τ</h3>"
                  + pb.pair_table(below, tau, "no pair below τ in these outputs" + ("" if o.neighbours is not None else " (no neighbours.parquet)")))

    if metrics or lab is not None:
        mt = ""
        if metrics:
            mt = '<table class="kv">' + "".join(
                f"<tr><th>{esc(k)}</th><td class=num>{v:.4f}</td></tr>" if isinstance(v, float)
                else f"<tr><th>{esc(k)}</th><td class=num>{esc(v)}</td></tr>" for k, v in metrics.items()) + "</table>"
        lt = ""
        if lab is not None:
            lt = (f'<p class="note">Pairs of items: {lab["true_pairs"]:,} share a label, {lab["predicted_pairs"]:,} share a cluster, '
                  f'{lab["correct_pairs"]:,} both; {lab["wrong_pairs"]:,} wrongly merged, {lab["missed_pairs"]:,} missed. '
                  f'{lab["n_false_merge_edges"]:,} edges join different labels; below, the highest-scoring ones.</p>'
                  + "<h3>Worst false merges (edges between different labels)</h3>"
                  + pb.pair_table(lab["false_merges"], tau, "no edge joins two labels")
                  + "<h3>Missed pairs (same label, not merged)</h3>"
                  + '<p class="note">Among the pairs the outputs hold (each item\'s best pairs): a missed pair that was never '
                    "a candidate of the kNN search has no scored terms and is not listed.</p>"
                  + pb.pair_table(lab["missed"], tau, "no missed pair among the scored pairs"))
        else:
            lt = '<p class="note">Give the catalog with its label column (<code>--catalog FILE --label-col COL</code>) to list false merges and missed pairs.</p>'
        labels_html = mt + lt
    else:
        labels_html = '<p class="note">No labels: run <code>itemrep dedup … --label-col COL</code> for precision, recall and F1.</p>'

    f = o.failures
    if len(f):
        by_stage = f.groupby("stage").size().sort_values(ascending=False)
        fail_html = ('<p class="note">' + ", ".join(f"{esc(k)}: {v:,}" for k, v in by_stage.items()) + f" (failures.csv has {len(f):,} rows"
                     + (", first 200 shown" if len(f) > 200 else "") + ')</p><table class="pairs"><tr><th>item</th><th>stage</th><th>field</th><th>message</th></tr>'
                     + "".join(f"<tr><td class=id>{esc(r.item_id)}</td><td>{esc(r.stage)}</td><td>{esc(r.field)}</td><td>{esc(r.message)}</td></tr>"
                               for r in f.head(200).itertuples()) + "</table>")
    else:
        fail_html = '<p class="note">No item failed.</p>'

    sections = [("charts", "Charts", charts_html), ("gallery", "Cluster gallery", gallery),
                ("borderline", "Borderline pairs", borderline), ("labels", "Labels: precision / recall", labels_html),
                ("failures", "Per-item failures", fail_html)]
    index = pb.search_index(set(shown["cluster_id"]))
    doc = page(title=f"itemrep dedup report — {out.resolve().name}", header_stats=stats, header_notes=header_notes,
               sections=sections, css_extra=bars.css(), specs=specs, index=index, vega_js=C.vega_runtime_js())
    html_path = out / "report.html"
    _write_atomic(html_path, text=doc)
    review_path = out / "review_pairs.csv"
    if keep_review:
        review_path = None
    elif len(review):
        safe = review.copy()
        safe[["title_a", "title_b"]] = csv_safe(review[["title_a", "title_b"]].fillna(""))
        _write_atomic(review_path, frame=safe)
    else:
        if review_path.exists():
            review_path.unlink()
        review_path = None
    return ReportInfo(html=html_path, review_pairs=review_path, size_bytes=html_path.stat().st_size,
                      n_clusters_shown=int(len(shown)), n_review_pairs=int(len(review)),
                      thumbnails=0 if thumbs is None else thumbs.made,
                      catalog=str(getattr(cat, "path", "") or "in memory") if cat is not None else None, notes=notes)
