"""Compare what landed in the destination with the sandbox's ground truth.

Every helper takes where the data is: a ``tmp_path`` holding the tests' ``warehouse.duckdb``,
or any dlt pipeline (read through ``pipeline.sql_client()``: PostgreSQL or another
destination)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dlt
import duckdb

from pipelines.micrometrics.timeutil import parse_timestamp
from tests.syncing import DATASET

Warehouse = Path | dlt.Pipeline


def query(where: Warehouse, sql: str) -> list[tuple]:
    return [tuple(row) for row in select(where, sql)[1]]


def select(where: Warehouse, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names (lower case) and rows of ``sql`` in the DuckDB file under ``where`` or its
    pipeline. Snowflake returns unquoted names upper-cased (``ID``): dlt's names are lower case."""
    if isinstance(where, dlt.Pipeline):
        with where.sql_client() as client, client.execute_query(sql) as cursor:
            return ([column[0].lower() for column in cursor.description],
                    list(cursor.fetchall()))
    if not isinstance(where, Path):
        raise TypeError(f"a tmp_path or a dlt pipeline, not {where!r}")
    with duckdb.connect(str(where / "warehouse.duckdb"), read_only=True) as connection:
        result = connection.sql(sql)
        return list(result.columns), result.fetchall()



def truth_streams(truth: dict[str, list[dict]]) -> list[list[dict]]:
    """The records of each stream the sync reads: devices, the survey list, and each survey's
    responses (what "pages needed" is counted over)."""
    return [truth["devices"], truth["surveys"]] + [
        [r for r in truth["survey_responses"] if r["survey_id"] == survey["id"]]
        for survey in truth["surveys"]
    ]


def truth_versions(records: list[dict]) -> list[tuple]:
    return sorted((r["id"], parse_timestamp(r["updated_at"])) for r in records)


def truth_answers(responses: list[dict]) -> list[tuple]:
    rows = []
    for response in responses:
        for answer in response.get("answers") or []:
            value = answer.get("value")
            rows.append((response["id"], answer["question_id"], answer_text(value)))
    return sorted(rows, key=repr)


def answer_text(value: Any) -> str | None:
    """An answer's value as the API sent it, as text: a number in Python's spelling (as
    parsed), true and false as JSON's, an object or a list as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def loaded_answers(where: Warehouse) -> list[tuple]:
    rows = query(
        where,
        f"SELECT r.id, a.question_id, a.value FROM {DATASET}.survey_responses r "
        f"JOIN {DATASET}.survey_responses__answers a ON a._dlt_parent_id = r._dlt_id",
    )
    return sorted(rows, key=repr)


TIME_FIELDS = ("created_at", "updated_at")


def comparable(value, field: str = ""):
    """A truth value as the database returns it: timestamps parsed (in the time fields, any
    form the API may send), everything else as is."""
    if isinstance(value, str) and (field in TIME_FIELDS or (
            len(value) == 24 and value.endswith("Z") and value[10] == "T")):
        return parse_timestamp(value.strip())
    return value


def loaded_records(where: Warehouse, table: str) -> dict:
    columns, rows = select(where, f"SELECT * FROM {DATASET}.{table}")
    return {row[columns.index("id")]: dict(zip(columns, row, strict=True)) for row in rows}


def loaded_value(row: dict, field: str):
    """A field's value, looking in dlt's variant columns (``field__v_text``) after type drift."""
    if row.get(field) is not None:
        return row[field]
    variants = [v for k, v in row.items() if k.startswith(f"{field}__v_") and v is not None]
    return variants[0] if variants else None


def assert_matches_truth(where: Warehouse, truth: dict[str, list[dict]]) -> None:
    """Every record once, every scalar field equal to the truth's; questions and answers row
    for row."""
    for table, records in truth.items():
        rows = query(where, f"SELECT id, updated_at FROM {DATASET}.{table}")
        assert len(rows) == len({row[0] for row in rows}), f"duplicate ids in {table}"
        assert sorted(rows) == truth_versions(records), table
        loaded = loaded_records(where, table)
        for record in records:
            row = loaded[record["id"]]
            for field, value in record.items():
                if not isinstance(value, list | dict):
                    assert loaded_value(row, field) == comparable(value, field), (
                        table, field, record)
    assert loaded_answers(where) == truth_answers(truth["survey_responses"])
    questions = sorted(
        (s["id"], q["id"], q["type"], q["text"]) for s in truth["surveys"] for q in s["questions"]
    )
    assert sorted(query(
        where,
        f"SELECT s.id, q.id, q.type, q.text FROM {DATASET}.surveys s "
        f"JOIN {DATASET}.surveys__questions q ON q._dlt_parent_id = s._dlt_id",
    )) == questions
