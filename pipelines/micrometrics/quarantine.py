"""Records that cannot be merged safely are kept aside, never silently dropped.

A record without an ``id`` cannot be merged, and one without a parseable ``updated_at`` cannot
be placed in a window or ordered against its other versions. Policy: such records go, whole and
as JSON, to the ``_rejected_records`` table with the stream and the reason; the sync goes on
and its summary warns. Each distinct rejected record is stored once (merged on a hash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common import json

from .timeutil import format_timestamp, parse_timestamp

DATE_AND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

REJECTED_TABLE = "_rejected_records"
REJECTED_HINTS = dlt.mark.make_hints(
    table_name=REJECTED_TABLE,
    write_disposition="merge",
    primary_key="record_key",
    columns={"record": {"data_type": "text"}, "rejected_at": {"data_type": "timestamp"}},
)


def rejection_reason(record: Any) -> str | None:
    """Why ``record`` cannot be loaded, or None when it can."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if record.get("id") is None:
        return "no id"
    updated_at = record.get("updated_at")
    if updated_at is None:
        return "no updated_at"
    try:
        # A date and a time of day: a settings value may be a bare date (its midnight), but a
        # record's change time given as a year, a week or a number is no instant to merge on.
        if not isinstance(updated_at, str) or not DATE_AND_TIME.match(updated_at.strip()):
            raise ValueError(updated_at)
        parse_timestamp(updated_at)
    except ValueError:
        return f"updated_at {str(updated_at)[:40]!r} is not an ISO 8601 timestamp with offset"
    return None


# What dlt reads as no timestamp (loaded NULL, beside a text variant column) though it is one:
# surrounding whitespace, an offset with seconds.
ODD_TIME = re.compile(r"^\s|\s$|[+-]\d{2}:\d{2}:\d{2}(\.\d+)?$")


def odd_time(value: str) -> bool:
    """Whether dlt would not read ``value`` as the time it is (``ODD_TIME``); the common forms
    (``...Z``, ``...+hh:mm``, no space around) decided without the regex: it runs on every
    record."""
    if value[:1].isspace() or value[-1:].isspace():
        return True
    if value.endswith("Z") or value[-6:-5] in ("+", "-"):
        return False
    return ODD_TIME.search(value) is not None


def loadable_times(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its times in a form dlt reads, where it would not (``ODD_TIME``): in
    UTC, to the millisecond (the API's own precision). Else as sent."""
    for field in ("updated_at", "created_at"):
        value = record.get(field)
        if isinstance(value, str) and odd_time(value):
            try:
                record[field] = format_timestamp(parse_timestamp(value.strip()))
            except ValueError:
                pass  # created_at is not checked: what dlt makes of it, as before
    return record


def split_records(
    records: Iterable[Any], stream: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The loadable records, and rows for ``_rejected_records`` describing the others."""
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for record in records:
        reason = rejection_reason(record)
        if reason is None:
            good.append(loadable_times(record))
            continue
        text = json.dumps(record, sort_keys=True)
        key = hashlib.sha256(f"{stream}\n{text}".encode()).hexdigest()
        rejected.append({
            "record_key": key,
            "stream": stream,
            "reason": reason,
            "record": text,
            "rejected_at": datetime.now(UTC),
        })
    return good, rejected


def as_rejected(rows: list[dict[str, Any]]) -> Any:
    """Mark rows for the ``_rejected_records`` table variant of the yielding resource."""
    return dlt.mark.with_hints(rows, REJECTED_HINTS, create_table_variant=True)
