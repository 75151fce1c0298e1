"""Strict verification of APIAuth-signed requests, as the ``api_auth`` gem does it."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from pipelines.micrometrics.auth import canonical_string, content_md5, sign

MAX_SKEW_SECONDS = 900  # api_auth's default allowance: 15 minutes
_HEADER = re.compile(r"^APIAuth ([^\s:]+):(\S+)$")


@dataclass(frozen=True)
class AuthResult:
    """Outcome of verification.

    Attributes:
        api_key: The key named in the header if it is a known key (even when the request
            is rejected), else None; used to attach rate-limit headers.
        error: None when the request is authentic, else a message safe to return (it never
            contains the received signature or a secret).
    """

    api_key: str | None
    error: str | None


def verify(
    method: str,
    raw_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    now: float,
) -> AuthResult:
    """Checks the ``Authorization`` header of one request.

    Args:
        method: HTTP method.
        raw_uri: Request target exactly as received (path and undecoded query).
        headers: Request headers (case-insensitive mapping).
        body: Raw request body, ``b""`` when none.
        credentials: Known ``{api_key: api_secret}``.
        now: Server clock, UNIX seconds.
    """
    match = _HEADER.match(headers.get("Authorization", "").strip())
    if not match:
        return AuthResult(None, "missing or malformed Authorization header (APIAuth key:sig)")
    key, received = match.groups()
    if key not in credentials:
        return AuthResult(None, "unknown API key")
    date = headers.get("Date")
    try:
        sent_at = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        sent_at = None
    if sent_at is None:
        return AuthResult(key, "missing or unparseable Date header")
    skew = sent_at - now
    if abs(skew) > MAX_SKEW_SECONDS:
        return AuthResult(
            key,
            f"Date header is {skew:+.0f} s from the server clock; the allowed clock skew "
            f"is {MAX_SKEW_SECONDS} s",
        )
    md5 = headers.get("Content-MD5", "")
    if body and not md5:
        return AuthResult(key, "request has a body but no Content-MD5 header")
    if body and not hmac.compare_digest(md5, content_md5(body)):
        return AuthResult(key, "Content-MD5 does not match the request body")
    canonical = canonical_string(method, headers.get("Content-Type", ""), md5, raw_uri, date)
    expected = sign(canonical, credentials[key])
    if not hmac.compare_digest(received.encode(), expected.encode()):
        return AuthResult(key, "signature mismatch")
    return AuthResult(key, None)
