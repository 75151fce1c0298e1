"""Server-side leaky bucket per API key, with the vendor's RateLimit-* headers."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

# Tolerates float noise so that waiting exactly Retry-After seconds is always enough.
_EPS = 1e-9


@dataclass(frozen=True)
class Decision:
    """Outcome of one request against the bucket."""

    admitted: bool
    rate: float
    remaining: int
    retry_after: float

    def headers(self) -> dict[str, str]:
        """``RateLimit-Rate``, ``RateLimit-Burst-Remaining``, ``RateLimit-Retry-After``."""
        return {
            "RateLimit-Rate": f"{self.rate:g}",
            "RateLimit-Burst-Remaining": str(self.remaining),
            "RateLimit-Retry-After": f"{self.retry_after:.3f}",
        }


class LeakyBucket:
    """Buckets of capacity ``burst`` leaking ``rate`` tokens per second, one per API key.

    Args:
        rate: Tokens leaked per second (continuous).
        burst: Capacity; a request is admitted if ``level + 1 <= burst``.
    """

    def __init__(self, rate: float = 1.0, burst: int = 10) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}  # key -> (level, at)

    def _level(self, key: str, now: float) -> float:
        level, at = self._levels.get(key, (0.0, now))
        return max(0.0, level - max(0.0, now - at) * self.rate)

    def _decision(self, admitted: bool, level: float) -> Decision:
        fits = level + 1 <= self.burst + _EPS
        wait = 0.0 if fits else (level + 1 - self.burst) / self.rate
        return Decision(
            admitted=admitted,
            rate=self.rate,
            remaining=max(0, math.floor(self.burst - level + _EPS)),
            # Rounded up to the millisecond: sleeping the advertised time always suffices.
            retry_after=0.0 if admitted else math.ceil(wait * 1000 - _EPS) / 1000,
        )

    def admit(self, key: str, now: float) -> Decision:
        """Adds one token if it fits; a refused request adds nothing."""
        with self._lock:
            level = self._level(key, now)
            # Threads read the clock before the lock: one that read it earlier may come in
            # later. The stamp never goes back, or the same leak would count twice.
            stamp = max(now, self._levels.get(key, (0.0, now))[1])
            if level + 1 <= self.burst + _EPS:
                level += 1
                self._levels[key] = (level, stamp)
                return self._decision(True, level)
            self._levels[key] = (level, stamp)
            return self._decision(False, level)

    def peek(self, key: str, now: float) -> Decision:
        """The current state without adding a token (for responses that do not count)."""
        with self._lock:
            level = self._level(key, now)
            return self._decision(level + 1 <= self.burst + _EPS, level)
