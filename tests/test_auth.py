"""APIAuth against the api_auth gem's vector and signatures computed independently here."""

import base64
import hashlib
import hmac

import requests

from pipelines.micrometrics.auth import APIAuth

GEM_SECRET = (
    "l16imAXie1sRMcJODpOG7UwC1VyoqvO13jejkfpKWX4Z09W8DC9IrU23DvCwMry7pgSFW6c5S1GIfV0OY6F/vUA=="
)
DATE = "Mon, 23 Jan 1984 03:29:56 GMT"


def independent_signature(secret: str, canonical: str) -> str:
    mac = hmac.new(secret.encode(), canonical.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def prepare(method, url, secret="s3cret", **kwargs):
    headers = {"Date": DATE, **kwargs.pop("headers", {})}
    request = requests.Request(method, url, headers=headers, **kwargs)
    return APIAuth("1044", secret)(request.prepare())


def test_gem_vector():
    signed = prepare("GET", "http://example.test/test_resources/1.xml", secret=GEM_SECRET)
    assert signed.headers["Authorization"] == "APIAuth 1044:LZ1jujf3x1nnGR70/208WPXdUHw="
    assert "Content-MD5" not in signed.headers


def test_post_body_signs_content_md5():
    signed = prepare(
        "POST",
        "http://example.test/api/experience/surveys/237/responses",
        headers={"Content-Type": "application/json"},
        data=b'{"foo":"bar"}',
    )
    assert signed.headers["Content-MD5"] == "m7WPJhkuS6APAeLnsTa72A=="
    canonical = (
        "POST,application/json,m7WPJhkuS6APAeLnsTa72A==,/api/experience/surveys/237/responses,"
        + DATE
    )
    expected = independent_signature("s3cret", canonical)
    assert signed.headers["Authorization"] == f"APIAuth 1044:{expected}"


def test_query_is_signed_as_sent_percent_encoded():
    signed = prepare(
        "GET",
        "http://example.test/api/experience/surveys/237/responses",
        headers={"Content-Type": "application/json"},
        params={"start_at": "2024-01-01T00:00:00+00:00", "cursor": "a/b c"},
    )
    uri = (
        "/api/experience/surveys/237/responses"
        "?start_at=2024-01-01T00%3A00%3A00%2B00%3A00&cursor=a%2Fb+c"
    )
    assert signed.path_url == uri
    expected = independent_signature("s3cret", f"GET,application/json,,{uri},{DATE}")
    assert signed.headers["Authorization"] == f"APIAuth 1044:{expected}"


def test_date_set_when_absent_and_fresh_per_signing():
    auth = APIAuth("k", "s", clock=iter([1_000_000_000.0, 1_000_000_060.0]).__next__)
    first = auth(requests.Request("GET", "http://x.test/a").prepare())
    second = auth(requests.Request("GET", "http://x.test/a").prepare())
    assert first.headers["Date"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert second.headers["Date"] == "Sun, 09 Sep 2001 01:47:40 GMT"
    assert first.headers["Authorization"] != second.headers["Authorization"]


def test_repr_hides_secret():
    assert "s3cret" not in repr(APIAuth("k", "s3cret"))
