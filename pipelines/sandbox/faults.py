"""Fault injection: seeded random faults, and scripted answers queued by tests."""

from __future__ import annotations

import random
import threading
from collections import deque

HTTP_500 = "http_500"
HTTP_503 = "http_503"
HTTP_502_HTML = "http_502_html"
DROPPED = "dropped_connection"
TRUNCATED = "truncated_body"
SPURIOUS_429 = "spurious_429"
FAULT_KINDS = (HTTP_500, HTTP_503, HTTP_502_HTML, DROPPED, TRUNCATED, SPURIOUS_429)
# Only ever scripted (never drawn at random), so seeded fault sequences stay unchanged.
HTML_200 = "html_200"
EMPTY_200 = "empty_200"
REJECT_CURSOR = "reject_cursor"
HTTP_404 = "http_404"
# How else a server may refuse a cursor it no longer keeps (the vendor documents none): gone,
# not found, unprocessable. Like reject_cursor, they apply only to requests with a cursor.
EXPIRED_CURSOR_STATUSES = {"expire_cursor_404": 404, "expire_cursor_410": 410,
                           "expire_cursor_422": 422}
# A normal page whose Next-Cursor is the cursor the request carried: a server paging in a loop
# (the same page for ever). Also only for requests with a cursor.
REPEAT_CURSOR = "repeat_cursor"
CURSOR_KINDS = (REJECT_CURSOR, *EXPIRED_CURSOR_STATUSES, REPEAT_CURSOR)
# A normal page, reshaped on the wire as a server the vendor documents no further may send it:
# its records' ids as strings (a survey id "237" for 237), or its first record twice.
IDS_AS_TEXT = "ids_as_text"
REPEAT_RECORD = "repeat_record"
RESHAPE_KINDS = (IDS_AS_TEXT, REPEAT_RECORD)
# Statuses a gateway or load balancer in front of the API answers (JSON error body): a client
# timeout, Cloudflare's "origin timed out", and one no retry fixes.
GATEWAY_STATUSES = {"http_408": 408, "http_524": 524, "http_501": 501}
# A 429 as a gateway in front of the API may send it: the standard Retry-After as an HTTP date
# (RETRY_AFTER_DATE_SECONDS on the sandbox's clock), none of the API's RateLimit-* headers.
RETRY_AFTER_DATE = "retry_after_date"
RETRY_AFTER_DATE_SECONDS = 2
# A normal page whose body comes a piece at a time, TRICKLE_SECONDS apart on the sandbox's
# clock (a proxy or a stalled server that keeps a connection alive with a byte now and then):
# every read gets data well within any read timeout, and the body takes ten minutes whole.
TRICKLED_BODY = "trickled_body"
TRICKLE_PIECES, TRICKLE_SECONDS = 10, 60.0
# The same for the status line and headers (the body then at once): a read of the response's
# head gets bytes now and then, each well within any read timeout.
TRICKLED_HEADERS = "trickled_headers"
# A normal page's JSON sent as it is under ``Content-Encoding: gzip`` (a proxy or CDN that
# labels a body it did not compress, or mangles one it did): a body no gzip decoder reads.
MISLABELLED_GZIP = "mislabelled_gzip"
SCRIPT_KINDS = FAULT_KINDS + (HTML_200, EMPTY_200, HTTP_404, *CURSOR_KINDS,
                              *GATEWAY_STATUSES, *RESHAPE_KINDS, RETRY_AFTER_DATE,
                              TRICKLED_BODY, TRICKLED_HEADERS, MISLABELLED_GZIP)
SCRIPT_ENDPOINTS = ("devices", "surveys", "survey_responses")

PROXY_502_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

# What a captive portal / SSO proxy in front of the API answers: 200 OK, but a login page.
LOGIN_200_HTML = (
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
    "<title>Sign in - Corporate Access Gateway</title></head>\n<body>\n"
    "<h1>Please sign in to continue</h1>\n"
    "<form method=\"post\" action=\"/auth/login\">\n"
    "<input name=\"username\" type=\"text\">\n<input name=\"password\" type=\"password\">\n"
    "<button type=\"submit\">Sign in</button>\n</form>\n</body>\n</html>\n"
)


def reshaped(kind: str, records: list) -> list:
    """An index page's ``records`` as ``kind`` (one of :data:`RESHAPE_KINDS`) sends them."""
    if kind == IDS_AS_TEXT:
        return [{**r, "id": str(r["id"])} if isinstance(r, dict) and "id" in r else r
                for r in records]
    return records + records[:1]


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


class Script:
    """A FIFO queue of scripted answers that override normal handling of admitted requests.

    Each entry answers the next ``count`` requests it applies to: any request, or only those
    of one endpoint; a ``reject_cursor`` or ``expire_cursor_*`` entry applies only to requests
    with a non-empty ``cursor``. A request takes the oldest entry that applies to it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()  # [kind, remaining, endpoint or None]

    def add(self, kind: str, count: int = 1, endpoint: str | None = None) -> None:
        """Queues ``kind`` for the next ``count`` matching requests.

        Raises:
            ValueError: Unknown kind or endpoint, or a negative / non-integer count.
        """
        if kind not in SCRIPT_KINDS:
            raise ValueError(f"kind must be one of {SCRIPT_KINDS}, got {kind!r}")
        if endpoint is not None and endpoint not in SCRIPT_ENDPOINTS:
            raise ValueError(
                f"endpoint must be one of {SCRIPT_ENDPOINTS} or None, got {endpoint!r}"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"count must be an integer >= 0, got {count!r}")
        if count:
            with self._lock:
                self._queue.append([kind, count, endpoint])

    def take(self, endpoint: str, has_cursor: bool) -> str | None:
        """The scripted kind for a request (consuming one use), or None."""
        with self._lock:
            for entry in self._queue:
                kind, _, wanted = entry
                if wanted is not None and wanted != endpoint:
                    continue
                if kind in CURSOR_KINDS and not has_cursor:
                    continue
                entry[1] -= 1
                if not entry[1]:
                    self._queue.remove(entry)
                return kind
            return None

    def pending(self) -> list[dict]:
        """The queued entries, oldest first."""
        with self._lock:
            return [{"kind": k, "count": c, "endpoint": e} for k, c, e in self._queue]

    def clear(self) -> None:
        """Drops every queued entry."""
        with self._lock:
            self._queue.clear()
