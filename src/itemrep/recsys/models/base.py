"""The interface every recommender implements (MMRec's ``calculate_loss`` / ``full_sort_predict`` shape).

A model is built from a :class:`~itemrep.recsys.data.RecDataset` and a plain ``dict`` of
hyper-parameters. The trainer calls, per epoch, :meth:`RecModel.on_epoch_start`, then
:meth:`RecModel.calculate_loss` on mini-batches of (user, positive item, negative item) triples,
then :meth:`RecModel.on_epoch_end`; for evaluation it calls :meth:`RecModel.prepare_eval` once and
:meth:`RecModel.score_users` on user batches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Shared cluster representations (``cluster_emb`` in a config / ``--cluster-emb``): ``none``; ``add``
#: -- an item's representation is its own embedding plus its cluster's; ``replace`` -- its
#: cluster's embedding alone (near-duplicates become one item for the model).
CLUSTER_EMB_MODES: tuple[str, ...] = ("none", "add", "replace")


def cluster_emb_mode(cfg: dict, clusters: np.ndarray | None, n_items: int, model: str, allowed: tuple[str, ...] = CLUSTER_EMB_MODES) -> str:
    """Read and check ``cfg["cluster_emb"]`` (default ``none``) against the cluster map.

    Args:
        cfg: model hyper-parameters.
        clusters: int64 (n_items,) contiguous cluster ids, or ``None``.
        n_items: the dataset's item count.
        model: model name, for messages.
        allowed: the modes this model supports.

    Returns:
        The lower-cased mode.

    Raises:
        ValueError: unknown or unsupported mode; a mode other than ``none`` without clusters; a
            cluster map of the wrong length or with negative ids.
    """
    mode = str(cfg.get("cluster_emb") or "none").lower()
    if mode not in CLUSTER_EMB_MODES:
        raise ValueError(f"unknown cluster_emb {mode!r}; choose one of {list(CLUSTER_EMB_MODES)}")
    if mode not in allowed:
        raise ValueError(f"{model} does not support cluster_emb={mode}; it supports {list(allowed)}")
    if mode != "none":
        if clusters is None:
            raise ValueError(f"cluster_emb={mode} needs item clusters (`itemrep rec train --clusters clusters.parquet`)")
        c = np.asarray(clusters)
        if c.shape != (n_items,) or (len(c) and c.min() < 0):
            raise ValueError(f"clusters must be one non-negative cluster id per item ({n_items}), got shape {c.shape}")
    return mode


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss ``-mean(log sigmoid(s_pos - s_neg))`` (Rendle et al. 2009, Eq. 4).

    Args:
        pos, neg: float tensors (b,) of scores of the positive and the sampled negative item.
    """
    return -F.logsigmoid(pos - neg).mean()


def l2_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum_t mean_rows ||t_row||^2``: squared L2 norm per row, averaged over the batch, summed over tensors."""
    return sum(t.pow(2).sum(dim=-1).mean() for t in tensors)


class RecModel(nn.Module):
    """Base class of recommenders.

    Class attributes:
        name: registry name (``"bpr"``, ``"lightgcn"``, ``"vbpr"``, ``"lirdrec"``).
        uses_features: whether the model needs item feature matrices.
    """

    name = "base"
    uses_features = False

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def calculate_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Training loss of one mini-batch; int64 tensors (b,) of users, positive and negative items."""
        raise NotImplementedError

    def compute_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user (n_users, D), item (n_items, D)) representations used for scoring."""
        raise NotImplementedError

    def user_vectors(self, users: torch.Tensor, user_emb: torch.Tensor) -> torch.Tensor:
        """Rows of ``user_emb`` for ``users`` (models with per-user fusion override this)."""
        return user_emb.index_select(0, users)

    @torch.no_grad()
    def prepare_eval(self) -> None:
        """Compute and cache the final embeddings (call after training steps, before scoring)."""
        self._cache = self.compute_embeddings()

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores (b, n_items) of all items for ``users`` (int64 (b,)); needs :meth:`prepare_eval`."""
        if self._cache is None:
            self.prepare_eval()
        u, i = self._cache
        return self.user_vectors(users, u) @ i.T

    # ------------------------------------------------------------ item-ID / cluster embeddings
    def init_item_embeddings(self, d: int, mode: str = "none", clusters: np.ndarray | None = None) -> None:
        """Create the item-side ID parameters for ``mode`` (see :data:`CLUSTER_EMB_MODES`).

        ``item_emb`` (n_items, d) unless ``mode == "replace"``; with clusters, ``cluster_emb``
        (n_clusters, d) and the buffer ``cluster_of`` (n_items,). Xavier-uniform initialisation.
        """
        self.cluster_mode = mode
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d))) if mode != "replace" else None
        if mode != "none":
            c = torch.as_tensor(np.asarray(clusters, dtype=np.int64))
            self.register_buffer("cluster_of", c)
            self.cluster_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(int(c.max()) + 1, d)))

    def item_ego(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Layer-0 item vectors: ``e_i``, ``e_i + c_{cluster(i)}`` or ``c_{cluster(i)}`` (by mode).

        Args:
            items: int64 (b,) item ids, or ``None`` for all items.

        Returns:
            float (b, d) or (n_items, d).
        """
        if self.cluster_mode == "none":
            return self.item_emb if items is None else self.item_emb.index_select(0, items)
        cl = self.cluster_of if items is None else self.cluster_of.index_select(0, items)
        c = self.cluster_emb.index_select(0, cl)
        if self.cluster_mode == "replace":
            return c
        return c + (self.item_emb if items is None else self.item_emb.index_select(0, items))

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before epoch ``epoch`` (1-based)."""
        self._cache = None

    def on_epoch_end(self, epoch: int) -> None:
        """Hook called after the training steps of epoch ``epoch``."""
        self._cache = None
