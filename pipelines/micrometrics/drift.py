"""Type drift: warn when a sync made dlt add a variant column.

A field that changes type (``location_id`` 123, then ``"L-12"``) gets a variant column
(``location_id__v_text``) next to the original; the staging models read both (see
``pipelines.models.variants``), but whoever queries the loaded tables directly should know.
"""

from __future__ import annotations

import dlt
from dlt.common.schema import Schema

from pipelines.models.variants import VARIANT_MARK, variant_base


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
            f"{table}.{variant} for its {kind} values; staging reads both {base} and {variant}"
        )
    return lines
