"""The interface every recommender implements (MMRec's ``calculate_loss`` / ``full_sort_predict`` shape).

A model is built from a :class:`~itemrep.recsys.data.RecDataset` and a plain ``dict`` of
hyper-parameters. The trainer calls, per epoch, :meth:`RecModel.on_epoch_start`, then
:meth:`RecModel.calculate_loss` on mini-batches of (user, positive item, negative item) triples,
then :meth:`RecModel.on_epoch_end`; for evaluation it calls :meth:`RecModel.prepare_eval` once and
:meth:`RecModel.score_users` on user batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before epoch ``epoch`` (1-based)."""
        self._cache = None

    def on_epoch_end(self, epoch: int) -> None:
        """Hook called after the training steps of epoch ``epoch``."""
        self._cache = None
