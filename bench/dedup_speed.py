"""Speed and memory of `itemrep dedup` on the whole Shopee catalog, timed with /usr/bin/time -v.

    python bench/dedup_speed.py                     # default pipeline (built-in model)
    python bench/dedup_speed.py --reducers pca none umap

Runs the real command line in a fresh process per configuration (so model loading, imports and
JIT compilation count), reads wall time and peak RSS from GNU time, and the seconds per stage from
the run's ``run.json``. The TF-IDF ∪ phash baseline is timed in the same run for comparison.
Target (issue 2): the 23,937-listing catalog (title + phash) in under 60 s wall, peak RSS under 4 GB,
on a 2-core machine. Prints the load average so a busy machine is visible in the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from itemrep.paths import dataset


def gnu_time(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` under /usr/bin/time -v; returns (wall seconds, peak RSS MiB, stderr)."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    h, m, s = wall.groups()
    secs = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return secs, rss, p.stderr


def baseline_seconds(csv: Path) -> float:
    """Wall seconds of TF-IDF ∪ phash (fixed thresholds) on the whole catalog, in a fresh process."""
    code = f"""
import time; t=time.perf_counter()
import numpy as np, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from shopee import tfidf_pairs, phash_pairs
from itemrep.catalog import Catalog
from itemrep.dedup.cluster import cluster_edges
cat = Catalog.load({str(csv)!r}, id_col="posting_id", image_col=None)
(ti, tj, ts), (pi, pj, ps) = tfidf_pairs(cat), phash_pairs(cat)
i = np.concatenate([ti[ts >= 0.55], pi[ps >= 0.8]]); j = np.concatenate([tj[ts >= 0.55], pj[ps >= 0.8]])
cluster_edges(len(cat), i, j, np.ones(len(i), np.float32), 0.5, cat.ids)
"""
    secs, rss, _ = gnu_time([sys.executable, "-c", code])
    return secs, rss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reducers", nargs="+", default=[None], help="reducers to time (default: the model's)")
    args = ap.parse_args(argv)
    root = dataset("shopee")
    if root is None:
        print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data", file=sys.stderr)
        return 2
    csv = root / "train.csv"
    exe = str(Path(sys.executable).with_name("itemrep"))
    rows = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for red in args.reducers:
            out = Path(tmp) / f"out_{red}"
            cmd = [exe, "dedup", str(csv), "--id-col", "posting_id", "--image-col", "image", "--images", "off",
                   "--out", str(out), "--quiet"] + (["--reducer", red] if red else [])
            t0 = time.time()
            secs, rss, _ = gnu_time(cmd)
            run = json.loads((out / "run.json").read_text())
            rows.append({"method": f"itemrep dedup (reducer {run['parameters']['reducer']})", "wall_s": secs, "peak_rss_mb": rss,
                         "n_items": run["n_items"], "n_clusters": run["n_clusters"],
                         **{f"{k}_s": v["seconds"] for k, v in run["stages"].items()}})
        bs, brss = baseline_seconds(csv)
        rows.append({"method": "TF-IDF ∪ phash baseline", "wall_s": bs, "peak_rss_mb": brss})
    print(f"\n`itemrep dedup` on the whole Shopee catalog (title + phash), /usr/bin/time -v, {os.cpu_count()} cores, "
          f"load average at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))
    print("\ntarget: wall < 60 s, peak RSS < 4096 MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
