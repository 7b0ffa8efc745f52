"""``itemrep rec``: prepare recommendation datasets and train / evaluate recommenders.

    itemrep rec prepare movielens-100k --out out/rec/movielens-100k [--features]
    itemrep rec prepare hm --out out/rec/hm --features
    itemrep rec prepare amazon-baby --out out/rec/amazon-baby
    itemrep rec features out/rec/hm --modalities image,text,concept
    itemrep rec train --data out/rec/hm --model lirdrec --out runs/hm-lird [--config cfg.yaml] [--seed 0]
"""

from __future__ import annotations

import os

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from itemrep.errors import ItemrepError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multimodal recommendation: data preparation, LIRDRec and baselines.")
console = Console(stderr=True)


class Source(str, Enum):
    amazon_baby = "amazon-baby"
    movielens = "movielens-100k"
    hm = "hm"


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/] {msg}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


@app.command()
def prepare(
    dataset: Source = typer.Argument(..., help="which shared data set to convert"),
    out: Path = typer.Option(..., "--out", help="output dataset directory"),
    src: Path | None = typer.Option(None, "--src", help="source directory (default: $ITEMREP_DATA/<dataset>)"),
    seed: int = typer.Option(0, help="seed of the per-user random split (not used for amazon-baby)"),
    features: bool = typer.Option(False, "--features/--no-features", help="also build image/text/concept features"),
    k_core: int = typer.Option(5, help="MovieLens: k-core filter on users and items"),
    min_user: int = typer.Option(5, help="H&M: minimum distinct articles per customer"),
) -> None:
    """Convert a shared data set to the MMRec layout (interactions.tsv + items.csv + meta.json)."""
    from itemrep.recsys import data as D

    src = src or D.data_root() / dataset.value
    try:
        if dataset is Source.amazon_baby:
            ds = D.convert_amazon_baby(src, out)
        elif dataset is Source.movielens:
            ds = D.convert_movielens(src, out, seed=seed, k_core=k_core)
        else:
            ds = D.convert_hm(src, out, seed=seed, min_user=min_user)
        console.print(json.dumps(ds.stats()))
        if features and dataset is not Source.amazon_baby:
            from itemrep.recsys.features import build_features

            build_features(out)
    except ItemrepError as e:
        _fail(str(e))


@app.command("features")
def features_cmd(
    data: Path = typer.Argument(..., help="prepared dataset directory (with items.csv)"),
    modalities: str = typer.Option("image,text,concept", help="comma-separated modalities to build"),
    batch_size: int = typer.Option(32, help="images per CNN call"),
) -> None:
    """Build feat_<modality>.npy matrices (image CNN, text encoder, concept text) for a dataset."""
    from itemrep.recsys.features import build_features

    try:
        written = build_features(data, [m.strip() for m in modalities.split(",") if m.strip()], batch_size)
    except ItemrepError as e:
        _fail(str(e))
    for m, p in written.items():
        console.print(f"{m}: {p}")


def load_config(path: Path | None) -> dict:
    """Read a YAML or JSON config file into a dict (``{}`` for ``None``).

    Raises:
        ItemrepError: the file is missing, unparsable, or not a mapping.
    """
    if path is None:
        return {}
    if not path.is_file():
        raise ItemrepError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            cfg = json.loads(text)
        else:
            import yaml

            cfg = yaml.safe_load(text)
    except Exception as e:
        raise ItemrepError(f"{path}: cannot parse config: {e}") from e
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ItemrepError(f"{path}: config must be a mapping of option -> value, got {type(cfg).__name__}")
    return cfg


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="prepared dataset directory"),
    model: str = typer.Option(..., "--model", help="bpr | lightgcn | vbpr | lirdrec"),
    out: Path = typer.Option(..., "--out", help="run directory (metrics.json, best.pt, topk_test.npz)"),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON file of hyper-parameters"),
    seed: int = typer.Option(0, "--seed"),
    modalities: str | None = typer.Option(None, help="comma-separated feature modalities (default: all in the dataset)"),
    epochs: int | None = typer.Option(None, help="override the maximum number of epochs"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train one model with early stopping on validation Recall@20 and write RUN_DIR/metrics.json."""
    from itemrep.recsys.data import RecDataset
    from itemrep.recsys.models import MODELS
    from itemrep.recsys.trainer import Trainer

    if model.lower() not in MODELS:
        _fail(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    try:
        cfg = load_config(config)
        mods = [m.strip() for m in modalities.split(",")] if modalities else cfg.get("modalities")
        ds = RecDataset.load(data, modalities=mods if MODELS[model.lower()].uses_features else [])
        if mods:
            cfg["modalities"] = mods
        if epochs is not None:
            cfg["epochs"] = epochs
        res = Trainer(model, cfg, seed=seed, run_dir=out, progress=progress).fit(ds)
    except (ItemrepError, ValueError) as e:
        _fail(str(e))
    summary = {"valid": {k: round(v, 5) for k, v in res.valid.items() if k.endswith("@20")}, "test": {k: round(v, 5) for k, v in res.test.items() if k.endswith("@20")}, "best_epoch": res.best_epoch, "sec_per_epoch": round(res.sec_per_epoch, 3)}
    typer.echo(json.dumps(summary))
