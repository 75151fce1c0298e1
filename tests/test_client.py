"""The client against the sandbox over real HTTP: paging, pacing, 429s, retries, errors."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
import urllib3.connection
from dlt.sources.helpers.rest_client import RESTClient
from requests import Response
from requests.adapters import BaseAdapter, HTTPAdapter

from pipelines.error_chain import causes
from pipelines.micrometrics import cancel
from pipelines.micrometrics.client import MicrometricsClient, index_records
from pipelines.micrometrics.errors import (
    ApiError,
    AuthenticationError,
    PagingLoopError,
    UnexpectedResponseError,
)
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.retry import RetryPolicy, retry_after_seconds
from pipelines.micrometrics.session import MicrometricsSession
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.models import build_models
from pipelines.sandbox import faults
from pipelines.sync.options import SyncOptions
from tests.conftest import KEY, SECRET
from tests.http_proxy import forwarding_proxy
from tests.syncing import loaded, sync_sandbox

EVERYTHING = {"start_at": "2000-01-01T00:00:00+00:00", "end_at": "2100-01-01T00:00:00+00:00"}


def index_paths(sandbox) -> list[str]:
    surveys = [s["id"] for s in sandbox.truth()["surveys"]]
    return ["/devices", "/surveys"] + [f"/surveys/{sid}/responses" for sid in surveys]


def fetch_everything(client, sandbox) -> dict[str, list[dict]]:
    fetched: dict[str, list[dict]] = {"devices": [], "surveys": [], "survey_responses": []}
    for path in index_paths(sandbox):
        kind = "survey_responses" if path.endswith("responses") else path.strip("/")
        for page in client.pages(path, EVERYTHING):
            fetched[kind].extend(page)
    return fetched


def assert_exact(fetched, truth):
    for kind, records in truth.items():
        got = sorted((r["id"], r["updated_at"]) for r in fetched[kind])
        assert got == sorted((r["id"], r["updated_at"]) for r in records), kind


def test_smoke_default_rate_limit_real_time(start_sandbox):
    """Every endpoint paged at the API's default limit: one request per page, no 429."""
    # 12 pages: two beyond the burst of 10, so the limit paces (in real time, ~2 s).
    sandbox = start_sandbox(devices=30, surveys=3, responses=180, page_size=25)
    client = MicrometricsClient(sandbox.url, KEY, SECRET)
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    stats = sandbox.stats()
    assert stats["requests"] == stats["pages"] == client.stats.requests == client.stats.pages
    assert stats["requests"] > 10  # more than the burst: pacing really happened
    assert stats["throttled"] == 0 and stats["by_status"] == {200: stats["requests"]}
    assert client.stats.throttled == 0


@pytest.mark.parametrize("last_cursor", ["empty", "absent"])
@pytest.mark.parametrize("order", ["shuffled", "asc", "desc"])
def test_default_sandbox_paged_without_429_on_virtual_time(
    start_sandbox, virtual_client, clock, order, last_cursor
):
    sandbox = start_sandbox(clock=clock, order=order, last_cursor=last_cursor)
    client = virtual_client(sandbox)
    started = clock.now
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    stats = sandbox.stats()
    assert stats["requests"] == stats["pages"] == client.stats.requests
    assert stats["throttled"] == 0
    # Paced at the floor the limit allows: burst free, then one request per second.
    floor = stats["requests"] - 10
    assert floor <= clock.now - started <= floor * 1.02 + 1


def test_429_waits_rate_limit_retry_after_then_succeeds(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock, rate=1.0, burst=3, responses=300, page_size=20)
    # A client that believes in a much larger bucket hits the server's limit.
    client = virtual_client(sandbox, rate=100.0, burst=100)
    client.bucket.observe = lambda headers: None  # ignore the server's hints
    started = clock.now
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    stats = sandbox.stats()
    assert stats["throttled"] > 0
    assert client.stats.throttled == stats["throttled"]
    assert client.stats.requests == stats["requests"] == stats["pages"] + stats["throttled"]
    # Each 429 waited what RateLimit-Retry-After said (the time until the server's next
    # token), no longer: the pages came at the server's rate, past its burst of 3.
    floor = stats["pages"] - 3
    assert floor <= clock.now - started <= floor * 1.05 + 1


