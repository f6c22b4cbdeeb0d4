"""Log lines go to stderr, so a command's stdout carries only its results."""

from __future__ import annotations

import logging

from seqtune.log import setup_logging
from tests.logging_state import restored_logging


def test_log_lines_go_to_stderr_not_stdout(capsys):
    with restored_logging():
        setup_logging()
        logging.getLogger("seqtune.serving.predict").info("loading the champion")
        out, err = capsys.readouterr()
    assert "loading the champion" in err
    assert out == ""
