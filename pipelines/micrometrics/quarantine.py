"""Records that cannot be merged safely are kept aside, never silently dropped.

A record without an ``id`` cannot be merged, and one without a parseable ``updated_at`` cannot
be placed in a window or ordered against its other versions. Nor can one whose ``id`` does not
fit the key's type (``"R-0"`` for a response, whose ids are integers): dlt puts it in a variant
column and leaves the key NULL, which fails the package's normalize or load on every sync
after, whatever the API sends since. A response's ``answers`` (a survey's ``questions``) that
are not a list of objects would be spread over columns or a child table no model reads: the
scores would vanish from the marts with every data test passing. A record holding a value no
warehouse stores (``lenient_json``: NaN, a lone surrogate) failed its page on every sync.
Nor can one with two keys dlt loads into one column (``ID`` beside ``id``, ``updatedAt``
beside ``updated_at``: dlt's snake_case names; the last one sent won, silently: a phantom
response, a device's name or an answer's score replaced), in the record or in one of its
answers or questions, or in an object within them (``meta: {"ID": 1, "id": 2}``: both in
``meta__id``); nor one with a key named like dlt's own columns (``_dlt_id``: a
response's answers joined to another's, or every sync failing at its load until the API
dropped the key). Nor one holding a time that is none once in UTC (``0001-01-01T00:00+05:45``, a
"zero date" written east of UTC): dlt's normalize converts every timestamp to UTC and failed
the package on it, on every sync after (``time_problem``).

Policy: such records go, whole and as JSON, to the ``_rejected_records`` table with the stream
and the reason; the sync goes on and its summary warns. Each distinct rejected record is stored
once (merged on a hash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import dlt
from dlt.common import json
from dlt.common.data_types.type_helpers import coerce_value
from dlt.common.normalizers.naming.snake_case import NamingConvention

from .lenient_json import INT64, UnloadableRecord, as_sent
from .timeutil import format_timestamp, parse_timestamp

DATE_AND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

REJECTED_TABLE = "_rejected_records"
REJECTED_HINTS = dlt.mark.make_hints(
    table_name=REJECTED_TABLE,
    write_disposition="merge",
    primary_key="record_key",
    columns={"record": {"data_type": "text"}, "rejected_at": {"data_type": "timestamp"}},
)


# Streams whose ids are integers (api-notes: surveys and responses); a device's is a string.
INTEGER_IDS = ("surveys", "survey_responses")
# What dlt reads as an integer key: digits, which ``int()`` takes (no sign but "-", no "1.0").
INTEGER_TEXT = re.compile(r"-?[0-9]+")
# Lists of objects a model reads, by stream: anything else is spread where none looks.
LISTS_OF_OBJECTS = {"surveys": "questions", "survey_responses": "answers"}


def rejection_reason(record: Any, stream: str = "", edge_times: bool = True) -> str | None:
    """Why ``record`` of ``stream`` (a table name, or ``survey_responses[<survey>]``) cannot
    be loaded, or None when it can. ``edge_times``: whether it may hold a time of year 1 or
    9999 (``may_hold_edge_times``)."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if isinstance(record, UnloadableRecord):
        return record.reason
    table = stream.partition("[")[0]
    if record.get("id") is None:
        return "no id"
    if (problem := id_problem(record["id"], table in INTEGER_IDS)) is not None:
        return problem
    field = list_field(stream)
    if field is not None and (problem := list_problem(field, record.get(field))) is not None:
        return problem
    if (problem := key_problem(record)) is not None:
        return problem
    for item in (record.get(field) or []) if field is not None else []:
        if (problem := key_problem(item)) is not None:
            return f"{field}: {problem}"
    if edge_times and (problem := time_problem(record)) is not None:
        return problem
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


def list_field(stream: str) -> str | None:
    """The field of ``stream``'s records that holds a list of objects a model reads, or None."""
    return LISTS_OF_OBJECTS.get(stream.partition("[")[0])


