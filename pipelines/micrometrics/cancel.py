"""Stop the requests of walks that are no longer wanted, while they wait for their turn.

When one stream fails, :class:`~.lanes.Lanes` stops the others; a walk waiting in the queue of
requests (``inflight``) would otherwise still take its turn, book a token and send its request
before seeing the stop: with 64 walks at 1 request/s, a minute of requests after the failure
was known. So a walk runs inside a :class:`CancelScope` (set for its thread), and a request
waiting for its turn in that thread gives up, unsent and without a token, once the scope is
cancelled. So do the client's waits (:func:`sleep`: a retry's backoff, a token's wait after
a 429; a request that had booked its token gives up unsent, and the bucket counts the token as
gone): otherwise the failure would be raised only once the longest of them had run out (up
to the 5 minutes a ``RateLimit-Retry-After`` may ask for), and a request on the wire is ended
(its connection shut: a SIGTERM waited for a server that trickled its headers, for ever). The
survey list's read-ahead has a scope of its own, cancelled when the sync fails. Threads outside
any scope (a sync without lanes) are never cancelled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Cancelled(Exception):  # noqa: N818 - what happened, as asyncio's CancelledError
    """A request given up because its walk was stopped: before it was sent, or on the wire
    (its connection shut, ``exchange``)."""


class CancelScope:
    """A cancel flag that wakes whoever waits on a registered condition when it is set. A scope
    made inside another (``parent``: the walks of a stream's slices, inside the stream's walk)
    is cancelled with it."""

    def __init__(self, parent: CancelScope | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: set[threading.Condition] = set()
        self._aborts: set[Callable[[], None]] = set()
        self._children: list[CancelScope] = []
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: CancelScope) -> None:
        with self._lock:
            if not self._event.is_set():
                self._children.append(child)
                return
        child.cancel()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            waiters = list(self._waiters)
            aborts = list(self._aborts)
            children, self._children = self._children, []
        for condition in waiters:
            with condition:
                condition.notify_all()
        for abort in aborts:
            abort()
        for child in children:
            child.cancel()

    @contextmanager
    def aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        """``abort()`` runs if the scope is cancelled during the block (at once if it is
        already): what ends a request on the wire (a read no condition wakes)."""
        with self._lock:
            self._aborts.add(abort)
            cancelled = self._event.is_set()
        if cancelled:
            abort()
        try:
            yield
        finally:
            with self._lock:
                self._aborts.discard(abort)

    def wakes(self, condition: threading.Condition) -> None:
        """``condition`` is notified when the scope is cancelled (its waiters check
        ``cancelled``). ``cancel`` takes its lock: a thread holding it may cancel only if it
        is re-entrant (``threading.Condition()``'s default)."""
        with self._lock:
            self._waiters.add(condition)

    @contextmanager
    def waking(self, condition: threading.Condition) -> Iterator[None]:
        """``wakes`` for the block only: a condition made for one wait is not kept for the
        scope's life."""
        self.wakes(condition)
        try:
            yield
        finally:
            with self._lock:
                self._waiters.discard(condition)


_current = threading.local()


@contextmanager
def scope(cancel_scope: CancelScope) -> Iterator[CancelScope]:
    """Runs the block with ``cancel_scope`` as this thread's scope."""
    outer = getattr(_current, "scope", None)
    _current.scope = cancel_scope
    try:
        yield cancel_scope
    finally:
        _current.scope = outer


def current() -> CancelScope | None:
    """This thread's scope, or None outside any."""
    return getattr(_current, "scope", None)


def sleep(seconds: float) -> None:
    """``time.sleep``, cut short when this thread's scope is cancelled: then raises
    :class:`Cancelled`. Outside any scope, a plain sleep."""
    stopping, seconds = current(), max(0.0, seconds)
    if stopping is None:
        time.sleep(seconds)
    elif stopping._event.wait(seconds) or stopping.cancelled:
        raise Cancelled
