"""The ``start_at`` / ``end_at`` filter on ``updated_at``: parsing, defaults and boundaries.

All instants are integer microseconds since the epoch, so comparisons are exact (records
carry milliseconds, clients may send up to microseconds).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta

from .data import EPOCH

BOUNDARIES = ("closed", "open", "left", "right")
# An explicit offset is required: an offset-less bound is ambiguous and rejected.
_HAS_OFFSET = re.compile(r"(Z|[+-]\d{2}(:?\d{2})?)$")
_US = timedelta(microseconds=1)


class BoundError(ValueError):
    """A bad ``start_at`` / ``end_at``; the message names the parameter."""


def to_us(dt: datetime) -> int:
    """Aware datetime to integer microseconds since the epoch (no float rounding)."""
    return (dt - EPOCH) // _US


def parse_bound(name: str, raw: str) -> int:
    """Parses an ISO 8601 bound with an offset (``Z`` or ``±HH:MM``) to microseconds.

    Raises:
        BoundError: Unparseable or without an offset.
    """
    if not _HAS_OFFSET.search(raw or ""):
        raise BoundError(f"{name} must be ISO 8601 with a UTC offset, got {raw!r}")
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise BoundError(f"{name} is not a valid ISO 8601 timestamp: {raw!r}") from None
    if dt.tzinfo is None:
        raise BoundError(f"{name} must carry a UTC offset, got {raw!r}")
    return to_us(dt)


def default_window(now: float) -> tuple[int, int]:
    """End of the current UTC day, and the same instant one calendar month earlier."""
    today = (EPOCH + timedelta(seconds=now)).date()
    end = datetime(today.year, today.month, today.day, 23, 59, 59, 999_000, tzinfo=EPOCH.tzinfo)
    return month_before(to_us(end)), to_us(end)


def month_before(us: int) -> int:
    """The same instant one calendar month earlier (31 March -> 28/29 February)."""
    dt = EPOCH + timedelta(microseconds=us)
    year, month = (dt.year, dt.month - 1) if dt.month > 1 else (dt.year - 1, 12)
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return to_us(dt.replace(year=year, month=month, day=day))


def resolve(start_raw: str | None, end_raw: str | None, now: float) -> tuple[int, int]:
    """The effective window from the raw query values (None when absent).

    Defaults (the vendor's page): ``end_at`` = end of the current UTC day, ``start_at`` = one
    calendar month before the end of the current UTC day, whatever ``end_at`` was sent; a
    window whose defaulted start is after the ``end_at`` sent is empty, not an error.

    Raises:
        BoundError: A bound is invalid or a ``start_at`` sent is after ``end_at``.
    """
    end = parse_bound("end_at", end_raw) if end_raw is not None else default_window(now)[1]
    if start_raw is None:
        return default_window(now)[0], end
    start = parse_bound("start_at", start_raw)
    if start > end:
        raise BoundError("start_at must not be after end_at")
    return start, end


def contains(boundary: str, start: int, end: int, t: int) -> bool:
    """Whether ``t`` is inside ``[start, end]`` under a boundary mode.

    ``closed``: start <= t <= end; ``open``: start < t < end; ``left``: start <= t < end;
    ``right``: start < t <= end.
    """
    low = start <= t if boundary in ("closed", "left") else start < t
    high = t <= end if boundary in ("closed", "right") else t < end
    return low and high
