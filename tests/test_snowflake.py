"""Snowflake on its emulator: fakesnow in server mode (tests/snowflake_emulator.py), patched for
the gaps listed in tests/emulator_workarounds.py, one database per test; syncs over
real HTTP against the sandbox, on the virtual clock. The same exactness, merges, models, data
tests and issue-8 scenarios as on PostgreSQL (tests/test_postgres.py, whose helpers these
reuse), and the same mart figures as DuckDB on the same sandbox data. `make test-warehouses`
builds the emulator's venv and runs these."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.models import DataTestFailed, ModelsError, build_models, run_data_tests
from tests.destination_scenarios import (
    command_loads_exact,
    deletion_marks_and_reconcile,
    ids_and_times_that_drift_keep_the_models_building,
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs,
    models_that_change_kind_build,
    survey_edit_history_and_type_drift,
)
from tests.destinations import (
    SMALL,
    pipeline_on,
)
from tests.syncing import sync_into
from tests.test_status import status_survives_the_local_folder

pytestmark = pytest.mark.warehouses


ROOT = Path(__file__).resolve().parents[1]


def column_types(columns: list[str], rows: list[tuple]) -> dict[str, set[str]]:
    """The Python types each column's non-NULL values have."""
    return {column: {type(row[index]).__name__ for row in rows if row[index] is not None}
            for index, column in enumerate(columns)}


def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, snowflake_destination):
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    _, marts = loads_merges_finds_late_uploads_and_marts_equal_duckdbs(
        start_sandbox, pipeline, tmp_path, clock, "snowflake")
    for mart, (columns, on_snowflake, on_duckdb) in marts.items():
        # equal values of the same Python types, column by column: a count is an int on both
        # (2266 == 2266.0 would pass the comparison of values)
        assert column_types(columns, on_snowflake) == column_types(columns, on_duckdb), mart


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, snowflake_destination):
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    deletion_marks_and_reconcile(start_sandbox, pipeline, clock)


def test_a_survey_edit_keeps_question_history_and_typing_and_type_drift_reaches_staging(
        start_sandbox, tmp_path, clock, snowflake_destination):
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    survey_edit_history_and_type_drift(start_sandbox, pipeline, clock)


def test_the_command_loads_snowflake_exact(start_sandbox, tmp_path, snowflake_env,
                                           snowflake_destination):
    command_loads_exact(start_sandbox, tmp_path, "snowflake", snowflake_env,
                        pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines"))


def test_status_restores_from_snowflake_with_the_local_folder_gone(
        start_sandbox, tmp_path, snowflake_env, snowflake_destination):
    status_survives_the_local_folder(
        start_sandbox, tmp_path, "snowflake", snowflake_env,
        pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines"))


def test_data_tests_fail_on_offending_rows_and_on_sql_the_emulator_cannot_run(
        start_sandbox, tmp_path, clock, snowflake_destination):
    """A data test passes only on a count of 0 that the emulator really returned: offending
    rows are counted, and a query it refuses fails the build (never "no row, so passed")."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    sync_into(sandbox, pipeline, clock)
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    (sql_dir / "tests" / "every_response_offends.sql").write_text(
        "SELECT response_id FROM fct_survey_responses\n")
    with pytest.raises(DataTestFailed) as failed:
        build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC), sql_dir=sql_dir)
    (offends,) = failed.value.failures
    assert offends.name == "every_response_offends"
    assert offends.offending == len(sandbox.truth()["survey_responses"]) and offends.sample

    (sql_dir / "tests" / "reads_a_missing_column.sql").write_text(
        "SELECT response_id FROM fct_survey_responses WHERE no_such_column IS NULL\n")
    with pytest.raises(ModelsError, match="data test reads_a_missing_column failed") as refused:
        run_data_tests(pipeline, sql_dir)
    assert not isinstance(refused.value, DataTestFailed)


def test_ids_and_times_that_drift_keep_the_models_building(start_sandbox, tmp_path, clock,
                                                           snowflake_destination):
    ids_and_times_that_drift_keep_the_models_building(
        start_sandbox, pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines"), clock)


def test_models_that_change_kind_build(start_sandbox, tmp_path, clock, snowflake_destination):
    models_that_change_kind_build(
        start_sandbox, pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines"),
        tmp_path, clock)
