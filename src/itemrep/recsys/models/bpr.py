"""BPR-MF: matrix factorisation trained with the BPR loss (Rendle et al., UAI 2009)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from itemrep.recsys.models.base import RecModel, bpr_loss, cluster_emb_mode, l2_reg


class BPRMF(RecModel):
    """Matrix factorisation ``s(u, i) = <p_u, q_i>`` with BPR loss + ``reg * ||.||^2`` (Rendle 2009, Eq. 4).

    Hyper-parameters (``cfg``): ``embedding_size`` (64), ``reg_weight`` (1e-4), ``cluster_emb``
    (``none``; ``add``: ``q_i = e_i + c_{cluster(i)}``; ``replace``: ``q_i = c_{cluster(i)}``, one
    vector shared by an item's near-duplicates, so an item without interactions scores as its
    cluster).

    Args:
        dataset: the :class:`~itemrep.recsys.data.RecDataset`.
        cfg: hyper-parameters.
        clusters: int64 (n_items,) contiguous cluster ids; needed when ``cluster_emb`` is not ``none``.

    Raises:
        ValueError: bad ``cluster_emb`` or cluster map (:func:`~itemrep.recsys.models.base.cluster_emb_mode`).
    """

    name = "bpr"

    def __init__(self, dataset, cfg: dict, *, clusters: np.ndarray | None = None) -> None:
        super().__init__(dataset.n_users, dataset.n_items)
        d = int(cfg.get("embedding_size", 64))
        self.reg_weight = float(cfg.get("reg_weight", 1e-4))
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.init_item_embeddings(d, cluster_emb_mode(cfg, clusters, self.n_items, self.name), clusters)

    def calculate_loss(self, users, pos, neg):
        u, p, n = self.user_emb.index_select(0, users), self.item_ego(pos), self.item_ego(neg)
        return bpr_loss((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * l2_reg(u, p, n)

    def compute_embeddings(self):
        return self.user_emb, self.item_ego()
