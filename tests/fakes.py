"""Test doubles for time: a clock that only moves when something sleeps on it."""

import threading


class FakeClock:
    """A shared virtual clock: ``sleep`` advances it instead of waiting."""

    # 2026-03-15T12:34:56Z: a fixed "now", off the whole minute, so windows and Date checks
    # need no sleeping and nothing lines up by accident.
    def __init__(self, start: float = 1_773_578_096.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)
