"""Logging setup shared by the CLI and the stages (rich handler, one format).

    seqtune --verbose data smiles2iupac
"""

from __future__ import annotations

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("SEQTUNE_LOG", "INFO").upper(), logging.INFO)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        # stderr: rich's default console is stdout, where commands like `seqtune predict`
        # write their results (JSON lines a user pipes on).
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("urllib3", "filelock", "httpx", "alembic", "mlflow.store", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
