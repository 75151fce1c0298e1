"""SIGTERM (a scheduler's timeout, ``docker stop``, systemd, Kubernetes) ends a sync as a failure
it reports, not as a silent death.

Python's default for SIGTERM ends the process at once: no error line, no ``--json`` line, no
outcome recorded for status (which went on showing the run before as the last one). dlt
intercepts SIGTERM inside its normalize and load steps (it lets the running jobs finish, then
raises; one that comes as the step's last job runs, it forgets); elsewhere (extract, between
rounds, the models) this handler raises :class:`Terminated` in the main thread, and after each
of dlt's steps :func:`raise_if_terminated` raises one dlt let go (a pipe every signal writes
to). Every way, the run ends as any failure does: exit 1, the error line, the JSON line, the
outcome recorded. What was extracted and committed is kept and loaded by the next sync, as
after a kill. A repeat within ``REPEAT_GRACE`` seconds is the same stop (``timeout`` around
``make`` delivers two); one after it ends the process at once (the crontab's ``timeout -k``
then KILLs a run stuck in its clean-up anyway).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dlt.common.exceptions import SignalReceivedException
from dlt.common.runtime import signals as dlt_signals

from pipelines.error_chain import causes

STOPPED = ("stopped by SIGTERM (a timeout, a stop or a shutdown); the next sync loads what this "
           "one committed and goes on from there")


class Terminated(BaseException):
    """The process received SIGTERM. Not an ``Exception``: raised wherever the main thread is,
    it must not be taken for an ordinary error by a handler on the way (a table lookup that
    treats errors as "not there", a retry), only by the command's own (``cli.run``,
    ``run.recorded``)."""

    def __init__(self) -> None:
        super().__init__(STOPPED)


# A stop often comes twice at once: `timeout` signals its child and then its process group, and
# make passes on a TERM it gets to the recipe it runs. Within this many seconds of the first, a
# TERM is that same stop; a later one forces the process to end.
REPEAT_GRACE = 5.0
_first_term: list[float | None] = [None]  # when the stop came (monotonic)


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    now = time.monotonic()
    if _first_term[0] is None:
        _first_term[0] = now
        if not dlt_signals.was_signal_received():
            raise Terminated
        # dlt, inside its step, took the first one (it stops once the running jobs end) and
        # hands over this repeat: an exception raised here would land in one of its jobs,
        # which it would take for a failed job and run again.
    if now - _first_term[0] < REPEAT_GRACE:
        return  # the same stop, sent twice
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)  # asked again: end now


@contextmanager
def terminated_as_failure() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only: Python runs
    signal handlers there; elsewhere, as when a host calls the command in a worker thread, the
    host's own handling stands)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Every signal also writes its number to this pipe (below Python's handlers, so whatever
    # dlt installs): dlt's normalize and load steps catch a TERM and may let it go unraised
    # (one that comes as the step's last job runs is cleared on the way out).
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _received[0] = read_end
    _first_term[0] = None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.set_wakeup_fd(previous_fd)
        _received[0] = None
        os.close(read_end)
        os.close(write_end)


_received: list[int | None] = [None]  # the read end of the signals' pipe, while handled


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` if a SIGTERM reached the process since the last call and was
    not raised: called after each of dlt's steps (the sync's rounds), where dlt may have
    caught it."""
    read_end = _received[0]
    if read_end is None:
        return
    try:
        received = os.read(read_end, 1024)
    except BlockingIOError:
        return
    if signal.SIGTERM in received:
        raise Terminated


def was_terminated(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a SIGTERM: ours, or dlt's from inside its steps."""
    return any(isinstance(link, Terminated)
               or (isinstance(link, SignalReceivedException)
                   and getattr(link, "signal_code", None) == signal.SIGTERM)
               for link in causes(exc))
