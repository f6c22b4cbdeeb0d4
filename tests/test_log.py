"""Log lines go to stderr, so a command's stdout carries only its results."""

from __future__ import annotations

import logging

from seqtune.log import setup_logging


def test_log_lines_go_to_stderr_not_stdout(capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging()
        logging.getLogger("seqtune.predict").info("loading the champion")
        out, err = capsys.readouterr()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "loading the champion" in err
    assert out == ""
