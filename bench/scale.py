"""How `itemrep dedup` scales with catalog size: wall time, peak memory and accuracy on synthetic catalogs.

    python bench/scale.py                                     # 25k, 100k, 300k, 1M (current code)
    python bench/scale.py --sizes 25000,100000 --baseline-rev 7b70b7a
    python bench/scale.py --sizes 100000 --shopee --timeout 600

For every size the catalog comes from ``bench/synth_catalog.py`` (perturbed copies of the 23,937 real
Shopee listings, with the real ``label_group`` as ``source_group``), cached as
``out/scale/cat-v{VERSION}-n{SIZE}-s{SEED}.parquet``. Each run is the real command line in a fresh
process under ``/usr/bin/time -v``::

    .venv/bin/itemrep dedup CAT --id-col posting_id --title-col title --phash-col image_phash \\
        --label-col source_group --out out/scale/run-SIZE -q

Wall time and "Maximum resident set size" come from GNU time (the largest single process); the
harness also samples the RSS of the whole process tree every 0.5 s ("tree RSS", which catches worker
processes). Per-stage seconds, candidate recall and the index come from ``run.json``; pairwise
precision/recall and mean per-item F1 from ``metrics.json``; all against ``source_group``. A run over
``--timeout`` seconds is killed with its process group and recorded as "timeout"; larger sizes of the
same code are then skipped.

``--baseline-rev REV`` runs the sizes up to ``--baseline-max`` also with an older itemrep, checked
out by ``git worktree add out/scale/base-REV REV`` and run as ``PYTHONPATH=out/scale/base-REV/src
python -m itemrep.cli dedup ...`` (same virtual environment). Runs alternate current/baseline per
size so both see similar machine load (``--reuse-baseline`` takes the baseline's rows from the
previous results file instead: the rev does not change). ``--shopee`` adds the real 23,937-listing catalog (title +
phash + label_group) as a row.

Prints one markdown table, the wall-time growth exponent log(t_1M / t_100k) / log(10) (else between the
two largest sizes run), and the targets; writes both to ``bench/results/scale.txt`` and the raw
numbers to ``bench/results/scale.json``. Targets (2-core, 24 GB machine): 1M listings < 10 min wall and
< 12 GB peak RSS; 100k < 60 s; growth exponent 100k -> 1M <= 1.15; pairwise precision does not fall
as N grows; the Shopee catalog < 20 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_catalog  # noqa: E402

GB = 1e9  # targets in GB (10^9 bytes), the stricter reading of "12 GB"
TARGETS = {"wall_1m_s": 600.0, "rss_1m_gb": 12.0, "wall_100k_s": 60.0, "exponent": 1.15, "wall_shopee_s": 20.0}


# ------------------------------------------------------------------ running one command
def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and its descendants; 0 when gone."""
    try:
        import psutil

        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except Exception:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except Exception:
            pass
    return total


HARNESS_TAG = "--- harness "


def parse_gnu_time(err: str) -> dict:
    """Wall, peak RSS, CPU seconds and CPU share from ``/usr/bin/time -v`` output (absent fields left out)."""
    res: dict = {}
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", err)
    if m:
        h, mi, s = m.groups()
        res["wall_s"] = round(int(h or 0) * 3600 + int(mi) * 60 + float(s), 2)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    if m:
        res["peak_rss_gb"] = round(int(m.group(1)) * 1024 / GB, 3)
    u = re.search(r"User time \(seconds\): ([\d.]+)", err)
    sy = re.search(r"System time \(seconds\): ([\d.]+)", err)
    if u and sy:
        res["cpu_s"] = round(float(u.group(1)) + float(sy.group(1)), 2)
    m = re.search(r"Percent of CPU this job got: (\d+)%", err)
    if m:
        res["cpu_pct"] = int(m.group(1))
    m = re.search(r"Exit status: (\d+)", err)
    if m:
        res["exit_status"] = int(m.group(1))
    return res


