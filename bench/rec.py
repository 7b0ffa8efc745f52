"""Benchmarks for itemrep.recsys (never part of the test run).

Sub-commands:

* ``check-baby`` -- harness check against the published MMRec-protocol numbers on Amazon Baby
  (BPR Recall@20 0.0575 / NDCG@20 0.0249; LightGCN 0.0754 / 0.0328): trains each model with
  MMRec's standard hyper-parameters, selects the epoch on validation Recall@20 and prints test
  metrics next to the published ones, with the relative difference, in one table.
* ``multimodal`` -- MovieLens-100k (posters) and the H&M sample: mean +- std over seeds of test
  Recall@20 / NDCG@20 for BPR, LightGCN, VBPR, LIRDRec (image + text) and LIRDRec (+ concept),
  plus training seconds per epoch, all in the same run.

Prepared datasets and features are cached under ``out/rec/`` (gitignored).

    .venv/bin/python bench/rec.py check-baby
    .venv/bin/python bench/rec.py multimodal --seeds 0,1,2
"""

from __future__ import annotations

import os

import json
import sys
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from itemrep.recsys.data import RecDataset, convert_amazon_baby, convert_hm, convert_movielens, data_root  # noqa: E402
from itemrep.recsys.trainer import Trainer  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
CACHE = REPO / "out" / "rec"

@app.callback()
def _main() -> None:
    """itemrep recsys benchmarks."""


PUBLISHED_BABY = {"bpr": (0.0575, 0.0249), "lightgcn": (0.0754, 0.0328)}


def _dataset(name: str, with_features: bool = True) -> Path:
    """Prepare (once) and return the cached dataset directory."""
    root = data_root()
    out = CACHE / name
    if not (out / "interactions.tsv").exists():
        if name == "amazon-baby":
            convert_amazon_baby(root / "amazon-baby", out)
        elif name == "movielens-100k":
            convert_movielens(root / "movielens-100k", out, seed=0)
        elif name == "hm":
            convert_hm(root / "hm", out, seed=0)
        else:
            raise typer.BadParameter(f"unknown dataset {name}")
    if with_features and name != "amazon-baby":
        from itemrep.recsys.features import build_features

        missing = [m for m in ("image", "text", "concept") if not (out / f"feat_{m}.npy").exists()]
        if missing:
            build_features(out, modalities=missing)
    return out


