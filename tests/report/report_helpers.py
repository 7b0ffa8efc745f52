"""Helpers of the report tests (a module with a unique name: test folders have no __init__.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def run_dedup(catalog: Path, out: Path, **load_kw):
    """``itemrep dedup`` through the Python API (built-in model, offline); returns the Catalog."""
    from itemrep.catalog import Catalog
    from itemrep.dedup.pipeline import FITRep

    cat = Catalog.load(catalog, **load_kw)
    res = FITRep.default(progress=False, images=load_kw.get("images", "auto")).dedup(cat)
    res.run["model"] = "built-in"
    res.write(out)
    return cat


def find_chromium() -> str | None:
    """The system Chromium: ``$ITEMREP_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH."""
    env = os.environ.get("ITEMREP_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None
