"""Compare what landed in DuckDB with the sandbox's ground truth."""

from __future__ import annotations

from pathlib import Path

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


def assert_matches_truth(tmp_path: Path, truth: dict[str, list[dict]]) -> None:
    """Every record once, at the truth's updated_at; answers row for row."""
    for table, records in truth.items():
        rows = query(tmp_path, f"SELECT id, updated_at FROM {DATASET}.{table}")
        assert len(rows) == len({row[0] for row in rows}), f"duplicate ids in {table}"
        assert sorted(rows) == truth_versions(records), table
    assert loaded_answers(tmp_path) == truth_answers(truth["survey_responses"])
