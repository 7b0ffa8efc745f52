"""The page builder: one self-contained ``report.html`` (inline CSS, data, Vega runtime, pictures).

The page is static HTML (header, charts as inline SVG, gallery, pair tables, failures) plus inline
scripts: the compiled Vega specs and the search index (JSON), the Vega-Embed runtime
(:func:`~itemrep.report.charts.vega_runtime_js`) kept as inert text, and a few lines of plain
JavaScript that run the item search and turn a chart into a live Vega view (tooltips) when the
pointer first enters it. Nothing is fetched: the page opens from disk without a network.

When its script has run (the charts are drawn by then) the page sets
``document.body.dataset.chartsDone`` to the milliseconds since navigation start (read by the browser
test and ``bench/report_render.py``).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from itemrep.report.thumbs import Thumbnails

#: Members shown per cluster card (the representative, the strongest, then the weakest).
MAX_MEMBERS = 16

_CSS = """
*{box-sizing:border-box}body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:14px 24px}header h1{margin:0 0 8px;font-size:20px}
.stats{display:flex;flex-wrap:wrap;gap:8px 22px}.stats div{min-width:90px}.stats b{display:block;font-size:18px}
.stats span{font-size:12px;opacity:.8}nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #ddd;
padding:6px 24px;display:flex;gap:14px;align-items:center;flex-wrap:wrap}nav a{color:#1f5fa8;text-decoration:none}
#search{width:320px;padding:5px 8px;font-size:14px;border:1px solid #bbb;border-radius:4px}
#results{position:absolute;top:40px;right:24px;width:560px;max-height:70vh;overflow:auto;background:#fff;
border:1px solid #bbb;box-shadow:0 4px 14px rgba(0,0,0,.15);display:none;font-size:13px}
#results div.r{padding:5px 8px;border-bottom:1px solid #eee}#results .none{padding:8px;color:#777}
main{padding:8px 24px 40px}section.block{margin:18px 0 26px}h2{font-size:18px;border-bottom:2px solid #1f2d3d;padding-bottom:3px}
.note{color:#555;font-size:13px;max-width:1100px}.charts{display:flex;flex-wrap:wrap;gap:18px}.chart{background:#fff;
border:1px solid #e3e3e3;padding:6px;min-height:60px}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;margin:6px 0}.legend i{display:inline-block;width:12px;
height:10px;margin-right:4px;vertical-align:middle}
.cl{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:10px 0;padding:8px 10px;content-visibility:auto;contain-intrinsic-size:auto 220px}.cl.hit{outline:3px solid #f58518}
.cl h3{margin:0 0 6px;font-size:14px;font-weight:600}.cl h3 small{font-weight:400;color:#555}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#e8eef6;color:#1f5fa8;margin-left:4px;font-weight:400}
.badge.warn{background:#fde7e7;color:#a32}.badge.ok{background:#e5f4e5;color:#276227}
.members{display:flex;flex-wrap:wrap;gap:8px}.it{width:210px;font-size:12px;border:1px solid #eee;border-radius:4px;padding:4px;background:#fcfcfc}
.it.rep{border-color:#4c78a8;background:#f3f7fc}.it img{display:block;max-width:96px;max-height:96px;margin:0 auto 3px}
.it .t{max-height:3.9em;overflow:hidden;word-break:break-word}.it .m{color:#666;font-size:11px}.it .id{font-family:monospace}
.more{align-self:center;color:#777;font-size:12px}
.tb{position:relative;display:flex;width:200px;height:11px;background:#f1f1f1;margin-top:3px}.tb .n{display:flex;
flex-direction:row-reverse;border-right:1px solid #333}.tb .p{display:flex}.tb i{display:block;height:11px}
.tb .tau{position:absolute;top:-2px;width:2px;height:15px;background:#e45756}
table.pairs{border-collapse:collapse;background:#fff;margin:6px 0 16px}table.pairs tr{content-visibility:auto;contain-intrinsic-size:auto 110px}table.pairs td,table.pairs th{border-bottom:1px solid #eee;
padding:4px 6px;vertical-align:top;text-align:left;font-size:12px}table.pairs th{background:#f3f3f3}
table.kv{border-collapse:collapse;background:#fff}table.kv td,table.kv th{border:1px solid #e3e3e3;padding:3px 8px;font-size:13px;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}details{margin:6px 0}
"""

_JS = """
(function(){
  performance.mark('report-script');
  // the charts are inline SVG (drawn by vl-convert when the report was written); the first time the
  // pointer enters one, it becomes a live Vega view with tooltips (the runtime is evaluated then)
  const specs = JSON.parse(document.getElementById('chart-specs').textContent);
  let runtime = false;
  function live(el){
    if (el.dataset.live || !specs[el.id]) return;
    el.dataset.live = 'pending';
    try {
      if (!runtime){
        const s = document.createElement('script');
        s.textContent = document.getElementById('vega-runtime').textContent;
        document.head.appendChild(s);
        runtime = true;
      }
      const holder = document.createElement('div');
      holder.style.display = 'none';
      el.appendChild(holder);
      vegaEmbed(holder, specs[el.id], {mode: 'vega', renderer: 'svg', actions: false}).then(function(){
        Array.from(el.children).forEach(function(c){ if (c !== holder) el.removeChild(c); });
        holder.style.display = '';
        el.dataset.live = '1';
      }).catch(function(e){ el.dataset.live = 'failed'; console.error('chart ' + el.id + ' failed: ' + e); });
    } catch (e) { el.dataset.live = 'failed'; console.error('chart runtime failed: ' + e); }
  }
  document.querySelectorAll('.chart').forEach(function(el){
    el.dataset.rendered = el.querySelector('svg') ? '1' : '0';
    el.addEventListener('pointerenter', function(){ live(el); });
  });
  performance.mark('report-charts');
  document.body.dataset.chartsDone = String(Math.round(performance.now()));

  let idx = null, low = null, lowId = null;  // parsed on first use: the page draws first
  function load(){
    if (idx) return;
    idx = JSON.parse(document.getElementById('search-index').textContent);
    low = idx.t.map(function(s){ return s.toLowerCase(); });
    lowId = idx.id.map(function(s){ return s.toLowerCase(); });
  }
  const box = document.getElementById('search'), out = document.getElementById('results');
  function esc(s){ return String(s).replace(/[&<>"]/g, function(c){ return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]; }); }
  function run(){
    const q = box.value.trim().toLowerCase();
    if (!q){ out.style.display = 'none'; out.innerHTML = ''; return; }
    load();
    const exact = [], hits = [];
    for (let k = 0; k < lowId.length && hits.length < 50; k++){
      if (lowId[k] === q) exact.push(k); else if (lowId[k].indexOf(q) >= 0 || low[k].indexOf(q) >= 0) hits.push(k);
    }
    const found = exact.concat(hits).slice(0, 50);
    out.innerHTML = found.length ? found.map(function(k){
      const c = idx.c[k], cid = idx.cid[c], n = idx.cn[c], shown = idx.cs[c];
      const rep = idx.id[idx.cr[c]];
      const where = shown ? '<a href="#c-' + esc(cid) + '" data-cid="' + esc(cid) + '">cluster ' + esc(cid) + '</a>'
                          : 'cluster ' + esc(cid) + ' (not in the gallery sample)';
      return '<div class="r" data-item="' + esc(idx.id[k]) + '"><b class="id">' + esc(idx.id[k]) + '</b> ' + esc(idx.t[k]) +
             '<br><small>' + where + ', ' + n + ' item' + (n > 1 ? 's' : '') + ', representative ' + esc(rep) +
             ', score to it ' + idx.s[k].toFixed(3) + '</small></div>';
    }).join('') : '<div class="none">no item id or title contains “' + esc(box.value) + '”</div>';
    out.style.display = 'block';
  }
  let timer = null;
  box.addEventListener('input', function(){ clearTimeout(timer); timer = setTimeout(run, 120); });
  box.addEventListener('keydown', function(e){ if (e.key === 'Enter'){ clearTimeout(timer); run(); } if (e.key === 'Escape'){ box.value=''; run(); } });
  out.addEventListener('click', function(e){
    const a = e.target.closest('a[data-cid]'); if (!a) return;
    document.querySelectorAll('.cl.hit').forEach(function(x){ x.classList.remove('hit'); });
    const card = document.getElementById('c-' + a.dataset.cid); if (card) card.classList.add('hit');
    out.style.display = 'none';
  });
})();
"""


def esc(s) -> str:
    """HTML-escape any value (``None`` → empty)."""
    return "" if s is None or (isinstance(s, float) and math.isnan(s)) else html.escape(str(s), quote=True)


def json_script(obj) -> str:
    """``obj`` as JSON safe to place inside a ``<script>`` element."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _fmt(x, nd: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


@dataclass
class TermBars:
    """Draws the small stacked bar of one pair's ``term_*`` values (CSS, one element per term group).

    Args:
        groups: term group → its ``term_*`` columns (:func:`~itemrep.report.charts.term_groups`).
        colours: term group → colour.
        tau: τ, drawn as a red tick.
        pos_max, neg_max: the common scale: the largest positive sum and the largest (absolute)
            negative sum over the pairs of the page, so bars compare across the page.
    """

    groups: dict
    colours: dict
    tau: float
    pos_max: float = 1.0
    neg_max: float = 0.05

    def css(self) -> str:
        """One CSS class per group (``.g0``, ``.g1`` …) with its colour."""
        return "".join(f".g{k}{{background:{self.colours[g]}}}" for k, g in enumerate(self.groups))

    def legend(self) -> str:
        """The colour legend of the term groups."""
        return '<div class="legend">' + "".join(
            f'<span><i class="g{k}"></i>{esc(g)}</span>' for k, g in enumerate(self.groups)) + \
            '<span><i style="background:#e45756;width:2px"></i>τ</span></div>'

    def bar(self, row: dict | None, score: float | None = None) -> str:
        """The bar of one pair (``row`` holds its ``term_*`` values), with the exact terms in its tooltip."""
        if row is None:
            return ""
        tip = []
        pos, neg = [], []
        for k, (g, cols) in enumerate(self.groups.items()):
            v = 0.0
            for c in cols:
                x = float(row.get(c, 0.0) or 0.0)
                v += x
                if abs(x) > 5e-4:
                    tip.append((abs(x), f"{c[5:]} {x:+.3f}"))
            if v > 1e-4:
                pos.append((k, v))
            elif v < -1e-4:
                neg.append((k, -v))
        tip.sort(key=lambda t: -t[0])
        total = sum(v for _, v in pos) - sum(v for _, v in neg) if score is None else float(score)
        title = f"score {total:.3f} (τ {self.tau:.3f}) = " + ", ".join(t for _, t in tip)
        span = self.pos_max + self.neg_max
        zn = 100.0 * self.neg_max / span
        segs_n = "".join(f'<i class="g{k}" style="width:{100 * v / self.neg_max:.1f}%"></i>' for k, v in neg if v / self.neg_max > 0.004)
        segs_p = "".join(f'<i class="g{k}" style="width:{100 * v / self.pos_max:.1f}%"></i>' for k, v in pos if v / self.pos_max > 0.004)
        tau_at = zn + (100 - zn) * min(max(self.tau, 0.0), self.pos_max) / self.pos_max
        return (f'<span class="tb" title="{esc(title)}"><span class="n" style="width:{zn:.1f}%">{segs_n}</span>'
                f'<span class="p" style="width:{100 - zn:.1f}%">{segs_p}</span><span class="tau" style="left:{tau_at:.1f}%"></span></span>')


class PageBuilder:
    """Builds the HTML of the report from the tables of :mod:`itemrep.report.data`.

    Args:
        items: :func:`~itemrep.report.data.items_frame`.
        bars: the :class:`TermBars` of the page.
        thumbs: a :class:`~itemrep.report.thumbs.Thumbnails` (``None``: titles only).
    """

    _REASONS = {"largest": "largest", "borderline": "weakest link near τ", "random": "random sample", "all": ""}

    def __init__(self, items: pd.DataFrame, bars: TermBars, thumbs: Thumbnails | None) -> None:
        self.items = items
        ids = items["item_id"].astype(str).tolist()
        self.title = dict(zip(ids, items["title"].astype(str).tolist()))
        self.image = dict(zip(ids, items["image"].tolist()))
        self.label = dict(zip(ids, [None if pd.isna(x) else str(x) for x in items["label"].tolist()]))
        self.cluster = dict(zip(ids, items["cluster_id"].astype(str).tolist()))
        self.from_concepts = set(items.loc[items["title_source"] == "concepts", "item_id"].astype(str).tolist()) \
            if "title_source" in items else set()
        self.bars = bars
        self.thumbs = thumbs
        self.has_labels = any(v is not None for v in self.label.values())

    # ------------------------------------------------------------------ pieces
    def item_card(self, item_id: str, extra: str = "", rep: bool = False) -> str:
        """One item: thumbnail (when the catalog has an image for it), title, id, label, ``extra``."""
        title = self.title.get(item_id, "")
        img = ""
        if self.thumbs is not None:
            th = self.thumbs.get(self.image.get(item_id))
            if th is not None:
                img = f'<img loading="lazy" decoding="async" src="{th[0]}" width="{th[1]}" height="{th[2]}" alt="{esc(item_id)}">'
        lab = self.label.get(item_id)
        lab = f' <span class="badge">{esc(lab)}</span>' if lab is not None else ""
        t = esc(title) if title else '<i style="color:#999">(no title)</i>'
        if item_id in self.from_concepts and title:
            t = f'<span title="no catalog given: the item\'s primary concepts">{t}</span>'
        return (f'<div class="it{" rep" if rep else ""}" data-item="{esc(item_id)}">{img}<div class="t">{t}</div>'
                f'<div class="m"><span class="id">{esc(item_id)}</span>{lab}{extra}</div></div>')

    def pair_rows(self, pairs: pd.DataFrame, tau: float) -> str:
        """Table rows of pairs: both items, score, distance to τ, same/different label, term bar."""
        rows = []
        for p in pairs.to_dict("records"):
            a, b = p["item_a"], p["item_b"]
            verdict = ""
            la, lb = self.label.get(a), self.label.get(b)
            if la is not None and lb is not None:
                verdict = '<span class="badge ok">same label</span>' if la == lb else '<span class="badge warn">different labels</span>'
            where = "same cluster" if self.cluster.get(a) == self.cluster.get(b) else "different clusters"
            rows.append(
                f'<tr><td>{self.item_card(a)}</td><td>{self.item_card(b)}</td>'
                f'<td class="num">{p["score"]:.3f}<br><small>{p["score"] - tau:+.3f} vs τ</small></td>'
                f'<td>{"edge" if p["edge"] else "no edge"}<br><small>{where}</small><br>{verdict}</td>'
                f'<td>{self.bars.bar(p, p["score"])}</td></tr>')
        return "".join(rows)

    def pair_table(self, pairs: pd.DataFrame, tau: float, empty: str) -> str:
        """A table of pairs (see :meth:`pair_rows`), or ``empty`` when there is none."""
        if pairs is None or len(pairs) == 0:
            return f'<p class="note">{empty}</p>'
        return ('<table class="pairs"><tr><th>item A</th><th>item B</th><th>score</th><th>merge</th><th>terms</th></tr>'
                + self.pair_rows(pairs, tau) + "</table>")

    def cluster_card(self, c: dict, members: list[tuple[str, float]], book, tau: float) -> str:
        """One gallery card: header (id, size, why shown, weakest link) and its members (``(item id,
        score to the representative)``), the representative first, then by score."""
        rep, cid = c["representative_id"], c["cluster_id"]
        others = sorted(((-float(sc), i) for i, sc in members if i != rep))
        others = [(i, -ns) for ns, i in others]
        hidden = 0
        if len(others) > MAX_MEMBERS - 1:
            keep = MAX_MEMBERS - 1
            hidden = len(others) - keep
            others = others[: keep - 3] + others[-3:]
        cards = [self.item_card(rep, ' · <span class="badge">representative</span>', rep=True)]
        o_ids = [i for i, _ in others]
        for n, (item, sc) in enumerate(others):
            if hidden and n == len(o_ids) - 3:
                cards.append(f'<div class="more">… {hidden} more (the search finds them) …</div>')
            cards.append(self.item_card(item, f' · score to rep. <b>{sc:.3f}</b>' + self._match(item, rep, cid, book)))
        weak = ""
        ws = c.get("weakest_score")
        if ws is not None and not (isinstance(ws, float) and math.isnan(ws)):
            r = book.row(c["weakest_a"], c["weakest_b"])
            weak = (f' · weakest link <b>{ws:.3f}</b> ({esc(c["weakest_a"])} – {esc(c["weakest_b"])}, '
                    f'{ws - tau:+.3f} vs τ) ' + (self.bars.bar(book.record(r), ws) if r is not None else ""))
        mixed = ""
        if self.has_labels:
            labs = {self.label.get(i) for i, _ in members} - {None}
            mixed = (f' <span class="badge warn">{len(labs)} labels</span>' if len(labs) > 1 else ' <span class="badge ok">one label</span>')
        why = self._REASONS.get(c.get("reason", ""), c.get("reason", ""))
        why = f' <span class="badge">{esc(why)}</span>' if why else ""
        return (f'<div class="cl" id="c-{esc(cid)}"><h3>Cluster <span class="id">{esc(cid)}</span> '
                f'<small>· {int(c["size"])} items{why}{mixed}{weak}</small></h3>'
                f'<div class="members">{"".join(cards)}</div></div>')

    def _match(self, item: str, rep: str, cid: str, book) -> str:
        """The term bar of the pair (item, representative), else of the item's strongest edge inside its cluster."""
        r = book.row(item, rep)
        if r is not None:
            return self.bars.bar(book.record(r))
        best = None
        for k in book.by_item.get(item, ()):
            other = book.b[k] if book.a[k] == item else book.a[k]
            if self.cluster.get(other) == cid and (best is None or book.score[k] > book.score[best[1]]):
                best = (other, k)
        if best is None:
            return '<br><small>joined as identical inputs (no scored pair)</small>'
        return (f'<br><small>edge via <span class="id">{esc(best[0])}</span> {book.score[best[1]]:.3f}</small>'
                + self.bars.bar(book.record(best[1])))

    # ------------------------------------------------------------------ search
    def search_index(self, shown: set[str]) -> dict:
        """Compact search data: item ids, titles (≤ 150 characters), cluster of each item, score;
        cluster ids, sizes, representatives and whether the gallery shows them."""
        it = self.items
        ids = it["item_id"].astype(str).tolist()
        cids, cidx = np.unique(np.asarray(it["cluster_id"].astype(str).tolist(), dtype=object), return_inverse=True)
        pos = {x: n for n, x in enumerate(ids)}
        rep = it.groupby("cluster_id")["representative_id"].first().reindex(cids)
        sizes = it.groupby("cluster_id").size().reindex(cids)
        return {
            "id": ids,
            "t": [s[:150] for s in it["title"].astype(str).tolist()],
            "c": cidx.astype(int).tolist(),
            "s": [round(float(x), 4) for x in it["score"].to_numpy(np.float64)],
            "cid": cids.tolist(),
            "cn": sizes.astype(int).tolist(),
            "cr": [int(pos.get(r, 0)) for r in rep.astype(str).tolist()],
            "cs": [1 if c in shown else 0 for c in cids],
        }


def page(*, title: str, header_stats: list[tuple[str, str]], header_notes: str, sections: list[tuple[str, str, str]],
         css_extra: str, specs: dict, index: dict, vega_js: str) -> str:
    """Assemble the page: ``sections`` is a list of ``(anchor, heading, inner HTML)``."""
    stats = "".join(f"<div><b>{v}</b><span>{esc(k)}</span></div>" for k, v in header_stats)
    nav = "".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section class="block" id="{a}"><h2>{esc(h)}</h2>{inner}</section>' for a, h, inner in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}{css_extra}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><div class=\"stats\">{stats}</div><div class=\"note\" style=\"color:#dde\">{header_notes}</div></header>"
        f"<nav>{nav}<span style=\"flex:1\"></span><input id=\"search\" type=\"search\" placeholder=\"Search items by id or title\" "
        f"autocomplete=\"off\" aria-label=\"Search items by id or title\"><div id=\"results\"></div></nav>"
        f"<main>{body}</main>"
        f"<script type=\"application/json\" id=\"chart-specs\">{json_script(specs)}</script>"
        f"<script type=\"application/json\" id=\"search-index\">{json_script(index)}</script>"
        f"<script type=\"text/plain\" id=\"vega-runtime\">{vega_js}</script><script>{_JS}</script></body></html>\n"
    )