def id_problem(value: Any, integer: bool) -> str | None:
    """Why ``value`` cannot be the merge key of a stream whose ids are integers (or strings),
    or None."""
    shown = f"{str(value)[:40]!r}"
    if integer:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str) and INTEGER_TEXT.fullmatch(value.strip()):
            if len(value.strip()) > 20:  # int() refuses 4,300 digits; past 20 none fits
                return f"id {shown} is beyond a 64-bit integer"
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"id {shown} is not an integer, as this stream's ids are"
        if value not in INT64:
            return f"id {shown} is beyond a 64-bit integer"
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"id {shown} is not a string"
    if value == "":
        return "id is empty"
    return None


def list_problem(field: str, value: Any) -> str | None:
    """Why ``value`` is no list of objects for ``field`` (absent or null is one: none), or
    None."""
    if value is None:
        return None
    if not isinstance(value, list):
        return f"{field} is {type(value).__name__}, not a list of objects"
    for item in value:
        if not isinstance(item, dict):
            return f"{field} holds {type(item).__name__} {str(item)[:40]!r}, not an object"
    return None


# dlt's default naming (the connector's tables use it): what column each key loads into.
NAMING = NamingConvention()
DLT_COLUMNS = "_dlt_"
# Keys seen to load into a column of their own name: an object holding only these can hold no
# two keys for one column, a set's check (this runs on every record and answer). Bounded: a
# tenant whose keys are ids would grow it for ever.
PLAIN_KEYS: set[str] = set()
MAX_PLAIN_KEYS = 10_000


@lru_cache(maxsize=4096)
def column_name(key: str) -> str:
    """The column dlt loads ``key`` into: as a path, as dlt's normalizer names a record's keys
    (``use_break_path_on_normalize``): ``a__b`` stays ``a__b``, the column of ``a: {b: ...}``;
    a blank key as its ``_empty`` (``relational._flatten``)."""
    if not key or key.isspace():
        return "_empty"
    try:
        return NAMING.normalize_path(key)
    except ValueError:  # a key the naming refuses (blank ones are caught above): as blank
        return "_empty"


def key_problem(obj: dict[str, Any]) -> str | None:
    """Why the keys of ``obj`` cannot each load into a column of their own (two of them, or of
    the objects within it, load into one with different values; or one into a column named
    like dlt's own), or None. Two with the same value (as JSON: ``1`` is not ``true``, which dlt
    loads otherwise) lose nothing: ``drop_aliases`` keeps one."""
    plain = PLAIN_KEYS.issuperset(obj)
    if plain and dict not in map(type, obj.values()):
        return None
    if not plain:
        for key in obj:
            if (name := column_name(str(key))).startswith(DLT_COLUMNS):
                return f"key {str(key)[:40]!r} is named like dlt's own column {name}"
    if (problem := column_problem(obj)) is not None:
        return problem
    if not plain and len(PLAIN_KEYS) < MAX_PLAIN_KEYS:
        PLAIN_KEYS.update(key for key in obj if isinstance(key, str) and column_name(key) == key)
    return None


def column_problem(obj: dict[str, Any]) -> str | None:
    """Two keys of ``obj``, or of the objects within it, that load into one column with
    different values, named; or None. dlt spreads an object's keys over columns ``<key>__<its
    key>`` (``relational._flatten``), keeping the last value sent for a column: ``ID`` beside
    ``id``, ``meta: {"ID": 1, "id": 2}`` (both in ``meta__id``), a key ``meta__id`` beside
    ``meta: {"id": ...}``. Objects are no values here: ``A: {...}`` beside ``a: {...}`` lose
    nothing unless two of their keys meet in a column."""
    seen: dict[str, tuple[str, Any]] = {}  # column -> (the key's path as sent, its value)
    stack: list[tuple[dict[str, Any], str, str]] = [(obj, "", "")]
    while stack:
        current, prefix, path = stack.pop()
        for key, value in current.items():
            name, shown = prefix + column_name(str(key)), path + str(key)
            if type(value) is dict:  # as dlt's normalizer tells them
                stack.append((value, name + "__", shown + "."))
            elif name not in seen:
                seen[name] = (shown, value)
            elif _as_json(seen[name][1]) != _as_json(value):
                return (f"keys {seen[name][0][:40]!r} and {shown[:40]!r} both load into the "
                        f"column {name!r}")
    return None


