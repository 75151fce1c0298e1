"""HTTP transport of the sandbox: auth, rate limit, faults, control routes, and `Sandbox`."""

from __future__ import annotations

import dataclasses
import gzip
import ipaddress
import json
import random
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import faults as fk
from .cursor import CursorCodec
from .faults import FaultInjector, Script
from .ordering import Reorder
from .paging import ORDERS
from .ratelimit import LeakyBucket
from .routes import Api, Reply, endpoint_of, error
from .stats import Stats
from .store import Store
from .verify import http_date, verify
from .window import BOUNDARIES

JSON_TYPE = "application/json; charset=utf-8"
LAST_CURSOR_MODES = ("empty", "absent")
MAX_BODY = 10 * 1024 * 1024  # a response body is a few KB; a larger one is refused unread
# Control actions that POST /_sandbox/mutate may call on the Sandbox.
MUTATIONS = (
    "add_responses", "update_responses", "add_late_responses", "update_devices",
    "add_devices", "add_survey", "set_fault_rate", "script", "patch_records", "add_malformed",
    "remove_survey", "restore_survey", "erase_records", "restore_records", "stamp_records",
    "edit_questions", "reorder",
)


def has_cursor(raw_uri: str) -> bool:
    """Whether a request URI carries a non-empty ``cursor`` query parameter (last one wins)."""
    values = parse_qs(urlsplit(raw_uri).query, keep_blank_values=True).get("cursor")
    return bool(values and values[-1])


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header lets gzip through (RFC 9110 12.5.3): named, or
    ``*`` without gzip named, with a weight above 0 (``gzip;q=0`` refuses it)."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # an unreadable weight accepts nothing
        if coding.strip():
            weights[coding.strip().lower()] = weight
    named = weights.get("gzip", weights.get("x-gzip"))
    return (named if named is not None else weights.get("*", 0.0)) > 0


def is_loopback(host: str) -> bool:
    """Whether a client address is loopback (control routes are refused otherwise)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PageHooks:
    """Actions to run after the n-th page of an endpoint (``Sandbox.after_page``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, int] = {}
        self._hooks: list[tuple[str, int, Callable[[], Any]]] = []

    def add(self, endpoint: str, page: int, action: Callable[[], Any]) -> None:
        with self._lock:
            self._hooks.append((endpoint, self._served.get(endpoint, 0) + page, action))

    def served(self, endpoint: str) -> None:
        with self._lock:
            count = self._served[endpoint] = self._served.get(endpoint, 0) + 1
            due = [hook for hook in self._hooks if hook[:2] == (endpoint, count)]
            self._hooks = [hook for hook in self._hooks if hook not in due]
        for _, _, action in due:  # outside the lock: an action may read or change the store
            action()


