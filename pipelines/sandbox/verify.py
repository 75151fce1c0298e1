"""Strict verification of APIAuth-signed requests, as the ``api_auth`` gem does it.

Written from the vendor's description (``shared/reference/api-notes.md``), not from the
client: the sandbox imports nothing from ``pipelines.micrometrics``, so a signing bug in the
client cannot pass because both sides share it. The scheme:

- ``Authorization: APIAuth <key>:<signature>``;
- ``signature = Base64(HMAC-SHA1(secret as UTF-8 bytes, canonical))``, standard alphabet, padded;
- ``canonical = METHOD,Content-Type,Content-MD5,request-uri,Date``: the method upper case, the
  ``Content-Type`` and ``Content-MD5`` headers as sent (empty when absent), the request target
  exactly as received (path and undecoded query), the ``Date`` header as sent;
- ``Content-MD5`` is Base64 of the raw 16-byte MD5 digest of the body, required with a body;
- the ``Date`` is an RFC 7231 IMF-fixdate in GMT, at most 15 minutes from the server's clock.

The gem's own test vector (``tests/sandbox/test_sandbox_auth.py``) pins this code down.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date as calendar_date

MAX_SKEW_SECONDS = 900  # api_auth's default allowance: 15 minutes
_HEADER = re.compile(r"^APIAuth ([^\s:]+):(\S+)$")

# RFC 7231 section 7.1.1.1: IMF-fixdate = day-name "," SP DD SP month SP YYYY SP hh:mm:ss SP "GMT"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # index = weekday(), Monday 0
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_IMF_FIXDATE = re.compile(
    rf"({'|'.join(DAY_NAMES)}), (\d\d) ({'|'.join(MONTH_NAMES)}) (\d{{4}}) "
    r"(\d\d):(\d\d):(\d\d) GMT"
)


def http_date(timestamp: float) -> str:
    """``timestamp`` (UNIX seconds) as an IMF-fixdate: ``Fri, 04 Sep 2020 13:35:05 GMT``."""
    t = time.gmtime(timestamp)
    return (f"{DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {MONTH_NAMES[t.tm_mon - 1]} "
            f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def parse_http_date(value: str | None) -> float | None:
    """UNIX seconds of an IMF-fixdate, or None for anything else.

    Strict on purpose: only the form RFC 7231 requires senders to generate (not the obsolete
    RFC 850 and asctime forms, nor a numeric zone), with a real calendar date whose day name
    is right, so a client that formats its Date wrongly is caught here.
    """
    match = _IMF_FIXDATE.fullmatch(value or "")
    if not match:
        return None
    day_name, day, month_name, year, hour, minute, second = match.groups()
    month = MONTH_NAMES.index(month_name) + 1
    try:
        weekday = calendar_date(int(year), month, int(day)).weekday()
    except ValueError:  # e.g. 30 Feb
        return None
    if DAY_NAMES[weekday] != day_name or int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return None
    return float(calendar.timegm(
        (int(year), month, int(day), int(hour), int(minute), int(second), 0, 0, 0)))


def body_md5(body: bytes) -> str:
    """Base64 of the raw 16-byte MD5 digest of ``body``."""
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")


def canonical_string(method: str, content_type: str, content_md5: str, request_uri: str,
                     date: str) -> str:
    """``METHOD,Content-Type,Content-MD5,request-uri,Date``, the string the client signs."""
    return f"{method.upper()},{content_type},{content_md5},{request_uri},{date}"


def expected_signature(secret: str, canonical: str) -> str:
    """Base64 of HMAC-SHA1 over ``canonical`` keyed with the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


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
    sent_at = parse_http_date(date)
    if sent_at is None:
        return AuthResult(key, "missing or unparseable Date header (RFC 7231 IMF-fixdate, GMT)")
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
    if body and not hmac.compare_digest(md5.encode(), body_md5(body).encode()):
        return AuthResult(key, "Content-MD5 does not match the request body")
    canonical = canonical_string(method, headers.get("Content-Type", ""), md5, raw_uri, date)
    expected = expected_signature(credentials[key], canonical)
    if not hmac.compare_digest(received.encode(), expected.encode()):
        return AuthResult(key, "signature mismatch")
    return AuthResult(key, None)
