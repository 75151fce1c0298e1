"""Compare what landed in DuckDB with the sandbox's ground truth."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.micrometrics.timeutil import parse_timestamp
from tests.syncing import DATASET, query


def truth_versions(records: list[dict]) -> list[tuple]:
    return sorted((r["id"], parse_timestamp(r["updated_at"])) for r in records)


def truth_answers(responses: list[dict]) -> list[tuple]:
    rows = []
    for response in responses:
        for answer in response.get("answers") or []:
            value = answer.get("value")
            rows.append((response["id"], answer["question_id"],
                         None if value is None else str(value)))
    return sorted(rows, key=repr)


def loaded_answers(tmp_path: Path) -> list[tuple]:
    rows = query(
        tmp_path,
        f"SELECT r.id, a.question_id, a.value FROM {DATASET}.survey_responses r "
        f"JOIN {DATASET}.survey_responses__answers a ON a._dlt_parent_id = r._dlt_id",
    )
    return sorted(rows, key=repr)


def comparable(value):
    """A truth value as DuckDB returns it: timestamps parsed, everything else as is."""
    if isinstance(value, str) and len(value) == 24 and value.endswith("Z") and value[10] == "T":
        return parse_timestamp(value)
    return value


def loaded_records(tmp_path: Path, table: str) -> dict:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        result = connection.sql(f"SELECT * FROM {DATASET}.{table}")
        columns = result.columns
        return {row[columns.index("id")]: dict(zip(columns, row, strict=True))
                for row in result.fetchall()}


def loaded_value(row: dict, field: str):
    """A field's value, looking in dlt's variant columns (``field__v_text``) after type drift."""
    if row.get(field) is not None:
        return row[field]
    variants = [v for k, v in row.items() if k.startswith(f"{field}__v_") and v is not None]
    return variants[0] if variants else None


def assert_matches_truth(tmp_path: Path, truth: dict[str, list[dict]]) -> None:
    """Every record once, every scalar field equal to the truth's; questions and answers row
    for row."""
    for table, records in truth.items():
        rows = query(tmp_path, f"SELECT id, updated_at FROM {DATASET}.{table}")
        assert len(rows) == len({row[0] for row in rows}), f"duplicate ids in {table}"
        assert sorted(rows) == truth_versions(records), table
        loaded = loaded_records(tmp_path, table)
        for record in records:
            row = loaded[record["id"]]
            for field, value in record.items():
                if not isinstance(value, list | dict):
                    assert loaded_value(row, field) == comparable(value), (table, field, record)
    assert loaded_answers(tmp_path) == truth_answers(truth["survey_responses"])
    questions = sorted(
        (s["id"], q["id"], q["type"], q["text"]) for s in truth["surveys"] for q in s["questions"]
    )
    assert sorted(query(
        tmp_path,
        f"SELECT s.id, q.id, q.type, q.text FROM {DATASET}.surveys s "
        f"JOIN {DATASET}.surveys__questions q ON q._dlt_parent_id = s._dlt_id",
    )) == questions
