"""LightGCN (He et al., SIGIR 2020): linear propagation over the normalised user-item graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from itemrep.recsys.graph import cluster_adjacency, normalized_adjacency
from itemrep.recsys.models.base import RecModel, bpr_loss, cluster_emb_mode, l2_reg


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

    Hyper-parameters (``cfg``): ``embedding_size`` (64), ``n_layers`` (3), ``reg_weight`` (1e-4),
    ``cluster_emb``: shared cluster representations, each cluster a graph node with its own
    embedding ``c`` (:func:`~itemrep.recsys.graph.cluster_adjacency`):

    * ``none`` -- plain LightGCN;
    * ``add`` -- the user-item graph plus a node per cluster linked to its members (``attach``):
      an item keeps its ID embedding and its cluster node's embedding reaches it by propagation;
    * ``replace`` -- items merged into their cluster nodes (``merge``): one propagated vector per
      cluster, used for every member.

    In plain LightGCN an item without training interactions is an isolated node whose final
    vector is its own (negatively sampled) embedding / (K+1); with a cluster node it is reached by
    its cluster mates' history. (Adding ``c`` to the layer-0 vector alone left such items
    isolated: on the H&M cold-start split their Recall@20 stayed at 0.0 -- docs/recsys.md.) The
    L2 penalty is on the layer-0 rows of the batch (``e_i + c`` / ``c`` for items).

    Arguments (``dataset, cfg, *, clusters``) and errors as :class:`~itemrep.recsys.models.bpr.BPRMF`.
    """

    name = "lightgcn"

    def __init__(self, dataset, cfg: dict, *, clusters: np.ndarray | None = None) -> None:
        super().__init__(dataset.n_users, dataset.n_items)
        d = int(cfg.get("embedding_size", 64))
        self.n_layers = int(cfg.get("n_layers", 3))
        self.reg_weight = float(cfg.get("reg_weight", 1e-4))
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.init_item_embeddings(d, cluster_emb_mode(cfg, clusters, self.n_items, self.name), clusters)
        if self.cluster_mode == "none":
            self.adj = normalized_adjacency(self.n_users, self.n_items, dataset.train)
        else:
            graph = "attach" if self.cluster_mode == "add" else "merge"
            self.adj = cluster_adjacency(self.n_users, self.n_items, dataset.train, np.asarray(clusters), graph)

    def compute_embeddings(self):
        nu = self.n_users
        if self.cluster_mode == "none":
            x = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]), self.n_layers, "mean")
            return x[:nu], x[nu:]
        if self.cluster_mode == "add":
            x = propagate(self.adj, torch.cat([self.user_emb, self.item_emb, self.cluster_emb]), self.n_layers, "mean")
            return x[:nu], x[nu : nu + self.n_items]
        x = propagate(self.adj, torch.cat([self.user_emb, self.cluster_emb]), self.n_layers, "mean")
        return x[:nu], x[nu:].index_select(0, self.cluster_of)

    def calculate_loss(self, users, pos, neg):
        u_all, i_all = self.compute_embeddings()
        u, p, n = u_all.index_select(0, users), i_all.index_select(0, pos), i_all.index_select(0, neg)
        loss = bpr_loss((u * p).sum(1), (u * n).sum(1))
        return loss + self.reg_weight * l2_reg(self.user_emb.index_select(0, users), self.item_ego(pos), self.item_ego(neg))
