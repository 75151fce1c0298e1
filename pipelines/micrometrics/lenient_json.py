"""Pages that dlt's json (orjson) refuses, read as Python's own json reads them.

orjson refuses ``NaN`` and ``Infinity`` (not JSON, but servers written in some languages send
them), numbers beyond a double (``1e400``) and lone UTF-16 surrogates (``"\\ud800"``: a valid
JSON escape that names no character). One such value in one record failed its whole page on
every attempt, and so every sync after, under "the body was cut short". Python's ``json`` reads
them; a record holding one becomes an :class:`UnloadableRecord`, which the quarantine keeps
aside with its reason (no warehouse stores NaN in every type, nor text that is no UTF-8). The
rest of the page loads as usual.

Only pages orjson refuses come here: the common path costs nothing more.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Integers beyond what orjson keeps as one become floats there: the same here, so a page reads
# the same whichever parser read it.
UINT64_END = 2**64
INT64_START = -(2**63)


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
    payload = json.loads(body, parse_int=_as_orjson_would)
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


def _as_orjson_would(text: str) -> int | float:
    # int() of a number past 4,300 digits raises; such a number is a float's anyway.
    if len(text) > 21:
        return float(text)
    value = int(text)
    return value if INT64_START <= value < UINT64_END else float(value)


def unloadable(value: Any) -> str | None:
    """Why ``value`` (any JSON value, keys included) holds something no warehouse stores, or
    None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number that is not finite (NaN or Infinity)"
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