def timed_run(cmd: list[str], env: dict | None, timeout: float | None, log: Path, extra: dict | None = None) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v`` in its own process group.

    Returns ``status`` (ok / failed (rc N) / timeout), ``wall_s``, ``peak_rss_gb`` (GNU time),
    ``tree_rss_gb`` (sampled sum over the process tree), ``cpu_s`` (user + system), ``cpu_pct``; the
    full stdout/stderr and these numbers (last line) go to ``log``.
    """
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    load0 = os.getloadavg()[0]
    p = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=REPO, start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], _tree_rss(p.pid))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    status = "ok"
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        status = "timeout"
    except BaseException:  # Ctrl-C: never leave the pipeline running
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    finally:
        done.set()
        th.join()
    elapsed = time.perf_counter() - t0
    if status == "ok" and p.returncode != 0:
        status = f"failed (rc {p.returncode})"
    res = {"status": status, "wall_s": round(elapsed, 2), "peak_rss_gb": None,
           "tree_rss_gb": round(peak[0] / GB, 3) if peak[0] else None, **parse_gnu_time(err),
           "started": started, "load_average_start": round(load0, 2), "load_average_end": round(os.getloadavg()[0], 2),
           **(extra or {})}
    if status != "ok":
        res["error_tail"] = "\n".join(err.split("\tCommand being timed")[0].rstrip().splitlines()[-12:])
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n{HARNESS_TAG}{json.dumps(res)}\n")
    return res


def run_from_log(log: Path) -> dict | None:
    """The numbers of a finished run from its log (``--report-only``); None when there is no log."""
    if not log.exists():
        return None
    text = log.read_text()
    k = text.rfind(HARNESS_TAG)
    if k >= 0:
        return json.loads(text[k + len(HARNESS_TAG):].strip())
    res = parse_gnu_time(text)  # a log written before the harness line existed
    rc = res.get("exit_status")
    res["status"] = "ok" if rc == 0 else f"failed (rc {rc})" if rc is not None else "timeout or killed"
    res.setdefault("peak_rss_gb", None)
    res["tree_rss_gb"] = None
    return res


def dedup_args(cat: Path, out: Path, label_col: str) -> list[str]:
    return ["dedup", str(cat), "--id-col", "posting_id", "--title-col", "title", "--phash-col", "image_phash",
            "--label-col", label_col, "--out", str(out), "-q"]


def read_outputs(out: Path) -> dict:
    """Stage seconds, candidate recall, index (run.json) and pairwise metrics (metrics.json)."""
    res: dict = {}
    run_p, met_p = out / "run.json", out / "metrics.json"
    if run_p.exists():
        run = json.loads(run_p.read_text())
        res["stages"] = {k: v.get("seconds") for k, v in (run.get("stages") or {}).items()}
        res["stage_peak_rss_mb"] = {k: v.get("peak_rss_mb") for k, v in (run.get("stages") or {}).items()}
        for k in ("index", "n_items", "n_clusters", "n_candidate_pairs", "n_edges", "total_seconds", "itemrep_version"):
            if k in run:
                res[k] = run[k]
        cr = run.get("candidate_recall")  # a number, or a dict with "recall" (and how it was sampled)
        if isinstance(cr, dict):
            res["candidate_recall"], res["candidate_recall_detail"] = cr.get("recall"), cr
        elif cr is not None:
            res["candidate_recall"] = cr
    if met_p.exists():
        met = json.loads(met_p.read_text())
        for k in ("pairwise_precision", "pairwise_recall", "pairwise_f1", "mean_item_f1", "adjusted_rand_index"):
            if k in met:
                res[k] = met[k]
    return res


def _pairs(counts: pd.Series) -> int:
    c = counts.to_numpy(dtype="int64")
    return int((c * (c - 1) // 2).sum())


def pair_breakdown(cat: Path, out: Path) -> dict:
    """Pairwise P/R over all pairs and over cross-listing pairs (two copies of different real listings).

    Copies of one real listing are easy duplicates; as N grows each listing has more of them, and a
    fixed-k neighbour search can fill up with them. The cross-listing numbers leave those pairs out, so
    they show whether the pipeline still joins *different* listings of one source group at scale.
    """
    cl = pd.read_parquet(out / "clusters.parquet", columns=["item_id", "cluster_id"])
    src = pd.read_parquet(cat, columns=["posting_id", "source_group", "source_posting"])
    df = src.merge(cl, left_on="posting_id", right_on="item_id", how="inner", validate="one_to_one")
    if len(df) != len(src):
        raise ValueError(f"clusters.parquet has {len(df)} of the catalog's {len(src)} ids")
    pred = _pairs(df.groupby("cluster_id").size())
    true = _pairs(df.groupby("source_group").size())
    tp = _pairs(df.groupby(["cluster_id", "source_group"]).size())
    same = _pairs(df.groupby("source_posting").size())  # same listing -> same group
    same_in = _pairs(df.groupby(["cluster_id", "source_posting"]).size())
    px, tx, tpx = pred - same_in, true - same, tp - same_in

    def ratio(a, b):
        return round(a / b, 6) if b else None

    return {"all_precision": ratio(tp, pred), "all_recall": ratio(tp, true),
            "cross_precision": ratio(tpx, px), "cross_recall": ratio(tpx, tx),
            "same_listing_recall": ratio(same_in, same), "true_pairs": true, "cross_true_pairs": tx,
            "predicted_pairs": pred}


# ------------------------------------------------------------------ the two pipelines
class Code:
    """How to run one version of itemrep: ``name``, ``argv(args)``, ``env``."""

    def __init__(self, name: str, prefix: list[str], env: dict | None = None):
        self.name, self.prefix, self.env = name, prefix, env

    def argv(self, args: list[str]) -> list[str]:
        return [*self.prefix, *args]


def current_code() -> Code:
    exe = Path(sys.executable).with_name("itemrep")
    if not exe.exists():
        exe = REPO / ".venv" / "bin" / "itemrep"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return Code("current", [str(exe)], env)


def baseline_code(rev: str, root: Path) -> Code:
    """A ``git worktree`` of ``rev`` under ``root``, run with its ``src`` first on PYTHONPATH."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    wt = (root / f"base-{rev}").resolve()
    if wt.exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=wt, capture_output=True, text=True).stdout.strip()
        if head != sha:
            raise SystemExit(f"{wt} exists but is at {head[:10]}, not {rev} ({sha[:10]}); remove it with "
                             f"`git worktree remove --force {wt}`")
    else:
        wt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), sha], cwd=REPO, check=True,
                       capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(wt / "src")}
    # the old package must be the one imported, and `python -m itemrep.cli` must run the app
    where = subprocess.run([sys.executable, "-c", "import itemrep; print(itemrep.__file__)"], env=env,
                           capture_output=True, text=True, cwd=REPO)
    if where.returncode != 0 or not where.stdout.strip().startswith(str(wt)):
        raise SystemExit(f"baseline {rev}: itemrep imported from {where.stdout.strip() or where.stderr[-500:]}, "
                         f"not from {wt}/src")
    prefix = [sys.executable, "-m", "itemrep.cli"]
    h = subprocess.run([*prefix, "dedup", "--help"], env=env, capture_output=True, text=True, cwd=REPO)
    if h.returncode != 0 or "--phash-col" not in h.stdout:
        prefix = [sys.executable, "-c", "from itemrep.cli import app; app()"]
        h = subprocess.run([*prefix, "dedup", "--help"], env=env, capture_output=True, text=True, cwd=REPO)
        if h.returncode != 0 or "--phash-col" not in h.stdout:
            raise SystemExit(f"baseline {rev}: `itemrep.cli dedup --help` fails:\n{h.stderr[-2000:]}")
    return Code(rev, prefix, env)