def test_a_long_429_wait_is_said_and_a_short_one_is_not(start_sandbox, virtual_client, clock,
                                                       caplog):
    """Twenty 429s of 300 s each held one request 100 minutes without a line."""
    sandbox = start_sandbox(clock=clock, rate=1 / 45, burst=1, devices=5, surveys=1,
                            responses=10)
    client = virtual_client(sandbox, rate=100.0, burst=100)
    client.bucket.observe = lambda headers: None  # ignore the server's hints
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        list(client.pages("/devices", params={"start_at": "2000-01-01T00:00:00+00:00"}))
        list(client.pages("/surveys", params={"start_at": "2000-01-01T00:00:00+00:00"}))
    said = [record.getMessage() for record in caplog.records]
    assert sandbox.stats()["throttled"] == len(said) == 1, said
    assert said[0].startswith("warning: HTTP 429 on /api/experience/surveys: waiting 45 s as "
                              "the API asks (429 1 of at most 20 for this request); another")

    sandbox.reset_stats()
    caplog.clear()
    fast = start_sandbox(clock=clock, rate=1 / 29, burst=1, devices=5, surveys=1, responses=10)
    client = virtual_client(fast, rate=100.0, burst=100)
    client.bucket.observe = lambda headers: None
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        list(client.pages("/devices", params={"start_at": "2000-01-01T00:00:00+00:00"}))
        list(client.pages("/surveys", params={"start_at": "2000-01-01T00:00:00+00:00"}))
    assert fast.stats()["throttled"] == 1 and not caplog.records


def test_retries_sign_again_after_long_backoff(start_sandbox, virtual_client, clock):
    """Backoff of ~20 minutes: a re-sent stale signature would be refused (Date skew > 15 min)."""
    sandbox = start_sandbox(clock=clock, fault_rate=0.3, responses=400, page_size=20)
    client = virtual_client(sandbox, base=1200.0, cap=1200.0, max_attempts=10)
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    stats = sandbox.stats()
    assert sum(stats["faults"].values()) > 5
    assert {"dropped_connection", "truncated_body"} <= set(stats["faults"])
    assert {"http_500", "http_503", "http_502_html"} & set(stats["faults"])
    assert 401 not in stats["by_status"]
    assert client.stats.retries >= stats["faults"].get("http_500", 0)


@pytest.mark.parametrize("kind,status,requests", [
    ("http_524", 524, 2),  # a gateway's own 5xx (Cloudflare: origin timed out): retried
    ("http_408", 408, 2),  # a proxy timed the request out: retried
    ("http_501", 501, 1),  # not implemented: no retry fixes it
])
def test_gateway_statuses_are_retried_unless_no_retry_can_help(
    start_sandbox, virtual_client, clock, kind, status, requests
):
    sandbox = start_sandbox(clock=clock)
    sandbox.script(kind, endpoint="devices")
    client = virtual_client(sandbox)
    if requests == 1:
        with pytest.raises(ApiError, match=f"HTTP {status}"):
            list(client.pages("/devices", EVERYTHING))
    else:
        assert sum(len(page) for page in client.pages("/devices", EVERYTHING)) == len(
            sandbox.truth()["devices"])
    assert sandbox.stats()["by_endpoint"]["devices"] == requests


def test_a_body_that_trickles_in_is_given_up_at_the_deadline_and_asked_again(
    start_sandbox, virtual_client, clock
):
    """requests' read timeout bounds each wait for bytes, not the response: a page sent a
    piece a minute held the sync, and the schedule's lock, for as long as the server kept
    sending (ten minutes here; for ever from a stalled proxy). A response not whole
    ``BODY_DEADLINE`` seconds after it went out now counts as a timeout, and is asked again."""
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep, responses=300, page_size=20)
    sandbox.script("trickled_body", endpoint="devices")
    client = virtual_client(sandbox)
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    assert sandbox.stats()["faults"] == {"trickled_body": 1}
    assert client.stats.retries == 1
    assert sandbox.stats()["requests"] == client.stats.requests


