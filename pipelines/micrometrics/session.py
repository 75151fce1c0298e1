"""The transport under ``MicrometricsClient``: a ``requests.Session`` that paces, signs, retries.

dlt's ``RESTClient`` takes any ``requests.Session`` as ``session=`` and sends every request,
each page of ``paginate`` included, through its public ``send(prepared, **kwargs)``. Here one
such call becomes as many attempts as it takes. Each attempt:

- takes its turn and one of the slots for requests in flight (``inflight``), then a token from
  the client-side leaky bucket (and hands the response's ``RateLimit-*`` headers back to it);
- goes out as a copy of the prepared request signed afresh by the session's ``auth`` (the
  ``APIAuth`` signer): a new ``Date`` and signature, so a retry after a long wait is not refused
  for a stale ``Date`` (the API allows 15 minutes);
- on a 429, waits ``RateLimit-Retry-After`` and goes again without using up an attempt;
- on a 5xx (not 501 or 505), a 408 or 425, a dropped connection, a timeout or a 2xx/3xx body
  that is not JSON, backs off by the ``RetryPolicy`` and goes again, raising the last failure
  once the attempts are used up.

Any other response is final: 2xx with its JSON parsed onto ``response.payload``, or an error
status left to the caller. The request's response hooks run once, on that final response (not on
every attempt), so a status check passed as ``hooks={"response": [...]}`` judges the outcome, and
dlt's default ``raise_for_status`` hook never sees a 429 or 503 that a retry fixed.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from dlt.common import json
from requests import PreparedRequest, Response
from requests.auth import AuthBase
from requests.hooks import default_hooks, dispatch_hook

from . import cancel
from .errors import (
    ApiError,
    IncompleteBodyError,
    UnexpectedResponseError,
    UnsendableRequestError,
    body_excerpt,
)
from .exchange import DEADLINE, STOPPED, Exchange, WatchedAdapter, watched
from .inflight import InFlight
from .lenient_json import might_overflow, parse_leniently
from .messages import hint
from .proxies import malformed_proxy, proxy_refused, through_proxy
from .retry import RetryPolicy, is_transient, retry_after_seconds
from .stats import ClientStats
from .throttle import LeakyBucket

DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read
# The read timeout bounds each wait for the next bytes, not the response: a server or proxy
# that sends a few bytes a minute would hold a request, and the scheduled sync, for ever.
# A response not whole this many seconds after it was sent counts as a timeout (retried).
# Generous: a page is some kilobytes, and the sandbox's slowest answers take seconds.
BODY_DEADLINE = 300.0
# A 429's wait this long or longer is said (at most MAX_RETRY_AFTER each, max_throttled times).
SAID_WAIT = 30.0
log = logging.getLogger("micrometrics")
BODY_CHUNK = 64 * 1024
# Keep-alive connections kept per host: as many as requests may be in flight (MAX_IN_FLIGHT is
# at most this), so that concurrent streams reuse their connections.
MAX_CONNECTIONS = 32
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class MicrometricsSession(requests.Session):
    """A session whose ``send`` paces, signs every attempt afresh, and retries.

    Args:
        auth: Signs a ``PreparedRequest`` in place; applied again to every attempt.
        bucket: Client-side rate limiter, one token per attempt.
        retry: Attempts and backoff for transient failures; cap on 429s.
        stats: Counters of requests, 429s, retries and time waited for tokens.
        timeout: Used when the caller gives none, seconds or (connect, read).
        body_deadline: Seconds after sending by which a response must have come whole, on
            the bucket's clock (``BODY_DEADLINE``).
        sleep: Called to back off between attempts (by default cut short when the thread's
            walk is stopped, see ``cancel.sleep``); injected in tests.
    """

    def __init__(
        self,
        auth: AuthBase,
        *,
        bucket: LeakyBucket,
        retry: RetryPolicy,
        stats: ClientStats | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        body_deadline: float = BODY_DEADLINE,
        sleep: Callable[[float], None] = cancel.sleep,
    ) -> None:
        super().__init__()
        for prefix in ("https://", "http://"):
            self.mount(prefix, WatchedAdapter(pool_maxsize=MAX_CONNECTIONS))
        self.auth = auth
        self.bucket = bucket
        self.retry = retry
        self.stats = stats or ClientStats()
        self.timeout = timeout
        self.body_deadline = body_deadline
        self._sleep = sleep
        self._sending = threading.local()
        self._answered = threading.local()
        # Bounded by MAX_IN_FLIGHT when a sync's source is built (see inflight).
        self.in_flight = InFlight(MAX_CONNECTIONS)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Sends ``request`` until it gets a final response; see the module docstring.

        Raises:
            ApiError: the last transient failure once the attempts are used up (no status for
                a failure without a response), or too many 429s.
            UnexpectedResponseError: a body that was still not JSON on the last attempt.
        """
        if getattr(self._sending, "active", False):
            # A redirect hop: requests' resolve_redirects calls send again from inside an
            # attempt. It goes out as a plain session sends it (no extra token, no re-signing,
            # so an Authorization that requests stripped for another host stays stripped).
            return super().send(request, **kwargs)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        throttled = 0
        attempt = 1  # 429s wait as told and do not use up the attempts kept for failures
        while True:
            response, unsendable, proxy_fault = None, None, None
            with self.in_flight.slot(self.bucket.acquire, self.bucket.until_free,
                                     self.bucket.pause) as waited:
                # Departing as soon as booked: a booking that never went out (signing failed)
                # would otherwise count as "booked, not sent yet" for the bucket's life.
                self.bucket.departing()
                try:
                    self.stats.add(throttle_wait_seconds=waited, requests=1)
                    signed = self.sign(request)
                    try:
                        sent = self.bucket.now()
                        response = self._send_once(signed, kwargs, sent)
                        self._answered.seconds = self.bucket.now() - sent
                    except TRANSPORT_ERRORS as exc:
                        failure = transport_error(signed, exc, self.retry.max_attempts)
                    except ValueError as exc:  # http.client refused a header value or the URL
                        unsendable = type(exc).__name__
                        proxy_fault = malformed_proxy(exc, through_proxy(self, signed, kwargs))
                    else:
                        self.bucket.observe(response.headers)
                finally:
                    self.bucket.settle()
            if unsendable:
                # Raised here, outside the handler: the refusal's message quotes the signed
                # Authorization header, and a chained exception reaches tracebacks and dlt's trace.
                raise UnsendableRequestError(
                    signed.method or "", urlsplit(signed.url or "").path, None,
                    f"not sent ({unsendable}): " + (proxy_fault or (
                        f"a header or the URL holds a character HTTP does not allow; "
                        f"{hint('unsendable')}")))
            if response is not None:
                if response.status_code == 429:
                    throttled += 1
                    self.stats.add(throttled=1)
                    if throttled > self.retry.max_throttled:
                        raise api_error(signed, response, ApiError, hint("throttled"))
                    wait = retry_after_seconds(response.headers, 1.0 / self.bucket.rate)
                    if wait >= SAID_WAIT:  # silent, 20 of them held a sync 100 minutes
                        log.warning(
                            "warning: HTTP 429 on %s: waiting %.0f s as the API asks (429 %d "
                            "of at most %d for this request); %s",
                            urlsplit(signed.url or "").path, wait, throttled,
                            self.retry.max_throttled, hint("throttled"))
                    self.bucket.hold(wait)
                    continue
                failure = transient_failure(signed, response)
                if failure is None:
                    return dispatch_hook("response", request.hooks, response, **kwargs)
            if attempt >= self.retry.max_attempts:
                raise failure
            self.stats.add(retries=1)
            self._sleep(self.retry.backoff(attempt))
            attempt += 1

    def last_answer_seconds(self) -> float:
        """How long the last response this thread got took to come, on the bucket's clock (0
        before any): what a walk's slicing weighs (``slicing``)."""
        return getattr(self._answered, "seconds", 0.0)

    def sign(self, request: PreparedRequest) -> PreparedRequest:
        """A copy of ``request`` signed now (new ``Date`` and signature), without its hooks:
        they run once, on the final response."""
        signed = request.copy()
        signed.hooks = default_hooks()
        signed.headers.pop("Date", None)  # the signer keeps a Date it finds
        if self.auth is not None:
            signed = self.auth(signed) or signed
        return signed

    def _send_once(self, signed: PreparedRequest, kwargs: dict[str, Any],
                   sent: float) -> Response:
        # The whole exchange, head included, ends at the deadline or when the walk is stopped
        # (``exchange``); the body is also checked against the bucket's clock as it comes.
        coming = "its status and headers"
        with watched(self.body_deadline) as exchange:
            try:
                self._sending.active = True
                try:
                    # Streamed, so that the body is read here, a piece at a time, against the
                    # deadline (requests would read it whole inside send, bounded by the read
                    # timeout only).
                    response = super().send(signed, **{**kwargs, "stream": True})
                finally:
                    self._sending.active = False
                if exchange.ended_by is None:  # else its head was cut (read to the end)
                    coming = "the body"
                self._read_body(response, sent)
            except Exception as exc:
                if (ended := self._ended(exchange, coming)) is None:
                    raise
                raise ended from exc
            if (ended := self._ended(exchange, coming)) is not None:
                response.close()  # what came before the end, cut short
                raise ended
        return response

    def _ended(self, exchange: Exchange, coming: str) -> Exception | None:
        """What ended ``exchange`` early, as the attempt's failure (None: nothing did)."""
        if exchange.ended_by == DEADLINE:
            return BodyDeadlineExceeded(self.body_deadline, coming)
        if exchange.ended_by == STOPPED:
            return cancel.Cancelled()
        return None

    def _read_body(self, response: Response, sent: float) -> None:
        """Loads the body as requests' ``content`` would, raising ``BodyDeadlineExceeded``
        once the response is not whole ``body_deadline`` seconds after ``sent``."""
        if response._content is not False:  # read already (an adapter that loads it itself)
            return
        pieces = []
        try:
            while True:
                # What has arrived, as soon as some has, as sent: requests' iter_content waits
                # for a whole 64 KB chunk (more than a page, so the deadline was checked only
                # once the body was whole, and never if it did not come), and a decoding
                # read1 waits for bytes that decode (a trickled gzip header).
                piece = read_some(response.raw)
                if self.bucket.now() - sent > self.body_deadline:
                    raise BodyDeadlineExceeded(self.body_deadline)
                if not piece:
                    break
                pieces.append(piece)
            # What requests' Response.content does with what it read (no public setter).
            response._content = decoded(response.raw, b"".join(pieces))
        except BaseException:
            response.close()
            raise
        response._content_consumed = True


