"""The ``ConceptExtractor`` interface every CHIE back-end implements (FITRep Sec. 3.1).

A back-end turns catalog items into :class:`~itemrep.concepts.schema.ConceptHierarchy` objects.
Subclasses implement :meth:`ConceptExtractor.extract_one` (or override :meth:`extract` for batching
or concurrency). Failures are per item: a hierarchy whose ``error`` is set, never an exception that
stops the run.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from itemrep.catalog import Item
from itemrep.concepts.schema import ConceptHierarchy


class ConceptExtractor(ABC):
    """Base class of concept extractors.

    Class attributes:
        name: short back-end name (``"rules"``, ``"openai"``, ``"hf"``, ``"image"``).
        version: bumped whenever the output for the same input may change (it keys caches).
        parallel_safe: extraction may run in worker processes (see the attribute).

    After :meth:`extract`, ``stats_`` holds counters (``items``, ``failures``, ``seconds`` and
    back-end specific ones such as ``requests``, ``cache_hits``, ``tokens``) for ``run.json``.
    """

    name: str = "base"
    version: str = "0"
    #: True when :meth:`extract` is pure CPU work that can run in forked worker processes (the
    #: pipeline then extracts chunks on every core); network back-ends keep their own concurrency.
    parallel_safe: bool = False

    def __init__(self) -> None:
        self.stats_: dict[str, float] = {}

    @property
    def identifier(self) -> str:
        """``"name/version"``, recorded in every hierarchy's ``extractor`` field."""
        return f"{self.name}/{self.version}"

    @abstractmethod
    def extract_one(self, item: Item) -> ConceptHierarchy:
        """Extract the concept hierarchy of one item. May raise; :meth:`extract` records it."""

    def extract(
        self,
        items: Sequence[Item],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[ConceptHierarchy]:
        """Extract hierarchies for ``items``, in order; one output per input, always.

        Args:
            items: catalog items.
            progress: called with the number of items just finished (for a progress bar).

        Returns:
            ``len(items)`` hierarchies; an item whose extraction raised gets an empty hierarchy
            with ``error`` set to the exception message.
        """
        t0 = time.perf_counter()
        out: list[ConceptHierarchy] = []
        failures = 0
        for item in items:
            try:
                h = self.extract_one(item)
            except Exception as e:  # noqa: BLE001 - per-item failure, recorded and reported
                failures += 1
                h = ConceptHierarchy(item_id=item.item_id, extractor=self.identifier, error=f"{type(e).__name__}: {e}")
            out.append(h)
            if progress is not None:
                progress(1)
        self.stats_ = {"items": len(out), "failures": failures, "seconds": time.perf_counter() - t0}
        return out
