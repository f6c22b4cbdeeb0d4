"""A context manager that puts this process's logging back as it found it.

Tests that call code which reconfigures logging (an in-process `bentoml.serve`, seqtune's
own `setup_logging`) use it so later tests still see seqtune's log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def restored_logging() -> Iterator[None]:
    """Restore every logger's `disabled` flag and the root logger's handlers and level on exit.

    `disabled` matters because BentoML applies its logging config with
    `disable_existing_loggers=True`, which silences every logger already created (all of
    `seqtune.*`) for the rest of the pytest process."""
    loggers = {name: lg.disabled for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    try:
        yield
    finally:
        for name, disabled in loggers.items():
            logging.getLogger(name).disabled = disabled
        logging.root.handlers[:] = root_handlers
        logging.root.setLevel(root_level)
