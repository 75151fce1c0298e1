"""APIAuth request signing, the scheme of the Ruby ``api_auth`` gem.

``Authorization: APIAuth <key>:Base64(HMAC-SHA1(secret, canonical))`` where canonical is
``METHOD,Content-Type,Content-MD5,request-uri,Date``. See ``shared/reference/api-notes.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import formatdate
from urllib.parse import urlsplit

from requests import PreparedRequest
from requests.auth import AuthBase

AUTH_SCHEME = "APIAuth"


def content_md5(body: bytes | str | None) -> str:
    """Base64 of the raw 16-byte MD5 digest of ``body``; empty string when there is no body."""
    if not body:
        return ""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")


def request_uri(url: str) -> str:
    """Path plus ``?query`` exactly as it goes on the wire (already percent-encoded)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def canonical_string(method: str, content_type: str, md5: str, uri: str, date: str) -> str:
    """The string that is signed: ``METHOD,Content-Type,Content-MD5,request-uri,Date``."""
    return ",".join([method.upper(), content_type or "", md5 or "", uri, date])


def sign(canonical: str, secret: str) -> str:
    """Base64(HMAC-SHA1(secret as UTF-8 bytes, canonical)), padded, no newline."""
    digest = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def http_date(timestamp: float | None = None) -> str:
    """RFC 7231 IMF-fixdate in GMT, e.g. ``Fri, 04 Sep 2020 13:35:05 GMT``."""
    return formatdate(timestamp, usegmt=True)


class APIAuth(AuthBase):
    """Signs a ``requests`` request with the APIAuth HMAC scheme.

    Every call signs afresh, so a retried request gets a new ``Date`` and signature as long
    as its ``Date`` is dropped first (``MicrometricsSession`` does so on every attempt). A
    ``Date`` header that the request already carries is kept, which lets tests pin it.

    Args:
        api_key: The public key id, sent in clear in the header.
        api_secret: The shared secret; used only to compute the HMAC, never sent or shown.
        clock: Returns the current UNIX time; injectable for tests of clock skew.
    """

    def __init__(self, api_key: str, api_secret: str, clock=None) -> None:
        self.api_key = api_key
        self._secret = api_secret
        self._clock = clock

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        body = request.body
        if body:
            request.headers["Content-MD5"] = content_md5(body)
        if "Date" not in request.headers:
            request.headers["Date"] = http_date(self._clock() if self._clock else None)
        canonical = canonical_string(
            request.method or "GET",
            request.headers.get("Content-Type", ""),
            request.headers.get("Content-MD5", "") if body else "",
            request_uri(request.url or ""),
            request.headers["Date"],
        )
        request.headers["Authorization"] = (
            f"{AUTH_SCHEME} {self.api_key}:{sign(canonical, self._secret)}"
        )
        return request

    def __repr__(self) -> str:  # never show the secret
        return f"APIAuth(api_key={self.api_key!r}, api_secret='***')"
