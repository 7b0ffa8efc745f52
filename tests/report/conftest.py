"""Shared fixtures of the report tests: dedup outputs of the committed examples, made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_helpers import run_dedup  # tests/report/report_helpers.py

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "catalog.csv"
GROCERY = REPO / "examples" / "grocery" / "catalog.csv"


@pytest.fixture(scope="session")
def example_out(tmp_path_factory):
    """Dedup outputs of examples/catalog.csv (labels in column ``label``) and its Catalog."""
    out = tmp_path_factory.mktemp("example") / "out"
    cat = run_dedup(EXAMPLE, out, label_col="label")
    return out, cat


@pytest.fixture(scope="session")
def grocery_out(tmp_path_factory):
    """Dedup outputs of the committed Grocery example (photos; image features off for speed: the
    thumbnails come from the catalog's image column either way)."""
    out = tmp_path_factory.mktemp("grocery") / "out"
    cat = run_dedup(GROCERY, out, label_col="label", images="off")
    return out, cat


@pytest.fixture
def fresh_copy(tmp_path):
    """Copy a dedup output directory so a test may change it."""
    def copy(src: Path) -> Path:
        dst = tmp_path / "copy"
        shutil.copytree(src, dst)
        return dst
    return copy
