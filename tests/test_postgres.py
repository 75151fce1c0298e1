"""PostgreSQL for real: a PostgreSQL 15 server started by the tests (tests/postgres.py), one
database per test; syncs over real HTTP against the sandbox, on the virtual clock. The same
exactness, merges, models, data tests and issue-8 scenarios as on DuckDB, and the same mart
figures as DuckDB on the same sandbox data."""

from __future__ import annotations

from pathlib import Path

import dlt

from tests.destination_scenarios import (
    command_loads_exact,
    deletion_marks_and_reconcile,
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs,
    survey_edit_history_and_type_drift,
)
from tests.destinations import (
    pipeline_on,
)


def postgres_pipeline(tmp_path: Path, credentials: str) -> dlt.Pipeline:
    return pipeline_on(dlt.destinations.postgres(credentials=credentials),
                       tmp_path / "postgres_pipelines")


def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, postgres_credentials):
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs(
        start_sandbox, postgres_pipeline(tmp_path, postgres_credentials), tmp_path, clock,
        "postgres")


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, postgres_credentials):
    deletion_marks_and_reconcile(start_sandbox, postgres_pipeline(tmp_path, postgres_credentials),
                                 clock)


def test_a_survey_edit_keeps_question_history_and_typing_and_type_drift_reaches_staging(
        start_sandbox, tmp_path, clock, postgres_credentials):
    survey_edit_history_and_type_drift(
        start_sandbox, postgres_pipeline(tmp_path, postgres_credentials), clock)


def test_the_command_loads_postgres_exact(start_sandbox, tmp_path, postgres_credentials):
    command_loads_exact(start_sandbox, tmp_path, "postgres",
                        {"DESTINATION__POSTGRES__CREDENTIALS": postgres_credentials},
                        postgres_pipeline(tmp_path, postgres_credentials))
