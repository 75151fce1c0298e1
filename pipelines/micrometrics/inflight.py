"""How many requests may be in flight at once, and which waiting request goes out next.

Requests take turns: one at a time holds the turn, waits for a free slot (``limit`` in
flight), waits until a token of the leaky bucket is free (``ready``/``pause``), books it, then
hands the turn on and goes out. So a token is never booked for a request without a slot: a
request held back after booking would reach the server later than its token allowed for (see
``throttle.DEPARTURE_SKEW``). And a slot is held only while a request is on the wire, not while
it waits for a token: measured at 1 request/s, 1.5 s latency, 5 surveys, 4 in flight, a sync
took 1.35x the rate-limit floor when slots were held through the token's wait, 1.27x so.

Which request goes: the one whose chain of pages has the most pages left, as far as its walk
can tell (``ranked``, from ``pages_left``), then the first to ask; a request whose chain can
tell nothing (a stream's first page, records in no order, not a chain at all) goes before
those that can, in the order they asked. With nothing known, that is first come, first served,
as it always was. A stream's pages are a chain, each asked for only once the one before is in:
once the others are done, the longest chain paces the sync alone at one answer's latency a
page, so its pages go first while there are others to fill the tokens it leaves
(``benchmarks.latency_orders``). The turn's holder books its token only once it is free, and
then only if no request that should go first came while it waited: the token goes, at the
instant it frees, to the request that should have it (booked at once, a request that came a
moment later would wait a whole token more, a page of a chain that paces the sync).

Each waiting request sleeps on a condition of its own (sharing one lock), and a change wakes only
the request that may go: with all of them on one condition, every change woke every waiting
walk (up to ``lanes.MAX_WALKS``) to find it was not its turn (``benchmarks.inflight_wakeups``:
0.14x the CPU with 64 walks waiting).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from . import cancel

Left = Callable[[], "float | None"]
T = TypeVar("T")
_END = object()


class _Standing(threading.local):
    left: Left | None = None


_standing = _Standing()


def current_left() -> float | None:
    """The pages left of the chain this thread's request belongs to (``ranked``), or None."""
    return _standing.left() if _standing.left is not None else None


def ranked(pages: Iterator[T], left: Left) -> Iterator[T]:
    """``pages``, whose requests (made as each next page is asked for) belong to a chain with
    ``left()`` pages left (None: unknown), called as each request starts waiting."""
    try:
        while True:
            before, _standing.left = _standing.left, left
            try:
                page = next(pages, _END)
            finally:
                _standing.left = before
            if page is _END:
                return
            yield page
    finally:
        if (close := getattr(pages, "close", None)) is not None:
            close()  # given up part-way (a cut, a failure): its request ends with it


# A waiting request: its place (``_key``: unique, so a tuple compares on it alone) and the
# condition it sleeps on.
_Turn = tuple[tuple[int, float, int], threading.Condition]


def _key(left: float | None, seq: int) -> tuple[int, float, int]:
    """Unknown first (first come, first served among them), then most pages left."""
    return (0, 0.0, seq) if left is None else (1, -left, seq)


class InFlight:
    """At most ``limit`` requests in flight; which waiting request goes: see the module
    docstring.

    Args:
        limit: Requests in flight at once (``MAX_IN_FLIGHT``).
    """

    def __init__(self, limit: int) -> None:
        # Re-entrant: a cancel scope notifies a waiter's condition under this lock (``wakes``).
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)  # for wait_for_waiting only
        self._waiting: list[_Turn] = []
        self._asked = itertools.count()
        self._booking = False  # a request holds the turn
        self._in_flight = 0
        self.limit = limit

    def wait_for_waiting(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` requests wait for their turn (for tests); False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._waiting) >= count, timeout)

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._lock:
            self._limit = limit
            self._wake_head()

    def _head(self) -> _Turn | None:
        return min(self._waiting) if self._waiting else None

    def _wake_head(self) -> None:
        """Wakes the request that should go next (call with the lock held): the only one a
        freed slot, an ended turn or a raised limit can let go."""
        if (head := self._head()) is not None:
            head[1].notify()

    def _may_go(self, turn: _Turn) -> bool:
        return (not self._booking and self._in_flight < self._limit
                and self._head() is turn)

    def _give_up(self, turn: _Turn) -> None:
        self._waiting.remove(turn)
        self._wake_head()  # the next in line may go in its place

    def _wait_for_turn(self, turn: _Turn, stopping: cancel.CancelScope | None) -> None:
        """Waits (lock held) until ``turn`` may go, then takes the turn."""
        if stopping is None:
            turn[1].wait_for(lambda: self._may_go(turn))
        else:
            with stopping.waking(turn[1]):
                turn[1].wait_for(lambda: stopping.cancelled or self._may_go(turn))
            if stopping.cancelled:
                self._give_up(turn)
                raise cancel.Cancelled
        self._booking = True

    @contextmanager
    def slot(self, book: Callable[[], float], ready: Callable[[], float] | None = None,
             pause: Callable[[float], None] | None = None) -> Iterator[float]:
        """Waits for this request's turn and a free slot, for a free token (``ready``: the
        seconds until one is, slept with ``pause``), calls ``book`` (the token; it may sleep
        what is left), and holds the slot for the block, which sends the request. Yields the
        seconds waited for the token. Raises ``cancel.Cancelled``, with no token booked, if
        this thread's cancel scope is cancelled before the request's token is booked; and,
        from ``book``, if it is cancelled while the request sleeps for it (the bucket counts
        it as gone)."""
        stopping = cancel.current()
        paused = 0.0
        with self._lock:
            turn = (_key(current_left(), next(self._asked)), threading.Condition(self._lock))
            self._waiting.append(turn)
            self._arrived.notify_all()
            self._wait_for_turn(turn, stopping)
        while ready is not None and pause is not None and (wait := ready()) > 0:
            try:
                pause(wait)
            except BaseException:  # stopped (``cancel.Cancelled``), or any other way out
                with self._lock:
                    self._booking = False
                    self._give_up(turn)
                raise
            paused += wait
            with self._lock:
                if self._head() is turn:
                    break  # the token is this one's (booked below, with what is left of it)
                # A request that should go first came while this one waited: the token is
                # its; this one waits for its turn again.
                self._booking = False
                self._wake_head()
                self._wait_for_turn(turn, stopping)
        with self._lock:
            self._waiting.remove(turn)
            self._in_flight += 1
        try:
            try:
                booked = book()
            finally:
                with self._lock:
                    self._booking = False
                    self._wake_head()
            yield paused + booked
        finally:
            with self._lock:
                self._in_flight -= 1
                self._wake_head()
