"""Scripted answers: FIFO, per endpoint, independent of the fault rate, counted as faults."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime

import pytest
import requests

from pipelines.sandbox.faults import TRICKLE_PIECES, TRICKLE_SECONDS

from .support import EARLY

BASE = "/api/experience"
WINDOW = {"start_at": EARLY}


def _get(api, sb, path: str, **params) -> requests.Response:
    return api.get(sb.url + BASE + path, params={**WINDOW, **params})


def _cursor(api, sb, path: str) -> str:
    cursor = _get(api, sb, path).headers["Next-Cursor"]
    assert cursor
    return cursor


def test_script_kinds_in_fifo_order(sandbox, api):
    sandbox.script("http_503")
    sandbox.script("html_200")
    sandbox.script("empty_200")
    sandbox.script("http_404", count=2)
    assert _get(api, sandbox, "/devices").status_code == 503
    html = _get(api, sandbox, "/devices")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert "<form" in html.text
    empty = _get(api, sandbox, "/surveys")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["Content-Type"].startswith("application/json")
    assert empty.headers["Content-Length"] == "0"
    for _ in range(2):
        missing = _get(api, sandbox, "/surveys")
        assert missing.status_code == 404 and "error" in missing.json()
    assert _get(api, sandbox, "/surveys").status_code == 200
    assert sandbox.scripted() == []
    stats = sandbox.stats()
    assert stats["faults"] == {"http_503": 1, "html_200": 1, "empty_200": 1, "http_404": 2}
    assert stats["by_status"] == {503: 1, 200: 3, 404: 2}
    assert stats["pages"] == 1  # scripted answers are not pages


def test_script_per_endpoint(sandbox, api):
    sandbox.script("http_500", count=2, endpoint="survey_responses")
    assert _get(api, sandbox, "/devices").status_code == 200
    assert _get(api, sandbox, "/surveys/237").status_code == 200
    assert _get(api, sandbox, "/surveys/237/responses").status_code == 500
    assert sandbox.scripted() == [{"kind": "http_500", "count": 1, "endpoint": "survey_responses"}]
    assert _get(api, sandbox, "/surveys/238/responses").status_code == 500
    assert _get(api, sandbox, "/surveys/238/responses").status_code == 200


def test_retry_after_date_is_a_gateways_429_on_the_sandbox_clock(sandbox, api, clock):
    clock.advance(0.7)  # off the whole second: both dates are of one reading
    sandbox.script("retry_after_date", endpoint="surveys")
    assert _get(api, sandbox, "/devices").status_code == 200
    throttled = _get(api, sandbox, "/surveys")
    assert throttled.status_code == 429 and "error" in throttled.json()
    sent = parsedate_to_datetime(throttled.headers["Date"]).timestamp()
    retry_at = parsedate_to_datetime(throttled.headers["Retry-After"]).timestamp()
    assert sent == int(clock()) and retry_at - sent == 2
    assert not [name for name in throttled.headers if name.lower().startswith("ratelimit")]
    assert sandbox.stats()["faults"] == {"retry_after_date": 1}
    assert _get(api, sandbox, "/surveys").status_code == 200


def test_reject_cursor_waits_for_a_cursor(sandbox, api):
    sandbox.script("reject_cursor")
    sandbox.script("http_503")
    # No cursor (or an empty one): the reject_cursor entry is skipped, the next one applies.
    assert _get(api, sandbox, "/devices", cursor="").status_code == 503
    cursor = _cursor(api, sandbox, "/devices")
    rejected = _get(api, sandbox, "/devices", cursor=cursor)
    assert rejected.status_code == 400 and rejected.json() == {"error": "invalid cursor"}
    assert _get(api, sandbox, "/devices", cursor=cursor).status_code == 200
    stats = sandbox.stats()
    assert stats["faults"] == {"reject_cursor": 1, "http_503": 1}
    assert stats["cursor_requests"] == 2 and stats["requests"] == 4


def test_script_overrides_random_faults_and_keeps_their_sequence(make_sandbox, clock, api):
    def statuses(sb) -> list[int]:
        out = []
        for _ in range(12):
            try:
                out.append(_get(api, sb, "/surveys").status_code)
            except requests.ConnectionError:
                out.append(0)
        return out

    plain = statuses(make_sandbox(fault_rate=0.5, seed=7))
    scripted_sb = make_sandbox(fault_rate=0.5, seed=7)
    scripted_sb.script("http_404", count=3)
    scripted = statuses(scripted_sb)
    assert scripted[:3] == [404] * 3 and scripted[3:] == plain[3:]
    assert set(plain[3:]) != {200}  # the comparison is not vacuous
    quiet = make_sandbox(fault_rate=0.0)
    quiet.script("dropped_connection")
    with pytest.raises(requests.ConnectionError):
        _get(api, quiet, "/surveys")
    assert quiet.stats()["faults"] == {"dropped_connection": 1}


def test_scripted_truncated_body(sandbox, api):
    sandbox.script("truncated_body", endpoint="devices")
    response = _get(api, sandbox, "/devices")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_scripted_trickled_body(make_sandbox, clock, api):
    """The page as it would be, its body sent a piece at a time a minute apart on the
    sandbox's clock: every read gets bytes, the response takes nine minutes whole."""
    sb = make_sandbox(sleep=clock.sleep)
    expected = _get(api, sb, "/devices").content
    clock.slept.clear()
    sb.script("trickled_body", endpoint="devices")
    trickled = _get(api, sb, "/devices")
    assert trickled.status_code == 200 and trickled.content == expected
    assert clock.slept == [TRICKLE_SECONDS] * (TRICKLE_PIECES - 1)
    assert sb.stats()["faults"] == {"trickled_body": 1}