class _Server(ThreadingHTTPServer):
    """Threading server that can cut its keep-alive connections on stop."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of connections (a client
    # with many requests in flight), which then wait seconds for TCP to retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        super().__init__(address, handler)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        with self._conns_lock:
            self._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """Client disconnects are normal (dropped-connection faults, killed clients): quiet."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shuts down every open client socket so idle keep-alive threads end."""
        with self._conns_lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    """One connection; ``sandbox`` is set on a per-Sandbox subclass."""

    protocol_version = "HTTP/1.1"  # keep-alive; every response sets Content-Length
    server_version = "MicrometricsSandbox/1.0"
    timeout = 60  # idle keep-alive connections end eventually
    sandbox: Sandbox

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACK
        # would stall every keep-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        """``Server`` header without the Python version."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: no stderr noise, and nothing that could contain a signature."""

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    # Other methods get the API's JSON 405 too, not http.server's HTML 501.
    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._handle("OPTIONS")

    # -- dispatch ------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # unread chunks would corrupt the keep-alive stream
            return self._send(error(411, "chunked bodies are not supported; send Content-Length"))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._send(error(400, "invalid Content-Length"))
        if length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            return self._send(error(413, f"body over {MAX_BODY} bytes"))
        body = self.rfile.read(length) if length > 0 else b""
        path = urlsplit(self.path).path
        try:
            if path == "/_sandbox" or path.startswith("/_sandbox/"):
                return self._control(method, path, body)
            if path.startswith("/api/"):
                return self._api(method, body)
            return self._send(error(404, f"no such resource: {path}"))
        except OSError:  # the client went away mid-response: nothing left to tell it
            self.close_connection = True
        except Exception as exc:  # a sandbox bug must not look like a dropped connection
            return self._send(error(500, f"sandbox internal error: {type(exc).__name__}"))

    def _api(self, method: str, body: bytes) -> None:
        sb = self.sandbox
        endpoint, cursor = endpoint_of(self.path), has_cursor(self.path)
        sb._stats.request(endpoint, cursor)  # in flight from here until answered
        try:
            return self._api_in_flight(method, body, endpoint, cursor)
        finally:
            sb._stats.answered()

    def _api_in_flight(self, method: str, body: bytes, endpoint: str, cursor: bool) -> None:
        sb = self.sandbox
        now = sb.clock()
        auth = verify(method, self.path, self.headers, body, sb._credentials, now)
        # Judged on arrival (as a gateway does); every answer then takes the latency.
        if auth.error:
            # Rate-limit headers only when the key is known; a 401 takes no token.
            limits = sb._bucket.peek(auth.api_key, now).headers() if auth.api_key else {}
            sb.wait_latency()
            return self._send(error(401, auth.error), limits)
        decision = sb._bucket.admit(auth.api_key, now)
        limits = decision.headers()
        sb.wait_latency()
        if endpoint == sb._held_endpoint:
            sb._answers_released.wait()
        if not decision.admitted:
            sb._stats.throttled()
            return self._send(error(429, "Too Many Requests"), limits)
        reorder = sb._reorder
        if reorder is None:
            return self._answer(method, body, endpoint, cursor, limits)
        ticket = reorder.enter()
        try:
            return self._answer(method, body, endpoint, cursor, limits)
        finally:
            reorder.leave(ticket)

    def _answer(self, method: str, body: bytes, endpoint: str, cursor: bool,
                limits: dict[str, str]) -> None:
        sb = self.sandbox
        # The random draw happens even when a script answers, so the seeded sequence of
        # random faults on the other requests does not depend on scripting.
        drawn = sb._faults.draw()
        fault = sb._script.take(endpoint, cursor) or drawn
        if fault:
            sb._stats.fault(fault)
        if fault == fk.DROPPED:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no status line at all
            return None
        if fault in (fk.HTTP_500, fk.HTTP_503):
            code = 500 if fault == fk.HTTP_500 else 503
            return self._send(error(code, f"injected fault: HTTP {code}"), limits)
        if fault == fk.HTTP_502_HTML:
            return self._send_raw(502, fk.PROXY_502_HTML.encode(), "text/html", limits)
        if fault == fk.SPURIOUS_429:
            return self._send(
                error(429, "Too Many Requests"), {**limits, "RateLimit-Retry-After": "0.05"}
            )
        if fault == fk.RETRY_AFTER_DATE:
            now = sb.clock()  # one reading: Date and Retry-After exactly the seconds apart
            return self._send(error(429, "Too Many Requests"), {
                "Date": http_date(now),
                "Retry-After": http_date(now + fk.RETRY_AFTER_DATE_SECONDS)})
        if fault == fk.HTML_200:
            return self._send_raw(200, fk.LOGIN_200_HTML.encode(), "text/html", limits)
        if fault == fk.EMPTY_200:
            return self._send_raw(200, b"", JSON_TYPE, limits)
        if fault == fk.REJECT_CURSOR:
            return self._send(error(400, "invalid cursor"), limits)
        if fault in fk.EXPIRED_CURSOR_STATUSES:
            code = fk.EXPIRED_CURSOR_STATUSES[fault]
            return self._send(error(code, "cursor expired"), limits)
        if fault == fk.HTTP_404:
            return self._send(error(404, "Not Found"), limits)
        if fault in fk.GATEWAY_STATUSES:
            code = fk.GATEWAY_STATUSES[fault]
            return self._send(error(code, f"injected: HTTP {code}"), limits)
        reply = sb._api.handle(method, self.path, body)
        if fault in fk.RESHAPE_KINDS and reply.status == 200 and isinstance(reply.body, list):
            reply = dataclasses.replace(reply, body=fk.reshaped(fault, reply.body))
        if fault == fk.REPEAT_CURSOR and reply.status == 200:
            sent = parse_qs(urlsplit(self.path).query).get("cursor", [""])[0]
            reply = dataclasses.replace(reply, headers={**reply.headers, "Next-Cursor": sent})
        if reply.status == 200 and reply.page_records is not None:
            sb._stats.page(reply.page_records)
            sb._page_hooks.served(endpoint)
        if fault == fk.TRICKLED_BODY:
            return self._send(reply, limits, trickle=True)
        if fault == fk.TRICKLED_HEADERS:
            return self._send(reply, limits, trickle_headers=True)
        if fault == fk.MISLABELLED_GZIP:
            return self._send(reply, limits, mislabel=True)
        return self._send(reply, limits, truncate=fault == fk.TRUNCATED)

    def _control(self, method: str, path: str, body: bytes) -> None:
        sb = self.sandbox
        if not is_loopback(self.client_address[0]):
            return self._send(error(403, "control routes are for loopback clients only"))
        routes = {
            ("GET", "/_sandbox/truth"): lambda: sb.truth(),
            ("GET", "/_sandbox/stats"): lambda: sb.stats(),
            ("GET", "/_sandbox/malformed"): lambda: sb.malformed(),
            ("POST", "/_sandbox/stats/reset"): lambda: sb.reset_stats() or {"ok": True},
            ("POST", "/_sandbox/mutate"): lambda: self._mutate(body),
        }
        if (method, path) not in routes:
            known = {p for _, p in routes}
            return self._send(error(405 if path in known else 404, f"{method} {path}"))
        result = routes[(method, path)]()
        return self._send(result if isinstance(result, Reply) else Reply(200, result))

    def _mutate(self, body: bytes) -> Reply:
        try:
            kwargs = json.loads(body or b"{}")
            action = kwargs.pop("action")
        except (ValueError, KeyError, AttributeError, TypeError):
            return error(400, 'body must be a JSON object with an "action"')
        if action not in MUTATIONS:
            return error(400, f"unknown action {action!r}; one of {', '.join(MUTATIONS)}")
        try:
            result = getattr(self.sandbox, action)(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            return error(400, f"{action} failed: {exc!r}")
        ids = result if isinstance(result, list) else [] if result is None else [result]
        return Reply(200, {"ids": ids})

    # -- output --------------------------------------------------------------------------------

    def _send(self, reply: Reply, extra: dict[str, str] | None = None, truncate=False,
              trickle=False, mislabel=False, trickle_headers=False) -> None:
        try:
            payload = json.dumps(reply.body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (add_malformed): sent as its \u escape
            payload = json.dumps(reply.body).encode("ascii")
        if truncate:  # a body cut in half, with a Content-Length that matches the cut
            payload = payload[: len(payload) // 2]
        self._send_raw(reply.status, payload, JSON_TYPE, {**(extra or {}), **reply.headers},
                       trickle, mislabel, trickle_headers)

    def _send_raw(self, status: int, payload: bytes, ctype: str, headers: dict[str, str],
                  trickle=False, mislabel=False, trickle_headers=False) -> None:
        if self.path.startswith("/api/"):
            self.sandbox._stats.status(status)
            if mislabel:  # said to be compressed, sent as it is
                headers = {**headers, "Content-Encoding": "gzip"}
            elif (self.sandbox.gzip and payload
                  and accepts_gzip(self.headers.get("Accept-Encoding", ""))):
                payload = gzip.compress(payload, mtime=0)
                headers = {**headers, "Content-Encoding": "gzip"}
        # send_response_only: the stock send_response would add a Date of the real clock.
        self.send_response_only(status)
        self.send_header("Server", self.version_string())
        self.send_header("Date", headers.get("Date") or http_date(self.sandbox.clock()))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            if name != "Date":
                self.send_header(name, value)
        if trickle_headers:
            # What end_headers would send at once, a piece at a time.
            head = b"".join(self._headers_buffer) + b"\r\n"
            self._headers_buffer = []
            if not self._trickle(head):
                return
        else:
            self.end_headers()
        if self.command == "HEAD":  # a HEAD answer has the headers of a GET and no body
            return
        if not trickle:
            self.wfile.write(payload)
            return
        self._trickle(payload)

    def _trickle(self, data: bytes) -> bool:
        """``data`` in ``TRICKLE_PIECES`` pieces, ``TRICKLE_SECONDS`` apart on the sandbox's
        sleep; False when the client gave up on it and closed the connection."""
        piece = -(-len(data) // fk.TRICKLE_PIECES)
        try:
            for start in range(0, len(data), piece):
                if start:
                    self.sandbox._sleep(fk.TRICKLE_SECONDS)
                self.wfile.write(data[start:start + piece])
                self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True


class Sandbox:
    """A local, deterministic imitation of the Micrometrics Experience API.

    Args:
        api_key: The one accepted API key.
        api_secret: Its secret (HMAC key).
        seed: Seed of the data, the shuffled order and the faults.
        page_size: Records per index page.
        fault_rate: Probability in [0, 1] that an admitted request suffers a fault.
        latency: Seconds an admitted /api request takes to answer.
        latency_jitter: Each answer's latency is drawn uniformly within this fraction of
            ``latency`` either side (0.5: 0.5x to 1.5x), from a generator seeded by ``seed``.
        rate: Leaky-bucket leak rate, tokens per second.
        burst: Leaky-bucket capacity.
        devices: Number of generated devices.
        surveys: Number of generated surveys.
        responses: Number of generated survey responses.
        silent_devices: Active devices that stopped responding ``SILENT_DAYS`` (21) days ago
            (the report's "devices gone quiet"); see :meth:`silent_devices`.
        last_cursor: ``empty`` or ``absent`` Next-Cursor on the last page.
        boundary: ``closed``, ``open``, ``left`` or ``right`` window bounds.
        order: ``shuffled``, ``asc`` or ``desc`` order of index results.
        gzip: Compress API bodies (``Content-Encoding: gzip``) for a request that accepts
            it, as an API behind a CDN or proxy may.
        clock: Zero-argument UNIX time source (default ``time.time``).
        sleep: Waits an answer's latency (default ``time.sleep``; a virtual clock's in tests).
        port: TCP port on 127.0.0.1; 0 picks a free one.
    """

    def __init__(
        self,
        api_key: str = "sandbox-key",
        api_secret: str = "sandbox-secret",
        seed: int = 1,
        page_size: int = 100,
        fault_rate: float = 0.0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        rate: float = 1.0,
        burst: int = 10,
        devices: int = 40,
        surveys: int = 5,
        responses: int = 6000,
        silent_devices: int = 0,
        last_cursor: str = "empty",
        boundary: str = "closed",
        order: str = "shuffled",
        gzip: bool = False,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        port: int = 0,
    ) -> None:
        for name, value, allowed in (
            ("last_cursor", last_cursor, LAST_CURSOR_MODES),
            ("boundary", boundary, BOUNDARIES),
            ("order", order, ORDERS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if page_size < 1 or rate <= 0 or burst < 1 or latency < 0:
            raise ValueError("page_size and burst must be >= 1, rate > 0, latency >= 0")
        if not 0 <= latency_jitter <= 1:
            raise ValueError("latency_jitter must be within [0, 1]")
        self.clock = clock or time.time
        self.port = port
        self.latency = latency
        self.latency_jitter = latency_jitter
        self.gzip = gzip
        self._sleep = sleep or time.sleep
        self._latency_rng = random.Random(seed)
        self._latency_lock = threading.Lock()
        self._reorder: Reorder | None = None
        self._held_endpoint: str | None = None  # answers held back until release_answers()
        self._answers_released = threading.Event()
        self._credentials = {api_key: api_secret}
        self.store = Store(seed, devices, surveys, responses, self.clock, silent_devices)
        self._bucket = LeakyBucket(rate, burst)
        self._faults = FaultInjector(seed, fault_rate)
        self._script = Script()
        self._stats = Stats()
        self._page_hooks = PageHooks()
        self._api = Api(
            self.store,
            CursorCodec(secrets.token_bytes(32)),  # cursors die with the process
            seed=seed,
            page_size=page_size,
            order=order,
            boundary=boundary,
            last_cursor=last_cursor,
            clock=self.clock,
        )
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"Sandbox(url={self.url!r})" if self._httpd else "Sandbox(stopped)"

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT`` (valid after start)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sandbox:
        """Binds 127.0.0.1:port and serves in a daemon thread."""
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._httpd = _Server(("127.0.0.1", self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # quick stop() in tests
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the listening and open client sockets."""
        if self._httpd is None:
            return
        self.reorder(0)  # held requests answer, so their threads end
        self.release_answers()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------

    def truth(self) -> dict[str, list[dict]]:
        """Every record exactly as the API serves it now (deep copies)."""
        return self.store.truth()

    def stats(self) -> dict[str, Any]:
        """Counters of the /api traffic; see the README."""
        return self._stats.snapshot()

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> bool:
        """Blocks until ``count`` API requests have arrived since the last reset (True), or
        ``timeout`` seconds passed (False): lets a test act while a client is mid-sync."""
        return self._stats.wait_for_requests(count, timeout)

    def wait_for_in_flight(self, count: int, timeout: float = 60.0) -> bool:
        """Blocks until ``count`` API requests are in flight at once (arrived, not answered
        yet), or ``timeout`` seconds passed (False). Woken by each arrival, no polling."""
        return self._stats.wait_for_in_flight(count, timeout)

    def wait_latency(self) -> None:
        """Sleeps one answer's latency: ``latency``, jittered by ``latency_jitter``."""
        latency = self.latency
        if latency > 0 and self.latency_jitter > 0:
            with self._latency_lock:
                latency *= 1.0 + self.latency_jitter * self._latency_rng.uniform(-1.0, 1.0)
        if latency > 0:
            self._sleep(latency)

    def reorder(self, group: int = 0, order: str = "reverse", seed: int = 0,
                grace: float | None = 0.05) -> None:
        """From now on, admitted API requests answer in groups of up to ``group``, in ``order``
        within each group: ``arrival``, ``reverse`` or ``random`` (seeded by ``seed``); see
        ``ordering.Reorder``. ``grace``: seconds without a new arrival after which a smaller
        group goes; None holds requests until the group is full. ``group=0`` stops it: held
        requests answer, and requests answer as they come again."""
        previous, self._reorder = self._reorder, (
            Reorder(group, order, seed, grace) if group else None)
        if previous is not None:
            previous.stop()

    def hold_answers(self, endpoint: str) -> None:
        """From now on, requests to ``endpoint`` (``devices``, ``surveys``,
        ``survey_responses``) are admitted and counted but not answered until
        :meth:`release_answers`: a test sees what a client does while they are pending."""
        self._answers_released.clear()
        self._held_endpoint = endpoint

    def after_page(self, endpoint: str, page: int, action: Callable[[], Any]) -> None:
        """Runs ``action`` once, when the ``page``-th index page of ``endpoint`` (``devices``,
        ``surveys``, ``survey_responses``; counted from now, every window and chain) has been
        built and before it is sent: a change that lands between two pages of a read, as a
        live tenant's do (a survey edited while the list is paged)."""
        self._page_hooks.add(endpoint, page, action)

    def release_answers(self) -> None:
        """Answers the requests :meth:`hold_answers` held, and holds no more."""
        self._held_endpoint = None
        self._answers_released.set()

    def wait_for_endpoint(self, endpoint: str, count: int, timeout: float) -> bool:
        """Blocks until ``count`` requests to ``endpoint`` have arrived (since the last reset)
        or ``timeout`` seconds passed; returns whether they arrived. Each arrival wakes it."""
        return self._stats.wait_for_endpoint(endpoint, count, timeout)

    def reordered_groups(self) -> list[int]:
        """Sizes of the groups the current ``reorder`` released so far."""
        return list(self._reorder.groups) if self._reorder else []

    def reset_stats(self) -> None:
        """Zeroes the counters."""
        self._stats.reset()

    def silent_devices(self) -> list[str]:
        """Ids of the active devices generated silent (``silent_devices``)."""
        return list(self.store.silent_device_ids)

    def malformed(self) -> dict[str, list[dict]]:
        """The records stored with :meth:`add_malformed`, by kind (not part of ``truth()``)."""
        return self.store.malformed()

    # -- mutations (proxied to the Store) --------------------------------------------------------

    def add_responses(self, count: int, survey_id: int | None = None) -> list[int]:
        """See :meth:`Store.add_responses`."""
        return self.store.add_responses(count, survey_id)

    def update_responses(self, count: int) -> list[int]:
        """See :meth:`Store.update_responses`."""
        return self.store.update_responses(count)

    def add_late_responses(self, count: int, delay_seconds: float = 1800) -> list[int]:
        """See :meth:`Store.add_late_responses`."""
        return self.store.add_late_responses(count, delay_seconds)

    def update_devices(self, count: int) -> list[str]:
        """See :meth:`Store.update_devices`."""
        return self.store.update_devices(count)

    def add_devices(self, count: int) -> list[str]:
        """See :meth:`Store.add_devices`."""
        return self.store.add_devices(count)

    def add_survey(self, survey_id: int | None = None) -> int:
        """See :meth:`Store.add_survey`."""
        return self.store.add_survey(survey_id)

    def edit_questions(
        self, survey_id: int, drop: list[int] | None = None, add: list[str] | None = None
    ) -> list[int]:
        """See :meth:`Store.edit_questions`."""
        return self.store.edit_questions(survey_id, drop, add)

    def remove_survey(self, survey_id: int) -> list[int]:
        """See :meth:`Store.remove_survey`."""
        return self.store.remove_survey(survey_id)

    def restore_survey(self, survey_id: int) -> list[int]:
        """See :meth:`Store.restore_survey`."""
        return self.store.restore_survey(survey_id)

    def erase_records(self, kind: str, ids: list) -> list:
        """See :meth:`Store.erase_records`."""
        return self.store.erase_records(kind, ids)

    def restore_records(self, kind: str, ids: list) -> list:
        """See :meth:`Store.restore_records`."""
        return self.store.restore_records(kind, ids)

    def stamp_records(self, kind: str, ids: list | None = None, at: str | None = None) -> list:
        """See :meth:`Store.stamp_records`."""
        return self.store.stamp_records(kind, ids, at)

    def set_fault_rate(self, fault_rate: float) -> None:
        """Changes the probability of injected faults (0 to 1)."""
        self._faults.rate = fault_rate

    def patch_records(
        self, kind: str, ids: list, fields: dict[str, Any], bump: bool = True
    ) -> list:
        """See :meth:`Store.patch_records`."""
        return self.store.patch_records(kind, ids, fields, bump)

    def add_malformed(self, kind: str, record: dict, survey_id: int | None = None) -> None:
        """See :meth:`Store.add_malformed`."""
        self.store.add_malformed(kind, record, survey_id)

    # -- scripted answers ------------------------------------------------------------------------

    def script(self, kind: str, count: int = 1, endpoint: str | None = None) -> None:
        """Answers the next ``count`` admitted, signed requests (optionally only those of
        ``endpoint``: ``devices``, ``surveys`` or ``survey_responses``) with ``kind``: a fault
        kind, ``html_200``, ``empty_200``, ``reject_cursor`` (only requests with a non-empty
        cursor; others pass and do not consume it) or ``http_404``. FIFO, independent of the
        fault rate; counted in ``stats()["faults"]``."""
        self._script.add(kind, count, endpoint)

    def scripted(self) -> list[dict]:
        """Script entries not used up yet, oldest first (``kind``, ``count``, ``endpoint``)."""
        return self._script.pending()

    def clear_script(self) -> None:
        """Drops every pending script entry."""
        self._script.clear()