# The only years a time can start with and overflow once in UTC, in any ISO 8601 form dlt reads
# (0001-01-01T..., 00010101T..., 0001-001T..., 0001-W01-1T...): dlt reads a string as a time
# in any column it detects or types as one (``created_at``, a new ``last_seen_at``, a list of
# times' nested table).
EDGE_YEARS = ("0001", "9999")
# In a page's text: a string starting with such a year, or an escape (a JSON string may spell
# a digit or a dash as one: no server seen does, but then the records decide).
EDGE_MARKS = (b'"0001', b'"9999', b"\\u00")


def may_hold_edge_times(body: bytes | None) -> bool:
    """Whether a page whose body is ``body`` (None: unknown) may hold such a time: walking
    every value of every record doubled the quarantine's cost; a page's text is searched at
    C speed (``in``: a regular expression took 7 times as long, 0.5 ms a page)."""
    return body is None or any(mark in body for mark in EDGE_MARKS)


def time_problem(obj: dict[str, Any]) -> str | None:
    """A string of ``obj`` (or of the objects and lists within it) that dlt reads as a time
    but that is none once in UTC, named; or None."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        current, path = stack.pop()
        items = (current.items() if type(current) is dict
                 else ((f"{path}[]", item) for item in current))
        for key, value in items:
            kind = type(value)
            name = key if type(current) is not dict else f"{path}{key}"
            if kind is str:
                if value.startswith(EDGE_YEARS) and beyond_utc(value):
                    return f"{name} {value[:40]!r} is before year 1 or after 9999 once in UTC"
            elif kind is dict:
                stack.append((value, f"{name}."))
            elif kind is list:
                stack.append((value, name))
    return None


def beyond_utc(value: str) -> bool:
    """Whether dlt reads ``value`` as a time with an offset that is none once in UTC, where
    its normalize converts every time (``normalize_timezone``, outside its error handling)."""
    try:
        moment = coerce_value("timestamp", "text", value)
    except Exception:  # noqa: BLE001 - no time dlt reads: loaded as text
        return False
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return False  # dlt takes a time without an offset as UTC: nothing to convert
    try:
        moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return True
    return False


def drop_aliases(obj: dict[str, Any]) -> None:
    """Of the keys ``key_problem`` let through for one column (one value), keeps the one named
    as the column (else the first), in place: dlt loads whichever comes last, and what runs
    after the quarantine (``loadable_times``) reads the column's own key. Objects are left as
    they are: their keys spread over columns of their own."""
    if PLAIN_KEYS.issuperset(obj):
        return
    kept: dict[str, str] = {}
    for key in list(obj):
        if type(obj[key]) is dict:
            continue
        name = column_name(str(key))
        if name not in kept:
            kept[name] = key
            continue
        drop = kept[name] if key == name else key
        kept[name] = key if key == name else kept[name]
        del obj[drop]


def _as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# What dlt reads as no timestamp (loaded NULL, beside a text variant column) though it is one:
# surrounding whitespace, a space before the offset, an offset with seconds.
ODD_TIME = re.compile(r"^\s|\s$|\s[Z+-][\d:]*$|[+-]\d{2}:\d{2}:\d{2}(\.\d+)?$")


def odd_time(value: str) -> bool:
    """Whether dlt would not read ``value`` as the time it is (``ODD_TIME``); the common forms
    (``...56Z``, ``...56+hh:mm``: a digit just before the zone) decided without the regex: it
    runs on every record."""
    if value[:1].isspace() or value[-1:].isspace():
        return True
    if (value.endswith("Z") and value[-2:-1].isdigit()) or (
            value[-6:-5] in ("+", "-") and value[-7:-6].isdigit()):
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
    records: Iterable[Any], stream: str, body: bytes | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The loadable records, and rows for ``_rejected_records`` describing the others;
    ``body``: the page's text, when they come from one."""
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    edge_times = may_hold_edge_times(body)
    for record in records:
        reason = rejection_reason(record, stream, edge_times)
        if reason is None:
            drop_aliases(record)
            if (field := list_field(stream)) is not None:  # (a key "" is no list of objects)
                for item in record.get(field) or []:
                    drop_aliases(item)
            good.append(loadable_times(record))
            continue
        # As sent: dlt's json (orjson) writes NaN as null and refuses a lone surrogate.
        text = (as_sent(record) if isinstance(record, UnloadableRecord)
                else json.dumps(record, sort_keys=True))
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