def test_scripted_trickled_headers(make_sandbox, clock, api):
    """The same for the status line and headers; the body then at once."""
    sb = make_sandbox(sleep=clock.sleep)
    expected = _get(api, sb, "/devices")
    clock.slept.clear()
    sb.script("trickled_headers", endpoint="devices")
    trickled = _get(api, sb, "/devices")
    assert trickled.status_code == 200 and trickled.content == expected.content
    assert trickled.headers["Next-Cursor"] == expected.headers["Next-Cursor"]
    assert clock.slept == [TRICKLE_SECONDS] * (TRICKLE_PIECES - 1)
    assert sb.stats()["faults"] == {"trickled_headers": 1}


def test_gzip_compresses_api_bodies_for_a_client_that_accepts_it(make_sandbox, api):
    plain, compressed = make_sandbox(), make_sandbox(gzip=True)
    unpacked = _get(api, plain, "/devices")
    expected = unpacked.json()
    answer = _get(api, compressed, "/devices")
    assert answer.headers["Content-Encoding"] == "gzip" and answer.json() == expected
    assert int(answer.headers["Content-Length"]) < int(unpacked.headers["Content-Length"])
    identity = api.get(compressed.url + BASE + "/devices", params=WINDOW,
                       headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in identity.headers and identity.json() == expected


@pytest.mark.parametrize(("accept", "compressed"), [
    ("gzip;q=0", False), ("identity, gzip;q=0", False), ("*;q=0", False), ("br", False),
    ("gzip; q=0.000", False), ("*, gzip;q=0", False), ("gzip;q=nope", False),
    ("GZIP", True), ("x-gzip", True), ("deflate, gzip;q=0.5", True), ("*", True),
    ("br, *;q=0.1", True),
])
def test_gzip_only_for_a_client_whose_accept_encoding_weighs_it_above_0(make_sandbox, api,
                                                                       accept, compressed):
    sandbox = make_sandbox(gzip=True)
    answer = api.get(sandbox.url + BASE + "/devices", params=WINDOW,
                     headers={"Accept-Encoding": accept})
    assert answer.status_code == 200 and answer.json()
    assert (answer.headers.get("Content-Encoding") == "gzip") is compressed


@pytest.mark.parametrize("gzip", [False, True])
def test_scripted_mislabelled_gzip_sends_the_json_as_it_is(make_sandbox, api, gzip):
    sb = make_sandbox(gzip=gzip)
    expected = json.dumps(_get(api, sb, "/devices").json(), ensure_ascii=False).encode()
    sb.script("mislabelled_gzip", endpoint="devices")
    answer = api.get(sb.url + BASE + "/devices", params=WINDOW, stream=True,
                     headers={"Accept-Encoding": "identity"})
    assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert answer.raw.read(decode_content=False) == expected
    assert sb.stats()["faults"] == {"mislabelled_gzip": 1}


def test_scripted_repeat_cursor_answers_a_cursored_page_with_its_own_cursor(sandbox, api):
    sandbox.script("repeat_cursor", endpoint="devices")
    first = _get(api, sandbox, "/devices")  # no cursor: passes, the entry stays queued
    cursor = first.headers["Next-Cursor"]
    assert cursor and sandbox.scripted() == [
        {"kind": "repeat_cursor", "count": 1, "endpoint": "devices"}]
    looped = _get(api, sandbox, "/devices", cursor=cursor)
    assert looped.status_code == 200 and looped.headers["Next-Cursor"] == cursor
    assert looped.json() and looped.json() != first.json()  # the cursor's page, as it is
    assert _get(api, sandbox, "/devices", cursor=cursor).headers["Next-Cursor"] != cursor
    assert sandbox.stats()["faults"] == {"repeat_cursor": 1}


def test_unauthenticated_and_throttled_requests_do_not_consume(make_sandbox, clock, api):
    sb = make_sandbox(burst=1, rate=0.001)
    sb.script("http_500")
    assert requests.get(sb.url + BASE + "/devices").status_code == 401
    assert sb.scripted()[0]["count"] == 1
    assert _get(api, sb, "/surveys").status_code == 500  # takes the only token
    assert _get(api, sb, "/surveys").status_code == 429  # throttled, nothing left to script
    assert sb.stats()["throttled"] == 1


def test_script_validation_and_control_route(sandbox, api):
    for bad in (
        dict(kind="http_418"),
        dict(kind="http_500", endpoint="widgets"),
        dict(kind="http_500", count=-1),
    ):
        with pytest.raises(ValueError):
            sandbox.script(**bad)
        reply = requests.post(sandbox.url + "/_sandbox/mutate", json={"action": "script", **bad})
        assert reply.status_code == 400
    reply = requests.post(
        sandbox.url + "/_sandbox/mutate",
        json={"action": "script", "kind": "spurious_429", "count": 1, "endpoint": "surveys"},
    )
    assert reply.status_code == 200 and reply.json() == {"ids": []}
    throttled = _get(api, sandbox, "/surveys")
    assert throttled.status_code == 429 and throttled.headers["RateLimit-Retry-After"] == "0.05"
    sandbox.script("http_500", count=5)
    sandbox.clear_script()
    assert _get(api, sandbox, "/surveys").status_code == 200


def test_cursor_requests_counted(sandbox, api):
    cursor = _cursor(api, sandbox, "/devices")
    _get(api, sandbox, "/devices", cursor=cursor)
    _get(api, sandbox, "/devices", cursor="")
    _get(api, sandbox, "/devices", cursor="garbage")  # a 400, still a cursor request
    stats = sandbox.stats()
    assert stats["cursor_requests"] == 2 and stats["requests"] == 4
    sandbox.reset_stats()
    assert sandbox.stats()["cursor_requests"] == 0
