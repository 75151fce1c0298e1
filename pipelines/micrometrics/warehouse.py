"""The destination: its kind, and reads of it beyond dlt's loads through the pipeline's SQL
client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dlt


def destination_kind(pipeline: dlt.Pipeline) -> str:
    """The destination's kind (``snowflake``), whatever name the user gave it; "" for none."""
    kind = pipeline.destination.destination_type if pipeline.destination else ""
    return kind.rsplit(".", 1)[-1]


def sql_literal(value: Any) -> str:
    """An id as a SQL literal: integers as they are, anything else as a quoted string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not an id: {value!r}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def loaded_versions(pipeline: dlt.Pipeline, table: str, ids: list[Any]) -> dict[Any, Any]:
    """``{id: updated_at}`` of the rows of ``table`` with these ids now in the destination
    (empty when the table does not exist yet)."""
    ids = [i for i in ids if isinstance(i, int | str) and not isinstance(i, bool)]
    if not ids:
        return {}
    id_list = ", ".join(sql_literal(i) for i in ids)
    return _id_times(pipeline, lambda client: (
        f"SELECT id, updated_at FROM {client.make_qualified_table_name(table)} "
        f"WHERE id IN ({id_list})"))


def loaded_times(pipeline: dlt.Pipeline, table: str) -> dict[Any, Any]:
    """``{id: updated_at}`` of the rows of ``table`` (a small one: the surveys) that a
    completed load wrote, empty when it does not exist yet; one query. A row merged by a
    package that never completed (each table merges in a transaction of its own; the package
    then dropped: a fresh runner, ``--drop-pending``) is left out: the tables merged after it
    may lack what it brought."""
    return _id_times(pipeline, lambda client: (
        f"SELECT t.id, t.updated_at FROM {client.make_qualified_table_name(table)} t "
        f"JOIN {client.make_qualified_table_name('_dlt_loads')} l "
        f"ON l.load_id = t._dlt_load_id WHERE l.status = 0"))


def _id_times(pipeline: dlt.Pipeline, query: Callable[[Any], str]) -> dict[Any, Any]:
    """``{id: updated_at}`` of the rows ``query(sql_client)`` selects; empty when the dataset
    or the table does not exist yet."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return {}
        try:
            rows = client.execute_sql(query(client))
        except Exception:  # noqa: BLE001 - no such table yet: nothing is loaded
            return {}
    return {row[0]: row[1] for row in rows or []}
