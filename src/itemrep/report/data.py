"""Read an ``itemrep dedup`` output directory and derive what the report shows.

Everything here is plain pandas / numpy on the files ``itemrep dedup --out OUT`` writes
(``run.json``, ``clusters.parquet``, ``edges.parquet``, ``neighbours.parquet``, ``metrics.json``,
``failures.csv``, ``concepts.parquet``) and, optionally, the catalog (titles, image paths, labels).
Nothing is re-scored: every number in the report is read from those files or counted from them.

Same inputs and seed give the same tables (every sort has a tie-break on item ids).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.errors import ItemrepError

#: Files an output directory must hold for a report.
REQUIRED_FILES = ("run.json", "clusters.parquet", "edges.parquet")


class ReportError(ItemrepError, ValueError):
    """The directory is not a usable ``itemrep dedup`` output (the message names the file)."""


@dataclass
class RunOutputs:
    """The files of one ``itemrep dedup --out OUT`` run.

    Attributes:
        out: the directory.
        run: ``run.json``.
        clusters: ``item_id, cluster_id, representative_id, score`` (``score`` read from
            ``similarity`` in outputs written before the column was renamed).
        edges: the kept edges, ``item_a, item_b, score, term_*`` (``score`` likewise).
        neighbours: ``neighbours.parquet`` (each item's nearest candidates, edge or not), or ``None``
            for outputs written before it existed.
        metrics: ``metrics.json`` or ``None``.
        failures: ``failures.csv`` rows (may be empty).
        concepts: ``concepts.parquet`` as a DataFrame, or ``None``.
    """

    out: Path
    run: dict
    clusters: pd.DataFrame
    edges: pd.DataFrame
    neighbours: pd.DataFrame | None
    metrics: dict | None
    failures: pd.DataFrame
    concepts: pd.DataFrame | None = None

    @property
    def tau(self) -> float:
        """τ of the run."""
        return float(self.run.get("tau", self.run.get("parameters", {}).get("tau", float("nan"))))

    @property
    def term_columns(self) -> list[str]:
        """The ``term_<feature>`` columns of ``edges.parquet``, in file order."""
        return [c for c in self.edges.columns if c.startswith("term_")]


def _read_parquet(path: Path, columns_needed: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any reader error: name the file
        raise ReportError(f"{path}: cannot read this parquet file ({type(e).__name__}: {e}); "
                          "re-run `itemrep dedup` to write it again") from None
    if "score" not in df.columns and "similarity" in df.columns:  # outputs before the rename
        df = df.rename(columns={"similarity": "score"})
    missing = [c for c in columns_needed if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)} (it has {', '.join(map(str, df.columns))}); "
                          "is this an `itemrep dedup` output?")
    for c in ("item_id", "cluster_id", "representative_id", "item_a", "item_b"):
        if c in df.columns:
            df[c] = df[c].astype(str)
    return df


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read this JSON file ({e}); re-run `itemrep dedup` to write it again") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_outputs(out_dir: str | Path) -> RunOutputs:
    """Read the files of an ``itemrep dedup`` output directory.

    Raises:
        ReportError: ``out_dir`` is missing or not a directory, or a required file
            (:data:`REQUIRED_FILES`) is missing, unreadable or lacks its columns (the message names it).
    """
    out = Path(out_dir)
    if not out.exists():
        raise ReportError(f"{out}: no such directory; give the --out directory of `itemrep dedup`")
    if not out.is_dir():
        raise ReportError(f"{out}: not a directory; give the --out directory of `itemrep dedup`")
    missing = [f for f in REQUIRED_FILES if not (out / f).is_file()]
    if missing:
        raise ReportError(f"{out / missing[0]}: not found; {out} is not an `itemrep dedup` output "
                          f"(it needs {', '.join(REQUIRED_FILES)}; write one with `itemrep dedup CATALOG --out {out}`)")
    run = _read_json(out / "run.json")
    for k in ("n_items", "tau"):
        if k not in run:
            raise ReportError(f"{out / 'run.json'}: no {k!r} field; is this the run.json of `itemrep dedup`?")
    clusters = _read_parquet(out / "clusters.parquet", ("item_id", "cluster_id", "representative_id", "score"))
    edges = _read_parquet(out / "edges.parquet", ("item_a", "item_b", "score"))
    neighbours = None
    if (out / "neighbours.parquet").is_file():
        neighbours = _read_parquet(out / "neighbours.parquet", ("item_a", "item_b", "score", "edge"))
    metrics = _read_json(out / "metrics.json") if (out / "metrics.json").is_file() else None
    failures = pd.DataFrame(columns=["item_id", "stage", "field", "message", "row"])
    if (out / "failures.csv").is_file():
        try:
            failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
        except Exception as e:  # noqa: BLE001
            raise ReportError(f"{out / 'failures.csv'}: cannot read this CSV file ({type(e).__name__}: {e})") from None
    concepts = None
    if (out / "concepts.parquet").is_file():
        try:
            concepts = pd.read_parquet(out / "concepts.parquet", columns=["item_id", "slot", "value", "level"])
            concepts["item_id"] = concepts["item_id"].astype(str)
        except Exception:  # noqa: BLE001 - concepts only stand in for missing titles
            concepts = None
    return RunOutputs(out=out, run=run, clusters=clusters, edges=edges, neighbours=neighbours, metrics=metrics,
                      failures=failures, concepts=concepts)


# ---------------------------------------------------------------- items (titles, images, labels)
def items_frame(outputs: RunOutputs, catalog=None) -> pd.DataFrame:
    """One row per clustered item: ``item_id, title, image, label, cluster_id, representative_id, score``.

    ``catalog`` (a :class:`~itemrep.catalog.Catalog`) gives titles, image paths and labels; without
    it, titles are made of the item's primary concepts from ``concepts.parquet`` (marked as such)
    and there are no images or labels.

    Raises:
        ReportError: the catalog shares no item id with the run.
    """
    df = outputs.clusters[["item_id", "cluster_id", "representative_id", "score"]].copy()
    if catalog is not None:
        cf = pd.DataFrame({"item_id": [str(x) for x in catalog.ids], "title": catalog.titles,
                           "image": [str(it.image) if it.image else None for it in catalog.items],
                           "label": catalog.labels})
        src = str(getattr(catalog, "path", None) or "catalog")
        if not df["item_id"].isin(set(cf["item_id"].tolist())).any():
            raise ReportError(f"{src}: none of its item ids is in {outputs.out / 'clusters.parquet'} "
                              "(another catalog, or another id column? pass --id-col)")
        df = df.merge(cf, on="item_id", how="left", indicator=True)
        df["title_source"] = np.where(df.pop("_merge").astype(str) == "both", "catalog", "missing")
    else:
        df["title"] = _concept_titles(outputs.concepts, df["item_id"])
        df["image"] = None
        df["label"] = None
        df["title_source"] = "concepts"
    df["title"] = df["title"].fillna("").astype(str)
    return df


def _concept_titles(concepts: pd.DataFrame | None, ids: pd.Series) -> list[str]:
    if concepts is None or concepts.empty:
        return [""] * len(ids)
    c = concepts.dropna(subset=["slot", "value"])
    c = c[c["level"].fillna("primary") == "primary"]
    joined = c.groupby("item_id", sort=False)["value"].agg(lambda v: " · ".join(dict.fromkeys(map(str, v)).keys()))
    return [joined.get(i, "") for i in ids]


# ---------------------------------------------------------------- clusters
def cluster_table(outputs: RunOutputs) -> pd.DataFrame:
    """One row per cluster: ``cluster_id, size, representative_id, weakest_score, weakest_a,
    weakest_b, min_member_score``, sorted by size (descending) then cluster id.

    The *weakest link* is the lowest-scoring edge of the cluster's maximum spanning tree over its
    own edges: the score at which the cluster would first split if τ were raised above it. It is
    NaN for singletons and for clusters held together only by identical inputs (no edge inside).
    """
    cl = outputs.clusters
    sizes = cl.groupby("cluster_id", sort=False).agg(size=("item_id", "size"), representative_id=("representative_id", "first"),
                                                     min_member_score=("score", "min"))
    sizes = sizes.reset_index()
    weak = _weakest_links(cl, outputs.edges)
    out = sizes.merge(weak, on="cluster_id", how="left")
    out["weakest_score"] = out["weakest_score"].astype(float)
    return out.sort_values(["size", "cluster_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _weakest_links(clusters: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    cols = ["cluster_id", "weakest_score", "weakest_a", "weakest_b"]
    if edges.empty:
        return pd.DataFrame(columns=cols)
    ids = clusters["item_id"].to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    cid = clusters["cluster_id"].to_numpy()
    a = pos.reindex(edges["item_a"].to_numpy()).to_numpy()
    b = pos.reindex(edges["item_b"].to_numpy()).to_numpy()
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok].astype(np.int64), b[ok].astype(np.int64)
    s = edges["score"].to_numpy(np.float64)[ok]
    inside = cid[a] == cid[b]
    a, b, s = a[inside], b[inside], s[inside]
    if not len(a):
        return pd.DataFrame(columns=cols)
    # maximum spanning tree = minimum spanning tree of (big - score); keep the strongest duplicate edge
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((-s, hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    lo, hi, s = lo[first], hi[first], s[first]
    big = float(s.max()) + 1.0
    n = len(ids)
    tree = minimum_spanning_tree(coo_matrix((big - s, (lo, hi)), shape=(n, n)).tocsr()).tocoo()
    ts = big - tree.data
    t = pd.DataFrame({"cluster_id": cid[tree.row], "weakest_score": ts, "a": ids[tree.row], "b": ids[tree.col]})
    ta, tb = t["a"].to_numpy(dtype=object), t["b"].to_numpy(dtype=object)
    t["lo"] = np.where(ta <= tb, ta, tb)
    t["hi"] = np.where(ta <= tb, tb, ta)
    t = t.sort_values(["cluster_id", "weakest_score", "lo", "hi"], kind="stable").drop_duplicates("cluster_id")
    return t.rename(columns={"lo": "weakest_a", "hi": "weakest_b"})[cols].reset_index(drop=True)


def sample_clusters(table: pd.DataFrame, tau: float, max_clusters: int, seed: int) -> pd.DataFrame:
    """The clusters of two or more items the gallery shows, with a ``reason`` column.

    When there are more than ``max_clusters``: the largest 40 %, then the 20 % whose weakest link
    is closest to τ (``borderline``), then a seeded random sample of the rest (``random``).
    Returned in gallery order (size descending, then cluster id).
    """
    multi = table[table["size"] >= 2].reset_index(drop=True)
    if max_clusters <= 0:
        return multi.iloc[:0].assign(reason=pd.Series(dtype=str))
    if len(multi) <= max_clusters:
        return multi.assign(reason="all")
    n_large = int(math.ceil(0.4 * max_clusters))
    n_border = int(math.ceil(0.2 * max_clusters))
    reason = pd.Series([""] * len(multi), dtype=object)
    reason.iloc[:n_large] = "largest"  # table is sorted by size then id
    rest = multi.index[reason == ""]
    dist = (multi.loc[rest, "weakest_score"] - tau).abs()
    order = pd.DataFrame({"d": dist.fillna(np.inf), "cid": multi.loc[rest, "cluster_id"]}).sort_values(["d", "cid"], kind="stable")
    border = order.index[np.isfinite(order["d"].to_numpy())][:n_border]
    reason.loc[border] = "borderline"
    rest = np.flatnonzero((reason == "").to_numpy())
    k = min(max_clusters - int((reason != "").sum()), len(rest))
    if k > 0:
        pick = np.random.default_rng(seed).choice(rest, size=k, replace=False)
        reason.iloc[np.sort(pick)] = "random"
    out = multi.assign(reason=reason.to_numpy())
    return out[out["reason"] != ""].reset_index(drop=True)


# ---------------------------------------------------------------- pairs
def pair_key(a: str, b: str) -> tuple[str, str]:
    """The unordered pair ``(a, b)`` as a sorted tuple."""
    return (a, b) if a <= b else (b, a)


@dataclass
class PairBook:
    """Every pair whose terms the outputs hold (edges and neighbours), looked up by item ids.

    Attributes:
        pairs: ``item_a, item_b, score, edge, term_*`` (edges first; a pair in both files once).
        index: ``{(a, b) sorted: row}``.
        by_item: ``{item_id: [rows]}`` of the edges (``edge`` True) only.
    """

    pairs: pd.DataFrame
    index: dict = field(default_factory=dict)
    by_item: dict = field(default_factory=dict)
    a: list = field(default_factory=list)
    b: list = field(default_factory=list)
    score: np.ndarray | None = None
    terms: np.ndarray | None = None
    term_names: list = field(default_factory=list)

    def row(self, a: str, b: str) -> int | None:
        """Row of the pair (a, b) in :attr:`pairs`, or ``None``."""
        return self.index.get(pair_key(a, b))

    def record(self, r: int) -> dict:
        """Row ``r`` as a plain dict: ``item_a, item_b, score, term_*``."""
        d = dict(zip(self.term_names, self.terms[r].tolist()))
        d.update(item_a=self.a[r], item_b=self.b[r], score=float(self.score[r]))
        return d


def pair_book(outputs: RunOutputs) -> PairBook:
    """Edges and neighbours in one table with a lookup by item pair."""
    terms = outputs.term_columns
    e = outputs.edges[["item_a", "item_b", "score", *terms]].assign(edge=True)
    parts = [e]
    if outputs.neighbours is not None:
        nb = outputs.neighbours
        parts.append(nb[["item_a", "item_b", "score", "edge", *[t for t in terms if t in nb.columns]]])
    pairs = pd.concat(parts, ignore_index=True)
    pa_, pb_ = pairs["item_a"].to_numpy(dtype=object), pairs["item_b"].to_numpy(dtype=object)
    lo, hi = np.where(pa_ <= pb_, pa_, pb_), np.where(pa_ <= pb_, pb_, pa_)
    pairs["item_a"], pairs["item_b"] = lo, hi
    pairs = pairs.drop_duplicates(["item_a", "item_b"], keep="first").reset_index(drop=True)
    pairs["edge"] = pairs["edge"].astype(bool)
    for t in terms:
        pairs[t] = pairs[t].fillna(0.0).astype(np.float32)
    a_list, b_list = pairs["item_a"].tolist(), pairs["item_b"].tolist()
    index = {k: n for n, k in enumerate(zip(a_list, b_list))}
    by_item: dict[str, list[int]] = {}
    for n in np.flatnonzero(pairs["edge"].to_numpy()).tolist():
        by_item.setdefault(a_list[n], []).append(n)
        by_item.setdefault(b_list[n], []).append(n)
    return PairBook(pairs=pairs, index=index, by_item=by_item, a=a_list, b=b_list,
                    score=pairs["score"].to_numpy(np.float64), terms=pairs[terms].to_numpy(np.float64), term_names=terms)


def nearest_neighbour_table(outputs: RunOutputs, book: PairBook) -> pd.DataFrame | None:
    """Each item's nearest neighbour among its candidates: ``item_id, neighbour_id, score, edge,
    term_*``; ``None`` when the outputs have no ``neighbours.parquet``.

    The nearest neighbour of an item is its best-scoring pair in the file (``neighbours.parquet``
    holds each item's best candidate pair, so the maximum over the pairs naming the item is it).
    """
    if outputs.neighbours is None:
        return None
    p = book.pairs
    long = pd.concat([p.assign(item_id=p["item_a"], neighbour_id=p["item_b"]),
                      p.assign(item_id=p["item_b"], neighbour_id=p["item_a"])], ignore_index=True)
    long = long.sort_values(["item_id", "score", "neighbour_id"], ascending=[True, False, True], kind="stable")
    nn = long.drop_duplicates("item_id").reset_index(drop=True)
    return nn[["item_id", "neighbour_id", "score", "edge", *outputs.term_columns]]


def borderline_pairs(book: PairBook, tau: float, n_each: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(merged, not_merged)``: the ``n_each`` edges with the lowest scores (just above τ) and the
    ``n_each`` best-scoring pairs that are not edges (just below τ), each sorted by distance to τ.

    Pairs below τ come from ``neighbours.parquet`` (each item's best pair that is not an edge); an
    output without it has none.
    """
    p = book.pairs
    above = p[p["edge"]].assign(dist=lambda d: (d["score"] - tau).abs())
    below = p[~p["edge"]].assign(dist=lambda d: (d["score"] - tau).abs())
    key = ["dist", "item_a", "item_b"]
    above = above.sort_values(key, kind="stable").head(n_each).drop(columns="dist").reset_index(drop=True)
    below = below.sort_values(key, kind="stable").head(n_each).drop(columns="dist").reset_index(drop=True)
    return above, below


def label_errors(book: PairBook, items: pd.DataFrame, n: int) -> dict | None:
    """With item labels: the ``n`` highest-scoring edges joining different labels (false merges),
    the ``n`` highest-scoring non-edge pairs of one label (missed pairs, among the pairs the
    outputs hold), and pair counts over all items. ``None`` when the items have no labels.
    """
    lab = items.set_index("item_id")["label"]
    if lab.isna().all():
        return None
    p = book.pairs
    la = lab.reindex(p["item_a"]).to_numpy(dtype=object)
    lb = lab.reindex(p["item_b"]).to_numpy(dtype=object)
    known = pd.notna(la) & pd.notna(lb)
    same = known & (la == lb)
    key = ["score", "item_a", "item_b"]
    asc = [False, True, True]
    false_merges = p[p["edge"].to_numpy() & known & ~same].sort_values(key, ascending=asc, kind="stable")
    missed = p[~p["edge"].to_numpy() & same].sort_values(key, ascending=asc, kind="stable")
    it = items.dropna(subset=["label"])
    n_true = int(sum(c * (c - 1) // 2 for c in it.groupby("label").size()))
    n_both = int(sum(c * (c - 1) // 2 for c in it.groupby(["label", "cluster_id"]).size()))
    n_pred = int(sum(c * (c - 1) // 2 for c in it.groupby("cluster_id").size()))
    return {"false_merges": false_merges.head(n).reset_index(drop=True), "missed": missed.head(n).reset_index(drop=True),
            "n_false_merge_edges": int(len(false_merges)), "n_missed_pairs_held": int(len(missed)),
            "true_pairs": n_true, "predicted_pairs": n_pred, "correct_pairs": n_both,
            "missed_pairs": n_true - n_both, "wrong_pairs": n_pred - n_both}


def review_pairs(book: PairBook, items: pd.DataFrame, tau: float, n: int) -> pd.DataFrame:
    """The labelling table ``review_pairs.csv``: up to ``n`` pairs closest to τ, half merged and
    half not (a side short of pairs leaves its share to the other), sorted by distance to τ.

    Columns: ``item_a, item_b, label`` (empty, for a reviewer: 1 = same product, 0 = not), then
    ``score, tau, merged, cluster_a, cluster_b, title_a, title_b`` and the ``term_*`` columns.
    """
    merged, not_merged = borderline_pairs(book, tau, n)
    k_m = min(len(merged), max(n // 2, n - len(not_merged)))
    k_n = min(len(not_merged), n - k_m)
    df = pd.concat([merged.head(k_m), not_merged.head(k_n)], ignore_index=True)
    df = df.assign(dist=(df["score"] - tau).abs()).sort_values(["dist", "item_a", "item_b"], kind="stable")
    info = items.set_index("item_id")
    terms = [c for c in df.columns if c.startswith("term_")]
    out = pd.DataFrame({
        "item_a": df["item_a"].to_numpy(), "item_b": df["item_b"].to_numpy(), "label": "",
        "score": df["score"].astype(float).round(6).to_numpy(), "tau": tau, "merged": df["edge"].astype(int).to_numpy(),
        "cluster_a": info["cluster_id"].reindex(df["item_a"]).to_numpy(),
        "cluster_b": info["cluster_id"].reindex(df["item_b"]).to_numpy(),
        "title_a": info["title"].reindex(df["item_a"]).to_numpy(),
        "title_b": info["title"].reindex(df["item_b"]).to_numpy(),
    })
    for t in terms:
        out[t] = df[t].astype(float).round(6).to_numpy() + 0.0  # no -0.0
    return out.reset_index(drop=True)
