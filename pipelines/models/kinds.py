"""What each model's name is in the destination now: a view, a table, or nothing.

A model moved between ``staging/`` (views) and ``marts/`` (tables), or a view or table of a
user's under a model's name, is there as the other kind. ``CREATE OR REPLACE`` will not replace
a view with a table (DuckDB, Snowflake, BigQuery) nor PostgreSQL's ``DROP TABLE`` drop a view,
so the build failed on every run. The runner drops such a relation as what it is first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipelines.micrometrics.warehouse import sql_literal

from .compiler import Qualifier

# information_schema.tables' table_type -> a model's materialization. Anything else (a
# materialized view, an external table) is left to the build, which names the refusal.
KINDS = {"BASE TABLE": "TABLE", "VIEW": "VIEW"}


def existing_kinds(client: Any, dialect: str, qualify: Qualifier,
                   names: Iterable[str]) -> dict[str, str]:
    """The kind (``VIEW`` or ``TABLE``) of each of ``names`` that the dataset holds, by name as
    given; one catalog query for them all."""
    wanted = {qualify(name)[-1]: name for name in names}
    if not wanted:
        return {}
    *catalog, dataset, _table = qualify(next(iter(wanted.values())))
    found = client.execute_sql(catalog_query(dialect, catalog, dataset)) or []
    return {wanted[str(table)]: KINDS[str(kind)] for table, kind in found
            if str(table) in wanted and str(kind) in KINDS}


def catalog_query(dialect: str, catalog: list[str], dataset: str) -> str:
    """The names and table types of the dataset's relations (names are dlt's own identifiers,
    never a user's text, but are quoted as literals all the same)."""
    if dialect == "bigquery":  # a dataset's INFORMATION_SCHEMA, not a global one
        return ("SELECT table_name, table_type FROM "
                f"`{'.'.join([*catalog, dataset])}`.INFORMATION_SCHEMA.TABLES")
    where = f"table_schema = {sql_literal(dataset)}"
    if dialect == "duckdb":  # it lists every attached database's (dlt names none)
        where += " AND table_catalog = current_database()"
    scope = f'"{catalog[0]}".' if catalog and dialect == "snowflake" else ""
    return f"SELECT table_name, table_type FROM {scope}information_schema.tables WHERE {where}"