# ------------------------------------------------------------------ catalogs
def synth_path(root: Path, n: int, seed: int) -> Path:
    return root / f"cat-v{synth_catalog.VERSION}-n{n}-s{seed}.parquet"


def ensure_catalog(root: Path, n: int, seed: int) -> tuple[Path, float | None]:
    path = synth_path(root, n, seed)
    if path.exists():
        return path, None
    t0 = time.perf_counter()
    df = synth_catalog.make_catalog(n, seed)
    synth_catalog.write_catalog(df, path)
    del df
    return path, round(time.perf_counter() - t0, 1)


SHOPEE_NAME = "shopee-title-phash.parquet"


def shopee_catalog(root: Path) -> Path:
    """The real catalog as title + phash + label_group (no image column), cached as parquet."""
    path = root / SHOPEE_NAME
    if not path.exists():
        df = synth_catalog.load_source()
        synth_catalog.write_catalog(df[["posting_id", "title", "image_phash", "label_group"]], path)
    return path


# ------------------------------------------------------------------ report
def _index_label(ix) -> str | None:
    """run.json's ``index``: a name (older releases) or the search parameters (dict)."""
    if not isinstance(ix, dict):
        return ix
    extra = ", ".join(f"{k} {ix[k]}" for k in ("nlist", "nprobe") if ix.get(k) is not None)
    return f"{ix.get('index')}" + (f" ({extra})" if extra else "")


