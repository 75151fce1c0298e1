"""The one place every API request goes through: signing, pacing, retrying, paging.

Built on dlt's ``RESTClient`` (request building, the paging loop, ``PageData``) with
``_send_request`` replaced, because dlt 1.31's retrying session re-sends the same prepared
request (a stale ``Date`` and signature after a long wait) and reads only ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from dlt.common import json
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.client import PageData
from requests import Request, Response

from .auth import APIAuth
from .errors import (
    ApiError,
    AuthenticationError,
    CursorRejectedError,
    UnexpectedResponseError,
    body_excerpt,
)
from .messages import hint
from .paginator import NextCursorPaginator
from .retry import TRANSIENT_STATUSES, RetryPolicy, retry_after_seconds
from .stats import ClientStats
from .throttle import LeakyBucket

API_PREFIX = "/api/experience"
ALLOWED_SKEW_SECONDS = 15 * 60  # api_auth's default allowance
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


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


class MicrometricsClient(RESTClient):
    """Signed, throttled, retrying client for the Micrometrics Experience API.

    Args:
        base_url: The tenant's base URL, without ``/api/experience``.
        api_key: API key id.
        api_secret: API secret; only the signer holds it.
        bucket: Client-side rate limiter (default: burst 10, 1 request/s, as the server).
        retry: Retry policy.
        timeout: Requests timeout, seconds or (connect, read).
        sleep: Called to wait between attempts; injected in tests.
        auth_clock: Time source for the ``Date`` header; injected in tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        bucket: LeakyBucket | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        auth_clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            auth=APIAuth(api_key, api_secret, clock=auth_clock),
            paginator=NextCursorPaginator(),
            data_selector="$",
            # A plain session: retries happen in _send_request, signed afresh each time.
            session=requests.Session(),
        )
        self.bucket = bucket or LeakyBucket(sleep=sleep)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.stats = ClientStats()
        self._sleep = sleep
        self._clock = auth_clock or time.time

    @classmethod
    def from_settings(cls, settings: Any) -> MicrometricsClient:
        """The production client for validated ``Settings``."""
        retry = RetryPolicy(max_attempts=settings.max_attempts, base=settings.backoff_seconds)
        return cls(settings.base_url, settings.api_key, settings.api_secret, retry=retry)

    def _create_response_handler(self) -> Callable[..., None]:
        # Status handling lives in _send_request; dlt's default hook would raise on the first 429.
        return lambda response, *args, **kwargs: None

    def _send_request(self, request: Request, **kwargs: Any) -> Response:
        kwargs.setdefault("timeout", self.timeout)
        throttled = 0
        attempt = 1  # 429s wait as told and do not use up the attempts kept for failures
        while True:
            self.stats.add(throttle_wait_seconds=self.bucket.acquire(), requests=1)
            # Preparing again runs APIAuth again: a fresh Date and signature on every attempt.
            prepared = self.session.prepare_request(request)
            settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
            try:
                response = self.session.send(prepared, **(settings | kwargs))
            except TRANSPORT_ERRORS as exc:
                self.bucket.release()
                failure = transport_error(prepared, exc, self.retry.max_attempts)
            else:
                self.bucket.observe(response.headers)
                if response.status_code == 429:
                    throttled += 1
                    self.stats.add(throttled=1)
                    if throttled > self.retry.max_throttled:
                        raise self._error(response, prepared, ApiError, hint=hint("throttled"))
                    self.bucket.hold(retry_after_seconds(response.headers, 1.0 / self.bucket.rate))
                    continue
                failure = self._check(response, prepared)
                if failure is None:
                    return response
            if attempt >= self.retry.max_attempts:
                raise failure
            self.stats.add(retries=1)
            self._sleep(self.retry.backoff(attempt))
            attempt += 1

    def _check(self, response: Response, prepared: Any) -> ApiError | None:
        """None for a good response (its JSON parsed onto ``response.payload``); the error
        to raise after the last attempt for a transient failure. Raises right away for
        failures no retry can fix."""
        status = response.status_code
        if status == 401:
            raise self._error(response, prepared, AuthenticationError,
                              hint=auth_hint(response, self._clock()))
        if status in TRANSIENT_STATUSES:
            return self._error(response, prepared, ApiError, hint=hint("server"))
        if status == 404:
            raise self._error(response, prepared, ApiError, hint=hint("not_found"))
        if status == 400 and (request_params(prepared).get("cursor")):
            raise self._error(response, prepared, CursorRejectedError, hint=hint("cursor"))
        if status >= 400:
            raise self._error(response, prepared, ApiError)
        try:
            # An empty or truncated body, or an HTML page from a proxy: worth another attempt.
            response.payload = json.loadb(response.content)
        except ValueError:
            return self._error(response, prepared, UnexpectedResponseError,
                               hint="the body is not JSON; " + hint("not_json"))
        return None

    @staticmethod
    def _error(response: Response, prepared: Any, kind: type[ApiError], hint: str = "") -> ApiError:
        detail = body_excerpt(response.text)
        if hint:
            detail = f"{hint}; body: {detail}"
        return kind(prepared.method, prepared.path_url, response.status_code, detail)

    def extract_response(self, response: Response, data_selector: Any) -> list[Any]:
        """Index records of a page, counted in the stats."""
        where = f"{response.request.method} {response.request.path_url}"
        records = index_records(getattr(response, "payload", None), where)
        self.stats.add(pages=1, pages_with_data=1 if records else 0, records=len(records))
        return records

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[PageData[Any]]:
        """Every page of an index endpoint, following ``Next-Cursor`` to the end."""
        yield from self.paginate(path, params=dict(params or {}))


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


def transport_error(prepared: Any, exc: Exception, attempts: int) -> ApiError:
    """No HTTP response at all: name the host, not the exception's internals."""
    host = urlsplit(prepared.url or "").netloc
    if isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        detail = f"could not connect to {host} ({type(exc).__name__}); {hint('unreachable')}"
    else:
        detail = f"{type(exc).__name__} from {host} after {attempts} attempts; {hint('server')}"
    return ApiError(prepared.method, prepared.path_url, None, detail)
