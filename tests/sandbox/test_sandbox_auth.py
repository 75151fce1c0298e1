"""APIAuth verification: the gem's vector, wrongly built signatures, every 401 reason.

Signatures here are computed by this file's own helpers, not by the client's signer, and the
sandbox must import nothing from the client: a signing bug cannot pass on both sides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import formatdate
from pathlib import Path

import pytest
import requests
from requests.structures import CaseInsensitiveDict

import pipelines.sandbox
from pipelines.sandbox.verify import (
    body_md5,
    canonical_string,
    expected_signature,
    http_date,
    parse_http_date,
    verify,
)
from tests.imports import imported_modules

from .support import KEY, SECRET, signed_session

DEVICES = "/api/experience/devices"
GEM_SECRET = (
    "l16imAXie1sRMcJODpOG7UwC1VyoqvO13jejkfpKWX4Z09W8DC9IrU23DvCwMry7pgSFW6c5S1GIfV0OY6F/vUA=="
)
GEM_DATE = "Mon, 23 Jan 1984 03:29:56 GMT"
GEM_NOW = 443676596.0  # GEM_DATE in UNIX seconds


def hmac_b64(secret: bytes | str, canonical: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, canonical.encode(), hashlib.sha1).digest()).decode()


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_gem_test_vector_is_accepted():
    canonical = "GET,,,/test_resources/1.xml," + GEM_DATE
    assert canonical_string("get", "", "", "/test_resources/1.xml", GEM_DATE) == canonical
    assert expected_signature(GEM_SECRET, canonical) == "LZ1jujf3x1nnGR70/208WPXdUHw="
    assert parse_http_date(GEM_DATE) == GEM_NOW
    headers = {"Authorization": "APIAuth 1044:LZ1jujf3x1nnGR70/208WPXdUHw=", "Date": GEM_DATE}
    result = verify("GET", "/test_resources/1.xml", headers, b"", {"1044": GEM_SECRET}, GEM_NOW)
    assert result.error is None and result.api_key == "1044"


def test_md5_of_the_notes_example():
    assert body_md5(b'{"foo":"bar"}') == "m7WPJhkuS6APAeLnsTa72A=="


# A GET with a percent-encoded query and a POST with a body, as they arrive on the wire.
QUERY_URI = (
    "/api/experience/surveys/237/responses"
    "?start_at=2024-01-01T00%3A00%3A00%2B00%3A00&cursor=a%2Fb+c"
)
DECODED_URI = (
    "/api/experience/surveys/237/responses?start_at=2024-01-01T00:00:00+00:00&cursor=a/b c"
)
POST_URI = "/api/experience/surveys/237/responses"
BODY = b'{"foo":"bar"}'
JSON = "application/json"
HEX_MD5_B64 = base64.b64encode(hashlib.md5(BODY).hexdigest().encode()).decode()

# (name, method, uri, body, Content-MD5 header, canonical signed by a client)
CASE_FIELDS = "name, method, uri, body, md5, canonical"
RIGHT = [
    ("get", "GET", QUERY_URI, b"", "", f"GET,{JSON},,{QUERY_URI},{GEM_DATE}"),
    ("post", "POST", POST_URI, BODY, md5_b64(BODY),
     f"POST,{JSON},{md5_b64(BODY)},{POST_URI},{GEM_DATE}"),
]
WRONG = [
    ("query decoded", "GET", QUERY_URI, b"", "", f"GET,{JSON},,{DECODED_URI},{GEM_DATE}"),
    ("query re-encoded, %20 for +", "GET", QUERY_URI, b"", "",
     f"GET,{JSON},,{QUERY_URI.replace('+', '%20')},{GEM_DATE}"),
    ("query left out", "GET", QUERY_URI, b"", "",
     f"GET,{JSON},,{QUERY_URI.split('?')[0]},{GEM_DATE}"),
    ("full URL", "GET", QUERY_URI, b"", "", f"GET,{JSON},,http://h.test{QUERY_URI},{GEM_DATE}"),
    ("method lower case", "GET", QUERY_URI, b"", "", f"get,{JSON},,{QUERY_URI},{GEM_DATE}"),
    ("Content-Type left out", "GET", QUERY_URI, b"", "", f"GET,,,{QUERY_URI},{GEM_DATE}"),
    ("other Date form", "GET", QUERY_URI, b"", "",
     f"GET,{JSON},,{QUERY_URI},Mon, 23 Jan 1984 03:29:56 +0000"),
    ("fields reordered", "GET", QUERY_URI, b"", "", f"GET,,{JSON},{QUERY_URI},{GEM_DATE}"),
    ("MD5 as Base64 of the hex digest", "POST", POST_URI, BODY, md5_b64(BODY),
     f"POST,{JSON},{HEX_MD5_B64},{POST_URI},{GEM_DATE}"),
    ("MD5 left out of the canonical", "POST", POST_URI, BODY, md5_b64(BODY),
     f"POST,{JSON},,{POST_URI},{GEM_DATE}"),
]


def check(method, uri, body, md5, signature, secret=GEM_SECRET):
    headers = CaseInsensitiveDict({
        "Authorization": f"APIAuth 1044:{signature}", "Date": GEM_DATE, "Content-Type": JSON,
    })
    if md5:
        headers["Content-MD5"] = md5
    return verify(method, uri, headers, body, {"1044": secret}, GEM_NOW)


@pytest.mark.parametrize(CASE_FIELDS, RIGHT, ids=[r[0] for r in RIGHT])
def test_signature_over_the_described_canonical_is_accepted(name, method, uri, body, md5,
                                                            canonical):
    assert check(method, uri, body, md5, hmac_b64(GEM_SECRET, canonical)).error is None


@pytest.mark.parametrize(CASE_FIELDS, WRONG, ids=[w[0] for w in WRONG])
def test_signature_over_a_wrongly_built_canonical_is_rejected(name, method, uri, body, md5,
                                                              canonical):
    result = check(method, uri, body, md5, hmac_b64(GEM_SECRET, canonical))
    assert result.error == "signature mismatch" and result.api_key == "1044"


def test_secret_is_used_as_utf8_not_base64_decoded():
    canonical = f"GET,{JSON},,{QUERY_URI},{GEM_DATE}"
    decoded_key = base64.b64decode(GEM_SECRET)
    assert check("GET", QUERY_URI, b"", "", hmac_b64(decoded_key, canonical)).error == (
        "signature mismatch")


def test_md5_header_as_base64_of_the_hex_digest_is_rejected():
    """The vendor page's first example (``ODdFNzcx...``) is this mistaken form."""
    canonical = f"POST,{JSON},{HEX_MD5_B64},{POST_URI},{GEM_DATE}"
    result = check("POST", POST_URI, BODY, HEX_MD5_B64, hmac_b64(GEM_SECRET, canonical))
    assert result.error == "Content-MD5 does not match the request body"


