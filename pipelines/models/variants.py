"""Staging that reads dlt's variant columns, so a field that changed type never becomes NULL.

When a loaded field changes type (``location_id`` was 123, now comes as ``"L-12"``), dlt keeps
the column and adds a variant column for the new type (``location_id__v_text``); the base
column is NULL in those rows. A variant column only exists once the drift happened, so the SQL
cannot name it in advance: before a build, every reference to a column that has variants is
rewritten into ``COALESCE(column, column__v_type, ...)``, each cast to a common type (the
column's own when all agree or it is a time or a boolean, which the models compute with; text
otherwise). A projection keeps its name. The rewrite
works on the models' DuckDB-dialect SQL, so it is translated to the destination like the rest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import dlt
from dlt.common import json
from dlt.common.schema import Schema
from sqlglot import exp

from .project import Model, Project
from .rewrite import replace_columns

log = logging.getLogger(__name__)

VARIANT_MARK = "__v_"
# Column name -> dlt column schema (at least "data_type"), per table name.
TableColumns = Mapping[str, Mapping[str, Mapping[str, Any]]]
# table -> base column -> [(column, dlt data type)], the base column first.
VariantMap = dict[str, dict[str, list[tuple[str, str | None]]]]


def variant_base(name: str, column: Mapping[str, Any], columns: Mapping[str, Any]) -> str | None:
    """The base column of variant column ``name``, or None if it is not a variant.

    A variant is named ``<base>__v_<type>`` and flagged ``variant`` by dlt; a flattened nested
    field that merely looks like one (``meta`` -> ``v_text`` gives ``meta__v_text``) has no
    ``meta`` column and no flag.
    """
    base, mark, kind = name.rpartition(VARIANT_MARK)
    if not mark or not base or not kind:
        return None
    return base if column.get("variant") or base in columns else None


def variant_map(tables: TableColumns) -> VariantMap:
    """Every column that has variants, with them, per table (names lower-cased)."""
    found: VariantMap = {}
    for table, columns in tables.items():
        for name, column in columns.items():
            base = variant_base(name, column, columns)
            if base is None:
                continue
            members = found.setdefault(table.lower(), {}).setdefault(
                base.lower(), [(base, (columns.get(base) or {}).get("data_type"))])
            members.append((name, column.get("data_type")))
    for columns in found.values():
        for members in columns.values():
            members[1:] = sorted(members[1:])
    return found


def schema_tables(schema: Schema | None) -> dict[str, dict[str, Any]]:
    """The loaded tables of a dlt schema with their columns ({} without a schema)."""
    if schema is None:
        return {}
    return {table["name"]: dict(table.get("columns") or {}) for table in schema.data_tables()}


def pipeline_schema(pipeline: dlt.Pipeline) -> Schema | None:
    """The pipeline's schema: its local one, else the newest stored in the destination (a
    fresh machine building models of a dataset another one loaded), else None."""
    if pipeline.default_schema_name:
        return pipeline.default_schema
    try:
        with pipeline.destination_client() as client:
            stored = client.get_stored_schema()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - no schema simply means nothing to adapt
        log.debug("no stored schema: %s", exc)
        return None
    return Schema.from_dict(json.loads(stored.schema)) if stored else None


# Base types kept through a drift: the models compute with them (a day in a zone, a time
# between two versions), which text would break in every later build. A variant value that
# does not read as the type is NULL in the models (the loaded table keeps it).
KEPT_TYPES = {"timestamp": "TIMESTAMPTZ", "date": "DATE", "time": "TIME", "bool": "BOOLEAN"}


def coalesced(column: exp.Column, members: list[tuple[str, str | None]]) -> exp.Expression:
    """``COALESCE(column, variant, ...)`` over the same table qualifier, cast to one type: the
    column's own when all agree or it is one of ``KEPT_TYPES`` (the others read through
    ``TRY_CAST``), else text (an id that turned text keeps its values)."""
    kinds = {kind for _, kind in members}
    base = members[0][1]
    kept = KEPT_TYPES.get(base or "") if len(kinds) > 1 else None
    parts: list[exp.Expression] = []
    for name, kind in members:
        ref = exp.column(name, table=column.table or None, quoted=column.this.quoted)
        if len(kinds) == 1 or kind == (base if kept else "text"):
            parts.append(ref)
        elif kept:
            parts.append(exp.TryCast(this=exp.cast(ref, "TEXT"),
                                     to=exp.DataType.build(kept)))
        else:
            parts.append(exp.cast(ref, "TEXT"))
    return exp.Coalesce(this=parts[0], expressions=parts[1:])


def read_variants(sql: str, variants: VariantMap, name: str = "<sql>") -> str | None:
    """``sql`` with every reference to a loaded column that has variants made to read them
    too, or None when it references none (then it is left exactly as written)."""
    if not variants:
        return None

    def merged(column: exp.Column, tables: dict[str, str], sources: int) -> exp.Expression | None:
        table = owner(column, tables, sources, variants)
        members = variants.get(table or "", {}).get(column.name.lower())
        return coalesced(column, members) if members else None

    return replace_columns(sql, merged, name)


def owner(column: exp.Column, tables: dict[str, str], sources: int,
          variants: VariantMap) -> str | None:
    """The loaded table ``column`` reads: the one its qualifier names, or for a bare column
    the scope's only source, or the only table source with variants of it when every source
    of the scope is a table."""
    if column.table:
        return tables.get(column.table.lower())
    if sources == 1 and len(tables) == 1:
        return next(iter(tables.values()))
    if len(tables) == sources:
        having = {t for t in tables.values() if column.name.lower() in variants.get(t, {})}
        if len(having) == 1:
            return having.pop()
    return None


def with_variants(project: Project, tables: TableColumns) -> Project:
    """The project with each model and data test reading the variants of ``tables``."""
    variants = variant_map(tables)
    if not variants:
        return project

    def adapt(model: Model) -> Model:
        rewritten = read_variants(model.sql, variants, model.name)
        return model if rewritten is None else dataclasses.replace(model, sql=rewritten)

    return Project(tuple(map(adapt, project.models)), tuple(map(adapt, project.tests)))
