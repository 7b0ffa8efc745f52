"""Errors raised by itemrep and the per-item failure record.

Whole-input problems (a missing file, a missing column, duplicate ids) raise :class:`ItemrepError`
subclasses whose message names the file, line or column and says what to do. Problems with a single
item (an unreadable image, an LLM timeout) never raise: they are recorded as :class:`ItemFailure`
rows, the item keeps going with what remains, and the failures are reported in ``run.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class ItemrepError(Exception):
    """Base class of every error itemrep raises on purpose (message is user-facing)."""


class CatalogError(ItemrepError, ValueError):
    """The catalog file cannot be used as a whole (missing, unreadable, missing column, bad ids)."""


class ModelDirError(ItemrepError, ValueError):
    """A model directory is missing, incomplete, or was written by an incompatible version."""


@dataclass(frozen=True)
class ItemFailure:
    """One recorded per-item failure.

    Attributes:
        item_id: the item's id (string).
        stage: pipeline stage, e.g. ``"catalog"``, ``"image"``, ``"ocr"``, ``"extract"``.
        field: the column or input concerned, e.g. ``"image"`` or ``"phash"``.
        message: what went wrong, human-readable.
        row: 1-based data row in the catalog file (line number minus the header for CSV), if known.
    """

    item_id: str
    stage: str
    field: str
    message: str
    row: int | None = None

    def to_dict(self) -> dict:
        """Plain dict for JSON output."""
        return asdict(self)


class Interrupted(ItemrepError):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM; the message says what was kept.

    Attributes:
        signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
        exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), the shell convention.
    """

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
