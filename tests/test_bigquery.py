"""BigQuery on an emulator: ``bqemulator`` (tests/bigquery_emulator.py), one project per test;
syncs over real HTTP against the sandbox, on the virtual clock. The same exactness, merges,
deep pass, deletion marks, models and data tests as on DuckDB and PostgreSQL, and the same mart
figures as DuckDB on the same sandbox data.

The emulator runs with the workarounds of tests/emulator_workarounds.py; the last test
also runs it without the one that turns failed queries into HTTP errors, to show that a data
test still cannot pass on an emulator that answers a failed query with an empty result."""

from __future__ import annotations

from pathlib import Path

import dlt
import pytest

from pipelines.models import DataTestFailed, ModelsError, build_models
from pipelines.models.project import load_project
from tests.bigquery_emulator import start_emulator, stop_emulator
from tests.destination_scenarios import (
    command_loads_exact,
    deletion_marks_and_reconcile,
    ids_and_times_that_drift_keep_the_models_building,
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs,
    models_that_change_kind_build,
)
from tests.destinations import (
    HOUR,
    SMALL,
    pipeline_on,
)
from tests.emulator_workarounds import (
    bigquery_client_env,
    use_anonymous_google_credentials,
)
from tests.syncing import sync_into
from tests.test_status import status_survives_the_local_folder
from tests.truth import assert_matches_truth

pytestmark = pytest.mark.warehouses



def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, bigquery_destination):
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    report, _ = loads_merges_finds_late_uploads_and_marts_equal_duckdbs(
        start_sandbox, pipeline, tmp_path, clock, "bigquery")
    assert len(report.tests) == len(load_project().tests)  # every data test ran, and passed


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, bigquery_destination):
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    deletion_marks_and_reconcile(start_sandbox, pipeline, clock)


def test_the_command_loads_bigquery_exact(start_sandbox, tmp_path, bigquery_env,
                                          bigquery_destination):
    command_loads_exact(start_sandbox, tmp_path, "bigquery", bigquery_env,
                        pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines"))


def test_status_restores_from_bigquery_with_the_local_folder_gone(
        start_sandbox, tmp_path, bigquery_env, bigquery_destination):
    status_survives_the_local_folder(
        start_sandbox, tmp_path, "bigquery", bigquery_env,
        pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines"))


# A model that builds and a data test whose SQL the database refuses (no such column).
BROKEN_TEST = "SELECT x FROM stg_one WHERE no_such_column > 0"


def test_a_table_that_grows_two_fields_in_one_load_loads_exact(start_sandbox, tmp_path, clock,
                                                                bigquery_destination):
    """dlt adds both columns in one ALTER TABLE (the emulator runs one action a statement:
    bigquery_one_alter_action_a_statement); the suites grew one field at a time."""
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    sandbox.patch_records("devices", devices[:2], {"battery": 3.5, "screen": "OLED 10in"})
    clock.advance(HOUR)
    sync_into(sandbox, pipeline, clock)
    assert_matches_truth(pipeline, sandbox.truth())


def broken_project(root: Path) -> Path:
    (root / "staging").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "staging" / "stg_one.sql").write_text("SELECT 1 AS x\n")
    (root / "tests" / "broken.sql").write_text(BROKEN_TEST + "\n")
    return root


def empty_dataset(tmp_path: Path, destination) -> dlt.Pipeline:
    pipeline = pipeline_on(destination, tmp_path / "bigquery_pipelines")
    with pipeline.sql_client() as client:
        client.create_dataset()
    return pipeline


def test_a_data_test_whose_sql_fails_fails_the_build(tmp_path, bigquery_destination):
    pipeline = empty_dataset(tmp_path, bigquery_destination)
    with pytest.raises(ModelsError) as raised:
        build_models(pipeline, sql_dir=broken_project(tmp_path / "sql"))
    # The database's refusal, not a count of rows: the HTTP error reached the runner.
    assert not isinstance(raised.value, DataTestFailed)
    assert str(raised.value).startswith("data test broken failed: ")


def test_without_http_errors_a_failing_data_test_is_still_reported_failed(
        tmp_path, bigquery_project, monkeypatch):
    emulator = start_emulator("--no-http-errors")  # as it is: a failed query answered HTTP 200
    try:
        use_anonymous_google_credentials(monkeypatch, bigquery_project)
        for name, value in bigquery_client_env(emulator.url, bigquery_project).items():
            monkeypatch.setenv(name, value)
        pipeline = empty_dataset(tmp_path, dlt.destinations.bigquery(project_id=bigquery_project))
        with pipeline.sql_client() as client:  # the emulator's answer reads as "no rows"
            assert not client.execute_sql("SELECT no_such_column FROM (SELECT 1 AS x)")
        with pytest.raises(DataTestFailed) as raised:
            build_models(pipeline, sql_dir=broken_project(tmp_path / "sql"))
        [failure] = raised.value.failures
        assert failure.name == "broken" and not failure.passed
        assert "returned no row" in failure.describe()
    finally:
        stop_emulator(emulator)


def test_ids_and_times_that_drift_keep_the_models_building(start_sandbox, tmp_path, clock,
                                                           bigquery_destination):
    ids_and_times_that_drift_keep_the_models_building(
        start_sandbox, pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines"), clock)


def test_models_that_change_kind_build(start_sandbox, tmp_path, clock, bigquery_destination):
    models_that_change_kind_build(
        start_sandbox, pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines"), tmp_path,
        clock)
