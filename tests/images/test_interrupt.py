"""An interrupted image run keeps its work (issue 11, item 3).

Image features are stored in the SQLite cache batch by batch; SIGINT or SIGTERM part-way gives a
message saying what was kept, a non-zero exit and no traceback, and a re-run computes only the
images that were not kept. The end-to-end test runs the real ``itemrep dedup`` command in a
subprocess on 60 generated photos and signals it once the cache holds rows.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from itemrep.cache import FeatureCache, StopSignal, signals_deferred, stop_on_signals
from itemrep.encoders.image import encode_images
from itemrep.errors import Interrupted, ItemrepError

N_IMAGES = 60
BATCH = 6  # images per CNN batch in the subprocess: 10 batches, so there is time to signal mid-run

# The real CLI with a smaller image batch (the default, 32, would give only two batches of 60).
RUN_CLI = (
    "import sys, itemrep.dedup.images as m; m.encode_catalog_images.__kwdefaults__['batch_size'] = int(sys.argv.pop(1)); "
    "from itemrep.cli import app; app(prog_name='itemrep')"
)


def _photo(i: int) -> Image.Image:
    """A distinct small 'product' photo: a coloured bottle with a label on a plain background."""
    rng = np.random.default_rng(i)
    w, h = 96 + 8 * (i % 5), 64
    im = Image.new("RGB", (w, h), (235, 235, 235))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([w * 0.3, h * 0.15, w * 0.7, h * 0.9], radius=6, fill=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    d.rectangle([w * 0.3, h * 0.45, w * 0.7, h * 0.6], fill=(250, 250, 250))
    a = np.clip(np.asarray(im, dtype=np.int16) + rng.integers(-6, 7, size=(h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("interrupt-catalog")
    (d / "imgs").mkdir()
    with open(d / "catalog.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "image"])
        for i in range(N_IMAGES):
            _photo(i).save(d / "imgs" / f"p{i:03d}.jpg", quality=90)
            w.writerow([f"i{i}", f"bottle number {i}", f"imgs/p{i:03d}.jpg"])
    return d / "catalog.csv"


def _image_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM features WHERE ns LIKE 'image/%'").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def _dedup(catalog: Path, out: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, str(BATCH), "dedup", str(catalog), "--out", str(out), "--cache-dir", str(cache), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test runner started in the background may ignore SIGINT; the child must not inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _interrupt(catalog: Path, out: Path, cache: Path, signum: int, more_than: int) -> tuple[int, str, int]:
    """Run dedup, send ``signum`` once the cache holds more than ``more_than`` image rows."""
    db = cache / "features.sqlite"
    p = _dedup(catalog, out, cache)
    deadline = time.monotonic() + 600
    while _image_rows(db) <= more_than and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    rows_at_signal = _image_rows(db)
    assert p.poll() is None, f"the run ended before it could be interrupted:\n{p.stderr.read()}"
    assert more_than < rows_at_signal < N_IMAGES, rows_at_signal
    p.send_signal(signum)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    return p.returncode, err, rows_at_signal


def _kept(err: str, signum: int, cache: Path) -> int:
    m = re.search(rf"interrupted by {signal.Signals(signum).name}: kept (\d+) of {N_IMAGES} image features in (\S+); re-run to resume", err)
    assert m, err
    assert m.group(2) == str(cache / "features.sqlite")
    return int(m.group(1))


def test_interrupted_runs_keep_their_work_and_a_rerun_resumes(catalog, tmp_path, image_cache):
    cache = tmp_path / "cache"
    db = cache / "features.sqlite"

    # SIGINT (Ctrl-C) part-way: the finished batches stay, the message says so, no traceback.
    rc, err, _ = _interrupt(catalog, tmp_path / "o1", cache, signal.SIGINT, more_than=0)
    assert rc in (2, 130), (rc, err)  # 130 once the CLI maps Interrupted.exit_code; never 0
    assert "Traceback" not in err, err
    kept1 = _kept(err, signal.SIGINT, cache)
    assert 0 < kept1 < N_IMAGES and kept1 == _image_rows(db)

    # SIGTERM on the re-run: it resumed (only new images are computed), and keeps more.
    rc, err, _ = _interrupt(catalog, tmp_path / "o2", cache, signal.SIGTERM, more_than=kept1)
    assert rc in (2, 143), (rc, err)
    assert "Traceback" not in err, err
    kept2 = _kept(err, signal.SIGTERM, cache)
    assert kept1 < kept2 < N_IMAGES and kept2 == _image_rows(db)

    # A run to the end computes only what was not kept.
    p = _dedup(catalog, tmp_path / "o3", cache)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    st = json.loads((tmp_path / "o3" / "run.json").read_text())["images"]
    assert (st["cache_hits"], st["computed"], st["usable"]) == (kept2, N_IMAGES - kept2, N_IMAGES)
    assert _image_rows(db) == N_IMAGES


needs_default_handlers = pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="the test runner handles SIGINT/SIGTERM itself",
)


@needs_default_handlers
def test_signals_are_held_back_during_a_commit_and_handlers_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StopSignal) as e:
        with stop_on_signals():
            c = FeatureCache(tmp_path, "image/test-v1")
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run: the signal is held, not raised
                c.put_many({"k": {"v": np.arange(3)}})
            pytest.fail("the held signal must be raised when the block ends")
    assert e.value.signum == signal.SIGTERM and c.stored == 1
    assert FeatureCache(tmp_path, "image/test-v1").get_many(["k"]).keys() == {"k"}
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_default_handlers
def test_encode_images_turns_a_signal_into_interrupted(fixtures_dir, tmp_path, monkeypatch):
    import itemrep.encoders.image as image_mod

    def stop(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        raise AssertionError("SIGTERM must stop the run")

    monkeypatch.setattr(image_mod, "compute_image_features", stop)
    with pytest.raises(Interrupted) as e:
        encode_images([fixtures_dir / "ok.jpg", fixtures_dir / "other.jpg"], cache_dir=tmp_path)
    assert isinstance(e.value, ItemrepError) and e.value.exit_code == 143
    assert str(e.value) == f"interrupted by SIGTERM: kept 0 of 2 image features in {tmp_path / 'features.sqlite'}; re-run to resume"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


@needs_default_handlers
def test_stopped_ocr_keeps_what_it_read(fixtures_dir, tmp_path, monkeypatch):
    import itemrep.encoders.ocr as ocr_mod

    class StoppedOnSecondPhoto:
        max_side = 960
        calls = 0

        def read(self, image):
            self.calls += 1
            if self.calls == 2:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            return [ocr_mod.OcrLine(text=f"text {self.calls}", score=0.9, box=(0.0, 0.0, 1.0, 1.0))]

    monkeypatch.setattr(ocr_mod, "get_ocr_engine", StoppedOnSecondPhoto)
    paths = [fixtures_dir / "ok.jpg", fixtures_dir / "other.jpg"]
    with pytest.raises(Interrupted) as e:
        encode_images(paths, ocr=True, cache_dir=tmp_path)
    assert str(e.value) == (f"interrupted by SIGTERM: kept 2 of 2 image features in {tmp_path / 'features.sqlite'} "
                            "and 1 of 2 OCR results; re-run to resume")  # fmt: skip
    engine = StoppedOnSecondPhoto()
    engine.calls = 5  # past the signal
    monkeypatch.setattr(ocr_mod, "get_ocr_engine", lambda: engine)
    out = encode_images(paths, ocr=True, cache_dir=tmp_path)
    assert engine.calls == 6  # the re-run read only the photo that was not kept
    assert out.stats["cache_hits"] == 2 and out.stats["ocr_cache_hits"] == 1
