"""Seeded fault injection: which failure (if any) an admitted request suffers."""

from __future__ import annotations

import random
import threading

HTTP_500 = "http_500"
HTTP_503 = "http_503"
HTTP_502_HTML = "http_502_html"
DROPPED = "dropped_connection"
TRUNCATED = "truncated_body"
SPURIOUS_429 = "spurious_429"
FAULT_KINDS = (HTTP_500, HTTP_503, HTTP_502_HTML, DROPPED, TRUNCATED, SPURIOUS_429)

PROXY_502_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class FaultInjector:
    """Draws a fault with probability ``rate``, uniformly among :data:`FAULT_KINDS`.

    Args:
        seed: RNG seed, so a test run sees the same sequence of faults.
        rate: Probability in [0, 1] that a request fails.
    """

    def __init__(self, seed: int, rate: float = 0.0) -> None:
        self._rng = random.Random(f"{seed}:faults")
        self._lock = threading.Lock()
        self.rate = rate

    @property
    def rate(self) -> float:
        """Current fault probability."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {value}")
        self._rate = float(value)

    def draw(self) -> str | None:
        """A fault kind for the next request, or None."""
        with self._lock:
            if self._rate <= 0 or self._rng.random() >= self._rate:
                return None
            return self._rng.choice(FAULT_KINDS)
