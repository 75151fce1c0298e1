"""The one place every API request goes through: signing, pacing, retrying, paging.

Built on dlt's ``RESTClient`` (request building, the paging loop, ``PageData``) through its
public extension points only; none of its private methods is overridden:

- ``session=``: a :class:`~.session.MicrometricsSession`. Its ``send`` takes a token of the
  client-side leaky bucket, signs every attempt afresh (new ``Date`` and signature), waits
  ``RateLimit-Retry-After`` on a 429 and retries 5xx, dropped connections, timeouts and
  non-JSON bodies. (dlt's own retrying session would re-send the prepared request as first
  signed, with a stale ``Date`` after a long wait, and reads only ``Retry-After``.)
- ``hooks={"response": [...]}`` of ``paginate``: :meth:`MicrometricsClient.raise_for_status`
  turns a final 4xx into this package's errors. With a "response" hook given, dlt adds no
  ``raise_for_status`` of its own; the session runs hooks once, on the final response.
- ``extract_response`` (public): reads the JSON the session parsed, counts pages and records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.client import PageData
from requests import Response

from . import cancel
from .auth import APIAuth
from .errors import (
    ApiError,
    AuthenticationError,
    CursorRejectedError,
    UnexpectedResponseError,
)
from .messages import hint
from .paginator import NextCursorPaginator
from .retry import RetryPolicy
from .session import DEFAULT_TIMEOUT, MicrometricsSession, api_error
from .stats import ClientStats
from .throttle import LeakyBucket

API_PREFIX = "/api/experience"
ALLOWED_SKEW_SECONDS = 15 * 60  # api_auth's default allowance
# How a server may refuse a paging cursor it no longer keeps (the vendor documents none): a
# 404 on a cursor is not the survey gone (taken so, the survey was skipped on every sync after,
# its dead cursor kept in state), nor a 410 or 422 a failure for good: the chain is read again
# from its first page, where a 404 does mean the survey is gone.
CURSOR_REFUSALS = (400, 404, 410, 422)


def index_records(payload: Any, where: str) -> list[Any]:
    """The records of an index body: a JSON array, or an object wrapping exactly one list.

    Raises:
        UnexpectedResponseError: for any other shape, naming ``where``.
    """
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        lists = [value for value in payload.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
        shape = f"an object with keys {sorted(payload)[:5]}"
    else:
        shape = type(payload).__name__
    method, _, path = where.partition(" ")
    raise UnexpectedResponseError(
        method, path, 200, f"expected a JSON array or an object wrapping one list, got {shape}"
    )


def _session_attribute(name: str, doc: str) -> property:
    """An attribute of the client that lives on its session (reads and assignments)."""
    return property(
        lambda self: getattr(self.session, name),
        lambda self, value: setattr(self.session, name, value),
        doc=doc,
    )


class MicrometricsClient(RESTClient):
    """Signed, throttled, retrying client for the Micrometrics Experience API.

    Args:
        base_url: The tenant's base URL, without ``/api/experience``.
        api_key: API key id.
        api_secret: API secret; only the signer holds it.
        bucket: Client-side rate limiter (default: burst 10, 1 request/s, as the server).
        retry: Retry policy.
        timeout: Requests timeout, seconds or (connect, read).
        sleep: Called to wait between attempts and for tokens (by default cut short when the
            thread's walk is stopped, see ``cancel.sleep``); injected in tests.
        auth_clock: Time source for the ``Date`` header; injected in tests.
    """

    session: MicrometricsSession
    bucket = _session_attribute("bucket", "Client-side leaky bucket, one token per attempt.")
    retry = _session_attribute("retry", "Retry policy of transient failures and 429s.")
    stats = _session_attribute("stats", "What went over the wire (``ClientStats``).")
    timeout = _session_attribute("timeout", "Requests timeout, seconds or (connect, read).")

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        bucket: LeakyBucket | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = cancel.sleep,
        auth_clock: Callable[[], float] | None = None,
    ) -> None:
        signer = APIAuth(api_key, api_secret, clock=auth_clock)
        super().__init__(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            auth=signer,
            paginator=NextCursorPaginator(),
            data_selector="$",
            session=MicrometricsSession(
                signer,
                bucket=bucket or LeakyBucket(sleep=sleep),
                retry=retry or RetryPolicy(),
                stats=ClientStats(),
                timeout=timeout,
                sleep=sleep,
            ),
        )
        self._clock = auth_clock or time.time

    def now(self) -> datetime:
        """This client's wall clock (the one its ``Date`` headers carry), as a UTC datetime."""
        return datetime.fromtimestamp(self._clock(), UTC)

    def last_answer_seconds(self) -> float:
        """How long the last response this thread got took to come (see the session's)."""
        return self.session.last_answer_seconds()

    def limit_in_flight(self, limit: int) -> None:
        """At most ``limit`` requests in flight at once from here on (see ``inflight``)."""
        self.session.in_flight.limit = limit

    @classmethod
    def from_settings(cls, settings: Any) -> MicrometricsClient:
        """The production client for validated ``Settings``."""
        retry = RetryPolicy(max_attempts=settings.max_attempts, base=settings.backoff_seconds)
        return cls(settings.base_url, settings.api_key, settings.api_secret, retry=retry)

    def raise_for_status(self, response: Response, *args: Any, **kwargs: Any) -> None:
        """Response hook: raises for a final 4xx (or a 5xx the session does not retry).

        Raises:
            AuthenticationError: 401, saying whether the credentials or the clock are to blame.
            CursorRejectedError: 400, 404, 410 or 422 on a request with a paging cursor.
            ApiError: 404 and any other error status.
        """
        status = response.status_code
        if status < 400:
            return
        # The request as first sent, also when redirects followed.
        request = response.history[0].request if response.history else response.request
        if status == 401:
            raise api_error(request, response, AuthenticationError,
                            auth_hint(response, self._clock()))
        if status in CURSOR_REFUSALS and request_params(request).get("cursor"):
            raise api_error(request, response, CursorRejectedError, hint("cursor"))
        if status == 404:
            raise api_error(request, response, ApiError, hint("not_found"))
        raise api_error(request, response, ApiError)

    def extract_response(self, response: Response, data_selector: Any) -> list[Any]:
        """Index records of a page, counted in the stats."""
        where = f"{response.request.method} {response.request.path_url}"
        records = index_records(getattr(response, "payload", None), where)
        self.stats.add(pages=1, pages_with_data=1 if records else 0, records=len(records))
        return records

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[PageData[Any]]:
        """Every page of an index endpoint, following ``Next-Cursor`` to the end."""
        yield from self.paginate(
            path, params=dict(params or {}), hooks={"response": [self.raise_for_status]}
        )


def request_params(prepared: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(prepared.url or "").query))


def auth_hint(response: Response, now: float) -> str:
    """What to check after a 401: credentials, or the clock when the server's Date disagrees."""
    server_date = response.headers.get("Date")
    try:
        skew = parsedate_to_datetime(server_date).timestamp() - now if server_date else 0.0
    except (TypeError, ValueError):
        skew = 0.0
    if abs(skew) > ALLOWED_SKEW_SECONDS:
        return (f"this machine's clock differs from the server's by {abs(skew) / 60:.0f} minutes"
                f" (more than the 15 allowed); {hint('clock')}")
    return hint("auth")
