"""Thread-safe request counters, read by tests and GET /_sandbox/stats."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from typing import Any


class Stats:
    """Counters of the /api traffic the sandbox has seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every request
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zeroes every counter."""
        with self._lock:
            self._data: dict[str, Any] = {
                "requests": 0,
                "cursor_requests": 0,
                "by_status": Counter(),
                "throttled": 0,
                "faults": Counter(),
                "pages": 0,
                "pages_with_data": 0,
                "empty_pages": 0,
                "records_served": 0,
                "by_endpoint": Counter(),
                "max_in_flight": self._in_flight,
            }

    def request(self, endpoint: str, cursor: bool = False) -> None:
        """Counts an incoming /api request against its endpoint (resource) name, and whether
        it carried a non-empty ``cursor``."""
        with self._lock:
            self._data["requests"] += 1
            self._data["cursor_requests"] += bool(cursor)
            self._data["by_endpoint"][endpoint] += 1
            self._in_flight += 1
            self._data["max_in_flight"] = max(self._data["max_in_flight"], self._in_flight)
            self._arrived.notify_all()

    def answered(self) -> None:
        """A request counted by ``request`` is answered (or its client went away)."""
        with self._lock:
            self._in_flight -= 1

    def wait_for_in_flight(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` requests are in flight at once or ``timeout`` seconds passed;
        returns whether they were. Each arrival wakes it."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._in_flight >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` requests have arrived (since the last reset) or ``timeout``
        seconds passed; returns whether they arrived. No polling: each request wakes it."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._data["requests"] >= count, timeout)

    def wait_for_endpoint(self, endpoint: str, count: int, timeout: float) -> bool:
        """Like ``wait_for_requests``, counting only the requests to ``endpoint``."""
        with self._arrived:
            return self._arrived.wait_for(
                lambda: self._data["by_endpoint"][endpoint] >= count, timeout)

    def status(self, code: int) -> None:
        """Counts a response status actually sent."""
        with self._lock:
            self._data["by_status"][code] += 1

    def throttled(self) -> None:
        """Counts a real 429 from the bucket."""
        with self._lock:
            self._data["throttled"] += 1

    def fault(self, kind: str) -> None:
        """Counts an injected fault."""
        with self._lock:
            self._data["faults"][kind] += 1

    def page(self, records: int) -> None:
        """Counts a 200 index page and the records on it."""
        with self._lock:
            self._data["pages"] += 1
            self._data["pages_with_data" if records else "empty_pages"] += 1
            self._data["records_served"] += records

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict copy (``by_status`` keyed by int status code)."""
        with self._lock:
            out = copy.deepcopy(self._data)
            out["in_flight"] = self._in_flight
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in out.items()}
