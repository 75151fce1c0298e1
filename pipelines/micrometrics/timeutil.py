"""Timestamps as the API speaks them: ISO 8601 with an offset, millisecond precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum

# The bounds a read may have: the API's time starts at the UNIX epoch, and ahead of this
# machine's clock only by the skew it accepts (a bound further ahead reads nothing yet).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=15)


def parse_timestamp(value: str | datetime) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (offset required) or a datetime.

    Raises:
        ValueError: when the value is not ISO 8601 or has no offset.
    """
    if isinstance(value, datetime):
        parsed = value
    elif (fast := _fromisoformat(value)) is not None:
        parsed = fast
    else:
        try:
            parsed = pendulum.parse(str(value).strip(), exact=True, tz=None)
        except (pendulum.parsing.exceptions.ParserError, ValueError) as exc:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from exc
        if not isinstance(parsed, datetime):
            if hasattr(parsed, "year"):  # a bare date means its midnight UTC
                parsed = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
            else:
                raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp needs an offset such as +00:00 or Z: {value!r}")
    try:
        return datetime.fromtimestamp(parsed.timestamp(), UTC)
    except (OverflowError, ValueError):  # year 0 or 10000 once in UTC
        raise ValueError(f"timestamp out of range: {value!r}") from None


def out_of_range(moment: datetime, now: datetime | None = None,
                 clock: str = "this machine's clock") -> str | None:
    """Why ``moment`` cannot bound a read (before 1970, or ahead of ``now``, default this
    machine's clock, by more than ``CLOCK_SKEW``); None when it can. ``clock`` names where
    ``now`` came from, for the message."""
    now = now or datetime.now(UTC)
    if EARLIEST <= moment <= now + CLOCK_SKEW:
        return None
    minutes = int(CLOCK_SKEW.total_seconds() // 60)
    return (f"must be from {EARLIEST.isoformat().replace('+00:00', 'Z')} and not in the future "
            f"(at most {minutes} minutes ahead of {clock}), got {format_timestamp(moment)}")


def _fromisoformat(value: object) -> datetime | None:
    """The common case, ``2024-01-01T00:00:00.000Z``, through the C parser (about 20 times
    pendulum's speed: every record's ``updated_at`` is checked); None when it needs pendulum."""
    if not isinstance(value, str) or len(value) < 20 or value[10] != "T":
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def duration(delta: timedelta) -> str:
    """``delta`` for people: seconds, minutes, hours or days, as fits its size."""
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{sign}{seconds / 3600:.1f} h"
    return f"{sign}{seconds / 86400:.1f} d"


def format_timestamp(moment: datetime) -> str:
    """``2020-09-05T23:59:59.999+00:00``: the API's form, UTC, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def as_sent(moment: datetime) -> datetime:
    """``moment`` cut to the milliseconds the API is sent (and state keeps)."""
    return parse_timestamp(format_timestamp(moment))
