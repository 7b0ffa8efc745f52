"""Training loop: Adam, mini-batch BPR, early stopping on validation Recall@20, checkpoints.

Model and hyper-parameter selection use the **validation** split only: the epoch kept is the one
with the best validation metric, and the test split is evaluated once, for that epoch. (MMRec's
reference loop reports the test score of the best *test* configuration; we do not.) The test
labels are not read before then: :meth:`Trainer.fit` builds the test evaluator only after the last
epoch (before training it only checks that the test split is not empty).

With item clusters (:mod:`itemrep.recsys.clusters`) the validation and test lists follow the
``rerank`` policy (``none`` | ``dedup`` | ``mmr``, :mod:`itemrep.recsys.rerank`), so the epoch is
selected on the list that is served; the test split is then also scored on the plain list
(``test_plain``) for comparison.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from itemrep.recsys.clusters import ItemClusters
from itemrep.recsys.data import INTERACTIONS_FILE, RecDataError, RecDataset
from itemrep.recsys.evaluator import DEFAULT_KS, TopKEvaluator
from itemrep.recsys.models import RecModel, build_model
from itemrep.recsys.rerank import DEFAULT_MMR_LAMBDA, check_rerank

#: Defaults shared by every model (MMRec's overall settings), overridable by config / CLI.
DEFAULTS: dict = {
    "embedding_size": 64,
    "learning_rate": 1e-3,
    "train_batch_size": 2048,
    "reg_weight": 1e-4,
    "epochs": 1000,
    "stopping_step": 20,
    "valid_metric": "recall@20",
    "eval_step": 1,
    "eval_batch_size": 4096,
    "topk": list(DEFAULT_KS),
    "threads": 2,
    "rerank": "none",
    "mmr_lambda": DEFAULT_MMR_LAMBDA,
}
#: Per-model default hyper-parameters.
MODEL_DEFAULTS: dict[str, dict] = {
    "bpr": {},
    "lightgcn": {"n_layers": 3},
    "vbpr": {},
    "lirdrec": {"n_layers": 2},
}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (same input + seed => same output on the same machine)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class NegativeSampler:
    """Uniform negative sampling of items the user has not interacted with in training, vectorised.

    Candidates are drawn with ``numpy.random.Generator.integers`` and the ones that are training
    positives (looked up with ``np.searchsorted`` on sorted ``user * n_items + item`` keys) are
    redrawn, up to ``max_tries`` rounds (users who interacted with every item keep a positive).
    """

    def __init__(self, train: np.ndarray, n_items: int, seed: int, max_tries: int = 20) -> None:
        self.n_items = n_items
        self.keys = np.unique(train[:, 0].astype(np.int64) * n_items + train[:, 1])
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries

    def _is_pos(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        k = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return self.keys[pos] == k

    def sample(self, users: np.ndarray) -> np.ndarray:
        """One negative item per entry of ``users`` (int64 (n,)) -> int64 (n,)."""
        neg = self.rng.integers(0, self.n_items, size=len(users))
        bad = np.flatnonzero(self._is_pos(users, neg))
        for _ in range(self.max_tries):
            if len(bad) == 0:
                break
            neg[bad] = self.rng.integers(0, self.n_items, size=len(bad))
            bad = bad[self._is_pos(users[bad], neg[bad])]
        return neg


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        valid: validation metrics at the best epoch.
        test: test metrics of the model from the best epoch.
        best_epoch: 1-based epoch with the best validation metric.
        epochs_run: epochs trained before stopping.
        sec_per_epoch: mean wall-clock training seconds per epoch (excluding evaluation).
        cpu_sec_per_epoch: mean process CPU seconds per training epoch (all threads); on a
            machine shared with other jobs, ``cpu_sec_per_epoch / threads`` approximates the wall
            time the epoch would take with the cores to itself.
        history: per evaluated epoch ``{"epoch", "loss", "valid_metric", "train_s", "eval_s"}``.
        test_plain: with a ``rerank`` other than ``none``, the test metrics of the plain list of
            the same model (else ``None``).
        clusters: :meth:`ItemClusters.summary` of the cluster map used, or ``None``.
    """

    valid: dict
    test: dict
    best_epoch: int
    epochs_run: int
    sec_per_epoch: float
    cpu_sec_per_epoch: float = float("nan")
    history: list[dict] = field(default_factory=list)
    test_plain: dict | None = None
    clusters: dict | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (``test_plain`` / ``clusters`` only when set)."""
        extra = {k: v for k, v in (("test_plain", self.test_plain), ("clusters", self.clusters)) if v is not None}
        return {
            "valid": self.valid,
            "test": self.test,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "sec_per_epoch": self.sec_per_epoch,
            "cpu_sec_per_epoch": self.cpu_sec_per_epoch,
            "history": self.history,
            **extra,
        }


def check_eval_splits(dataset: RecDataset) -> None:
    """Refuse a dataset whose validation or test split has no interaction.

    Early stopping reads the validation split and the reported scores come from the test split;
    with either empty every metric would be 0.0 and the run would look like a (bad) result.

    Raises:
        RecDataError: naming the empty split(s) and the file they come from.
    """
    names = {"valid": ("validation", 1), "test": ("test", 2)}
    empty = [s for s in ("valid", "test") if len(getattr(dataset, s)) == 0]
    if not empty:
        return
    what = " and ".join(names[s][0] for s in empty)
    labels = " or ".join(str(names[s][1]) for s in empty)
    src = f" in {Path(dataset.path) / INTERACTIONS_FILE}" if dataset.path is not None else ""
    raise RecDataError(
        f"{dataset.name}: the {what} split{'s are' if len(empty) > 1 else ' is'} empty (no interaction with x_label {labels}{src}); "
        "training needs validation interactions for early stopping and test interactions for the metrics. "
        "Prepare the data with `itemrep rec prepare` (it splits every user 80/10/10) or label some interactions "
        "1 (validation) and 2 (test)"
    )


class Trainer:
    """Trains one model on one dataset.

    Args:
        model_name: ``bpr``, ``lightgcn``, ``vbpr`` or ``lirdrec``.
        config: overrides of :data:`DEFAULTS` and the model's hyper-parameters.
        seed: random seed (initialisation, shuffling, negatives).
        run_dir: where ``best.pt``, ``metrics.json``, ``config.json`` and the top-K lists go
            (``None``: keep nothing on disk).
        progress: show a rich progress bar.
        clusters: item clusters (:class:`~itemrep.recsys.clusters.ItemClusters` or an int64
            (n_items,) array of contiguous ids): used by ``rerank``, the models' ``cluster_emb``
            and the cluster metrics of the evaluator.

    Raises:
        ValueError: a ``rerank`` / ``mmr_lambda`` that :func:`~itemrep.recsys.rerank.check_rerank` refuses.
    """

    def __init__(
        self,
        model_name: str,
        config: dict | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        progress: bool = True,
        *,
        clusters: ItemClusters | np.ndarray | None = None,
    ) -> None:
        self.model_name = model_name.lower()
        self.config = {**DEFAULTS, **MODEL_DEFAULTS.get(self.model_name, {}), **(config or {})}
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir else None
        self.progress = progress
        self.cluster_info = clusters.summary() if isinstance(clusters, ItemClusters) else None
        self.clusters = None if clusters is None else np.asarray(clusters.cluster_of if isinstance(clusters, ItemClusters) else clusters, dtype=np.int64)
        self.config["rerank"] = check_rerank(self.config["rerank"], self.config["mmr_lambda"], self.clusters is not None)
        self.model_: RecModel | None = None

    def fit(self, dataset: RecDataset) -> TrainResult:
        """Train with early stopping on the validation metric; evaluate test at the best epoch.

        Returns:
            :class:`TrainResult`; also written to ``run_dir/metrics.json`` (with ``config.json``,
            ``best.pt`` and ``topk_test.npz``) when ``run_dir`` is set; ``progress.json`` there is
            rewritten after every epoch.

        Raises:
            ValueError: unknown model, missing modalities, or an empty training split.
            RecDataError: an empty validation or test split (early stopping and the reported
                metrics would be meaningless zeros), before any work.

        Only the *size* of the test split is looked at before training; its interactions are read
        once, after the last epoch, to score the restored best-validation model.
        """
        cfg = self.config
        torch.set_num_threads(int(cfg["threads"]))
        seed_everything(self.seed)
        if len(dataset.train) == 0:
            raise ValueError(f"{dataset.name}: the training split is empty")
        check_eval_splits(dataset)
        model = build_model(self.model_name, dataset, cfg, clusters=self.clusters)
        self.model_ = model
        opt = torch.optim.Adam(model.parameters(), lr=float(cfg["learning_rate"]), fused=True)
        train_m = dataset.user_items("train")
        ev_opts = {"clusters": self.clusters, "rerank": cfg["rerank"], "mmr_lambda": float(cfg["mmr_lambda"])}
        ev_valid = TopKEvaluator(train_m, dataset.user_items("valid"), cfg["topk"], int(cfg["eval_batch_size"]), **ev_opts)
        sampler = NegativeSampler(dataset.train, dataset.n_items, self.seed)
        rng = np.random.default_rng(self.seed + 1)
        users_np, items_np = dataset.train[:, 0], dataset.train[:, 1]
        bs = int(cfg["train_batch_size"])
        metric = cfg["valid_metric"]
        best, best_epoch, best_state, bad_rounds = -1.0, 0, None, 0
        best_valid: dict = {}
        history: list[dict] = []
        train_times: list[float] = []
        cpu_times: list[float] = []
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps({"model": self.model_name, "seed": self.seed, "dataset": dataset.name, **cfg}, indent=2, default=str))
        n_epochs = int(cfg["epochs"])
        with Progress(
            TextColumn(f"[bold]{self.model_name}[/] {dataset.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            disable=not self.progress,
            transient=False,
        ) as bar:
            task = bar.add_task("train", total=n_epochs, info="")
            epoch = 0
            for epoch in range(1, n_epochs + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                model.train()
                model.on_epoch_start(epoch)
                perm = rng.permutation(len(users_np))
                u_ep, p_ep = users_np[perm], items_np[perm]
                n_ep = sampler.sample(u_ep)
                u_t, p_t, n_t = (torch.from_numpy(a) for a in (u_ep, p_ep, n_ep))
                total, nb = 0.0, 0
                for s in range(0, len(perm), bs):
                    loss = model.calculate_loss(u_t[s : s + bs], p_t[s : s + bs], n_t[s : s + bs])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                    nb += 1
                if not np.isfinite(total):
                    raise FloatingPointError(f"{self.model_name}: loss became NaN/inf at epoch {epoch}; lower learning_rate")
                model.on_epoch_end(epoch)
                t_train = time.perf_counter() - t0
                train_times.append(t_train)
                cpu_times.append(time.process_time() - c0)
                rec = {"epoch": epoch, "loss": total / max(nb, 1), "train_s": t_train}
                if epoch % int(cfg["eval_step"]) == 0 or epoch == n_epochs:
                    t1 = time.perf_counter()
                    model.eval()
                    model.prepare_eval()
                    res, _ = ev_valid.evaluate(model.score_users)
                    rec.update(valid_metric=res[metric], eval_s=time.perf_counter() - t1)
                    if res[metric] > best:
                        best, best_epoch, best_valid, bad_rounds = res[metric], epoch, res, 0
                        best_state = {k: (v.detach().clone() if torch.is_tensor(v) else dict(v)) for k, v in model.state_dict().items()}
                    else:
                        bad_rounds += 1
                history.append(rec)
                if self.run_dir:
                    (self.run_dir / "progress.json").write_text(json.dumps({"best_epoch": best_epoch, "best_valid": best, "history": history}))
                bar.update(task, advance=1, info=f"loss {rec['loss']:.4f} valid {metric} {rec.get('valid_metric', float('nan')):.4f} (best {best:.4f} @ {best_epoch})")
                if self.progress and not bar.console.is_terminal and (epoch % 10 == 0 or epoch == 1):
                    bar.console.print(f"{self.model_name} {dataset.name} epoch {epoch}: loss {rec['loss']:.4f} train {t_train:.2f}s valid {metric} {rec.get('valid_metric', float('nan')):.4f} best {best:.4f}@{best_epoch}")
                if bad_rounds >= int(cfg["stopping_step"]):
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        model.prepare_eval()
        # the test labels are read here, once, after the last epoch
        test_m = dataset.user_items("test")
        ev_test = TopKEvaluator(train_m, test_m, cfg["topk"], int(cfg["eval_batch_size"]), **ev_opts)
        test_res, topk = ev_test.evaluate(model.score_users, return_topk=self.run_dir is not None)
        test_plain = None
        if cfg["rerank"] != "none":
            plain = TopKEvaluator(train_m, test_m, cfg["topk"], int(cfg["eval_batch_size"]), clusters=self.clusters)
            test_plain, _ = plain.evaluate(model.score_users)
        result = TrainResult(best_valid, test_res, best_epoch, epoch, float(np.mean(train_times)), float(np.mean(cpu_times)), history, test_plain, self.cluster_info)
        if self.run_dir:
            torch.save(model.state_dict(), self.run_dir / "best.pt")
            np.savez_compressed(self.run_dir / "topk_test.npz", users=ev_test.users_, items=topk)
            (self.run_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result