def size_label(n) -> str:
    if isinstance(n, str):
        return n
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def growth_exponent(rows: list[dict], code: str) -> dict | None:
    """log(t_1M / t_100k) / log(10) when both ran, else between the two largest sizes run; also the
    same exponent for CPU seconds (user + system), which a busy shared machine disturbs less."""
    runs = {r["size"]: r for r in rows if r["code"] == code and r["status"] == "ok" and isinstance(r["size"], int)}
    if len(runs) < 2:
        return None
    a, b = (100_000, 1_000_000) if {100_000, 1_000_000} <= runs.keys() else sorted(runs)[-2:]
    g = {"code": code, "from": a, "to": b,
         "exponent": round(math.log(runs[b]["wall_s"] / runs[a]["wall_s"]) / math.log(b / a), 3)}
    if runs[a].get("cpu_s") and runs[b].get("cpu_s"):
        g["cpu_exponent"] = round(math.log(runs[b]["cpu_s"] / runs[a]["cpu_s"]) / math.log(b / a), 3)
    return g


def table(rows: list[dict]) -> str:
    stages: list[str] = []
    for r in rows:
        for s in r.get("stages") or {}:
            if s not in stages:
                stages.append(s)
    out = []
    for r in rows:
        status = r["status"] + (f" (reused, {r['reused_from']})" if r.get("reused_from") else "")
        d = {"code": r["code"], "size": size_label(r["size"]), "status": status, "wall s": r.get("wall_s"),
             "CPU s": r.get("cpu_s"), "CPU %": r.get("cpu_pct"),
             "peak RSS GB": r.get("peak_rss_gb"), "tree RSS GB": r.get("tree_rss_gb")}
        for s in stages:
            d[f"{s} s"] = (r.get("stages") or {}).get(s)
        pb = r.get("pairs") or {}
        d.update({"pairwise P": r.get("pairwise_precision"), "pairwise R": r.get("pairwise_recall"),
                  "cross P": pb.get("cross_precision"), "cross R": pb.get("cross_recall"),
                  "item F1": r.get("mean_item_f1"), "cand. recall": r.get("candidate_recall"),
                  "index": _index_label(r.get("index"))})
        out.append(d)
    df = pd.DataFrame(out)
    fmt = {"wall s": "{:.1f}", "CPU s": "{:.1f}", "peak RSS GB": "{:.2f}", "tree RSS GB": "{:.2f}",
           "pairwise P": "{:.4f}", "pairwise R": "{:.4f}", "cross P": "{:.4f}", "cross R": "{:.4f}",
           "item F1": "{:.4f}", "cand. recall": "{:.4f}",
           **{f"{s} s": "{:.1f}" for s in stages}}

    def cell(v, f):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        try:
            return f.format(v) if f else str(v)
        except (TypeError, ValueError):  # a field whose type changed in run.json: show it as it is
            return str(v)

    df = pd.DataFrame([{c: cell(v, fmt.get(c)) for c, v in d.items()} for d in out])
    return df.to_markdown(index=False, disable_numparse=True)


