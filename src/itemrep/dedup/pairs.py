"""Pair scoring: the protocol of product-matching benchmarks (score given pairs, threshold, P/R/F1).

Product-matching papers (Magellan, DeepMatcher, Ditto, the WDC Product Corpus) do not cluster: they
give labelled *pairs* of records and report precision, recall and F1 of the match class at a
threshold chosen on the training pairs. This module scores such pairs with a FITRep model and its
white-box edge score, term by term:

>>> from itemrep.dedup.pipeline import FITRep                              # doctest: +SKIP
>>> catalog, pairs = read_wdc_pairs("computers/valid.txt.small")           # doctest: +SKIP
>>> scores = score_pairs(FITRep.default(), Catalog.from_frame(catalog), pairs)  # doctest: +SKIP
>>> pair_metrics(scores["label"], scores["match"])                         # doctest: +SKIP

Inputs:

* a *pair table* (CSV, TSV, JSONL or Parquet, read like a catalog) with columns ``item_a, item_b``
  and optionally ``label`` (1/0, true/false: the two items are the same product), naming items of a
  catalog; see :func:`read_pair_table`;
* or a file in the serialised *wdc-pairs* form of the Ditto repository, one pair per line:
  ``COL title VAL <title A>`` TAB ``COL title VAL <title B>`` [TAB ``0|1``]. Such files carry no record
  ids: :func:`read_wdc_pairs` makes ids ``a<line>`` and ``b<line>`` (``<line>`` is the 1-based line
  number in the file) and builds the catalog from the titles.

Command line: ``itemrep pairs PAIRS --out scores.parquet [--catalog CATALOG] [--model-dir M]``
(``--catalog`` is required for a pair table and refused for a wdc-pairs file).

The model's unsupervised stages (slot encoders' document frequencies, reducer) are fitted on the
catalog being scored, as ``itemrep dedup`` does; α, β, γ and τ come from the model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from itemrep.catalog import Catalog, read_table
from itemrep.errors import CatalogError

#: Columns of a pair table.
PAIR_COLUMNS = ("item_a", "item_b")
LABEL_COLUMN = "label"

_TRUE = frozenset({"1", "true", "yes", "match"})
_FALSE = frozenset({"0", "false", "no", "nonmatch", "non-match"})
#: One attribute of a Ditto-serialised record: ``COL <name> VAL <value>``.
_ATTR = re.compile(r"(?:^|\s)COL (\S+) VAL(?:\s|$)")


class PairsError(CatalogError):
    """A pair file or pair table cannot be used (bad line, unknown item id, bad label)."""


# ---------------------------------------------------------------- reading
def is_wdc_pairs_file(path: str | Path) -> bool:
    """True when the first non-blank line of ``path`` starts with ``COL `` (the serialised Ditto /
    wdc-pairs form); False for anything else, including files that cannot be read as text."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8-sig", "replace").strip()
                if line:
                    return line.startswith("COL ")
                if fh.tell() > 1 << 20:
                    return False
    except OSError:
        return False
    return False


def _parse_record(rec: str, where: str) -> tuple[str, str]:
    """``(title, text)`` of one serialised record ``COL a VAL x COL b VAL y``: the ``title`` (or
    ``name``) attribute's value, raw; other attributes become ``"<name>: <value>"`` joined by
    ``" | "`` as free text."""
    rec = rec.strip()
    if not rec.startswith("COL "):
        raise PairsError(f"{where}: expected a record starting with 'COL <attribute> VAL', got {_short(rec)!r}")
    marks = list(_ATTR.finditer(rec))
    if not marks or marks[0].start() != 0:
        raise PairsError(f"{where}: expected 'COL <attribute> VAL <value>', got {_short(rec)!r}")
    attrs: list[tuple[str, str]] = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(rec)
        attrs.append((m.group(1), rec[m.end():end].strip()))
    title_key = next((n for n, _ in attrs if n.lower() in ("title", "name")), None)
    title = next((v for n, v in attrs if n == title_key), "") if title_key else ""
    rest = [f"{n}: {v}" for n, v in attrs if n != title_key and v]
    if title_key is None and attrs:  # no title attribute: the first attribute stands for it
        title, rest = attrs[0][1], rest[1:] if attrs[0][1] else rest
    return title, " | ".join(rest)


