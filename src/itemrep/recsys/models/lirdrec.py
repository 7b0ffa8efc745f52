"""LIRDRec: learning item representations directly from multimodal features.

Re-implemented from Zhou et al., "Learning Item Representations Directly from Multimodal Features
for Effective Recommendation" (arXiv 2505.04960) and the project's issue text; no code was taken
from the authors' repository or from MMRec.

Item side (no item-ID embeddings):

* per modality ``m``: ``H_m = W_m2 LeakyReLU(W_m1 X_m + b_m1) + b_m2`` with hidden width ``4d``;
* a shared branch ``H_s`` with the same encoder shape on ``[DCT(X_1) || ... || DCT(X_M)]`` where
  ``DCT`` is the orthonormal DCT-II along each item's feature vector (``scipy.fft.dct(type=2,
  norm="ortho")``), computed once (paper Sec. 3, "shared information" branch);
* branches ``b = 1..B`` (``B = M + 1``); user side: a free preference matrix ``U_b`` per branch;
  every user and item row is L2-normalised per branch and the branches are concatenated
  (``B * d`` columns);
* LightGCN propagation over the symmetric-normalised training graph with the layer outputs summed;
* items: ``I = I_gcn + S H`` with ``S`` the frozen item-item kNN graph (k = 10, cosine on raw
  features, weighted mix of the per-modality graphs, each row a mean over its neighbours) and
  ``H`` the normalised, concatenated item branches before propagation (the residual form used by
  FREEDOM/LIRDRec: graph-smoothed content added to the collaborative signal);
* users: progressive weight-copying fusion. Per-branch scorers ``f_{u,b} = a_b^T u_b`` give
  ``beta_u = softmax(w1 f_u + w2 Theta_u)`` and the user vector ``[beta_{u,1} u_1 || ... ||
  beta_{u,B} u_B]``; after every epoch ``e`` ``w1 <- w1 * 0.9^e`` (then ``w1, w2`` renormalised
  to sum 1) and ``Theta`` is overwritten with that epoch's ``beta`` for all users;
* loss: BPR with one sampled negative plus ``lambda`` times the mean squared norm of the final
  user, positive-item and negative-item vectors.

Optional cluster-level branch (``cluster_emb: add``, issue 13): one more branch, with its own
user preference block and scorer, whose item side is a learned embedding ``c`` per near-duplicate
cluster (normalised), propagated (layer outputs summed) over the user-*cluster* graph in which
each item is merged into its cluster (:func:`~itemrep.recsys.graph.cluster_adjacency`,
``merge``); every member of a cluster gets the cluster node's row in this branch. An item without
interactions thus starts from its cluster's history as well as from its content. The kNN
residual ``S H`` includes the branch (``H``'s cluster block is ``c_{cluster(i)}``). There is no
item-ID embedding to replace, so ``replace`` is refused.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from itemrep.recsys.graph import cluster_adjacency, mixed_knn_graph, normalized_adjacency
from itemrep.recsys.models.base import RecModel, bpr_loss, cluster_emb_mode, l2_reg
from itemrep.recsys.models.lightgcn import propagate


def dct_features(x: np.ndarray) -> np.ndarray:
    """Orthonormal DCT-II of each row: ``scipy.fft.dct(x, type=2, norm="ortho", axis=1)``.

    Args:
        x: float array (n_items, d).

    Returns:
        float32 array (n_items, d); an orthogonal transform, so row norms are preserved.
    """
    return scipy.fft.dct(np.asarray(x, dtype=np.float64), type=2, norm="ortho", axis=1).astype(np.float32)


class BranchEncoder(nn.Sequential):
    """``Linear(d_in, 4d) -> LeakyReLU -> Linear(4d, d)``: one LIRDRec item branch."""

    def __init__(self, d_in: int, d: int, hidden_mult: int = 4, negative_slope: float = 0.01) -> None:
        super().__init__(nn.Linear(d_in, hidden_mult * d), nn.LeakyReLU(negative_slope), nn.Linear(hidden_mult * d, d))
        for m in self:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)


class LIRDRec(RecModel):
    """LIRDRec over any number of modalities (>= 1).

    Hyper-parameters (``cfg``, defaults in brackets): ``embedding_size`` d [64], ``n_layers`` [2],
    ``reg_weight`` lambda [1e-4], ``modalities`` [all loaded], ``shared_modalities`` [all used
    modalities], ``knn_k`` [10], ``knn_weights`` [uniform], ``w1`` [0.5], ``w2`` [0.5],
    ``decay`` [0.9], ``hidden_mult`` [4], ``score_scale`` [B: makes uniform beta a plain sum],
    ``cluster_emb`` [``none``; ``add``: a cluster-level branch, so B = M + 2].

    Args:
        dataset: the :class:`~itemrep.recsys.data.RecDataset` (with item features).
        cfg: hyper-parameters.
        clusters: int64 (n_items,) contiguous cluster ids; needed with ``cluster_emb: add``.

    Raises:
        ValueError: when a requested modality is not in the dataset; ``cluster_emb`` other than
            ``none``/``add`` or without clusters.
    """

    name = "lirdrec"
    uses_features = True

    def __init__(self, dataset, cfg: dict, *, clusters: np.ndarray | None = None) -> None:
        super().__init__(dataset.n_users, dataset.n_items)
        d = int(cfg.get("embedding_size", 64))
        self.d = d
        self.n_layers = int(cfg.get("n_layers", 2))
        self.reg_weight = float(cfg.get("reg_weight", 1e-4))
        self.decay = float(cfg.get("decay", 0.9))
        mods = list(cfg.get("modalities") or dataset.features)
        missing = [m for m in mods if m not in dataset.features]
        if not mods or missing:
            raise ValueError(f"LIRDRec needs item features; missing {missing or 'all'} (have {list(dataset.features)})")
        shared = list(cfg.get("shared_modalities") or mods)
        bad = [m for m in shared if m not in mods]
        if bad:
            raise ValueError(f"shared_modalities {bad} are not among the used modalities {mods}")
        self.modalities = mods
        hm = int(cfg.get("hidden_mult", 4))
        for m in mods:
            self.register_buffer(f"x_{m}", torch.from_numpy(dataset.features[m]))
        self.encoders = nn.ModuleDict({m: BranchEncoder(dataset.features[m].shape[1], d, hm) for m in mods})
        x_dct = np.concatenate([dct_features(dataset.features[m]) for m in shared], axis=1)
        self.register_buffer("x_dct", torch.from_numpy(x_dct))
        self.shared_encoder = BranchEncoder(x_dct.shape[1], d, hm)
        self.cluster_mode = cluster_emb_mode(cfg, clusters, self.n_items, self.name, allowed=("none", "add"))
        self.n_branches = len(mods) + 1 + (self.cluster_mode == "add")
        self.user_pref = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, self.n_branches * d)))
        self.scorer = nn.Parameter(torch.zeros(self.n_branches, d))
        self.register_buffer("theta", torch.full((self.n_users, self.n_branches), 1.0 / self.n_branches))
        w1, w2 = float(cfg.get("w1", 0.5)), float(cfg.get("w2", 0.5))
        self.w1, self.w2 = w1 / (w1 + w2), w2 / (w1 + w2)
        if self.cluster_mode == "add":
            self.register_buffer("cluster_of", torch.as_tensor(np.asarray(clusters, dtype=np.int64)))
            self.cluster_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(int(self.cluster_of.max()) + 1, d)))
            self.cluster_adj = cluster_adjacency(self.n_users, self.n_items, dataset.train, np.asarray(clusters), "merge")
        self.score_scale = float(cfg.get("score_scale", self.n_branches))
        self.adj = normalized_adjacency(self.n_users, self.n_items, dataset.train)
        self.item_graph = mixed_knn_graph({m: dataset.features[m] for m in mods}, cfg.get("knn_weights"), int(cfg.get("knn_k", 10)))

    # -------------------------------------------------------------- representations
    def item_branches(self) -> torch.Tensor:
        """Normalised item branches before propagation, (n_items, B*d): modalities, shared, [cluster]."""
        hs = [self.encoders[m](getattr(self, f"x_{m}")) for m in self.modalities]
        hs.append(self.shared_encoder(self.x_dct))
        if self.cluster_mode == "add":
            hs.append(self.cluster_emb.index_select(0, self.cluster_of))  # normalised below: rows of normalize(c)
        return torch.cat([F.normalize(h, dim=1) for h in hs], dim=1)

    def user_branches(self) -> torch.Tensor:
        """Normalised user preference branches, (n_users, B*d)."""
        u = self.user_pref.view(self.n_users, self.n_branches, self.d)
        return F.normalize(u, dim=2).reshape(self.n_users, -1)

    def compute_embeddings(self):
        h = self.item_branches()
        ub = self.user_branches()
        nu = self.n_users
        if self.cluster_mode == "none":
            x = propagate(self.adj, torch.cat([ub, h]), self.n_layers, "sum")
            return x[:nu], x[nu:] + self.item_graph @ h
        bc = (self.n_branches - 1) * self.d  # content branches; the cluster branch is the last block
        x = propagate(self.adj, torch.cat([ub[:, :bc], h[:, :bc]]), self.n_layers, "sum")
        y = propagate(self.cluster_adj, torch.cat([ub[:, bc:], F.normalize(self.cluster_emb, dim=1)]), self.n_layers, "sum")
        u = torch.cat([x[:nu], y[:nu]], dim=1)
        i = torch.cat([x[nu:], y[nu:].index_select(0, self.cluster_of)], dim=1)
        return u, i + self.item_graph @ h

    def fusion_weights(self, users: torch.Tensor, user_emb_rows: torch.Tensor) -> torch.Tensor:
        """``beta_u`` (b, B) = softmax(w1 f_u + w2 Theta_u) for the given users and their propagated rows."""
        ub = user_emb_rows.view(-1, self.n_branches, self.d)
        f = (ub * self.scorer).sum(-1)
        return torch.softmax(self.w1 * f + self.w2 * self.theta.index_select(0, users), dim=1)

    def user_vectors(self, users, user_emb):
        rows = user_emb.index_select(0, users)
        beta = self.fusion_weights(users, rows)
        ub = rows.view(-1, self.n_branches, self.d) * (self.score_scale * beta).unsqueeze(-1)
        return ub.reshape(len(users), -1)

    # -------------------------------------------------------------- training
    def calculate_loss(self, users, pos, neg):
        u_all, i_all = self.compute_embeddings()
        u = self.user_vectors(users, u_all)
        p, n = i_all.index_select(0, pos), i_all.index_select(0, neg)
        return bpr_loss((u * p).sum(1), (u * n).sum(1)) + self.reg_weight * l2_reg(u, p, n)

    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        """Weight copying: Theta <- this epoch's beta (all users); w1 <- w1 * decay^epoch, renormalised."""
        u_all, _ = self.compute_embeddings()
        users = torch.arange(self.n_users)
        self.theta.copy_(self.fusion_weights(users, u_all))
        w1 = self.w1 * self.decay**epoch
        s = w1 + self.w2
        self.w1, self.w2 = w1 / s, self.w2 / s
        super().on_epoch_end(epoch)

    def get_extra_state(self):
        """The fusion scalars ``w1, w2``, checkpointed with the state dict."""
        return {"w1": self.w1, "w2": self.w2}

    def set_extra_state(self, state):
        """Restore ``w1, w2`` from a checkpoint."""
        self.w1, self.w2 = float(state["w1"]), float(state["w2"])
