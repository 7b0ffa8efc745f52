"""itemrep: white-box multimodal item representations.

* FITRep near-duplicate deduplication (Zhang et al. 2025, arXiv 2511.21389): CHIE concept
  extraction, attention-guided slot fusion, SPDR reduction, FBC clustering.
* LIRDRec multimodal recommendation (Zhou et al. 2025, arXiv 2505.04960), in :mod:`itemrep.recsys`.
"""

__version__ = "0.1.0"
