"""Pages that dlt's json (orjson) refuses, read as Python's own json reads them.

orjson refuses ``NaN`` and ``Infinity`` (not JSON, but servers written in some languages send
them), numbers beyond a double (``1e400``) and lone UTF-16 surrogates (``"\\ud800"``: a valid
JSON escape that names no character). One such value in one record failed its whole page on
every attempt, and so every sync after, under "the body was cut short". Python's ``json`` reads
them; a record holding one becomes an :class:`UnloadableRecord`, which the quarantine keeps
aside with its reason (no warehouse stores NaN in every type, nor text that is no UTF-8). The
rest of the page loads as usual.

Also a page orjson reads with an integer beyond a signed 64-bit one: orjson keeps it exact up
to 2^64 (a float past it), and dlt's normalize then fails on it ("int too large to convert":
as a float or as digits in a string too, both coerced into an integer column), on every sync
after. Such a page is read here too, the integer kept exact, and its record quarantined like
the others. It is found by a run of 19 digits in the raw page (``might_overflow``, 65 us a
30 KB page against orjson's 150; a regex took 780): the common path costs little more.
"""

from __future__ import annotations

import json
import math
from typing import Any

# What a warehouse's integer holds (and dlt's normalize).
INT64 = range(-(2**63), 2**63)
# A run of 19 digits (2^63 has 19) in a page: every byte a digit is made "0", every other ".".
DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 46 for byte in range(256))
LONGEST_SAFE_RUN = b"0" * 19


class UnloadableRecord(dict):
    """A record as Python's json read it, and why no warehouse can take it as it is."""

    def __init__(self, record: dict[str, Any], reason: str) -> None:
        super().__init__(record)
        self.reason = reason


def parse_leniently(body: bytes) -> Any:
    """``body`` parsed by Python's json, its records that hold an unloadable value marked.

    Raises:
        ValueError: ``body`` is no JSON even to Python (cut short, say).
    """
    payload = json.loads(body, parse_int=_exact_int)
    # The records: the array, or the one list an object wraps (``client.index_records``).
    lists = [payload] if isinstance(payload, list) else [
        value for value in payload.values() if isinstance(value, list)
    ] if isinstance(payload, dict) else []
    if len(lists) == 1:
        records = lists[0]
        for i, record in enumerate(records):
            if isinstance(record, dict) and (reason := unloadable(record)) is not None:
                records[i] = UnloadableRecord(record, reason)
    return payload


def might_overflow(body: bytes) -> bool:
    """Whether ``body`` holds a run of 19 digits: maybe an integer beyond a signed 64-bit one
    (or a long number in a string: read again, it reads the same)."""
    return LONGEST_SAFE_RUN in body.translate(DIGITS_ONLY)


def _exact_int(text: str) -> int | BeyondInt64:
    # int() of a number past 4,300 digits raises; past 20 none fits anyway.
    if len(text) > 20:
        return BeyondInt64(text)
    value = int(text)
    return value if value in INT64 else BeyondInt64(text)


class BeyondInt64(int):
    """An integer no warehouse's integer holds (``unloadable`` names it); exact, but for one of
    over 4,000 digits, which Python reads only as text (kept as 0)."""

    def __new__(cls, text: str) -> BeyondInt64:
        return super().__new__(cls, int(text) if len(text) <= 4000 else 0)


def unloadable(value: Any) -> str | None:
    """Why ``value`` (any JSON value, keys included) holds something no warehouse stores, or
    None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number that is not finite (NaN or Infinity)"
    if isinstance(value, BeyondInt64):
        return "an integer beyond a signed 64-bit one"
    if isinstance(value, str):
        return None if _is_text(value) else "text with a lone UTF-16 surrogate (no character)"
    if isinstance(value, dict):
        for key, item in value.items():
            if (reason := unloadable(key) or unloadable(item)) is not None:
                return reason
    elif isinstance(value, list):
        for item in value:
            if (reason := unloadable(item)) is not None:
                return reason
    return None


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def as_sent(record: dict[str, Any]) -> str:
    """``record`` as JSON text that says what was sent (``NaN``, ``"\\ud800"`` escapes)."""
    return json.dumps(record, sort_keys=True)