def read_some(raw: Any) -> bytes:
    """Up to ``BODY_CHUNK`` bytes of ``raw`` (urllib3's response) as sent, as soon as any came;
    b"" at the end. urllib3's errors as requests raises them from ``iter_content``."""
    try:
        return raw.read1(BODY_CHUNK, decode_content=False)
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc


def decoded(raw: Any, body: bytes) -> bytes:
    """``body`` as sent, decoded as its ``Content-Encoding`` says, by urllib3's own decoders
    (gzip, deflate, and br or zstd where installed) through its public response class."""
    if not body or not raw.headers.get("Content-Encoding"):
        return body
    try:
        return urllib3.HTTPResponse(body=io.BytesIO(body), headers=raw.headers,
                                    preload_content=False, decode_content=True).read()
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc


def transient_failure(request: PreparedRequest, response: Response) -> ApiError | None:
    """The error to raise after the last attempt when another attempt may help, else None:
    for a good response (its JSON parsed onto ``response.payload``) and for any other error
    status (a 4xx but 408 and 425, a 501, a 505), which no retry fixes and which is the response
    hooks' to judge."""
    status = response.status_code
    if is_transient(status):
        return api_error(request, response, ApiError, hint("server"))
    if status >= 400:
        return None
    try:
        # An empty or truncated body, or an HTML page from a proxy: worth another attempt.
        response.payload = json.loadb(response.content)
        if might_overflow(response.content):  # an integer dlt cannot store? (lenient_json)
            response.payload = parse_leniently(response.content)
    except ValueError:
        try:
            # NaN, a lone surrogate...: its records go to the quarantine, not the whole page.
            response.payload = parse_leniently(response.content)
            return None
        except ValueError:
            pass
        if cut_short(response.content):
            return api_error(request, response, IncompleteBodyError,
                             "the body was empty or its JSON cut short; " + hint("server"))
        return api_error(request, response, UnexpectedResponseError,
                         "the body is not JSON; " + hint("not_json"))
    return None


