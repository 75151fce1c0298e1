"""SIGTERM (a scheduler's timeout, ``docker stop``, systemd, Kubernetes) ends a sync as a failure
it reports, not as a silent death.

Python's default for SIGTERM ends the process at once: no error line, no ``--json`` line, no
outcome recorded for status (which went on showing the run before as the last one). dlt
intercepts SIGTERM inside its normalize and load steps (it lets the running jobs finish, then
raises; one that comes as the step's last job runs, it forgets); elsewhere (extract, between
rounds, the models) this handler raises :class:`Terminated` in the main thread, and after each
of dlt's steps :func:`raise_if_terminated` raises one dlt let go (a pipe every signal writes
to). A stop that lands while the main thread runs dlt's own code (rebuilding a schema, writing
state: an exception there leaves a schema without tables that dlt then saves, and every later
sync fails on it) waits until the thread is back in ours: a watcher hands it over then. Ctrl-C
(SIGINT) is handled the same way, as a ``KeyboardInterrupt``. Every way, the run ends as any
failure does: exit 1, the error line, the JSON line, the outcome recorded. What was extracted
and committed is kept and loaded by the next sync, as after a kill. A repeat within
``REPEAT_GRACE`` seconds is the same stop (``timeout`` around ``make`` delivers two); one after
it ends the process at once (the crontab's ``timeout -k`` then KILLs a run stuck in its clean-up
anyway).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
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
INTERRUPTED = ("interrupted (Ctrl-C, SIGINT); the next sync loads what this one committed and "
               "goes on from there")


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


def _stop(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _on_stop(signum: int, frame: FrameType | None) -> None:
    now = time.monotonic()
    if _handed_over[0]:  # the watcher's: the main thread was out of dlt's code a moment ago
        _handed_over[0] = False
        # Not while an exception is handled: a failing run's clean-up (closing the database)
        # would stop half done, and the failure's record is on its way (it drops the stop).
        if _deferred[0] is not None and not inside_dlt(frame) and sys.exc_info()[0] is None:
            _deferred[0] = None
            raise _stop(signum)
        return
    if _first_term[0] is None:
        _first_term[0] = now
        if dlt_signals.was_signal_received():
            # dlt, inside its step, took the first one (it stops once the running jobs end)
            # and hands over this repeat: an exception raised here would land in one of its
            # jobs, which it would take for a failed job and run again.
            return
        if not inside_dlt(frame):
            raise _stop(signum)
        _deferred[0] = signum
        threading.Thread(target=_hand_over, args=(signum,), name="stop-watcher",
                         daemon=True).start()
        return
    if now - _first_term[0] < REPEAT_GRACE:
        return  # the same stop, sent twice
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)  # asked again: end now


# A destination's SQL client (its connection: queries, connecting, a dataset's existence) may
# stop where the destination could fail it anyway (the network, the server), as dlt's code
# around it must take: an unreachable Google held a stop inside dlt's restore of the state, or
# its check that the dataset exists, for as long as BigQuery's client retries (10 minutes;
# cron's KILL then left no record). dlt's load step handles a stop itself.
def stoppable(module: str) -> bool:
    """Whether a frame of dlt's ``module`` is a destination's SQL client's."""
    return module.startswith("dlt.destinations.") and module.endswith("sql_client")


def inside_dlt(frame: FrameType | None) -> bool:
    """Whether the innermost frame of dlt's or ours (others are libraries either may call) is
    dlt's: our code that dlt calls (a resource's pages) may stop, dlt's own must not, but for
    a destination's SQL client (``stoppable``)."""
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        if module == "dlt" or module.startswith("dlt."):
            return not stoppable(module)
        if module.startswith("pipelines."):
            return False
        frame = frame.f_back
    return False


def _hand_over(signum: int) -> None:
    """Watches the main thread while a stop waits, and delivers the stop to it again once it
    is out of dlt's code (the handler checks again, where the thread really is)."""
    main = threading.main_thread().ident
    while _deferred[0] == signum and not _done.wait(HAND_OVER_POLL):
        frame = sys._current_frames().get(main)
        if frame is None:
            return
        if not inside_dlt(frame) and signal.getsignal(signum) is _on_stop:
            _handed_over[0] = True
            _thread.interrupt_main(signum)


HAND_OVER_POLL = 0.02  # seconds between looks at where a stopped main thread is
_deferred: list[int | None] = [None]  # a stop waiting for the main thread to leave dlt's code
_handed_over = [False]
_done = threading.Event()


@contextmanager
def terminated_as_failure() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``,
    out of dlt's own code (main thread only: Python runs signal handlers there; elsewhere, as
    when a host calls the command in a worker thread, the host's own handling stands)."""
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
    previous = {signum: signal.signal(signum, _on_stop)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    _received[0] = read_end
    _first_term[0] = _deferred[0] = None
    _handed_over[0] = False
    _done.clear()
    try:
        yield
    finally:
        _done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        _received[0] = None
        os.close(read_end)
        os.close(write_end)


_received: list[int | None] = [None]  # the read end of the signals' pipe, while handled


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` (``KeyboardInterrupt``) if a SIGTERM (SIGINT) reached the
    process since the last call and was not raised: called after each of dlt's steps (the
    sync's rounds), where dlt may have caught it, or it waited to leave dlt's code."""
    signum = _unraised()
    if signum is not None:
        raise _stop(signum)


def unraised_stop() -> str | None:
    """The name of a stop that came and was not raised (it waited in dlt's code as the run
    ended), taken: for a run that finished its work anyway to say so."""
    signum = _unraised()
    return None if signum is None else signal.Signals(signum).name


def drop_waiting_stop() -> None:
    """Forget a stop waiting to leave dlt's code: the run is failing already, and raised
    while that failure is recorded, it would keep the record from being written."""
    _deferred[0] = None


def _unraised() -> int | None:
    """The first stop among the signals received since the last look, else one waiting."""
    waiting, _deferred[0] = _deferred[0], None
    read_end = _received[0]
    if read_end is None:
        return waiting
    try:
        received = os.read(read_end, 1024)
    except BlockingIOError:
        received = b""
    stops = [signum for signum in received if signum in (signal.SIGTERM, signal.SIGINT)]
    return waiting if waiting is not None else (stops[0] if stops else None)


def was_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a Ctrl-C: Python's, or dlt's from inside a step."""
    return _stopped_by(exc, KeyboardInterrupt, signal.SIGINT)


def was_terminated(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a SIGTERM: ours, or dlt's from inside its steps."""
    return _stopped_by(exc, Terminated, signal.SIGTERM)


def _stopped_by(exc: BaseException, ours: type[BaseException], signum: int) -> bool:
    return any(isinstance(link, ours)
               or (isinstance(link, SignalReceivedException)
                   and getattr(link, "signal_code", None) == signum)
               for link in causes(exc))
