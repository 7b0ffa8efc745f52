"""report.html in a real headless Chromium (the Debian package, driven by Playwright): no console
error, no request leaves the file, the charts and the gallery are drawn, the search finds items,
the Grocery thumbnails load. Skipped, with the reason, where Chromium or Playwright is missing
(`.ci/run` installs both)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from itemrep.paths import dataset
from itemrep.report import build_report

from report_helpers import find_chromium, run_dedup  # tests/report/report_helpers.py

pytestmark = pytest.mark.slow

CHROMIUM = find_chromium()
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason=("no Chromium found (install the Debian package `chromium`, or set ITEMREP_CHROMIUM)" if CHROMIUM is None
            else "Playwright for Python is not installed (pip install -e '.[test]')"))


class Opened:
    """A report opened in Chromium, with what the browser said while loading it."""

    def __init__(self, page, errors, requests):
        self.page, self.errors, self.requests = page, errors, requests


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield b
        b.close()


def open_report(browser, html: Path) -> Opened:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:120]}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri())
    page.wait_for_function("document.body.dataset.chartsDone !== undefined", timeout=30_000)
    return Opened(page, errors, requests)


def _check_page(o: Opened, n_charts: int) -> None:
    assert o.errors == []
    # nothing but the file itself (and inline data: images) was requested: it opens offline
    assert [u for u in o.requests if not u.startswith(("file://", "data:"))] == []
    charts = o.page.locator(".chart")
    assert charts.count() == n_charts
    for k in range(n_charts):
        c = charts.nth(k)
        assert c.get_attribute("data-rendered") == "1"
        assert c.locator("svg .role-mark").count() > 0  # Vega drew marks
        box = c.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100
    assert o.page.locator("#gallery .cl").count() > 0
    assert o.page.locator("#gallery .cl").first.is_visible()


@needs_browser
def test_example_report_renders_and_search_finds_items(browser, example_out):
    out, cat = example_out
    info = build_report(out, cat)
    o = open_report(browser, info.html)
    _check_page(o, 5)
    page = o.page
    # pointing at a chart makes it a live Vega view: its tooltips work offline too
    page.locator("#chart-size").hover()
    page.locator('#chart-size[data-live="1"]').wait_for(timeout=20_000)
    page.locator("#chart-size svg .role-mark path").first.hover()
    tip = page.locator("#vg-tooltip-element")
    tip.wait_for(state="visible", timeout=5_000)
    assert "clusters" in tip.inner_text()
    assert o.errors == []
    page.fill("#search", "p012")
    page.locator('#results .r[data-item="p012"]').wait_for(timeout=5_000)
    page.fill("#search", "tupperware")  # by title, case-insensitive
    page.locator('#results .r[data-item="p001"]').wait_for(timeout=5_000)
    ids = page.locator("#results .r").evaluate_all("els => els.map(e => e.dataset.item)")
    assert "p001" in ids and all(i.startswith("p0") for i in ids)
    # a result links to its cluster card in the gallery
    page.locator("#results .r a").first.click()
    assert page.locator(".cl.hit").count() == 1
    page.fill("#search", "no such thing at all")
    page.locator("#results .none").wait_for(timeout=5_000)
    assert "no item id or title contains" in page.locator("#results").inner_text()
    page.close()


def _thumbnails_loaded(page) -> tuple[int, int]:
    imgs = page.locator("#gallery img")
    n = imgs.count()
    loaded = 0
    for k in range(n):
        img = imgs.nth(k)
        img.scroll_into_view_if_needed()
        page.wait_for_function("el => el.complete", arg=img.element_handle(), timeout=5_000)
        loaded += img.evaluate("el => el.naturalWidth > 0 && el.naturalHeight > 0")
    return loaded, n


@needs_browser
def test_grocery_example_thumbnails_load(browser, grocery_out):
    out, cat = grocery_out
    info = build_report(out, cat)
    o = open_report(browser, info.html)
    _check_page(o, 5)
    loaded, n = _thumbnails_loaded(o.page)
    assert n >= 10 and loaded == n
    assert o.page.locator("#gallery img[loading=lazy]").count() == n
    o.page.close()


@needs_browser
@pytest.mark.shared_data
def test_shared_grocery_photos_thumbnails_load(browser, tmp_path):
    root = dataset("grocery")
    if root is None:
        pytest.skip("shared Grocery data not found (set ITEMREP_DATA; see the data README)")
    # 3 validation photos of each of the first 8 products, titled by class name
    rows, seen = [], {}
    for line in (root / "val.txt").read_text().splitlines():
        path, fine, _ = [x.strip() for x in line.split(",")]
        if seen.get(fine, 0) < 3 and len(seen) <= 8:
            seen[fine] = seen.get(fine, 0) + 1
            rows.append({"item_id": f"v{len(rows):03d}", "title": Path(path).parent.name.replace("-", " "),
                         "image": str(root / path), "label": fine})
    rows = [r for r in rows if int(r["label"]) in sorted({int(x) for x in seen})[:8]]
    cat_path = tmp_path / "grocery_val.csv"
    with cat_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["item_id", "title", "image", "label"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    cat = run_dedup(cat_path, out, label_col="label", images="off")
    info = build_report(out, cat)
    assert info.thumbnails == len(rows)
    o = open_report(browser, info.html)
    _check_page(o, 5)
    loaded, n = _thumbnails_loaded(o.page)
    assert n > 0 and loaded == n
    o.page.close()
