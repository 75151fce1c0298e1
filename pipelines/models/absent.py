"""Models over loaded tables that do not exist yet, or lack a column.

dlt creates a table once it has loaded a row of it, and a column once it has seen a value (or
the source declared it). So a new tenant's first syncs can leave the models' sources short: no
``survey_responses`` before the first response, no ``survey_responses__answers`` before the first
answer, no ``devices.location_id`` while every device has none. Failing the build then would
fail every scheduled sync until the API serves such data. Instead:

- a source table not loaded yet: nothing is built and no data test runs, and the summary says
  what the models wait for (:func:`source_columns`); the next sync that loads it builds them;
- a column of a loaded table that dlt has not created: read as NULL (text), under its own name
  (:func:`with_absent_columns`); the build after the first value reads the real column.

Both are looked up in the destination, which is what the build reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Set
from typing import Any

from dlt.common.destination.exceptions import DestinationUndefinedEntity
from sqlglot import exp

from .project import Model, Project, parse
from .rewrite import replace_columns
from .variants import VARIANT_MARK


def source_tables(model: Model, models: Set[str]) -> set[str]:
    """The loaded tables ``model`` reads (bare names that are neither models nor its CTEs)."""
    tree = parse(model.sql, model.name)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    return {table.name.lower() for table in tree.find_all(exp.Table)
            if table.name and table.name.lower() not in models | ctes}


def source_columns(project: Project, client: Any) -> dict[str, set[str] | None]:
    """Each source table of the models and tests, with the columns the destination (``client``,
    a dlt SQL client) has for it, or None when it has no such table: asked of the destination
    itself, which is what the build reads (a local dlt schema may be older: another worker
    loaded since)."""
    models = {name.lower() for name in project.model_names}
    wanted: set[str] = set()
    for model in (*project.models, *project.tests):
        wanted |= source_tables(model, models)
    return {table: loaded_columns(client, table) for table in sorted(wanted)}


def loaded_columns(client: Any, table: str) -> set[str] | None:
    """The column names (lower case) of ``table`` in the destination; None when it is not
    there. Any other error (a lost connection, no permission) is raised: it is no reason to
    skip the build and report success."""
    try:
        with client.execute_query(
                f"SELECT * FROM {client.make_qualified_table_name(table)} WHERE 1 = 0") as cursor:
            return {str(column[0]).lower() for column in cursor.description}
    except DestinationUndefinedEntity:  # dlt's "no such table (or dataset)", every destination
        return None


def with_absent_columns(project: Project, tables: Mapping[str, Iterable[str]]) -> Project:
    """The project with every reference to a column that a loaded table lacks read as NULL."""
    columns = {table.lower(): {name.lower() for name in cols} for table, cols in tables.items()}

    def adapt(model: Model) -> Model:
        rewritten = read_absent(model.sql, columns, model.name)
        return model if rewritten is None else dataclasses.replace(model, sql=rewritten)

    return Project(tuple(map(adapt, project.models)), tuple(map(adapt, project.tests)))


def read_absent(sql: str, columns: Mapping[str, Set[str]], name: str = "<sql>") -> str | None:
    """``sql`` with each column of a loaded table that the table lacks as a text NULL, or None
    when there is none. Only columns whose table is certain are touched: qualified ones, and
    bare ones in a scope that reads a single table."""

    def null(column: exp.Column, tables: dict[str, str], sources: int) -> exp.Expression | None:
        if column.table:
            table = tables.get(column.table.lower())
        else:
            table = next(iter(tables.values())) if sources == 1 and len(tables) == 1 else None
        have = columns.get(table or "")
        wanted = column.name.lower()
        if have is None or wanted in have or VARIANT_MARK in wanted:
            return None
        return exp.cast(exp.null(), "TEXT")

    return replace_columns(sql, null, name)
