"""``itemrep rec``: prepare recommendation datasets and train / evaluate recommenders.

    itemrep rec prepare movielens-100k --out out/rec/movielens-100k [--features]
    itemrep rec prepare hm --out out/rec/hm --features
    itemrep rec prepare amazon-baby --out out/rec/amazon-baby
    itemrep rec prepare custom --interactions ratings.csv --items items.csv --user-col user_id --item-col movie_id --out out/rec/mine
    itemrep rec features out/rec/hm --modalities image,text,concept
    itemrep rec train --data out/rec/hm --model lirdrec --out runs/hm-lird [--config cfg.yaml] [--seed 0]
    itemrep rec train --data out/rec/hm --model lightgcn --out runs/hm-lgcn --clusters dedup/clusters.parquet \
        [--rerank dedup|mmr|none] [--mmr-lambda 0.7] [--cluster-emb add|replace|none]
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
    custom = "custom"


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/] {msg}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


@app.command()
def prepare(
    dataset: Source = typer.Argument(..., help="which shared data set to convert, or custom (your own: --interactions and --items)"),
    out: Path = typer.Option(..., "--out", help="output dataset directory"),
    src: Path | None = typer.Option(None, "--src", help="source directory (default: $ITEMREP_DATA/<dataset>)"),
    seed: int = typer.Option(0, help="seed of the per-user split (not used for amazon-baby)"),
    features: bool = typer.Option(False, "--features/--no-features", help="also build image/text/concept features"),
    k_core: int = typer.Option(5, help="MovieLens and custom: k-core filter on users and items"),
    min_user: int = typer.Option(5, help="H&M: minimum distinct articles per customer"),
    split: str | None = typer.Option(None, "--split", help="per-user 8:1:1 split: random (default) or time (each user's latest interactions to test); not for amazon-baby"),
    interactions: Path | None = typer.Option(None, "--interactions", help="custom: interactions table (.csv, .tsv, .jsonl or .parquet), one row per user-item event"),
    items: Path | None = typer.Option(None, "--items", help="custom: item catalog (the formats of `itemrep dedup`), one row per item"),
    user_col: str | None = typer.Option(None, "--user-col", help="custom: user id column of --interactions"),
    item_col: str | None = typer.Option(None, "--item-col", help="custom: item id column of --interactions"),
    time_col: str | None = typer.Option(None, "--time-col", help="custom: interaction time column (numbers such as Unix time, or dates); needed by --split time"),
    rating_col: str | None = typer.Option(None, "--rating-col", help="custom: rating column (numbers)"),
    min_rating: float | None = typer.Option(None, "--min-rating", help="custom: keep interactions rated >= this (needs --rating-col)"),
    item_k_core: int | None = typer.Option(None, "--item-k-core", help="custom: minimum interactions per item (default: --k-core)"),
    id_col: str | None = typer.Option(None, "--id-col", help="custom: item id column of --items (default: --item-col when the catalog has it, else item_id, id, ...)"),
    title_col: str | None = typer.Option(None, "--title-col", help="custom: title column of --items (default: title, name, prod_name or product_name)"),
    text_col: str | None = typer.Option(None, "--text-col", help="custom: description column of --items (default: text, description, detail_desc or desc)"),
    image_col: str | None = typer.Option(None, "--image-col", help="custom: image path column of --items, relative to its folder (default: image, image_path, img or photo)"),
    image_template: str | None = typer.Option(None, "--image-template", help="custom: image path made from the item id instead of --image-col, e.g. 'posters/{id}.jpg'"),
    attr_cols: str | None = typer.Option(None, "--attr-cols", help="custom: comma-separated columns of --items written as attributes (they feed the concept feature)"),
) -> None:
    """Convert a shared data set, or your own interactions + catalog (custom), to the MMRec layout (interactions.tsv + items.csv + meta.json)."""
    from itemrep.recsys import data as D

    custom_opts = {"--interactions": interactions, "--items": items, "--user-col": user_col, "--item-col": item_col,
                   "--time-col": time_col, "--rating-col": rating_col, "--min-rating": min_rating, "--item-k-core": item_k_core,
                   "--id-col": id_col, "--title-col": title_col, "--text-col": text_col, "--image-col": image_col,
                   "--image-template": image_template, "--attr-cols": attr_cols}
    try:
        if dataset is Source.custom:
            lacking = [f for f in ("--interactions", "--items", "--user-col", "--item-col") if custom_opts[f] is None]
            if lacking:
                _fail(f"rec prepare custom needs {', '.join(lacking)}")
            if src is not None:
                _fail("--src is for the shared data sets; custom reads --interactions and --items")
            ds = D.prepare_custom(interactions, items, out, user_col=user_col, item_col=item_col, time_col=time_col,
                                  rating_col=rating_col, min_rating=min_rating, id_col=id_col, title_col=title_col,
                                  text_col=text_col, image_col=image_col, image_template=image_template,
                                  attr_cols=[c.strip() for c in (attr_cols or "").split(",") if c.strip()],
                                  k_core=k_core, item_k_core=item_k_core, split=split or "random", seed=seed)
        else:
            given = [f for f, v in custom_opts.items() if v is not None]
            if given:
                _fail(f"{', '.join(given)} only apply to `rec prepare custom`")
            src = src or D.data_root() / dataset.value
            if dataset is Source.amazon_baby:
                if split is not None:
                    _fail("--split: amazon-baby keeps MMRec's own split")
                ds = D.convert_amazon_baby(src, out)
            elif dataset is Source.movielens:
                ds = D.convert_movielens(src, out, seed=seed, k_core=k_core, split=split or "random")
            else:
                ds = D.convert_hm(src, out, seed=seed, min_user=min_user, split=split or "random")
        meta = json.loads((Path(out) / D.META_FILE).read_text())
        for w in meta.get("warnings", []):
            console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        console.print(json.dumps(ds.stats()), markup=False, highlight=False)
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
    clusters: Path | None = typer.Option(None, "--clusters", help="`itemrep dedup` clusters.parquet over the same items (item_id, cluster_id): de-duplicated top-K, cluster metrics"),
    rerank: str | None = typer.Option(None, "--rerank", help="top-K list with --clusters: dedup (one item per cluster; the default), mmr or none"),
    mmr_lambda: float | None = typer.Option(None, "--mmr-lambda", help="MMR relevance weight in (0, 1] (default 0.7)"),
    cluster_emb: str | None = typer.Option(None, "--cluster-emb", help="shared cluster embeddings (bpr, lightgcn: add | replace; lirdrec: add) or none"),
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
        for key, val in (("rerank", rerank), ("mmr_lambda", mmr_lambda), ("cluster_emb", cluster_emb)):
            if val is not None:
                cfg[key] = val
        item_clusters = None
        if clusters is not None:
            from itemrep.recsys.clusters import dataset_item_ids, load_clusters

            item_clusters = load_clusters(clusters, dataset_item_ids(data))
            cfg.setdefault("rerank", "dedup")
            info = item_clusters.summary()
            console.print(f"clusters: {info['items']} items in {info['clusters']} clusters ({info['multi_item_clusters']} with >1 item); "
                          f"{info['missing_items_made_singletons']} items missing from {clusters} made singletons; "
                          f"{info['unmatched_rows']} rows naming no dataset item ignored", markup=False, highlight=False)  # fmt: skip
        res = Trainer(model, cfg, seed=seed, run_dir=out, progress=progress, clusters=item_clusters).fit(ds)
    except (ItemrepError, ValueError) as e:
        _fail(str(e))
    summary = {"valid": {k: round(v, 5) for k, v in res.valid.items() if k.endswith("@20")}, "test": {k: round(v, 5) for k, v in res.test.items() if k.endswith("@20")}, "best_epoch": res.best_epoch, "sec_per_epoch": round(res.sec_per_epoch, 3)}
    if res.test_plain is not None:
        summary["test_plain"] = {k: round(v, 5) for k, v in res.test_plain.items() if k.endswith("@20")}
    typer.echo(json.dumps(summary))