def cut_short(body: bytes) -> bool:
    """Whether a body that does not parse is the API's own, empty or cut short (what a page
    starts with), rather than a page of something else (a proxy's or a login form's): the
    first is the server's doing and a later sync may get it whole, the second base_url's."""
    start = body.lstrip()[:1]
    return start in (b"", b"[", b"{")


def api_error(request: PreparedRequest, response: Response, kind: type[ApiError],
              detail_hint: str = "") -> ApiError:
    """``kind`` naming the method, path and status, with a hint and a body excerpt."""
    detail = body_excerpt(response.text)
    if detail_hint:
        detail = f"{detail_hint}; body: {detail}"
    return kind(request.method or "", request.path_url, response.status_code, detail)


class BodyDeadlineExceeded(requests.exceptions.ReadTimeout):
    """A response still coming ``BODY_DEADLINE`` seconds after it was sent (a timeout, retried):
    ``what`` was still coming (its status and headers, or the body)."""

    def __init__(self, deadline: float, what: str = "the body") -> None:
        super().__init__(f"the response was not whole {deadline:g} s after it was sent")
        self.deadline = deadline
        self.what = what


def transport_error(request: PreparedRequest, exc: Exception, attempts: int) -> ApiError:
    """No HTTP response at all: name the host, not the exception's internals."""
    host = urlsplit(request.url or "").netloc.rpartition("@")[2]  # never a user or password
    if isinstance(exc, BodyDeadlineExceeded):
        detail = (f"{host} was still sending {exc.what} {exc.deadline:g} s after the request "
                  f"({attempts} attempt{'s' if attempts != 1 else ''}); {hint('server')}")
        return ApiError(request.method or "", request.path_url, None, detail)
    if refused := proxy_refused(exc, host):
        detail = refused
    elif could_not_connect(exc):
        detail = f"could not connect to {host} ({type(exc).__name__}); {hint('unreachable')}"
    else:
        # Connected, then dropped or timed out: the server's doing, not base_url's.
        detail = f"{type(exc).__name__} from {host} after {attempts} attempts; {hint('server')}"
    return ApiError(request.method or "", request.path_url, None, detail)


def could_not_connect(exc: Exception) -> bool:
    """Whether no connection was made at all (refused, no route, a name that does not resolve,
    a connect timeout, the proxy, TLS): base_url's or the network's fault. A connection the
    server dropped (``RemoteDisconnected``, a reset, a truncated body) is a
    ``ConnectionError`` too, but checking base_url would not help there."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ProxyError
                  | requests.exceptions.SSLError):
        return True  # a proxy this machine cannot reach, TLS to a plain-HTTP port or a bad
        # certificate: configuration, not a server that keeps failing
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, urllib3.exceptions.NewConnectionError)  # name lookups included