@pytest.mark.parametrize("timestamp", [0, 443676596, 443676596.9, 951782400, 1773578096.25,
                                       4102444799])
def test_http_date_is_imf_fixdate_and_round_trips(timestamp):
    text = http_date(timestamp)
    assert text == formatdate(timestamp, usegmt=True)
    assert parse_http_date(text) == float(int(timestamp))


@pytest.mark.parametrize("text", [
    None, "", "yesterday",
    "Tue, 23 Jan 1984 03:29:56 GMT",  # wrong day name
    "Mon, 23 Jan 1984 03:29:56 +0000",  # numeric zone
    "Mon, 23 Jan 1984 03:29:56 UTC",
    "Monday, 23-Jan-84 03:29:56 GMT",  # obsolete RFC 850
    "Mon Jan 23 03:29:56 1984",  # obsolete asctime
    "Mon, 23 jan 1984 03:29:56 GMT",
    "Mon, 3 Jan 1984 03:29:56 GMT",
    "Thu, 30 Feb 1984 03:29:56 GMT",
    "Mon, 23 Jan 1984 24:29:56 GMT",
    " Mon, 23 Jan 1984 03:29:56 GMT",
])
def test_dates_other_than_imf_fixdate_are_refused(text):
    assert parse_http_date(text) is None
    if text is not None:
        headers = {"Authorization": "APIAuth 1044:LZ1jujf3x1nnGR70/208WPXdUHw=", "Date": text}
        result = verify("GET", "/test_resources/1.xml", headers, b"", {"1044": GEM_SECRET},
                        GEM_NOW)
        assert "Date" in result.error


