"""FITRep near-duplicate deduplication: the stages (slot encoding, attention fusion, SPDR, FBC),
the orchestrator and the persistent index.

Imports point one way: ``itemrep.cli`` -> ``itemrep.dedup.pipeline`` / ``itemrep.dedup.index`` ->
the stages of this package -> ``itemrep.concepts`` / ``itemrep.encoders`` -> infrastructure
(``itemrep.catalog``, ``itemrep.errors``, ``itemrep.images``, ``itemrep.cache``, ``itemrep.runinfo``).
"""
