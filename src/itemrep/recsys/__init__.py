"""Multimodal recommendation: LIRDRec (Zhou et al. 2025, arXiv 2505.04960) and baselines.

Modules:

* :mod:`itemrep.recsys.data` -- datasets in the MMRec convention (``userID, itemID, x_label`` +
  one ``.npy`` feature matrix per modality) and converters for the shared data sets;
* :mod:`itemrep.recsys.features` -- the image / text / concept feature builder;
* :mod:`itemrep.recsys.graph` -- the normalised user-item graph and the frozen item-item kNN graph;
* :mod:`itemrep.recsys.models` -- BPR-MF, LightGCN, VBPR and LIRDRec;
* :mod:`itemrep.recsys.trainer` -- training with early stopping on validation Recall@20;
* :mod:`itemrep.recsys.evaluator` -- full-ranking Recall / NDCG / Precision / MAP @K (and, with
  item clusters, distinct clusters and cluster-level Recall @K);
* :mod:`itemrep.recsys.clusters` -- near-duplicate clusters (an ``itemrep dedup`` output) mapped
  onto a dataset's items, and the cold-start split over them;
* :mod:`itemrep.recsys.rerank` -- de-duplicated and MMR top-K lists;
* :mod:`itemrep.recsys.cli` -- ``itemrep rec prepare`` and ``itemrep rec train``.
"""

from itemrep.recsys.data import RecDataset

__all__ = ["RecDataset"]
