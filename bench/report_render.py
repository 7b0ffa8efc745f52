"""Size and render time of `itemrep report` pages in headless Chromium (the Debian package).

    .venv/bin/python bench/report_render.py                       # example, Grocery example, whole Shopee
    .venv/bin/python bench/report_render.py --skip-shopee         # the committed examples only
    .venv/bin/python bench/report_render.py --screenshot docs/report.png

For each catalog: `itemrep dedup CATALOG --out OUT --report` (the Shopee run as in bench/dedup_speed.py:
title + phash, built-in model, labels from ``label_group``), then `itemrep report OUT` timed alone, then
the page opened ``--runs`` times in a fresh tab of one headless Chromium. Render time = from navigation
start to the later of the load event and "every chart drawn" (the page sets
``document.body.dataset.chartsDone``), median over the runs. Targets (issue #12): the 23,937-listing
Shopee report under 20 MB and rendered in under 3 s.

Data: ``$ITEMREP_DATA/shopee/train.csv`` (skipped with a message when absent). Chromium: ``chromium`` on
PATH or ``$ITEMREP_CHROMIUM``; Playwright for Python drives it (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def chromium() -> str | None:
    """The system Chromium (``$ITEMREP_CHROMIUM`` or ``chromium`` / ``chromium-browser`` on PATH)."""
    env = os.environ.get("ITEMREP_CHROMIUM")
    if env and Path(env).exists():
        return env
    return shutil.which("chromium") or shutil.which("chromium-browser")


def itemrep(*args: str) -> float:
    """Run the itemrep CLI of this checkout; returns its wall seconds (raises on failure)."""
    exe = Path(sys.executable).with_name("itemrep")
    cmd = [str(exe) if exe.exists() else "itemrep", *args]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def render(browser, html: Path, runs: int) -> dict:
    """Median load / charts / render milliseconds over ``runs`` fresh tabs, and console errors seen."""
    loads, charts, errors = [], [], []
    for _ in range(runs):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.wait_for_function("document.body.dataset.chartsDone !== undefined", timeout=60_000)
        t = page.evaluate("() => ({load: performance.getEntriesByType('navigation')[0].loadEventEnd,"
                          " charts: +document.body.dataset.chartsDone})")
        loads.append(t["load"])
        charts.append(t["charts"])
        page.close()
    return {"load_ms": statistics.median(loads), "charts_ms": statistics.median(charts),
            "render_ms": statistics.median([max(a, b) for a, b in zip(loads, charts)]),
            "worst_render_ms": max(max(a, b) for a, b in zip(loads, charts)), "console_errors": len(errors)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="page loads per report (median)")
    ap.add_argument("--work", type=Path, default=None, help="where the dedup outputs go (default: a temporary folder)")
    ap.add_argument("--skip-shopee", action="store_true")
    ap.add_argument("--screenshot", type=Path, default=None,
                    help="write a PNG of the Grocery example's report (MIT-licensed photos; the Shopee data may not be published)")
    args = ap.parse_args(argv)

    exe = chromium()
    if exe is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set ITEMREP_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    from itemrep.paths import dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="itemrep-report-bench-"))
    jobs = [("example (examples/catalog.csv)", REPO / "examples" / "catalog.csv", ["--label-col", "label"]),
            ("Grocery example (31 photos)", REPO / "examples" / "grocery" / "catalog.csv", ["--label-col", "label", "--images", "off"])]
    shopee = dataset("shopee")
    if args.skip_shopee:
        pass
    elif shopee is None:
        print("shopee data not found: set ITEMREP_DATA or put the data at ../shared/data (see README); skipped", file=sys.stderr)
    else:
        jobs.append(("Shopee train (23,937 listings)", shopee / "train.csv",
                     ["--id-col", "posting_id", "--image-col", "image", "--images", "off", "--phash-col", "image_phash",
                      "--label-col", "label_group"]))
    rows = []
    load0 = os.getloadavg()[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        shot_src = None
        for name, catalog, flags in jobs:
            out = work / catalog.parent.name
            dedup_s = itemrep("dedup", str(catalog), "--out", str(out), "--quiet", *flags)
            report_s = itemrep("report", str(out))
            import json

            run = json.loads((out / "run.json").read_text())
            r = render(browser, out / "report.html", args.runs)
            rows.append({"report": name, "items": run["n_items"], "size_mb": (out / "report.html").stat().st_size / 1e6,
                         "dedup_s": dedup_s, "report_s": report_s, **r})
            if "Grocery" in name:
                shot_src = out / "report.html"
        if args.screenshot and shot_src is not None:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(shot_src.resolve().as_uri())
            page.wait_for_function("document.body.dataset.chartsDone !== undefined", timeout=60_000)
            page.locator("#gallery img").first.scroll_into_view_if_needed()  # load the first thumbnails
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.screenshot), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1900})
            page.close()
            print(f"wrote {args.screenshot}", file=sys.stderr)
        browser.close()
    load1 = os.getloadavg()[0]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"\n`itemrep report` pages in headless {version}, {os.cpu_count()} cores, median of {args.runs} loads; "
          f"load average at start {load0:.2f}, at end {load1:.2f}")
    print("| report | items | size MB | itemrep report s | load ms | charts drawn ms | render ms (median) | worst ms | console errors |")
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['report']} | {r['items']:,} | {r['size_mb']:.2f} | {r['report_s']:.1f} | {r['load_ms']:.0f} | "
              f"{r['charts_ms']:.0f} | {r['render_ms']:.0f} | {r['worst_render_ms']:.0f} | {r['console_errors']} |")


if __name__ == "__main__":
    main()