def test_compressed_pages_are_read_exact(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock, responses=300, page_size=20, gzip=True)
    client = virtual_client(sandbox)
    assert_exact(fetch_everything(client, sandbox), sandbox.truth())
    assert sandbox.stats()["requests"] == client.stats.requests == client.stats.pages


def test_a_body_that_always_trickles_in_fails_as_a_timeout(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep)
    sandbox.script("trickled_body", count=5, endpoint="devices")
    client = virtual_client(sandbox, max_attempts=2)
    with pytest.raises(ApiError) as caught:
        list(client.pages("/devices", EVERYTHING))
    assert "127.0.0.1" in str(caught.value)
    assert "was still sending the body 300 s after the request (2 attempts)" in str(
        caught.value)
    assert sandbox.stats()["faults"] == {"trickled_body": 2}


@pytest.mark.parametrize("gzip", [False, True])
def test_a_trickling_body_is_given_up_at_the_deadline_on_the_real_clock(start_sandbox,
                                                                       monkeypatch, gzip):
    """On the real clock, as what is timed is a socket's reads: pieces 0.3 s apart, a deadline
    of 0.5 s. Read through requests' iter_content, which waits for 64 KB (more than a page),
    the attempt ended only once the body was whole (2.7 s here), and a body that never
    completed held the sync for ever; compressed and sent a byte at a time, a decoding read
    waits for bytes that decode (the gzip header and the first block's)."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 0.3)
    if gzip:
        monkeypatch.setattr(faults, "TRICKLE_PIECES", 10**6)  # a byte a piece
    sandbox = start_sandbox(rate=1000.0, burst=1000, gzip=gzip)
    sandbox.script("trickled_body", endpoint="devices")
    # given up at its third piece, 0.6 s in
    assert given_up(sandbox, "was still sending the body 0.5 s after the request") < 2.0


def given_up(sandbox, match: str) -> float:
    """The seconds a one-attempt read of the devices with a response deadline of 0.5 s took
    to fail with ``match``."""
    client = MicrometricsClient(sandbox.url, KEY, SECRET, retry=RetryPolicy(max_attempts=1))
    client.session.body_deadline = 0.5
    started = time.monotonic()
    with pytest.raises(ApiError, match=match):
        list(client.pages("/devices", EVERYTHING))
    return time.monotonic() - started


def test_a_trickling_head_is_given_up_at_the_deadline_on_the_real_clock(start_sandbox,
                                                                       monkeypatch):
    """Status line and headers a piece at a time, 0.3 s apart: each read got bytes within the
    read timeout, and the deadline was checked only on the body, so a server trickling its
    head held the request (and the sync, and a SIGTERM waiting for it) for as long as it went
    on. A watchdog ends the exchange at the deadline."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 0.3)
    sandbox = start_sandbox(rate=1000.0, burst=1000)
    sandbox.script("trickled_headers", endpoint="devices")
    # the head alone takes 2.7 s
    assert given_up(sandbox, "was still sending its status and headers 0.5 s after") < 2.0


