"""Fixtures for the image tests: committed tiny images and a per-session cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session", autouse=True)
def image_cache(tmp_path_factory) -> Path:
    """A cache dir for the ONNX export and features, shared by the session (export happens once).

    ``ITEMREP_CACHE`` points at it so the tests never write into the user's ``~/.cache``.
    """
    d = tmp_path_factory.mktemp("itemrep-cache")
    old = os.environ.get("ITEMREP_CACHE")
    os.environ["ITEMREP_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("ITEMREP_CACHE", None)
    else:
        os.environ["ITEMREP_CACHE"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = Path(os.environ.get("ITEMREP_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    if not root.exists():
        pytest.skip(f"shared data not found at {root} (set ITEMREP_DATA)")
    return root
