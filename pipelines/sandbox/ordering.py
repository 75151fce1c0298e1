"""Chosen completion orders for concurrent requests: a client's result must not depend on them.

``Reorder`` holds admitted API requests in groups and lets the held requests of a group answer
one at a time, in a chosen order: ``arrival``, ``reverse`` or ``random`` (a permutation drawn
from a seeded generator, group after group). A group starts once ``group`` requests are held, or
once ``grace`` seconds passed without a new arrival (a client with fewer requests in flight
than ``group``; ``None`` waits for a full group, however long: requests are then held until
``stop``). The next request of a group answers only after the one before it has sent its whole
response, so the order is what the client sees. No polling: every arrival and every answer
wakes the waiting requests.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque

ORDERS = ("arrival", "reverse", "random")


class Reorder:
    """See the module docstring. ``groups`` lists the sizes of the groups released so far."""

    def __init__(self, group: int, order: str = "reverse", seed: int = 0,
                 grace: float | None = 0.05) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if group < 1 or (grace is not None and grace < 0):
            raise ValueError("group must be >= 1 and grace >= 0 (or None)")
        self.group, self.order, self.grace = group, order, grace
        self.groups: list[int] = []
        self._rng = random.Random(seed)
        self._changed = threading.Condition()
        self._held: list[object] = []  # arrived, not in a released group yet (arrival order)
        self._turns: deque[object] = deque()  # the released group's requests still to answer
        self._current: object | None = None  # the request answering now
        self._last_arrival = 0.0
        self._stopped = False

    def enter(self) -> object:
        """Blocks the calling request until its turn; returns its ticket for ``leave``."""
        ticket = object()
        with self._changed:
            self._held.append(ticket)
            self._last_arrival = time.monotonic()
            self._changed.notify_all()
            while not self._stopped and self._current is not ticket:
                if self._current is None and self._held:
                    if len(self._held) >= self.group:
                        self._release()
                        continue
                    if self.grace is not None:
                        remaining = self._last_arrival + self.grace - time.monotonic()
                        if remaining <= 0:
                            self._release()
                            continue
                        self._changed.wait(remaining)
                        continue
                self._changed.wait()
            if ticket in self._held:  # stopped before its turn
                self._held.remove(ticket)
        return ticket

    def leave(self, ticket: object) -> None:
        """The request of ``ticket`` has answered: the next of its group may."""
        with self._changed:
            if self._current is ticket:
                self._current = self._turns.popleft() if self._turns else None
                self._changed.notify_all()

    def stop(self) -> None:
        """Lets every held request answer at once, and holds no more."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def _release(self) -> None:
        group, self._held = self._held[:self.group], self._held[self.group:]
        if self.order == "reverse":
            group.reverse()
        elif self.order == "random":
            self._rng.shuffle(group)
        self.groups.append(len(group))
        self._turns = deque(group)
        self._current = self._turns.popleft()
        self._changed.notify_all()