def test_a_stopped_walk_ends_its_request_on_the_wire(start_sandbox, monkeypatch):
    """A stop (another stream failed, a SIGTERM) cancels the walks' scope; a request whose
    head was trickling held the stopping sync until it came whole, whatever the deadline."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 0.5)
    sending = threading.Event()

    def sleep(seconds: float) -> None:
        sending.set()
        time.sleep(seconds)

    sandbox = start_sandbox(rate=1000.0, burst=1000, sleep=sleep)
    sandbox.script("trickled_headers", endpoint="devices")
    took, outcome = walk_stopped_at(sandbox, sending)  # its head 4.5 s whole
    assert took < 1.0 and [type(exc) for exc in outcome] == [cancel.Cancelled]
    assert sandbox.stats()["requests"] == 1  # not asked again


def walk_stopped_at(sandbox, started: threading.Event) -> tuple[float, list]:
    """A walk reading the devices in its cancel scope, stopped once ``started`` is set: the
    seconds it took to end after the stop, and what it ended with."""
    client = MicrometricsClient(sandbox.url, KEY, SECRET)
    stop, outcome = cancel.CancelScope(), []

    def walk() -> None:
        with cancel.scope(stop):
            try:
                list(client.pages("/devices", EVERYTHING))
            except BaseException as exc:  # noqa: BLE001 - what the walk ended with
                outcome.append(exc)

    walker = threading.Thread(target=walk)
    walker.start()
    assert started.wait(10)
    stopped = time.monotonic()
    stop.cancel()
    walker.join(15)
    return time.monotonic() - stopped, outcome


def test_a_stop_while_the_connection_opens_ends_the_request_unsent(start_sandbox, monkeypatch):
    """Stopped while its connection was being made (DNS, TCP, TLS to a distant host), the
    attempt had no socket to shut yet: it went on, its head trickling, and its deadline was
    disarmed. The connection is shut as soon as it exists."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 1.0)  # the head whole in 9 s
    connecting = threading.Event()
    new_connection = urllib3.connection.HTTPConnection._new_conn

    def slow_new_connection(self):  # noqa: ANN001, ANN202 - urllib3's own
        connecting.set()
        time.sleep(0.6)
        return new_connection(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", slow_new_connection)
    sandbox = start_sandbox(rate=1000.0, burst=1000)
    sandbox.script("trickled_headers", endpoint="devices")
    took, outcome = walk_stopped_at(sandbox, connecting)
    assert took < 2.0 and [type(exc) for exc in outcome] == [cancel.Cancelled]
    assert sandbox.stats()["requests"] == 0


def test_the_deadline_and_a_stop_end_a_request_through_a_proxy(start_sandbox, monkeypatch):
    """requests makes a proxy's connection pools apart from its own: with HTTP(S)_PROXY set,
    neither the watchdog nor a stop reached the request."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 0.3)  # the head whole in 2.7 s
    sandbox = start_sandbox(rate=1000.0, burst=1000)
    with forwarding_proxy(int(urlsplit(sandbox.url).port)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sandbox.script("trickled_headers", endpoint="devices")
        assert given_up(sandbox, "still sending its status and headers 0.5 s") < 2.0

        trickling = threading.Event()
        monkeypatch.setattr(sandbox, "_sleep", lambda seconds: (trickling.set(),
                                                                time.sleep(seconds)))
        sandbox.script("trickled_headers", endpoint="devices")
        took, outcome = walk_stopped_at(sandbox, trickling)
    assert took < 1.0 and [type(exc) for exc in outcome] == [cancel.Cancelled]


def test_a_body_that_does_not_decode_is_asked_again(start_sandbox, virtual_client, clock):
    """A proxy or CDN that labels a body gzip and sends it as it is (or mangles it): urllib3's
    decoder fails on it. It is a transport failure, retried like a cut body."""
    sandbox = start_sandbox(clock=clock, responses=300, page_size=20)
    sandbox.script("mislabelled_gzip", endpoint="survey_responses")
    client = virtual_client(sandbox)
    fetched = fetch_everything(client, sandbox)

    assert_exact(fetched, sandbox.truth())
    assert sandbox.stats()["faults"] == {"mislabelled_gzip": 1}
    assert client.stats.retries == 1


def test_a_body_that_never_decodes_fails_in_one_line_naming_the_host(start_sandbox,
                                                                     virtual_client, clock):
    sandbox = start_sandbox(clock=clock)
    sandbox.script("mislabelled_gzip", count=5, endpoint="devices")
    client = virtual_client(sandbox, max_attempts=2)
    with pytest.raises(ApiError) as caught:
        list(client.pages("/devices", EVERYTHING))
    message = str(caught.value)
    assert "ContentDecodingError from 127.0.0.1" in message and "after 2 attempts" in message
    assert "\n" not in message and SECRET not in message and "APIAuth" not in message
    assert sandbox.stats()["faults"] == {"mislabelled_gzip": 2}


def test_gives_up_after_last_attempt_with_a_useful_message(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock, fault_rate=1.0)
    client = virtual_client(sandbox, max_attempts=3, max_throttled=2)
    with pytest.raises(ApiError) as caught:
        list(client.pages("/devices", EVERYTHING))
    message = str(caught.value)
    assert message.startswith("GET /api/experience/devices?start_at=")
    assert SECRET not in message and "APIAuth" not in message


def test_401_is_not_retried_and_says_what_to_check(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock)
    client = MicrometricsClient(sandbox.url, KEY, "wrong-secret", auth_clock=clock)
    with pytest.raises(AuthenticationError) as caught:
        list(client.pages("/devices", EVERYTHING))
    assert sandbox.stats()["requests"] == 1
    message = str(caught.value)
    assert "HTTP 401" in message and "API key and secret" in message
    assert "wrong-secret" not in message and "APIAuth" not in message


def test_a_header_http_refuses_is_reported_without_the_signed_header(start_sandbox, clock):
    # A key with a line break (settings strip it; a library caller may not): http.client's
    # refusal quotes the whole Authorization header, key and a signature valid for 15 minutes.
    sandbox = start_sandbox(clock=clock)
    client = MicrometricsClient(sandbox.url, KEY + "\n", SECRET, auth_clock=clock)
    with pytest.raises(ApiError) as caught:
        list(client.pages("/devices", EVERYTHING))
    error = caught.value
    assert "not sent (ValueError)" in str(error) and "APIAuth" not in str(error)
    assert error.__cause__ is None and error.__context__ is None  # nothing chained to trace
    assert sandbox.stats()["requests"] == 0


def test_401_with_skewed_clock_blames_the_clock(start_sandbox, clock):
    sandbox = start_sandbox(clock=clock)
    client = MicrometricsClient(sandbox.url, KEY, SECRET, auth_clock=lambda: clock() - 3600)
    with pytest.raises(AuthenticationError, match="clock differs from the server's by 60 minutes"):
        list(client.pages("/devices", EVERYTHING))


def test_index_body_shapes():
    assert index_records([{"id": 1}], "GET /x") == [{"id": 1}]
    assert index_records({"data": [{"id": 1}], "meta": {"n": 1}}, "GET /x") == [{"id": 1}]
    for bad in ({"a": [], "b": []}, {"error": "x"}, "text", None):
        with pytest.raises(UnexpectedResponseError, match="GET /x"):
            index_records(bad, "GET /x")


def test_retry_after_headers():
    assert retry_after_seconds({"RateLimit-Retry-After": "0.250"}, 9) == 0.25
    assert retry_after_seconds({"Retry-After": "3"}, 9) == 3
    assert retry_after_seconds({}, 9) == 9
    assert retry_after_seconds({"RateLimit-Retry-After": "99999"}, 9) == 300


def test_a_retry_after_date_counts_from_the_responses_date():
    # The server's clock 10 minutes ahead of this machine's (the API allows 15), then behind:
    # Retry-After is two seconds after the response's Date either way.
    for server in (1_773_578_696, 1_773_577_496):
        headers = {"Date": formatdate(server, usegmt=True),
                   "Retry-After": formatdate(server + 2, usegmt=True)}
        assert retry_after_seconds(headers, 9, now=lambda: 1_773_578_096.0) == 2
        # the RateLimit header, in seconds, still decides when the API sends it
        assert retry_after_seconds({**headers, "RateLimit-Retry-After": "0.250"}, 9) == 0.25
    # No Date: this machine's clock, the wait rounded up to the date's whole seconds.
    retry_at = {"Retry-After": formatdate(1_773_578_098, usegmt=True)}
    assert retry_after_seconds(retry_at, 9, now=lambda: 1_773_578_096.4) == 2
    assert retry_after_seconds(retry_at, 9, now=lambda: 1_773_578_099.0) == 0
    assert retry_after_seconds({**retry_at, "Date": "yesterday"}, 9,
                               now=lambda: 1_773_577_996.0) == 102
    assert retry_after_seconds({"Retry-After": "soon"}, 9) == 9


@pytest.mark.parametrize("skew", [0.0, 600.0, -600.0], ids=["same", "ahead", "behind"])
def test_a_gateways_429_waits_its_retry_after_date_whatever_the_servers_clock(
        start_sandbox, virtual_client, clock, skew):
    clock.now = time.time()  # this machine's clock (its waits virtual)
    sandbox = start_sandbox(clock=lambda: clock() + skew)
    sandbox.script("retry_after_date", endpoint="devices")
    client = virtual_client(sandbox, rate=1000.0, burst=1000)
    pages = list(client.pages("/devices", EVERYTHING))

    assert sum(len(page) for page in pages) == len(sandbox.truth()["devices"])
    assert sandbox.stats()["faults"] == {"retry_after_date": 1}
    assert client.stats.throttled == 1 and client.stats.retries == 0
    # the two seconds the server asked for: not five minutes (ahead), not none (behind)
    assert clock.slept == [pytest.approx(2.0)]


def test_429s_do_not_use_up_the_attempts_kept_for_failures(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(clock=clock)
    sandbox.script("spurious_429", count=5)
    sandbox.script("http_503", count=1)
    client = virtual_client(sandbox, max_attempts=2)
    pages = list(client.pages("/devices", EVERYTHING))
    assert sum(len(page) for page in pages) == len(sandbox.truth()["devices"])
    assert client.stats.throttled == 5 and client.stats.retries == 1
    # Each 429 waited what RateLimit-Retry-After said (0.05 s) and no more than a token's wait.
    assert all(wait <= 1.0 for wait in clock.slept) and 0.05 in [round(w, 3) for w in clock.slept]


def test_timeouts_are_retried_then_reported(start_sandbox, virtual_client, clock):
    sandbox = start_sandbox(latency=0.3)
    client = virtual_client(sandbox, max_attempts=3)
    client.timeout = 0.05
    with pytest.raises(ApiError, match=r"ReadTimeout from 127\.0\.0\.1:\d+ after 3 attempts"):
        list(client.pages("/devices", EVERYTHING))
    assert client.stats.requests == 3 and client.stats.retries == 2


class RecordingAdapter(HTTPAdapter):
    """The stock adapter, remembering the headers of every request that went out."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, str]] = []

    def send(self, request, **kwargs):
        self.sent.append(dict(request.headers))
        return super().send(request, **kwargs)


def test_retry_after_a_wait_over_15_minutes_carries_a_fresh_date_and_signature(
    start_sandbox, virtual_client, clock
):
    """A 503, then a 20-minute backoff: the sandbox refuses a Date more than 15 minutes old,
    so the retry succeeds only if it was signed when it went out, not when first prepared."""
    sandbox = start_sandbox(clock=clock)
    sandbox.script("http_503", count=1)
    client = virtual_client(sandbox, base=2400.0, cap=2400.0, max_attempts=2)  # 20-40 min
    recorder = RecordingAdapter()
    client.session.mount("http://", recorder)

    pages = list(client.pages("/devices", EVERYTHING))

    assert sum(len(page) for page in pages) == len(sandbox.truth()["devices"])
    assert client.stats.retries == 1 and max(clock.slept) > 15 * 60
    assert sandbox.stats()["by_status"].get(503) == 1 and 401 not in sandbox.stats()["by_status"]
    failed, retried = recorder.sent[:2]
    waited = (parsedate_to_datetime(retried["Date"]) - parsedate_to_datetime(failed["Date"]))
    assert waited.total_seconds() > 15 * 60
    assert failed["Authorization"] != retried["Authorization"]
    assert retried["Authorization"].startswith(f"APIAuth {KEY}:")


def test_response_hooks_see_only_the_final_response(start_sandbox, virtual_client, clock):
    """429s and 5xx that a retry fixed never reach the hooks (nor dlt's raise_for_status)."""
    sandbox = start_sandbox(clock=clock)
    sandbox.script("spurious_429", count=2)
    sandbox.script("http_500", count=1)
    client = virtual_client(sandbox)
    seen: list[int] = []
    hooks = {"response": [lambda response, **kwargs: seen.append(response.status_code)]}
    pages = list(client.paginate("/devices", params=EVERYTHING, hooks=hooks))
    assert seen == [200] * len(pages)
    assert client.stats.throttled == 2 and client.stats.retries == 1
    # Without hooks of its own, paginate's default raise_for_status sees only the final 200s.
    sandbox.script("http_503", count=1)
    assert len(list(client.paginate("/devices", params=EVERYTHING))) == len(pages)


def test_uses_only_public_rest_client_extension_points():
    """dlt's private methods are left alone: the session, hooks and extract_response do it."""
    overridden = {name for name in vars(MicrometricsClient)
                  if name in vars(RESTClient) and not name.endswith("__")}
    assert overridden == {"extract_response"}
    client = MicrometricsClient("https://tenant.example", KEY, SECRET)
    assert isinstance(client.session, MicrometricsSession)
    assert client.session.auth is client.auth
    assert (client.bucket, client.retry, client.stats, client.timeout) == (
        client.session.bucket, client.session.retry, client.session.stats,
        client.session.timeout)


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next (status, headers, body); remembers what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[tuple[str, dict[str, str]]] = []

    def send(self, request, **kwargs):
        self.sent.append((request.url, dict(request.headers)))
        status, headers, body = self.answers.pop(0)
        response = Response()
        response.status_code, response._content = status, body
        response.headers.update(headers)
        response.request, response.url, response.encoding = request, request.url, "utf-8"
        return response

    def close(self) -> None:
        pass


def test_redirect_hop_is_not_re_signed_for_another_host(clock):
    """requests strips Authorization on a redirect to another host; no re-signing puts it back,
    and the hop takes no token of its own, as with a plain session."""
    client = MicrometricsClient("https://tenant.example", KEY, SECRET, sleep=clock.sleep,
                                bucket=LeakyBucket(clock=clock, sleep=clock.sleep),
                                auth_clock=clock)
    adapter = ScriptedAdapter((302, {"Location": "https://elsewhere.example/x"}, b""),
                              (200, {}, b"[]"))
    client.session.mount("https://", adapter)
    assert [list(page) for page in client.pages("/devices")] == [[]]
    (first_url, first), (hop_url, hop) = adapter.sent
    assert first_url == "https://tenant.example/api/experience/devices"
    assert first["Authorization"].startswith(f"APIAuth {KEY}:")
    assert hop_url == "https://elsewhere.example/x" and "Authorization" not in hop
    assert client.stats.requests == 1


def test_a_404_on_one_endpoint_says_the_tenant_may_lack_it(start_sandbox, tmp_path, clock):
    # base_url is right (/surveys answers), but this tenant has no /devices: the hint must not
    # only send the user to base_url, and what it says to do works.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=50, rate=1000.0,
                            burst=1000)
    sandbox.script("http_404", count=100, endpoint="devices")
    with pytest.raises(Exception) as failed:
        sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    [error] = [link for link in causes(failed.value) if isinstance(link, ApiError)]
    message = str(error)
    assert message.startswith("GET /api/experience/devices?") and "HTTP 404" in message
    assert hint("not_found") in message and "ask Micrometrics" in message
    # What it says of --resources holds: the rest loads, and the models wait for devices.
    assert "the models wait for every table" in message

    options = SyncOptions(resources=("surveys", "survey_responses"))
    result = sync_sandbox(sandbox, tmp_path, clock, options, rate=1000.0, burst=1000)
    truth = sandbox.truth()
    assert len(loaded(tmp_path, "surveys")) == len(truth["surveys"])
    assert len(loaded(tmp_path, "survey_responses")) == len(truth["survey_responses"])
    models = build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert models.waiting_for == ["devices"] and not models.built


def test_a_chain_resumed_from_a_kept_cursor_knows_that_cursor_followed(start_sandbox,
                                                                       virtual_client, clock):
    """A round keeps the cursor of its next page in state; the next round starts from it. A
    server that sends that cursor back pages in a loop from its first answer."""
    sandbox = start_sandbox(clock=clock, surveys=1, responses=40, page_size=5)
    client = virtual_client(sandbox)
    path = "/surveys/237/responses"
    params = {"start_at": "2000-01-01T00:00:00+00:00"}
    kept = next(iter(client.pages(path, params=params))).paginator.next_cursor
    assert kept
    sandbox.script("repeat_cursor", count=10, endpoint="survey_responses")
    with pytest.raises(PagingLoopError, match="already read"):
        list(client.pages(path, params={**params, "cursor": kept}))
    assert sandbox.stats()["faults"] == {"repeat_cursor": 1}
