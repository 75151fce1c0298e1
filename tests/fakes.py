"""Test doubles for time: a clock that only moves when something sleeps on it."""

import threading


class FakeClock:
    """A shared virtual clock: ``sleep`` advances it instead of waiting.

    Threads sleep on it side by side, as on a real clock: a ``sleep(s)`` ends ``s`` after the
    sleeping thread last read the clock (a wait is computed from a reading: a leaky bucket's
    token, a backoff), and moves the clock there unless another sleeper already moved it
    further. So two threads that each wait one second from the same instant advance it by one
    second, not two. One thread alone advances it by exactly what it sleeps, as before.
    ``advance`` always adds.
    """

    # 2026-03-15T12:34:56Z: a fixed "now", off the whole minute, so windows and Date checks
    # need no sleeping and nothing lines up by accident.
    def __init__(self, start: float = 1_773_578_096.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self._read = threading.local()  # what this thread last read

    def __call__(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            since = getattr(self._read, "at", self.now)
            self.now = max(self.now, since + max(0.0, seconds))
            self._read.at = self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)
            self._read.at = self.now
