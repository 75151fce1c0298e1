"""The commands' log lines on stderr, without touching the host's logging.

The sync and status commands run as processes and in-process (an Airflow task, a notebook, a
test): configuring the root logger there would remove and close the host's handlers. So a
command gives its own loggers a stderr handler for the length of the run, and puts their
levels and propagation back afterwards.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def command_logging(level: int, *names: str) -> Iterator[None]:
    """Messages of ``names`` (and below) at ``level`` or above go to ``sys.stderr`` as they
    are, for the block; the loggers are as they were afterwards. Not for dlt's logger: dlt
    gives it a handler of its own when it sets logging up (lines would come twice)."""
    handler = logging.StreamHandler(sys.stderr)  # the stderr of this moment (tests swap it)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # not twice, where the host logs to stderr too
    try:
        yield
    finally:
        for logger, level_before, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level_before)
            logger.propagate = propagate


class OneLine(logging.Filter):
    """dlt's own log lines as one line each, without their tracebacks: a failed load job logs
    its traceback at ERROR, 70 to 340 lines on stderr with ``--quiet`` too, and on a sync that
    ended well once dlt retried the job. The command's error line names the cause;
    ``--verbose`` keeps them whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = [line for line in record.getMessage().splitlines() if line.strip()]
        text = lines[0] if lines else ""
        if "Traceback (most recent call last):" in text and len(lines) > 1:
            # dlt puts a job's formatted traceback in the message: its last line is the error.
            text = text.replace("Traceback (most recent call last):", lines[-1].strip())
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


@contextmanager
def dlt_lines_folded(verbose: bool) -> Iterator[None]:
    """``OneLine`` on dlt's logger for the block, unless ``verbose``."""
    if verbose:
        yield
        return
    logger, folding = logging.getLogger("dlt"), OneLine()
    logger.addFilter(folding)
    try:
        yield
    finally:
        logger.removeFilter(folding)