def read_wdc_pairs(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a wdc-pairs / Ditto serialised pair file.

    Each non-blank line is ``COL title VAL <title A>`` TAB ``COL title VAL <title B>`` [TAB ``0|1``]
    (records with more attributes, ``COL title VAL … COL price VAL …``, are accepted: the title
    attribute becomes the title, the others free text). Titles are kept raw (quotes, ``@en`` tags,
    ``"Null"`` placeholders); the catalog cleans them like any title. Either every line has a label
    or none has.

    Args:
        path: the file (UTF-8).

    Returns:
        ``(catalog, pairs)``: ``catalog`` with columns ``item_id, title, text`` (ids ``a<line>`` and
        ``b<line>``, 1-based line numbers); ``pairs`` with ``item_a, item_b[, label], line``
        (label int8 0/1).

    Raises:
        PairsError: the file is missing or empty, a line is not UTF-8, has the wrong number of
            fields, a record without ``COL … VAL``, a label other than 0/1, or the lines disagree
            on having a label (the message names the file and the line).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PairsError(f"{path}: pair file not found") from None
    except IsADirectoryError:
        raise PairsError(f"{path}: is a directory, expected a pair file") from None
    except OSError as e:
        raise PairsError(f"{path}: cannot read the pair file ({e.strerror or e})") from None
    ids, titles, texts = [], [], []
    rows: dict[str, list] = {"item_a": [], "item_b": [], "label": [], "line": []}
    has_label: bool | None = None
    first_line = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        where = f"{path}: line {n}"
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise PairsError(f"{where}: not valid UTF-8 (byte {e.start + 1} of the line)") from None
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise PairsError(f"{where}: expected 2 or 3 tab-separated fields "
                             f"('COL title VAL …' TAB 'COL title VAL …' [TAB 0|1]), got {len(fields)}")
        labelled = len(fields) == 3
        if has_label is None:
            has_label, first_line = labelled, n
        elif labelled != has_label:
            raise PairsError(f"{where}: {'has' if labelled else 'lacks'} a label field but line {first_line} "
                             f"{'does not' if labelled else 'has one'}; give a label on every line or on none")
        (ta, xa), (tb, xb) = _parse_record(fields[0], f"{where}, first record"), _parse_record(fields[1], f"{where}, second record")
        if labelled:
            lab = fields[2].strip()
            if lab not in ("0", "1"):
                raise PairsError(f"{where}: label must be 0 or 1, got {_short(fields[2])!r}")
            rows["label"].append(int(lab))
        a, b = f"a{n}", f"b{n}"
        ids += [a, b]
        titles += [ta, tb]
        texts += [xa, xb]
        rows["item_a"].append(a)
        rows["item_b"].append(b)
        rows["line"].append(n)
    if not ids:
        raise PairsError(f"{path}: no pairs (the file is empty)")
    catalog = pd.DataFrame({"item_id": ids, "title": titles, "text": texts})
    pairs = pd.DataFrame({"item_a": rows["item_a"], "item_b": rows["item_b"]})
    if has_label:
        pairs["label"] = np.asarray(rows["label"], dtype=np.int8)
    pairs["line"] = np.asarray(rows["line"], dtype=np.int64)
    return catalog, pairs


def wdc_catalog(frame: pd.DataFrame, source: str | Path = "<wdc-pairs>") -> Catalog:
    """The :class:`~itemrep.catalog.Catalog` of a :func:`read_wdc_pairs` catalog frame (no images)."""
    return Catalog.from_frame(frame, source=str(source), id_col="item_id", title_col="title", text_col="text",
                              images="off", missing_values="")


def read_pair_table(path: str | Path, *, encoding: str | None = None) -> pd.DataFrame:
    """Read a pair table (CSV/TSV/JSONL/Parquet, chosen by extension like a catalog).

    Columns: ``item_a, item_b`` (item ids of the catalog) and optionally ``label`` (1/0, true/false,
    yes/no); other columns are ignored.

    Returns:
        ``item_a, item_b`` (str), ``label`` (int8, when present), ``row`` (1-based data row).

    Raises:
        PairsError / CatalogError: unreadable file, missing columns, empty ids, bad labels (the
            message names the file and the data rows).
    """
    path = Path(path)
    if not path.exists():
        raise PairsError(f"{path}: pair file not found")
    if path.is_dir():
        raise PairsError(f"{path}: is a directory, expected a pair file")
    df = read_table(path, encoding=encoding)
    return check_pairs(df, source=str(path))


def check_pairs(df: pd.DataFrame, source: str = "pairs") -> pd.DataFrame:
    """Validate and normalise an in-memory pair table (see :func:`read_pair_table`).

    Keeps ``line`` (wdc-pairs) or ``row`` columns when present (used to name pairs in messages),
    else adds ``row`` (1-based position).
    """
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise PairsError(f"{source}: missing column(s) {', '.join(missing)}; a pair table needs item_a, item_b "
                         f"and optionally label (the file has columns: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise PairsError(f"{source}: 0 pairs; nothing to score")
    out = pd.DataFrame({c: [_id(v) for v in df[c].tolist()] for c in PAIR_COLUMNS})
    pos = df["line"].to_numpy() if "line" in df.columns else None
    rows = df["row"].to_numpy() if "row" in df.columns and pos is None else np.arange(1, len(df) + 1)
    where = (lambda k: f"line {pos[k]}") if pos is not None else (lambda k: f"data row {rows[k]}")
    for c in PAIR_COLUMNS:
        empty = np.flatnonzero(out[c].to_numpy() == "")
        if len(empty):
            raise PairsError(f"{source}: empty {c} at {_list(where(k) for k in empty)} ({len(empty)} in all)")
    if LABEL_COLUMN in df.columns:
        labels, bad = [], []
        for k, v in enumerate(df[LABEL_COLUMN].tolist()):
            s = _id(v).lower()
            if s.endswith(".0"):
                s = s[:-2]
            if s in _TRUE:
                labels.append(1)
            elif s in _FALSE:
                labels.append(0)
            else:
                labels.append(0)
                bad.append(f"{where(k)} ({_short(str(v), 30)!r})")
        if bad:
            raise PairsError(f"{source}: column label must be 1/0 (or true/false, yes/no) on every row; "
                             f"bad at {_list(bad)} ({len(bad)} in all)")
        out[LABEL_COLUMN] = np.asarray(labels, dtype=np.int8)
    if pos is not None:
        out["line"] = pos
    else:
        out["row"] = rows
    return out


def check_pair_ids(pairs: pd.DataFrame, catalog: Catalog, source: str = "pairs") -> pd.DataFrame:
    """:func:`check_pairs`, then check that every pair names item ids of ``catalog``.

    Returns:
        The normalised pair table (``attrs["source"]`` = ``source``).

    Raises:
        PairsError: ids that are not in the catalog (the message names up to 5 of them with their
            line, or data row, and column, and the catalog file).
    """
    pairs = check_pairs(pairs, source)
    known = set(catalog.ids)
    where_col = "line" if "line" in pairs.columns else "row"
    missing = []
    for c in PAIR_COLUMNS:
        for k in np.flatnonzero(~pairs[c].isin(known).to_numpy()):
            missing.append((int(pairs[where_col].iat[k]), c, pairs[c].iat[k]))
    if missing:
        missing.sort()
        what = "line" if where_col == "line" else "data row"
        shown = "; ".join(f"{what} {r}: {c} {v!r}" for r, c, v in missing[:5]) + (" ..." if len(missing) > 5 else "")
        src = f" {catalog.path}" if catalog.path else ""
        raise PairsError(f"{source}: {len(missing)} item id(s) not in the catalog{src}: {shown}; "
                         "pairs must name item ids of the catalog (check which catalog is given and --id-col)")
    pairs.attrs["source"] = source
    return pairs


# ---------------------------------------------------------------- scoring
def score_pairs(model, catalog: Catalog, pairs: pd.DataFrame, *, threshold: float | None = None,
                source: str = "pairs") -> pd.DataFrame:
    """Score given pairs of ``catalog`` items with a FITRep model, term by term.

    The model's unsupervised stages are fitted on ``catalog`` (``model.fit_transform``, which sets
    the model's fitted encoders, as ``FITRep.dedup`` does); α, β, γ and τ are the model's. Pairs
    are scored on the items' own slot vectors: a model's neighbourhood blending (``blend_rounds``)
    needs the candidate graph of a whole catalog and is not applied here.

    Args:
        model: a :class:`~itemrep.dedup.pipeline.FITRep` (e.g. ``FITRep.default()`` or ``FITRep.load(dir)``).
        catalog: the items the pairs name.
        pairs: ``item_a, item_b[, label]`` (see :func:`check_pairs`; ``line``/``row`` name pairs in errors).
        threshold: τ for ``match`` (default: ``model.pair_tau``, the model's pair-decision point
            τ_logistic, or its τ when it has none).
        source: the pair file, for messages.

    Returns:
        DataFrame in pair order with ``item_a, item_b, score, match[, label], term_<feature>…``:
        ``score`` (float64) is exactly the sum of the ``term_*`` columns (α_k cos_k per slot,
        −γ_c conflict_c, β near-match bonuses; ``FITRep.score_pairs``), ``match`` is
        ``score >= τ``. ``frame.attrs`` holds ``tau``, ``cluster_tau`` (the model's clustering τ), ``feature_names``, ``n_items``,
        ``failed_items`` and the model's slot report (``slots_without_weight``, ``weighted_slots_absent``).

    Raises:
        PairsError: a pair names an id that is not in the catalog (the message names the pair's line
            or row, the column and the id).
    """
    pairs = check_pair_ids(pairs, catalog, source)
    pair_tau = getattr(model, "pair_tau", None)
    tau = float((model.tau if pair_tau is None else pair_tau) if threshold is None else threshold)
    enc = model.fit_transform(catalog)
    position = {x: n for n, x in enumerate(enc.ids.tolist())}  # canonical (sorted-id) order
    i = np.fromiter((position[x] for x in pairs["item_a"]), dtype=np.int64, count=len(pairs))
    j = np.fromiter((position[x] for x in pairs["item_b"]), dtype=np.int64, count=len(pairs))
    names = list(enc.slots.feature_names)
    terms = np.zeros((len(pairs), len(names)), dtype=np.float64)
    block = 500_000
    for s in range(0, len(pairs), block):
        _, t = model.score_pairs(enc.slots, i[s:s + block], j[s:s + block])
        terms[s:s + block] = np.asarray(t, dtype=np.float64)
    score = terms.sum(axis=1)
    out = pd.DataFrame({"item_a": pairs["item_a"].to_numpy(), "item_b": pairs["item_b"].to_numpy(),
                        "score": score, "match": score >= tau})
    if LABEL_COLUMN in pairs.columns:
        out[LABEL_COLUMN] = pairs[LABEL_COLUMN].to_numpy().astype(np.int8)
    out = pd.concat([out, pd.DataFrame(terms, columns=[f"term_{n}" for n in names])], axis=1)
    fusion = getattr(model, "fusion_", None) or getattr(model, "fusion", None)
    report = fusion.report(enc.slots) if fusion is not None and hasattr(fusion, "report") else {}
    out.attrs = {
        "tau": tau,
        "cluster_tau": float(model.tau),
        "feature_names": names,
        "n_items": int(len(enc.ids)),
        "failed_items": len({f.item_id for f in enc.failures}),
        "slots_without_weight": list(report.get("slots_without_weight") or []),
        "weighted_slots_absent": {k: float(v) for k, v in (report.get("weighted_slots_absent") or {}).items()},
    }
    return out


# ---------------------------------------------------------------- metrics
def pair_metrics(labels, predicted) -> dict:
    """Precision, recall and F1 of the match class (label 1) over pairs (scikit-learn, zero when undefined).

    Returns:
        ``{"precision", "recall", "f1", "n_pairs", "n_positive", "n_predicted"}``.

    Raises:
        ValueError: when the lengths differ or there are no pairs.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y = np.asarray(labels).astype(np.int8)
    p = np.asarray(predicted).astype(np.int8)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} must be two vectors of one length")
    if len(y) == 0:
        raise ValueError("no pairs to evaluate")
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, average="binary", pos_label=1, zero_division=0)
    return {"precision": float(prec), "recall": float(rec), "f1": float(f1), "n_pairs": int(len(y)),
            "n_positive": int(y.sum()), "n_predicted": int(p.sum())}


def best_threshold(scores, labels) -> tuple[float, float]:
    """The τ maximising match-class F1 of ``score >= τ``, and that F1.

    Candidates are the distinct scores; among thresholds with equal F1 the higher τ wins.

    Raises:
        ValueError: when lengths differ, there are no pairs, a score is not finite, or no pair is a match.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be two vectors of one length")
    if len(s) == 0:
        raise ValueError("no pairs: cannot choose a threshold")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite to choose a threshold")
    if not y.any():
        raise ValueError("no matching pair (label 1) among the pairs: the best threshold is undefined")
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    tp = np.cumsum(yy)
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), len(ss) - 1]  # last pair of each distinct score, descending
    f1 = 2.0 * tp[last] / ((last + 1) + y.sum())
    k = int(np.argmax(f1))  # first maximum = highest τ
    return float(ss[last[k]]), float(f1[k])


# ---------------------------------------------------------------- helpers
def _id(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("utf-8", "replace")
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    s = str(v).strip()
    if isinstance(v, (float, np.floating)) and s.endswith(".0"):
        s = s[:-2]
    return s


def _short(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _list(items, n: int = 10) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (" ..." if len(items) > n else "")