@app.command("check-baby")
def check_baby(
    models: str = typer.Option("bpr,lightgcn", help="comma-separated models"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, help="torch threads"),
    n_layers: str = typer.Option("2,3,4", help="LightGCN layer counts tried; the best on VALIDATION is reported"),
    epochs: int = typer.Option(1000),
    out: Path = typer.Option(CACHE / "bench" / "baby.json"),
) -> None:
    """Reproduce the published Amazon Baby BPR / LightGCN numbers (selection on validation only)."""
    if not (data_root() / "amazon-baby").exists():
        console.print(f"[yellow]skip: {data_root() / 'amazon-baby'} not found (set ITEMREP_DATA)")
        raise typer.Exit(0)
    ds = RecDataset.load(_dataset("amazon-baby", with_features=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    for model in models.split(","):
        grid = [{"n_layers": int(k)} for k in n_layers.split(",")] if model == "lightgcn" else [{}]
        for hp in grid:
            key = model + "".join(f"_{k}{v}" for k, v in hp.items())
            if key in results:
                console.print(f"cached: {key}")
                continue
            t0 = time.perf_counter()
            r = Trainer(model, {**hp, "threads": threads, "epochs": epochs}, seed=seed, run_dir=CACHE / "runs" / f"baby_{key}_s{seed}").fit(ds)
            results[key] = {"model": model, "hp": hp, **{k: v for k, v in r.to_dict().items() if k != "history"}, "wall_s": time.perf_counter() - t0}
            out.write_text(json.dumps(results, indent=2))
    table = Table(title=f"Amazon Baby (MMRec split), test metrics at the best VALIDATION epoch, seed {seed}")
    for c in ("model", "hp", "valid R@20", "test R@20", "published R@20", "diff", "test N@20", "published N@20", "diff", "best epoch", "s/epoch", "CPU s/epoch", "selected"):
        table.add_column(c)
    for model in models.split(","):
        keys = [k for k, v in results.items() if v["model"] == model]
        if not keys:
            continue
        sel = max(keys, key=lambda k: results[k]["valid"]["recall@20"])
        for k in keys:
            r = results[k]
            pr, pn = PUBLISHED_BABY.get(model, (float("nan"), float("nan")))
            tr, tn = r["test"]["recall@20"], r["test"]["ndcg@20"]
            table.add_row(model, json.dumps(r["hp"]), f"{r['valid']['recall@20']:.4f}", f"{tr:.4f}", f"{pr:.4f}", f"{(tr - pr) / pr:+.1%}", f"{tn:.4f}", f"{pn:.4f}", f"{(tn - pn) / pn:+.1%}", str(r["best_epoch"]), f"{r['sec_per_epoch']:.2f}", f"{r.get('cpu_sec_per_epoch', float('nan')):.2f}", "*" if k == sel else "")
    console.print(table)
    console.print(f"load average now (other jobs share these cores): {os.getloadavg()}")


#: The multimodal benchmark's model variants: name -> (model, config overrides).
VARIANTS: dict[str, tuple[str, dict]] = {
    "BPR": ("bpr", {}),
    "LightGCN": ("lightgcn", {}),
    "VBPR (image+text)": ("vbpr", {"modalities": ["image", "text"]}),
    "LIRDRec (image+text)": ("lirdrec", {"modalities": ["image", "text"]}),
    "LIRDRec (+concept)": ("lirdrec", {"modalities": ["image", "text", "concept"]}),
}


@app.command()
def multimodal(
    datasets: str = typer.Option("movielens-100k,hm", help="comma-separated datasets"),
    seeds: str = typer.Option("0,1,2", help="comma-separated training seeds (the data split is fixed, seed 0)"),
    variants: str = typer.Option(",".join(VARIANTS), help="comma-separated variant names"),
    threads: int = typer.Option(2, help="torch threads"),
    epochs: int = typer.Option(1000, help="maximum epochs (early stopping, patience 20, on validation Recall@20)"),
    out: Path = typer.Option(CACHE / "bench" / "multimodal.json"),
    merge: list[Path] = typer.Option([], help="other result files to merge into OUT first (runs split over processes)"),
    table_only: bool = typer.Option(False, "--table-only", help="train nothing; print the table of the cached results"),
) -> None:
    """Mean +- std over seeds of test Recall@20 / NDCG@20 and seconds per epoch, all variants in one run."""
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    for m in merge:
        results.update({k: v for k, v in json.loads(m.read_text()).items() if k not in results})
    out.write_text(json.dumps(results, indent=2))
    names = [v.strip() for v in variants.split(",") if v.strip()]
    for dname in [] if table_only else datasets.split(","):
        if not (data_root() / dname).exists():
            console.print(f"[yellow]skip {dname}: {data_root() / dname} not found (set ITEMREP_DATA)")
            continue
        path = _dataset(dname)
        for vname in names:
            model, cfg = VARIANTS[vname]
            ds = RecDataset.load(path, modalities=cfg.get("modalities", []))
            for seed in (int(s) for s in seeds.split(",")):
                key = f"{dname}|{vname}|{seed}"
                if key in results:
                    continue
                t0 = time.perf_counter()
                r = Trainer(model, {**cfg, "threads": threads, "epochs": epochs}, seed=seed).fit(ds)
                results[key] = {**{k: v for k, v in r.to_dict().items() if k != "history"}, "wall_s": time.perf_counter() - t0}
                out.write_text(json.dumps(results, indent=2))
    table = Table(title="Test metrics at the best validation epoch, mean +- std over seeds " + seeds)
    for c in ("dataset", "model", "Recall@20", "NDCG@20", "valid R@20", "best epoch", "epochs run", "s/epoch", "CPU s/epoch", "seeds"):
        table.add_column(c)
    for dname in datasets.split(","):
        for vname in names:
            rs = [v for k, v in results.items() if k.startswith(f"{dname}|{vname}|") and int(k.rsplit("|", 1)[1]) in {int(s) for s in seeds.split(",")}]
            if not rs:
                continue
            def ms(vals):
                a = np.array(vals)
                return f"{a.mean():.4f} +- {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"
            table.add_row(dname, vname, ms([r["test"]["recall@20"] for r in rs]), ms([r["test"]["ndcg@20"] for r in rs]), ms([r["valid"]["recall@20"] for r in rs]), f"{np.mean([r['best_epoch'] for r in rs]):.0f}", f"{np.mean([r['epochs_run'] for r in rs]):.0f}", f"{np.mean([r['sec_per_epoch'] for r in rs]):.2f}", f"{np.mean([r.get('cpu_sec_per_epoch', float('nan')) for r in rs]):.2f}", str(len(rs)))
    console.print(table)
    console.print(f"load average now (other jobs share these cores): {os.getloadavg()}")


@app.command()
def speed(
    dataset: str = typer.Option("amazon-baby", help="amazon-baby | movielens-100k | hm"),
    models: str = typer.Option("lightgcn", help="comma-separated variant names or model names"),
    epochs: int = typer.Option(3),
    threads: int = typer.Option(2),
) -> None:
    """Wall and CPU seconds per training epoch (no early stopping), with the load average."""
    path = _dataset(dataset, with_features=dataset != "amazon-baby")
    table = Table(title=f"{dataset}: seconds per training epoch ({epochs} epochs, {threads} threads)")
    for c in ("model", "wall s/epoch", "CPU s/epoch", "load average"):
        table.add_column(c)
    for name in models.split(","):
        model, cfg = VARIANTS.get(name, (name, {}))
        ds = RecDataset.load(path, modalities=cfg.get("modalities", []))
        r = Trainer(model, {**cfg, "threads": threads, "epochs": epochs, "stopping_step": epochs + 1}, seed=0, progress=False).fit(ds)
        table.add_row(name, f"{r.sec_per_epoch:.2f}", f"{r.cpu_sec_per_epoch:.2f}", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    console.print(table)


if __name__ == "__main__":
    app()