def verdicts(rows: list[dict], p_tol: float) -> list[str]:
    cur = {r["size"]: r for r in rows if r["code"] == "current"}
    lines = []

    def ok(n):
        return n in cur and cur[n]["status"] == "ok"

    if ok(1_000_000):
        r = cur[1_000_000]
        rss = max(x for x in (r.get("peak_rss_gb"), r.get("tree_rss_gb")) if x is not None)
        lines.append(f"1M: wall {r['wall_s']:.0f} s (target < {TARGETS['wall_1m_s']:.0f}) "
                     f"{'PASS' if r['wall_s'] < TARGETS['wall_1m_s'] else 'FAIL'}; peak RSS {rss:.2f} GB "
                     f"(target < {TARGETS['rss_1m_gb']:.0f} GB) {'PASS' if rss < TARGETS['rss_1m_gb'] else 'FAIL'}")
    else:
        lines.append(f"1M: {cur[1_000_000]['status'] if 1_000_000 in cur else 'not run'}")
    if ok(100_000):
        w = cur[100_000]["wall_s"]
        lines.append(f"100k: wall {w:.1f} s (target < {TARGETS['wall_100k_s']:.0f}) "
                     f"{'PASS' if w < TARGETS['wall_100k_s'] else 'FAIL'}")
    else:
        lines.append(f"100k: {cur[100_000]['status'] if 100_000 in cur else 'not run'}")
    g = growth_exponent(rows, "current")
    if g:
        tag = "100k -> 1M" if (g["from"], g["to"]) == (100_000, 1_000_000) else \
            f"{size_label(g['from'])} -> {size_label(g['to'])} (not the target's 100k -> 1M)"
        lines.append(f"wall-time growth exponent {tag}: {g['exponent']:.3f} (target <= {TARGETS['exponent']}) "
                     f"{'PASS' if g['exponent'] <= TARGETS['exponent'] else 'FAIL'}")
    ps = [(n, cur[n]["pairwise_precision"]) for n in sorted(k for k in cur if isinstance(k, int))
          if ok(n) and cur[n].get("pairwise_precision") is not None]
    if len(ps) >= 2:
        drops = [(a, b, pb - pa) for i, (a, pa) in enumerate(ps) for b, pb in ps[i + 1:] if pb < pa - p_tol]
        seq = ", ".join(f"{size_label(n)} {p:.4f}" for n, p in ps)
        lines.append(f"pairwise precision by size: {seq}: " + (
            "PASS (does not fall" + (f" by more than {p_tol})" if p_tol else ")") if not drops else
            "FAIL (falls: " + "; ".join(f"{size_label(a)} -> {size_label(b)} {d:+.4f}" for a, b, d in drops) + ")"))
    px = [(n, (cur[n].get("pairs") or {}).get("cross_precision")) for n, _ in ps]
    if len(px) >= 2 and all(p is not None for _, p in px):
        lines.append("  (for reading it: cross-listing precision " + ", ".join(f"{size_label(n)} {p:.4f}" for n, p in px)
                     + "; the 25k catalog is 23,937 originals + 1,063 copies, larger ones ~N/23,937 copies of each)")
    if ok("shopee"):
        w = cur["shopee"]["wall_s"]
        lines.append(f"Shopee 23,937: wall {w:.1f} s (target < {TARGETS['wall_shopee_s']:.0f}) "
                     f"{'PASS' if w < TARGETS['wall_shopee_s'] else 'FAIL'}")
    return lines


