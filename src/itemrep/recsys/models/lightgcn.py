"""LightGCN (He et al., SIGIR 2020): linear propagation over the normalised user-item graph."""

from __future__ import annotations

import torch
from torch import nn

from itemrep.recsys.graph import normalized_adjacency
from itemrep.recsys.models.base import RecModel, bpr_loss, l2_reg


def propagate(adj: torch.Tensor, x: torch.Tensor, n_layers: int, combine: str = "mean") -> torch.Tensor:
    """LightGCN layer combination ``sum_k a_k A^k x`` (He et al. 2020, Eqs. 3-4).

    Args:
        adj: sparse (N, N) normalised adjacency.
        x: dense (N, D) layer-0 embeddings.
        n_layers: number of propagation layers K.
        combine: ``"mean"`` (a_k = 1/(K+1), the LightGCN paper) or ``"sum"`` (a_k = 1, LIRDRec).
    """
    acc = x
    h = x
    for _ in range(n_layers):
        h = adj @ h
        acc = acc + h
    return acc / (n_layers + 1) if combine == "mean" else acc


class LightGCN(RecModel):
    """LightGCN with BPR loss and L2 regularisation of the layer-0 (ego) embeddings.

    Hyper-parameters (``cfg``): ``embedding_size`` (64), ``n_layers`` (3), ``reg_weight`` (1e-4).
    """

    name = "lightgcn"

    def __init__(self, dataset, cfg: dict) -> None:
        super().__init__(dataset.n_users, dataset.n_items)
        d = int(cfg.get("embedding_size", 64))
        self.n_layers = int(cfg.get("n_layers", 3))
        self.reg_weight = float(cfg.get("reg_weight", 1e-4))
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.adj = normalized_adjacency(self.n_users, self.n_items, dataset.train)

    def compute_embeddings(self):
        x = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]), self.n_layers, "mean")
        return x[: self.n_users], x[self.n_users :]

    def calculate_loss(self, users, pos, neg):
        u_all, i_all = self.compute_embeddings()
        u, p, n = u_all.index_select(0, users), i_all.index_select(0, pos), i_all.index_select(0, neg)
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        return loss + self.reg_weight * l2_reg(self.user_emb.index_select(0, users), self.item_emb.index_select(0, pos), self.item_emb.index_select(0, neg))
