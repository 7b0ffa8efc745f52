"""Command-line interface: ``itemrep fit``, ``itemrep dedup`` and ``itemrep rec ...``."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="itemrep: FITRep deduplication and LIRDRec recommendation.")


def _mount_subapps() -> None:
    try:
        from itemrep.recsys.cli import app as rec_app
    except ImportError:  # recsys not built yet
        return
    app.add_typer(rec_app, name="rec", help="Multimodal recommendation (LIRDRec and baselines).")


_mount_subapps()

if __name__ == "__main__":
    app()
