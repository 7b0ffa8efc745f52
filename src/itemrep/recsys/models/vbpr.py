"""VBPR (He & McAuley, AAAI 2016): BPR-MF with a visual (here: any multimodal) item factor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from itemrep.recsys.models.base import RecModel, bpr_loss, cluster_emb_mode, l2_reg


class VBPR(RecModel):
    """``s(u, i) = <[gamma_u ; theta_u], [gamma_i ; E f_i]>`` (He & McAuley 2016, Eq. 2; bias terms omitted).

    ``f_i`` is the concatenation of the item's feature vectors over the selected modalities and
    ``E`` a learned linear map to ``d`` dimensions, so the user vector has ``2d`` entries.

    Hyper-parameters (``cfg``): ``embedding_size`` (64), ``reg_weight`` (1e-4), ``modalities``
    (default: all loaded).

    ``clusters`` is accepted for a uniform interface; VBPR has no cluster embedding
    (``cluster_emb`` other than ``none`` is refused).

    Raises:
        ValueError: when the dataset has none of the requested modalities, or ``cluster_emb`` is set.
    """

    name = "vbpr"
    uses_features = True

    def __init__(self, dataset, cfg: dict, *, clusters: np.ndarray | None = None) -> None:
        super().__init__(dataset.n_users, dataset.n_items)
        cluster_emb_mode(cfg, clusters, self.n_items, self.name, allowed=("none",))
        d = int(cfg.get("embedding_size", 64))
        self.reg_weight = float(cfg.get("reg_weight", 1e-4))
        mods = cfg.get("modalities") or list(dataset.features)
        missing = [m for m in mods if m not in dataset.features]
        if not mods or missing:
            raise ValueError(f"VBPR needs item features; missing {missing or 'all'} (have {list(dataset.features)})")
        feats = np.concatenate([dataset.features[m] for m in mods], axis=1)
        self.register_buffer("feats", torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)))
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.proj = nn.Linear(feats.shape[1], d)
        nn.init.xavier_uniform_(self.proj.weight)

    def compute_embeddings(self):
        return self.user_emb, torch.cat([self.item_emb, self.proj(self.feats)], dim=1)

    def calculate_loss(self, users, pos, neg):
        u = self.user_emb.index_select(0, users)
        ip = torch.cat([self.item_emb.index_select(0, pos), self.proj(self.feats.index_select(0, pos))], 1)
        ineg = torch.cat([self.item_emb.index_select(0, neg), self.proj(self.feats.index_select(0, neg))], 1)
        return bpr_loss((u * ip).sum(1), (u * ineg).sum(1)) + self.reg_weight * l2_reg(u, ip, ineg)
