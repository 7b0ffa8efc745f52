"""Image feature speed: ONNX Runtime vs torch eager, region methods end to end, cache, OCR.

    .venv/bin/python bench/image_speed.py [--n 320] [--ocr-n 16] [--repeats 2]

All rows run in one process on the same photos (Grocery train photos, 348 px JPEG, plus H&M
360x540 photos when present). End to end = ``encode_catalog_images`` with a fresh cache directory:
read + hash + decode (draft) + pHash + CNN pass(es) + pooling + labels + cache write, OCR off. OCR
throughput is measured separately on the first ``--ocr-n`` photos. The load average of the machine
is printed before and after: the machine is shared, so compare rows of one run only. Because a
shared machine's wall time says little, every row also reports the process CPU time per image
(user + system, all threads); ``2 / cpu-s-per-image`` is what two otherwise idle cores could do
at most (an upper bound that ignores imperfect parallelism).
"""


from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grocery import data_dir, print_table  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--ocr-n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="end-to-end repeats (best kept)")
    args = ap.parse_args()
    root = data_dir()
    paths = sorted((root / "grocery" / "train").glob("*/*/*/*.jpg")) + sorted((root / "grocery" / "train").glob("*/*/*.jpg"))
    hm = sorted((root / "hm" / "images").glob("*/*.jpg"))
    if not paths:
        print(f"grocery data not found under {root}; skipping")
        return
    rng = np.random.default_rng(0)
    pool = paths + hm
    sel = [pool[i] for i in sorted(rng.choice(len(pool), size=min(args.n, len(pool)), replace=False))]
    from itemrep.catalog import Item
    from itemrep.dedup.images import encode_catalog_images
    from itemrep.encoders.image import EfficientNetLite0

    print(f"{len(sel)} photos; cores={os.cpu_count()}; load average before: {os.getloadavg()}")
    rows = []
    # backbone only
    x = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
    for be in ("onnx", "torch"):
        t0 = time.perf_counter()
        bb = EfficientNetLite0(backend=be)
        load = time.perf_counter() - t0
        bb.feature_maps(x)
        reps = 4 if be == "onnx" else 2
        t0, c0 = time.perf_counter(), _cpu()
        for _ in range(reps):
            bb.feature_maps(x)
        cpu = (_cpu() - c0) / (32 * reps)
        rows.append([f"backbone only, {be} (batch 32, 224 px)", f"{32 * reps / (time.perf_counter() - t0):.1f}",
                     f"{1000 * cpu:.1f}", f"{2 / cpu:.0f}", f"model load {load:.1f} s", ""])
    items = [Item(item_id=str(i), image=p) for i, p in enumerate(sel)]
    for method in ("whole", "saliency", "saliency_crop"):
        best, st = None, None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as td:
                # the ONNX export is reused from the default cache; features start empty
                os.environ.setdefault("ITEMREP_CACHE", str(Path.home() / ".cache" / "itemrep"))
                from itemrep.encoders import image as im_mod

                bbk = im_mod.get_backbone()  # noqa: F841 - loaded before timing
                t0, c0 = time.perf_counter(), _cpu()
                r = encode_catalog_images(items, cache_dir=Path(td), primary_method=method)
                dt = time.perf_counter() - t0
                cpu = (_cpu() - c0) / len(sel)
                r2 = encode_catalog_images(items, cache_dir=Path(td), primary_method=method)
            if best is None or dt < best:
                best, st, st2, bcpu = dt, r.stats, r2.stats, cpu
        s = st["seconds"]
        rows.append([f"end to end, primary={method}, OCR off ({st['backend']})", f"{len(sel) / best:.1f}",
                     f"{1000 * bcpu:.1f}", f"{2 / bcpu:.0f}",
                     f"decode-wait {s['decode']:.1f} s, cnn {s['cnn']:.1f} s, pool {s['pool']:.1f} s, hash {s['hash']:.2f} s",
                     f"cached re-run {len(sel) / st2['seconds']['total']:.0f} img/s ({st2['cache_hits']} hits)"])
    # OCR
    try:
        import rapidocr  # noqa: F401

        from itemrep.encoders.ocr import get_ocr_engine
        from itemrep.images import read_image

        eng = get_ocr_engine()
        eng.read(read_image(sel[0]).image)  # load models
        t0, c0 = time.perf_counter(), _cpu()
        nlines = 0
        for p in sel[: args.ocr_n]:
            nlines += len(eng.read(read_image(p, max_side=eng.max_side, min_side=640).image))
        dt = time.perf_counter() - t0
        cpu = (_cpu() - c0) / args.ocr_n
        rows.append([f"OCR only (RapidOCR PP-OCRv6, {args.ocr_n} photos)", f"{args.ocr_n / dt:.2f}", f"{1000 * cpu:.0f}",
                     f"{2 / cpu:.1f}", f"{nlines} lines read", ""])
    except ImportError:
        rows.append(["OCR", "n/a", "", "", "rapidocr not installed", ""])
    print_table("Image feature throughput (higher is better)",
                ["path", "img/s (wall)", "CPU ms/img", "≤ img/s on 2 idle cores", "detail", "cache"], rows)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