def test_sandbox_imports_nothing_from_the_client():
    """Only the standard library, third-party packages and the sandbox's own modules."""
    folder = Path(pipelines.sandbox.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert {"verify.py", "server.py", "__init__.py"} <= {m.name for m in modules}
    # The check sees relative imports: server.py takes its Date formatting from verify.py.
    assert "pipelines.sandbox.verify.http_date" in imported_modules(
        folder / "server.py", "pipelines.sandbox")
    for path in modules:
        outside = sorted(
            name for name in imported_modules(path, "pipelines.sandbox")
            if name.split(".")[0] == "pipelines" and not name.startswith("pipelines.sandbox")
        )
        assert not outside, f"{path.name} imports {outside}"


def test_signed_request_is_accepted(sandbox, api):
    response = api.get(sandbox.url + DEVICES, params={"start_at": "2000-01-01T00:00:00+00:00"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Date"] == formatdate(sandbox.clock(), usegmt=True)
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
    bad = {"Authorization": "Basic abc", "Date": formatdate(sandbox.clock(), usegmt=True)}
    _assert_401(requests.get(sandbox.url + DEVICES, headers=bad), has_limits=False)


def test_stale_and_missing_date(sandbox, api, clock):
    stale = {"Date": formatdate(clock() - 901, usegmt=True)}
    body = _assert_401(api.get(sandbox.url + DEVICES, headers=stale), has_limits=True)
    assert "clock skew" in body["error"]
    # 899 s off is still inside the allowance.
    ok = api.get(sandbox.url + DEVICES, headers={"Date": formatdate(clock() + 899, usegmt=True)})
    assert ok.status_code == 200
    garbage = api.get(sandbox.url + DEVICES, headers={"Date": "yesterday"})
    assert "Date" in _assert_401(garbage, has_limits=True)["error"]


def test_query_tampered_after_signing(sandbox, api):
    prepared = api.prepare_request(requests.Request("GET", sandbox.url + DEVICES))
    prepared.url += "?start_at=2000-01-01T00%3A00%3A00Z"
    _assert_401(api.send(prepared), has_limits=True)


def test_wrongly_built_canonical_is_refused_over_http(sandbox, clock):
    """Over the wire: the query signed decoded while it travels percent-encoded."""
    date = formatdate(clock(), usegmt=True)
    wire = DEVICES + "?start_at=2000-01-01T00%3A00%3A00%2B00%3A00"
    headers = {"Content-Type": JSON, "Date": date}

    def get(uri_signed: str) -> requests.Response:
        signature = hmac_b64(SECRET, f"GET,{JSON},,{uri_signed},{date}")
        return requests.get(sandbox.url + wire,
                            headers={**headers, "Authorization": f"APIAuth {KEY}:{signature}"})

    assert get(wire).status_code == 200
    decoded = DEVICES + "?start_at=2000-01-01T00:00:00+00:00"
    assert "signature" in _assert_401(get(decoded), has_limits=True)["error"]


def test_body_needs_matching_content_md5(sandbox, api, clock):
    url = sandbox.url + POST_URI
    body = b'{"answers": []}'
    date = formatdate(clock(), usegmt=True)
    # Signed without Content-MD5 at all.
    sig = hmac_b64(SECRET, f"POST,{JSON},,{POST_URI},{date}")
    headers = {"Content-Type": JSON, "Date": date, "Authorization": f"APIAuth {KEY}:{sig}"}
    body_401 = _assert_401(requests.post(url, data=body, headers=headers), has_limits=True)
    assert "Content-MD5" in body_401["error"]
    # Content-MD5 in the vendor page's mistaken form: Base64 of the hex digest.
    hex_md5 = base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()
    sig = hmac_b64(SECRET, f"POST,{JSON},{hex_md5},{POST_URI},{date}")
    headers = {**headers, "Content-MD5": hex_md5, "Authorization": f"APIAuth {KEY}:{sig}"}
    body_401 = _assert_401(requests.post(url, data=body, headers=headers), has_limits=True)
    assert "Content-MD5" in body_401["error"]
    # Properly signed, then the body is swapped: the MD5 no longer matches.
    prepared = api.prepare_request(requests.Request("POST", url, data=body, headers={
        "Content-Type": JSON}))
    prepared.body = b'{"answers": [1]}'
    prepared.headers["Content-Length"] = str(len(prepared.body))
    assert "Content-MD5" in _assert_401(api.send(prepared), has_limits=True)["error"]


def test_unsigned_api_refused_but_control_route_allowed(sandbox):
    assert requests.get(sandbox.url + "/api/experience/surveys").status_code == 401
    assert requests.get(sandbox.url + "/_sandbox/truth").status_code == 200
