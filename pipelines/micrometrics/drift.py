"""Type drift: warn when a sync made dlt add a variant column, or spread a field.

A field that changes type (``location_id`` 123, then ``"L-12"``) gets a variant column
(``location_id__v_text``) next to the original; the staging models read both (see
``pipelines.models.variants``), but whoever queries the loaded tables directly should know.

A field that was a plain value and arrives as an object (``timezone``: ``"Asia/Tokyo"``, then
``{"name": ..., "offset": ...}``) is spread by dlt over new columns (``timezone__name``), a
list over a child table (``devices__timezone``), and the column the models read is NULL for
those records: a device's days moved to UTC in the marts, with every data test passing. Nothing
is lost (the values are in the new columns), but nothing said so.
"""

from __future__ import annotations

import dlt
from dlt.common.schema import Schema

from pipelines.models.variants import VARIANT_MARK, variant_base

from .messages import hint


def local_schema(pipeline: dlt.Pipeline) -> Schema | None:
    """The pipeline's default schema, or None before its first load."""
    return pipeline.default_schema if pipeline.default_schema_name else None


def variant_columns(schema: Schema | None) -> set[str]:
    """``table.column`` for every variant column (named ``<column>__v_<type>``) in ``schema``."""
    if schema is None:
        return set()
    found = set()
    for table in schema.data_tables(include_incomplete=True):
        columns = table.get("columns") or {}
        for name, column in columns.items():
            if variant_base(name, column, columns) is not None:
                found.add(f"{table['name']}.{name}")
    return found


def new_variant_warnings(before: set[str], after: set[str]) -> list[str]:
    """One line per variant column in ``after`` but not in ``before``."""
    lines = []
    for entry in sorted(after - before):
        table, _, variant = entry.partition(".")
        base, _, kind = variant.rpartition(VARIANT_MARK)
        lines.append(
            f"warning: {table}.{base} changed type: dlt added the variant column "
            f"{table}.{variant} for its {kind} values; {hint('type_drift')}"
        )
    return lines


NESTING = "__"


def spread_fields(schema: Schema | None) -> set[str]:
    """``table.field`` for every field of a table that has a plain column and also columns
    (``field__x``) or a child table (``table__field``) dlt made of objects or lists sent in it."""
    if schema is None:
        return set()
    tables = {table["name"]: table for table in schema.data_tables(include_incomplete=True)}
    found = set()
    for name, table in tables.items():
        columns = table.get("columns") or {}
        for column in columns:
            base, nested, _ = column.partition(NESTING)
            if nested and base in columns and variant_base(column, columns[column], columns) \
                    is None:
                found.add(f"{name}.{base}")
        parent = table.get("parent")
        if parent in tables and name.startswith(parent + NESTING):
            field = name[len(parent) + len(NESTING):]
            if field in (tables[parent].get("columns") or {}):
                found.add(f"{parent}.{field}")
    return found


def new_spread_warnings(before: set[str], after: set[str]) -> list[str]:
    """One line per field in ``after`` (``spread_fields``) but not in ``before``."""
    return [
        f"warning: {entry} arrived as an object or a list: dlt spread it over new columns "
        f"({entry}__*) or a child table; the column {entry} the models read is NULL for those "
        f"records"
        for entry in sorted(after - before)
    ]
