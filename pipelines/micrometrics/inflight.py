"""How many requests may be in flight at once, and which waiting request goes out next.

Requests take turns in the order they asked: one at a time holds the turn, waits for a free
slot (``limit`` in flight), books its token from the leaky bucket (which may sleep), then hands
the turn on and goes out. So a token is never booked for a request without a slot: a request
held back after booking would reach the server later than its token allowed for (see
``throttle.DEPARTURE_SKEW``). And a slot is held only while a request is on the wire, not while
it waits for a token: measured at 1 request/s, 1.5 s latency, 5 surveys, 4 in flight, a sync
took 1.35x the rate-limit floor when slots were held through the token's wait, 1.27x so.
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
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._booking = False  # a request holds the turn
        self._in_flight = 0
        self.limit = limit

    def wait_for_waiting(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` requests wait for their turn (for tests); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._waiting) >= count, timeout)

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._changed:
            self._limit = limit
            self._changed.notify_all()

    @contextmanager
    def slot(self, book: Callable[[], float]) -> Iterator[float]:
        """Waits for this request's turn and a free slot, calls ``book`` (the token; it may
        sleep), and holds the slot for the block, which sends the request. Yields what
        ``book`` returned. Raises ``cancel.Cancelled``, with no token booked, if this thread's
        cancel scope is cancelled before the request's turn comes."""
        me = object()
        stopping = cancel.current()
        with self._changed:
            if stopping is not None:
                stopping.wakes(self._changed)
            self._waiting.append(me)
            self._changed.notify_all()  # one more waiting (see wait_for_waiting)
            self._changed.wait_for(lambda: (stopping is not None and stopping.cancelled) or (
                self._waiting[0] is me and not self._booking and self._in_flight < self._limit))
            if stopping is not None and stopping.cancelled:
                self._waiting.remove(me)
                self._changed.notify_all()  # the next in line may have been waiting for me
                raise cancel.Cancelled
            self._waiting.popleft()
            self._booking = True
            self._in_flight += 1
        try:
            try:
                booked = book()
            finally:
                with self._changed:
                    self._booking = False
                    self._changed.notify_all()
            yield booked
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()
