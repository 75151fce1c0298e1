"""APIAuth verification: the happy path and every 401 reason."""

from __future__ import annotations

import requests

from pipelines.micrometrics.auth import canonical_string, http_date, sign
from pipelines.sandbox.verify import verify

from .support import KEY, SECRET, signed_session

DEVICES = "/api/experience/devices"


def test_gem_test_vector_is_accepted():
    secret = (
        "l16imAXie1sRMcJODpOG7UwC1VyoqvO13jejkfpKWX4Z09W8DC9IrU23DvCwMry7pgSFW6c5S1GIfV0OY6F/vUA=="
    )
    headers = {
        "Authorization": "APIAuth 1044:LZ1jujf3x1nnGR70/208WPXdUHw=",
        "Date": "Mon, 23 Jan 1984 03:29:56 GMT",
    }
    result = verify("GET", "/test_resources/1.xml", headers, b"", {"1044": secret}, 443676596)
    assert result.error is None and result.api_key == "1044"


def test_signed_request_is_accepted(sandbox, api):
    response = api.get(sandbox.url + DEVICES, params={"start_at": "2000-01-01T00:00:00+00:00"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Date"] == http_date(sandbox.clock())
    assert isinstance(response.json(), list)


def _assert_401(response: requests.Response, *, has_limits: bool) -> dict:
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error"}
    sent = response.request.headers.get("Authorization", "")
    assert not sent or sent.split(":")[-1] not in response.text  # signature never echoed
    assert SECRET not in response.text
    assert ("RateLimit-Burst-Remaining" in response.headers) is has_limits
    return body


def test_wrong_secret(sandbox, clock):
    with signed_session(clock, secret="nope") as s:
        body = _assert_401(s.get(sandbox.url + DEVICES), has_limits=True)
    assert "signature" in body["error"]


def test_unknown_key(sandbox, clock):
    with signed_session(clock, key="stranger") as s:
        _assert_401(s.get(sandbox.url + DEVICES), has_limits=False)


def test_missing_and_malformed_header(sandbox):
    _assert_401(requests.get(sandbox.url + DEVICES), has_limits=False)
    bad = {"Authorization": "Basic abc", "Date": http_date(sandbox.clock())}
    _assert_401(requests.get(sandbox.url + DEVICES, headers=bad), has_limits=False)


def test_stale_and_missing_date(sandbox, api, clock):
    stale = {"Date": http_date(clock() - 901)}
    body = _assert_401(api.get(sandbox.url + DEVICES, headers=stale), has_limits=True)
    assert "clock skew" in body["error"]
    # 899 s off is still inside the allowance.
    ok = api.get(sandbox.url + DEVICES, headers={"Date": http_date(clock() + 899)})
    assert ok.status_code == 200
    garbage = api.get(sandbox.url + DEVICES, headers={"Date": "yesterday"})
    assert "Date" in _assert_401(garbage, has_limits=True)["error"]


def test_query_tampered_after_signing(sandbox, api):
    prepared = api.prepare_request(requests.Request("GET", sandbox.url + DEVICES))
    prepared.url += "?start_at=2000-01-01T00%3A00%3A00Z"
    _assert_401(api.send(prepared), has_limits=True)


def test_body_needs_matching_content_md5(sandbox, api, clock):
    url = sandbox.url + "/api/experience/surveys/237/responses"
    body = b'{"answers": []}'
    date = http_date(clock())
    # Signed without Content-MD5 at all.
    sig = sign(canonical_string("POST", "application/json", "", url[len(sandbox.url):], date),
               SECRET)
    headers = {"Content-Type": "application/json", "Date": date,
               "Authorization": f"APIAuth {KEY}:{sig}"}
    body_401 = _assert_401(requests.post(url, data=body, headers=headers), has_limits=True)
    assert "Content-MD5" in body_401["error"]
    # Properly signed, then the body is swapped: the MD5 no longer matches.
    prepared = api.prepare_request(requests.Request("POST", url, data=body, headers={
        "Content-Type": "application/json"}))
    prepared.body = b'{"answers": [1]}'
    prepared.headers["Content-Length"] = str(len(prepared.body))
    assert "Content-MD5" in _assert_401(api.send(prepared), has_limits=True)["error"]


def test_unsigned_api_refused_but_control_route_allowed(sandbox):
    assert requests.get(sandbox.url + "/api/experience/surveys").status_code == 401
    assert requests.get(sandbox.url + "/_sandbox/truth").status_code == 200