def git_state() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in src/" if dirty else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="25000,100000,300000,1000000", help="comma-separated catalog sizes")
    ap.add_argument("--seed", type=int, default=0, help="synthetic catalog seed")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed (default 1800)")
    ap.add_argument("--baseline-rev", default=None, help="also run this git revision (e.g. 7b70b7a)")
    ap.add_argument("--baseline-max", type=int, default=100_000, help="largest size the baseline runs (default 100000)")
    ap.add_argument("--reuse-baseline", action="store_true",
                    help="take the baseline's successful runs from the previous PREFIX.json (same rev, seed, sizes "
                         "and synth version) instead of running them again")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: rebuild the table from the logs and outputs already under --work")
    ap.add_argument("--shopee", action="store_true", help="also run the real Shopee catalog (title + phash)")
    ap.add_argument("--p-tol", type=float, default=0.0, help="precision drop tolerated by the 'does not fall' check")
    ap.add_argument("--work", type=Path, default=REPO / "out" / "scale", help="catalog cache and run outputs")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "scale",
                    help="results prefix: writes PREFIX.txt and PREFIX.json")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    if not synth_catalog.shopee_csv().exists():
        print(f"shopee data not found at {synth_catalog.shopee_csv()}: set ITEMREP_DATA or put the data at "
              "../shared/data", file=sys.stderr)
        return 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    codes = [current_code()]
    if args.baseline_rev:  # --report-only needs only its name
        codes.append(Code(args.baseline_rev, []) if args.report_only else baseline_code(args.baseline_rev, work))
    jobs: list[tuple[object, Path, str]] = []  # (size, catalog, label column)
    if args.shopee:
        jobs.append(("shopee", work / SHOPEE_NAME if args.report_only else shopee_catalog(work), "label_group"))
    gen = {}
    for n in sizes:
        path, secs = (synth_path(work, n, args.seed), None) if args.report_only else ensure_catalog(work, n, args.seed)
        if secs is not None:
            gen[n] = secs
            print(f"generated {path.name} in {secs:.1f} s", file=sys.stderr)
        jobs.append((n, path, "source_group"))

    reuse: dict = {}
    prev_p = args.results.with_suffix(".json")
    if args.reuse_baseline and args.baseline_rev and prev_p.exists():
        prev = json.loads(prev_p.read_text())
        if prev.get("seed") == args.seed and prev.get("synth_version") == synth_catalog.VERSION:
            reuse = {r["size"]: {**r, "reused_from": r.get("reused_from") or prev.get("started")}
                     for r in prev.get("runs", []) if r.get("code") == args.baseline_rev and r.get("status") == "ok"}

    load0, t_start = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M:%S")
    rows: list[dict] = []
    meta = {"command": " ".join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])]),
            "started": t_start, "git": None if args.report_only else git_state(), "report_only": args.report_only,
            "cpu_count": os.cpu_count(), "load_average_start": None if args.report_only else load0,
            "seed": args.seed, "synth_version": synth_catalog.VERSION, "catalog_generation_s": gen,
            "timeout_s": args.timeout, "targets": TARGETS,
            "codes": {c.name: " ".join(c.prefix) + (f" (PYTHONPATH={c.env['PYTHONPATH']})"
                                                    if c.env and "PYTHONPATH" in c.env else "") for c in codes}}
    json_p = args.results.with_suffix(".json")
    json_p.parent.mkdir(parents=True, exist_ok=True)

    def save(partial: bool) -> None:
        raw = {**meta, "partial": partial, "load_average_end": None if args.report_only else os.getloadavg(),
               "growth_exponents": [g for g in (growth_exponent(rows, c.name) for c in codes) if g], "runs": rows}
        tmp = json_p.with_name(json_p.name + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2, default=str) + "\n")
        tmp.replace(json_p)

    stopped: set[str] = set()  # codes that timed out: skip their larger sizes
    for size, cat, label in jobs:
        for code in codes:
            if code is not codes[0] and isinstance(size, int) and size > args.baseline_max:
                continue
            tag = f"{code.name} {size_label(size)}"
            if code is not codes[0] and size in reuse:
                rows.append(reuse[size])
                print(f"{tag}: reused from the run of {reuse[size]['reused_from']}", file=sys.stderr)
                continue
            out = work / (f"run-{size}" if code is codes[0] else f"base-{code.name}-run-{size}")
            log = out.with_name(out.name + ".log")
            if args.report_only:
                res = run_from_log(log)
                if res is None:
                    rows.append({"code": code.name, "size": size, "status": "no run found", "out": str(out)})
                    continue
            elif code.name in stopped and isinstance(size, int):
                rows.append({"code": code.name, "size": size, "status": "skipped (smaller size timed out)"})
                continue
            else:
                shutil.rmtree(out, ignore_errors=True)
                print(f"running {tag} ...", file=sys.stderr, flush=True)
                res = timed_run(code.argv(dedup_args(cat, out, label)), code.env, args.timeout, log,
                                extra={"git": git_state() if code is codes[0] else code.name})
                print(f"  {tag}: {res['status']}, wall {res['wall_s']:.1f} s, peak RSS {res['peak_rss_gb']} GB"
                      + (f"\n{res['error_tail']}" if res.get("error_tail") else ""), file=sys.stderr, flush=True)
            row = {"code": code.name, "size": size, "catalog": str(cat), "out": str(out), **res}
            if res["status"] == "ok":
                try:
                    row.update(read_outputs(out))
                    if label == "source_group":
                        row["pairs"] = pair_breakdown(cat, out)
                except Exception as e:  # keep the timing even when an output file is unreadable
                    row["outputs_error"] = repr(e)
            elif res["status"] == "timeout":
                stopped.add(code.name)
            rows.append(row)
            save(partial=True)  # a crash later never loses a finished run

    save(partial=False)
    head = (f"`itemrep dedup` on synthetic catalogs (perturbed copies of the 23,937 Shopee listings, synth v"
            f"{synth_catalog.VERSION}, seed {args.seed}; title + phash; P/R against source_group), "
            f"/usr/bin/time -v, {os.cpu_count()} cores; ")
    if args.report_only:
        times = sorted(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(Path(r["out"] + ".log").stat().st_mtime))
                       for r in rows if r.get("out") and Path(r["out"] + ".log").exists())
        head += (f"rebuilt with --report-only from the run logs (runs finished {times[0] if times else '?'} .. "
                 f"{times[-1] if times else '?'}; the code state and load average of those runs are not recorded here)")
    else:
        head += (f"current code {meta['git']}; started {t_start}, load average at start {load0[0]:.2f}, "
                 f"at end {os.getloadavg()[0]:.2f}")
    exps = [g for g in (growth_exponent(rows, c.name) for c in codes) if g]
    lines = [head, "", table(rows), "",
             "wall s and peak RSS: /usr/bin/time -v (peak RSS = largest single process); tree RSS: summed RSS of the "
             "process tree sampled every 0.5 s; CPU s: user + system; CPU %: CPU s / wall (below 100-200 % on "
             "2 cores means the run waited for the CPU: the machine was busy); stage seconds from run.json; P/R/F1 "
             "from metrics.json; cross P/R: pairwise over pairs of copies of *different* real listings only "
             "(leaves out the easy copy-of-the-same-listing pairs, whose share of candidates grows with N); "
             "cand. recall from run.json (sampled)", ""]
    for g in exps:
        lines.append(f"wall-time growth exponent ({g['code']}, {size_label(g['from'])} -> {size_label(g['to'])}): "
                     f"log(t_{size_label(g['to'])} / t_{size_label(g['from'])}) / log({g['to'] / g['from']:g}) = "
                     f"{g['exponent']:.3f}" + (f" (CPU seconds: {g['cpu_exponent']:.3f})" if "cpu_exponent" in g else ""))
    lines += ["", "targets (current code):", *[f"  {v}" for v in verdicts(rows, args.p_tol)]]
    text = "\n".join(lines)
    print("\n" + text)
    args.results.with_suffix(".txt").write_text(text + "\n")
    print(f"\nwrote {args.results.with_suffix('.txt')} and {json_p}", file=sys.stderr)
    return 0 if all(r["status"].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
