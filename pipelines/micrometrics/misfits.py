"""A record's value that dlt would change to fit its column goes to a variant column, as sent.

dlt coerces a value into its column's type whenever it can parse it, and only what it cannot
parse goes to a variant column (``location_id__v_text`` for ``"L-42"``). So a field that
changed type lost what was sent, unseen: ``"0042"``, ``"+42"``, ``"0x2A"`` or ``"٤٢"`` in a
bigint column loaded as 42 (four devices at one location in the marts); ``"yes"``, ``2`` or
``"t"`` in a bool column as true; ``"1_0.5"`` in a double column as 10.5; ``true`` in a text
column as ``'True'``. And ``"NaN"``, ``"Infinity"`` or ``"1e400"`` in a double column loaded
as NaN or infinity into DuckDB and failed PostgreSQL's load (dlt writes the bare word ``nan``)
on every sync after, ``--drop-pending`` too: the record was read again; so did ``1e30`` in a
bigint column, at the normalize.

Here such a value goes to the variant column dlt makes for a value it cannot parse, under the
same name, as sent; the models read it (``pipelines.models.variants``) and the sync that adds
it warns (``drift``). What dlt converts without changing it still loads into the column: an
integer's own digits as text into a bigint column (an id sent as ``"237"``: the sandbox's
``ids_as_text``), a plain finite number as text into a double one, a number into a text one.

Integer, double, boolean and text columns; in a time column, where dlt reads a number (or its
text) as seconds since 1970, only one beyond year 9999 or before year 1, which failed its
normalize (OSError, no ValueError it makes a variant of). Top-level values only (an answer's
``value`` is text, see ``column_types``). The types are the schema's as the round starts, and
a new column's the first value of it this round routes, as dlt will infer it from the first it
normalizes: the same one, but for a column new this round with values of two types in two
surveys' pages, routed by two threads in one order and handed to dlt in the other, or a time's
text that dlt's detection makes a time column of (dlt's own coercion then, as before).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .lenient_json import INT64
from .quarantine import column_name

# What dlt's text-to-number coercion reads as the very number: its own digits.
CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# A value's type as dlt infers a column from it (and names a variant column after it).
INFERRED = {bool: "bool", int: "bigint", float: "double", str: "text"}
NUMBERS = ("bigint", "double", "decimal", "wei")
# Seconds since 1970 that are a time (years 1 to 9999): dlt reads a number in a time column as
# such, and failed its normalize (OSError, OverflowError: no ValueError it makes a variant of)
# on one beyond, on every sync after.
EPOCH_SECONDS = (-62135596800, 253402300799)
TIMES = ("timestamp", "date")


def misfit(value: Any, data_type: str) -> str | None:
    """The variant type a scalar ``value`` loads as, in a column of ``data_type``, where dlt
    would otherwise change it to fit; None where it loads as sent (or dlt makes the variant
    itself)."""
    kind = type(value)
    if data_type == "bool":
        return None if kind is bool else INFERRED.get(kind)
    if kind is bool:
        return "bool" if data_type in NUMBERS or data_type == "text" else None
    if data_type in TIMES:
        if kind is str:  # dlt reads a number's text there as the number
            if ":" in value or value[4:5] == "-":
                return None  # a time's or a date's text: decided without a raised error
            try:
                value = float(value)
            except ValueError:
                return None  # what dlt makes a variant of itself
            return None if EPOCH_SECONDS[0] <= value <= EPOCH_SECONDS[1] else "text"
        if kind in (int, float):
            return None if EPOCH_SECONDS[0] <= value <= EPOCH_SECONDS[1] else INFERRED[kind]
    if kind is float and data_type in ("bigint", "wei"):
        # 7.0 is 7; 1e30 (a number in exponent form) failed dlt's normalize, every sync after.
        return None if value.is_integer() and int(value) in INT64 else "double"
    if kind is str and data_type in NUMBERS:
        if data_type in ("bigint", "wei"):
            # (int() refuses 4,300 digits; past 20, none fits)
            fits = (len(value) <= 20 and CANONICAL_INTEGER.fullmatch(value) is not None
                    and int(value) in INT64)
        else:
            fits = PLAIN_NUMBER.fullmatch(value) is not None and math.isfinite(float(value))
        return None if fits else "text"
    return None


def value_decides(kind: type, data_type: str) -> bool:
    """Whether ``misfit`` of a value of ``kind`` in a column of ``data_type`` depends on the
    value itself (else on its type alone, decided once)."""
    return ((kind is str and data_type in NUMBERS + TIMES)
            or (kind is float and data_type in ("bigint", "wei"))
            or (kind in (int, float) and data_type in TIMES))


class ColumnTypes:
    """The data type of each top-level column of one table: the schema's as the round
    started (``columns``: dlt's table columns), and the first value's of a new one. Shared by
    the threads that read the table's streams (a new column's first type is set once)."""

    def __init__(self, *columns: dict[str, Any]) -> None:
        """``columns``: the resource's declared column hints, then the schema's table
        columns (which win)."""
        self.types: dict[str, str] = {
            name: column["data_type"] for each in columns for name, column in each.items()
            if column.get("data_type")}
        # (key, value type) that load into their column whatever the value (an int into a
        # bigint column, text into a text one): most of a record, decided once, not per value.
        self.fitting: set[tuple[Any, type]] = set()

    def route(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``records`` with each value dlt would change (``misfit``) moved to its variant
        column's key, in place."""
        fitting = self.fitting
        for record in records:
            moves = None
            for key, value in record.items():
                if (key, type(value)) in fitting:
                    continue
                if (variant := self._variant(key, value)) is not None:
                    moves = (moves or []) + [(key, variant)]
            for key, variant_key in moves or ():
                record[variant_key] = record.pop(key)
        return records

    def _variant(self, key: Any, value: Any) -> str | None:
        """The variant column's key for ``value`` of ``key``, or None where it fits."""
        kind = type(value)
        if value is None or kind not in INFERRED or key == "id":
            # Objects and lists spread over columns and tables of their own; the merge key is
            # the quarantine's to judge (an id sent as text, "0237", is one).
            self.fitting.add((key, kind))
            return None
        name = column_name(str(key))
        data_type = self.types.get(name)
        if data_type is None:
            data_type = self.types.setdefault(name, INFERRED[kind])
        if (variant := misfit(value, data_type)) is not None:
            return f"{name}__v_{variant}"
        if not value_decides(kind, data_type):
            self.fitting.add((key, kind))  # not decided by the value: by its type
        return None
