"""How many requests may be in flight at once, and which waiting request goes out next.

Requests take turns in the order they asked: one at a time holds the turn, waits for a free
slot (``limit`` in flight), books its token from the leaky bucket (which may sleep), then hands
the turn on and goes out. So a token is never booked for a request without a slot: a request
held back after booking would reach the server later than its token allowed for (see
``throttle.DEPARTURE_SKEW``). And a slot is held only while a request is on the wire, not while
it waits for a token: measured at 1 request/s, 1.5 s latency, 5 surveys, 4 in flight, a sync
took 1.35x the rate-limit floor when slots were held through the token's wait, 1.27x so.

Each waiting request sleeps on a condition of its own (sharing one lock), and a change wakes only
the request at the head of the queue, the one that may go: with all of them on one condition,
every change woke every waiting walk (up to ``lanes.MAX_WALKS``) to find it was not its turn
(``benchmarks.inflight_wakeups``: 0.08x the CPU with 64 walks waiting).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import cancel


class InFlight:
    """At most ``limit`` requests in flight; waiting requests go in the order they asked.

    Args:
        limit: Requests in flight at once (``MAX_IN_FLIGHT``).
    """

    def __init__(self, limit: int) -> None:
        # Re-entrant: a cancel scope notifies a waiter's condition under this lock (``wakes``).
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)  # for wait_for_waiting only
        self._waiting: deque[threading.Condition] = deque()  # one condition per request
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

    def _wake_head(self) -> None:
        """Wakes the request at the head of the queue (call with the lock held): the only one
        a freed slot, an ended booking or a raised limit can let go."""
        if self._waiting:
            self._waiting[0].notify()

    def _may_go(self, turn: threading.Condition) -> bool:
        return (self._waiting[0] is turn and not self._booking
                and self._in_flight < self._limit)

    @contextmanager
    def slot(self, book: Callable[[], float]) -> Iterator[float]:
        """Waits for this request's turn and a free slot, calls ``book`` (the token; it may
        sleep), and holds the slot for the block, which sends the request. Yields what
        ``book`` returned. Raises ``cancel.Cancelled``, with no token booked, if this thread's
        cancel scope is cancelled before the request's turn comes; and, from ``book``, if it is
        cancelled while the request waits for its token (the bucket counts it as gone)."""
        stopping = cancel.current()
        turn = threading.Condition(self._lock)
        with self._lock:
            self._waiting.append(turn)
            self._arrived.notify_all()
            if stopping is None:
                turn.wait_for(lambda: self._may_go(turn))
            else:
                with stopping.waking(turn):
                    turn.wait_for(lambda: stopping.cancelled or self._may_go(turn))
                if stopping.cancelled:
                    was_head = self._waiting[0] is turn
                    self._waiting.remove(turn)
                    if was_head:
                        self._wake_head()  # the next in line may go in its place
                    raise cancel.Cancelled
            self._waiting.popleft()
            self._booking = True
            self._in_flight += 1
        try:
            try:
                booked = book()
            finally:
                with self._lock:
                    self._booking = False
                    self._wake_head()
            yield booked
        finally:
            with self._lock:
                self._in_flight -= 1
                self._wake_head()
