"""What the tests of each destination share: the sandbox they sync, pipelines on any dlt
destination, and reads of marks, live rows and marts through the pipeline's SQL client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt

from tests.syncing import DATASET
from tests.truth import query, select

FAST = {"rate": 1000.0, "burst": 1000}  # the sandbox never throttles: no wait, no clock move
SMALL = {"devices": 10, "surveys": 3, "responses": 300, **FAST}
MARTS = ("fct_survey_responses", "mart_nps_daily", "dim_devices")
HOUR = 3600
TEXT_IDS = ["L-12", "L-7", "Lobby 3"]  # location ids that turn a numeric column text


def pipeline_on(destination: Any, pipelines_dir: Path) -> dlt.Pipeline:
    """The connector's pipeline on ``destination``, its local state under ``pipelines_dir``."""
    return dlt.pipeline(pipeline_name="micrometrics", destination=destination,
                        dataset_name=DATASET, pipelines_dir=str(pipelines_dir))


def all_passed(report) -> bool:
    return bool(report.tests) and all(test.passed for test in report.tests)


def mart_rows(where, mart: str) -> tuple[list[str], list[tuple]]:
    columns, rows = select(where, f"SELECT * FROM {DATASET}.{mart}")
    return columns, sorted((tuple(row) for row in rows), key=repr)


def marks(pipeline: dlt.Pipeline, table: str) -> dict:
    return dict(query(pipeline, f"SELECT id, deleted_at FROM {DATASET}.{table}"))


def live(pipeline: dlt.Pipeline, table: str) -> list[tuple]:
    return sorted(query(pipeline, f"SELECT id, updated_at FROM {DATASET}.{table} "
                                  "WHERE deleted_at IS NULL"))
