"""Where the shared datasets live: ``$ITEMREP_DATA``, else ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The shared data directory (``$ITEMREP_DATA`` or ``<repo>/../shared/data``); may not exist."""
    env = os.environ.get("ITEMREP_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def dataset(name: str) -> Path | None:
    """Path of ``data_dir()/name`` when it exists, else ``None``."""
    p = data_dir() / name
    return p if p.exists() else None
