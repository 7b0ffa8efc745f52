"""The report's charts: one function per chart, each an Altair (Vega-Lite) chart of pre-aggregated data.

Data are binned in Python (numpy), so a chart of 24,000 items carries a few hundred rows, the
page stays small and draws fast. :func:`to_vega` compiles a chart to a Vega spec and :func:`to_svg`
renders that spec to SVG, both with ``vl-convert-python`` (no browser, no network): the page shows
the SVG at once, and turns a chart into a live Vega view (tooltips) when the pointer first enters
it, with the Vega runtime of :func:`vega_runtime_js` (bundled by ``vl-convert-python`` from the
JavaScript it ships, kept in the page as inert text until then). The report needs no CDN.

Term columns are grouped for display by :func:`term_groups`: a slot's similarity term ``α_k cos_k``
and its near-match bonuses ``β`` form one group named after the slot; each conflict penalty
``−γ_c`` is its own group ``conflict <slot>``. :func:`palette` gives every group a fixed colour,
shared by the charts and the per-pair term bars of the page.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: Colours of slot groups (mostly Vega's ``tableau10``/``tableau20``; no grey: grey means "not merged").
_SLOT_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#72b7b2", "#eeca3b", "#ff9da6",
                 "#393b79", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d"]
_CONFLICT_COLOURS = ["#e45756", "#b22222", "#d6616b", "#ad494a", "#843c39", "#e7969c"]

_WIDTH = 420
_HEIGHT = 180


# ---------------------------------------------------------------- terms
def term_groups(term_columns: list[str]) -> dict[str, list[str]]:
    """Display groups of the ``term_*`` columns, in column order: ``{group: [columns]}``.

    ``term_<slot>`` and ``term_match_<slot>@<knot>`` go to group ``<slot>``;
    ``term_conflict_<slot>`` to group ``conflict <slot>``.
    """
    groups: dict[str, list[str]] = {}
    for c in term_columns:
        name = c[len("term_"):]
        if name.startswith("conflict_"):
            g = "conflict " + name[len("conflict_"):]
        elif name.startswith("match_"):
            g = re.sub(r"@[^@]*$", "", name[len("match_"):])
        else:
            g = name
        groups.setdefault(g, []).append(c)
    return groups


def palette(groups: list[str]) -> dict[str, str]:
    """A fixed colour per term group (slots in order, conflicts in reds)."""
    out: dict[str, str] = {}
    s = c = 0
    for g in groups:
        if g.startswith("conflict "):
            out[g] = _CONFLICT_COLOURS[c % len(_CONFLICT_COLOURS)]
            c += 1
        else:
            out[g] = _SLOT_COLOURS[s % len(_SLOT_COLOURS)]
            s += 1
    return out


def grouped_terms(df: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """One column per term group: the sum of its ``term_*`` columns in ``df``."""
    return pd.DataFrame({g: df[[c for c in cols if c in df.columns]].sum(axis=1).astype(float) if any(c in df.columns for c in cols)
                         else 0.0 for g, cols in groups.items()}, index=df.index)


def _colour_scale(groups: list[str], colours: dict[str, str]):
    import altair as alt

    return alt.Scale(domain=list(groups), range=[colours[g] for g in groups])


def _bins(values: np.ndarray, width: float, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    v = values[np.isfinite(values)]
    lo = np.floor((v.min() if len(v) else 0.0) / width) * width if lo is None else lo
    hi = np.ceil((v.max() if len(v) else 1.0) / width) * width if hi is None else hi
    if hi <= lo:
        hi = lo + width
    return np.round(np.arange(lo, hi + width / 2, width), 6)


# ---------------------------------------------------------------- charts
#: Cluster-size buckets of :func:`cluster_size_chart`: ``(label, lowest, highest)``.
SIZE_BUCKETS = [(str(k), k, k) for k in range(1, 11)] + [("11–20", 11, 20), ("21–50", 21, 50), ("51–100", 51, 100),
                                                       ("101–1000", 101, 1000), ("> 1000", 1001, 2 ** 62)]


def _ticks(top: int) -> list[int]:
    """Axis values 0, 1, 2, 5, 10, 20, 50 … up to ``top`` (readable ticks on a symlog scale)."""
    out, k = [0], 1
    while k <= max(top, 1):
        out += [v for v in (k, 2 * k, 5 * k) if v <= max(top, 1)]
        k *= 10
    return out


def cluster_size_chart(sizes: pd.Series):
    """Bars: number of clusters of each size (sizes above 10 in buckets; symlog scale), with the
    items they hold in the tooltip.

    Args:
        sizes: the size of every cluster (one value per cluster).
    """
    import altair as alt

    v = np.asarray(sizes, dtype=np.int64)
    rows = []
    for label, lo, hi in SIZE_BUCKETS:
        m = (v >= lo) & (v <= hi)
        if m.any():
            rows.append({"size": label, "clusters": int(m.sum()), "items": int(v[m].sum())})
    df = pd.DataFrame(rows, columns=["size", "clusters", "items"])
    return alt.Chart(df, title="Cluster sizes").mark_bar(color=_SLOT_COLOURS[0]).encode(
        x=alt.X("size:O", title="cluster size (items)", sort=df["size"].tolist(), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("clusters:Q", title="clusters (symlog scale)", scale=alt.Scale(type="symlog"),
                axis=alt.Axis(values=_ticks(int(df["clusters"].max()) if len(df) else 1))),
        tooltip=[alt.Tooltip("size:O", title="size"), alt.Tooltip("clusters:Q", title="clusters", format=","),
                 alt.Tooltip("items:Q", title="items in them", format=",")],
    ).properties(width=_WIDTH, height=_HEIGHT)


def nn_score_chart(nn: pd.DataFrame, tau: float, width: float = 0.02):
    """Histogram of every item's nearest-neighbour score, stacked by merged / not merged, τ drawn.

    Args:
        nn: one row per item with ``score`` and ``edge`` (:func:`~itemrep.report.data.nearest_neighbour_table`).
        tau: the run's τ.
        width: bin width.
    """
    import altair as alt

    s = nn["score"].to_numpy(np.float64)
    edges = _bins(s, width)
    rows = []
    for flag, name in ((True, "merged (edge)"), (False, "not merged")):
        h, _ = np.histogram(s[nn["edge"].to_numpy(bool) == flag], bins=edges)
        rows += [{"lo": float(edges[k]), "hi": float(edges[k + 1]), "items": int(h[k]), "pair": name}
                 for k in range(len(h)) if h[k]]
    df = pd.DataFrame(rows, columns=["lo", "hi", "items", "pair"])
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("lo:Q", bin="binned", title="score of the item's nearest neighbour", axis=alt.Axis(tickCount=8, format=".2~f")),
        x2="hi:Q",
        y=alt.Y("items:Q", title="items", stack=True),
        color=alt.Color("pair:N", title=None, scale=alt.Scale(domain=["merged (edge)", "not merged"],
                                                              range=[_SLOT_COLOURS[0], "#bab0ac"])),
        tooltip=[alt.Tooltip("lo:Q", title="from", format=".2f"), alt.Tooltip("hi:Q", title="to", format=".2f"),
                 alt.Tooltip("pair:N"), alt.Tooltip("items:Q")])
    rule = alt.Chart(pd.DataFrame({"tau": [tau], "label": [f"τ = {tau:.3f}"]})).mark_rule(color="#e45756", strokeWidth=2).encode(
        x="tau:Q", tooltip=[alt.Tooltip("label:N", title="threshold")])
    text = alt.Chart(pd.DataFrame({"tau": [tau], "label": [f"τ {tau:.2f}"]})).mark_text(
        align="left", dx=4, dy=-4, color="#e45756", baseline="top").encode(x="tau:Q", y=alt.value(0), text="label:N")
    return alt.layer(bars, rule, text).properties(
        width=_WIDTH, height=_HEIGHT, title="Nearest-neighbour score of every item")


def slot_nn_chart(nn: pd.DataFrame, groups: dict[str, list[str]], colours: dict[str, str], alpha: dict[str, float],
                  n_bins: int = 24, columns: int = 4):
    """Small multiples: per slot, the distribution of its contribution to the nearest-neighbour score.

    A slot's contribution is its group of ``term_*`` columns (``α_k cos_k`` plus its near-match
    bonuses, or a conflict penalty) on each item's nearest-neighbour pair; the facet title gives α
    and how many pairs have a non-zero contribution (zeros, e.g. a slot one item lacks, are left out
    of the bars).
    """
    import altair as alt

    g = grouped_terms(nn, groups)
    rows = []
    order = []
    for name in groups:
        v = g[name].to_numpy(np.float64)
        nz = v[np.abs(v) > 1e-9]
        if not len(nz):
            continue
        a = alpha.get(name)
        label = f"{name}" + (f" (α {a:.3f})" if a is not None else "") + f": {len(nz):,} of {len(v):,} non-zero"
        order.append(label)
        lo, hi = float(nz.min()), float(nz.max())
        if hi - lo < 1e-3:  # (nearly) one value: a narrow bar in a readable range
            pad = max(abs(lo) * 0.1, 1e-3)
            lo, hi = lo - pad, hi + pad
        e = np.linspace(lo, hi, n_bins + 1)
        h, _ = np.histogram(nz, bins=e)
        rows += [{"slot": label, "group": name, "lo": float(e[k]), "hi": float(e[k + 1]), "items": int(h[k])}
                 for k in range(len(h))]  # empty bins too: they set each panel's x range
    df = pd.DataFrame(rows, columns=["slot", "group", "lo", "hi", "items"])
    present = [n for n in groups if n in set(df["group"])]
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("lo:Q", bin="binned", title="contribution to the score", axis=alt.Axis(tickCount=4, format=".3~f")), x2="hi:Q",
        y=alt.Y("items:Q", title="items"),
        color=alt.Color("group:N", scale=_colour_scale(present, colours), legend=None),
        tooltip=[alt.Tooltip("group:N", title="slot"), alt.Tooltip("lo:Q", title="from", format=".3f"),
                 alt.Tooltip("hi:Q", title="to", format=".3f"), alt.Tooltip("items:Q")],
    ).properties(width=190, height=90).facet(
        facet=alt.Facet("slot:N", title=None, sort=order, header=alt.Header(labelFontSize=11, labelLimit=260)),
        columns=columns,
    ).resolve_scale(x="independent", y="independent").properties(
        title="Per slot: contribution to each item's nearest-neighbour score")


def slot_by_score_chart(nn: pd.DataFrame, groups: dict[str, list[str]], colours: dict[str, str], tau: float,
                        width: float = 0.05):
    """Stacked bars: the mean contribution of each slot to the nearest-neighbour score, by score bin, τ drawn.

    The stacked positive parts minus the conflict penalties add up to the mean score of the bin.
    """
    import altair as alt

    g = grouped_terms(nn, groups)
    s = nn["score"].to_numpy(np.float64)
    e = _bins(s, width)
    k = np.clip(np.digitize(s, e) - 1, 0, len(e) - 2)
    rows = []
    for b in np.unique(k):
        m = k == b
        for name in groups:
            v = float(g[name].to_numpy()[m].mean())
            if abs(v) > 1e-9:
                rows.append({"lo": float(e[b]), "hi": float(e[b + 1]), "slot": name, "mean": v, "items": int(m.sum())})
    df = pd.DataFrame(rows, columns=["lo", "hi", "slot", "mean", "items"])
    present = [n for n in groups if n in set(df["slot"])]
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("lo:Q", bin="binned", title="score of the item's nearest neighbour", axis=alt.Axis(tickCount=8, format=".2~f")),
        x2="hi:Q",
        y=alt.Y("mean:Q", title="mean contribution", stack=True),
        color=alt.Color("slot:N", title="slot", scale=_colour_scale(present, colours), sort=present),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("slot:N"), alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("lo:Q", title="from", format=".2f"),
                 alt.Tooltip("hi:Q", title="to", format=".2f"), alt.Tooltip("items:Q", title="items in bin")],
    ).transform_calculate(order=f"indexof({present!r}, datum.slot)")
    rule = alt.Chart(pd.DataFrame({"tau": [tau], "label": [f"τ = {tau:.3f}"]})).mark_rule(color="#e45756", strokeWidth=2).encode(
        x="tau:Q", tooltip=[alt.Tooltip("label:N", title="threshold")])
    return alt.layer(bars, rule).properties(width=_WIDTH, height=_HEIGHT,
                                            title="Which slots make the nearest-neighbour score")


def alpha_chart(alpha: dict[str, float], colours: dict[str, str]):
    """Horizontal bars: the learned slot weight α of every slot of the run (largest first)."""
    import altair as alt

    df = pd.DataFrame({"slot": list(alpha), "alpha": [float(v) for v in alpha.values()]})
    df = df.sort_values(["alpha", "slot"], ascending=[False, True], kind="stable")
    order = df["slot"].tolist()
    cols = {s: colours.get(s, "#bab0ac") for s in order}
    return alt.Chart(df, title="Learned slot weights α").mark_bar().encode(
        y=alt.Y("slot:N", sort=order, title=None),
        x=alt.X("alpha:Q", title="α"),
        color=alt.Color("slot:N", scale=alt.Scale(domain=order, range=[cols[s] for s in order]), legend=None),
        tooltip=[alt.Tooltip("slot:N"), alt.Tooltip("alpha:Q", title="α", format=".4f")],
    ).properties(width=_WIDTH - 120, height=max(60, 18 * len(order)))


# ---------------------------------------------------------------- compile and runtime
def to_vega(chart) -> dict:
    """Compile an Altair chart to a Vega spec (``vl-convert-python``, offline)."""
    import vl_convert as vlc

    return vlc.vegalite_to_vega(chart.to_dict())


def to_svg(vega_spec: dict) -> str:
    """Render a Vega spec (:func:`to_vega`) to an SVG string (``vl-convert-python``, offline)."""
    import vl_convert as vlc

    return vlc.vega_to_svg(vega_spec)


def _cache_dir() -> Path:
    from itemrep.catalog import default_cache_dir

    return default_cache_dir() / "report"


@functools.lru_cache(maxsize=1)
def vega_runtime_js() -> str:
    """The Vega runtime as one script, bundled by ``vl-convert-python``: ``window.vegaEmbed``
    (Vega-Embed with Vega and Vega-Lite inside; the page passes it compiled Vega specs).

    Only Vega-Embed is exported: ``vl-convert-python`` 1.9 bundles the ``vega`` namespace itself as
    ``null``, while Vega-Embed carries its own working copy.

    Bundling takes a few seconds, so the result is kept in ``$ITEMREP_CACHE/report`` (keyed by the
    vl-convert and Vega versions) and in memory. ``</script`` inside it is escaped for inlining.
    """
    import vl_convert as vlc

    try:
        from importlib.metadata import version

        vlc_version = version("vl-convert-python")
    except Exception:  # noqa: BLE001
        vlc_version = "unknown"
    name = f"vega-embed-{vlc.get_vega_embed_version()}-vega-{vlc.get_vega_version()}-vlc-{vlc_version}.js"
    path = _cache_dir() / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    js = vlc.javascript_bundle("window.vegaEmbed = vegaEmbed;")
    js = js.replace("</script", "<\\/script").replace("<!--", "<\\!--")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".vega-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(js)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the bundling time next run
        pass
    return js
