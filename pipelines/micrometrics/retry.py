"""Retry decisions: what is transient, and how long to back off."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from time import time

from .throttle import header_float

MAX_RETRY_AFTER = 300.0
DEFAULT_MAX_ATTEMPTS, DEFAULT_BACKOFF_SECONDS = 6, 0.5  # SOURCES__MICROMETRICS__ settings
# The 5xx no retry fixes: 501 not implemented, 505 HTTP version not supported.
FINAL_5XX = frozenset({501, 505})


def is_transient(status: int) -> bool:
    """Whether a status is worth another attempt (besides 429, which waits for the server's own
    hint instead): every 5xx but ``FINAL_5XX``, so a gateway's own too (Cloudflare's 520-524,
    507); 408 (a proxy timed the request out) and 425 (too early)."""
    return status in (408, 425) or (500 <= status <= 599 and status not in FINAL_5XX)


@dataclass
class RetryPolicy:
    """Capped exponential backoff with jitter.

    Args:
        max_attempts: Attempts per request for transient statuses (``is_transient``),
            connection errors, timeouts and bad JSON.
        max_throttled: 429s tolerated per request before giving up (each waits as told).
        base: First backoff in seconds; doubles per attempt.
        cap: Longest backoff in seconds.
        rng: Source of jitter; seeded in tests.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_throttled: int = 20
    base: float = DEFAULT_BACKOFF_SECONDS
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): half fixed, half
        random, so clients that failed together do not retry together."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


def retry_after_seconds(headers: Mapping[str, str], default: float,
                        now: Callable[[], float] = time) -> float:
    """Seconds a 429 asks us to wait: ``RateLimit-Retry-After`` (fractional), else the standard
    ``Retry-After`` (seconds or an HTTP date), else ``default``. Capped at five minutes.

    A date is the server's clock: it is counted from the response's own ``Date`` (this
    machine's clock, ``now``, only when there is none), so a server clock minutes ahead or
    behind (the API allows 15) does not turn a 2 s wait into five minutes or none. HTTP dates
    have whole seconds: a wait from one is rounded up to whole seconds, never short."""
    seconds = header_float(headers, "RateLimit-Retry-After")
    if seconds is None:
        seconds = header_float(headers, "Retry-After")
    if seconds is None and headers.get("Retry-After"):
        retry_at = http_timestamp(headers["Retry-After"])
        if retry_at is not None:
            sent_at = http_timestamp(headers.get("Date"))
            seconds = max(0.0, math.ceil(retry_at - (now() if sent_at is None else sent_at)))
    if seconds is None:
        seconds = default
    return min(seconds, MAX_RETRY_AFTER)


def http_timestamp(value: str | None) -> float | None:
    """An HTTP date (``Fri, 04 Sep 2020 13:35:05 GMT``) as UNIX seconds; None when absent or not
    a date."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
