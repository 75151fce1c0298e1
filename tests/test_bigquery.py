"""BigQuery on an emulator: ``bqemulator`` (tests/bigquery_emulator.py), one project per test;
syncs over real HTTP against the sandbox, on the virtual clock. The same exactness, merges,
deep pass, deletion marks, models and data tests as on DuckDB and PostgreSQL, and the same mart
figures as DuckDB on the same sandbox data.

The emulator runs with the workarounds of tests/emulator_workarounds.py; the last test
also runs it without the one that turns failed queries into HTTP errors, to show that a data
test still cannot pass on an emulator that answers a failed query with an empty result."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dlt
import pytest

from pipelines.models import DataTestFailed, ModelsError, build_models
from pipelines.models.project import load_project
from pipelines.sync.options import SyncOptions
from tests.bigquery_emulator import start_emulator, stop_emulator
from tests.cli import run_cli, sync_env
from tests.destinations import (
    FAST,
    HOUR,
    MARTS,
    SMALL,
    all_passed,
    live,
    marks,
    mart_rows,
    pipeline_on,
)
from tests.emulator_workarounds import (
    bigquery_client_env,
    use_anonymous_google_credentials,
)
from tests.syncing import sync_into, sync_sandbox
from tests.truth import assert_matches_truth, truth_versions

pytestmark = pytest.mark.warehouses




def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, bigquery_destination):
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    sync_into(sandbox, pipeline, clock)
    assert_matches_truth(pipeline, sandbox.truth())

    clock.advance(HOUR)  # incremental changes: updates, new records of every kind
    sandbox.update_responses(25)
    sandbox.add_responses(40)
    sandbox.update_devices(2)
    sandbox.add_devices(1)
    late = sandbox.add_late_responses(5, delay_seconds=10 * HOUR)  # older than the lookback
    clock.advance(60)
    second = sync_into(sandbox, pipeline, clock)
    assert second.report.deep_streams == 0
    truth = sandbox.truth()
    without_late = {k: [r for r in v if k != "survey_responses" or r["id"] not in late]
                    for k, v in truth.items()}
    assert_matches_truth(pipeline, without_late)  # merged exact; the plain lookback missed these

    clock.advance(23 * HOUR)  # a day after the first sync's full read: a deep pass is due
    third = sync_into(sandbox, pipeline, clock)
    assert third.report.deep_found == len(late)
    assert_matches_truth(pipeline, sandbox.truth())

    as_of = datetime.fromtimestamp(clock(), UTC)
    report = build_models(pipeline, now=as_of)
    assert report.dialect == "bigquery" and all_passed(report)
    assert len(report.tests) == len(load_project().tests)  # every data test ran, and passed

    # The same sandbox data into DuckDB, the same models as of the same instant.
    duck = sync_sandbox(sandbox, tmp_path / "duckdb", clock, **FAST)
    assert_matches_truth(tmp_path / "duckdb", sandbox.truth())
    assert all_passed(build_models(duck.pipeline, now=as_of))
    for mart in MARTS:
        columns, on_bigquery = mart_rows(pipeline, mart)
        duck_columns, on_duckdb = mart_rows(duck.pipeline, mart)
        assert columns == duck_columns, mart
        assert on_bigquery and on_bigquery == on_duckdb, mart


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, bigquery_destination):
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    sync_into(sandbox, pipeline, clock)

    # A survey gone from the list: marked with its responses, then unmarked when it is back.
    doomed = sandbox.truth()["surveys"][1]["id"]
    clock.advance(600)
    gone = sandbox.remove_survey(doomed)
    seen_gone = datetime.fromtimestamp(clock.now, UTC)
    result = sync_into(sandbox, pipeline, clock)
    response_marks = marks(pipeline, "survey_responses")
    assert marks(pipeline, "surveys")[doomed] == seen_gone
    assert {rid for rid, mark in response_marks.items() if mark is not None} == set(gone)
    assert all(response_marks[rid] == seen_gone for rid in gone)
    truth = sandbox.truth()
    assert live(pipeline, "surveys") == truth_versions(truth["surveys"])
    assert live(pipeline, "survey_responses") == truth_versions(truth["survey_responses"])
    assert result.report.marks.marked == {"surveys": 1, "survey_responses": len(gone)}

    sandbox.restore_survey(doomed)
    clock.advance(600)
    back = sync_into(sandbox, pipeline, clock)
    assert all(mark is None for mark in marks(pipeline, "surveys").values())
    assert all(mark is None for mark in marks(pipeline, "survey_responses").values())
    assert back.report.marks.unmarked.get("survey_responses") == len(gone)

    # Erased upstream: only a reconcile sees it, and marks exactly those.
    truth = sandbox.truth()
    erased_responses = [r["id"] for r in truth["survey_responses"][::37]]
    erased_devices = [d["id"] for d in truth["devices"][:2]]
    sandbox.erase_records("survey_responses", erased_responses)
    sandbox.erase_records("devices", erased_devices)
    clock.advance(600)
    result = sync_into(sandbox, pipeline, clock, SyncOptions(reconcile=True))
    now = datetime.fromtimestamp(clock.now, UTC)
    response_marks, device_marks = marks(pipeline, "survey_responses"), marks(pipeline, "devices")
    assert {i for i, m in response_marks.items() if m is not None} == set(erased_responses)
    assert {i for i, m in device_marks.items() if m is not None} == set(erased_devices)
    assert {response_marks[i] for i in erased_responses} == {now}
    truth = sandbox.truth()
    assert live(pipeline, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(pipeline, "devices") == truth_versions(truth["devices"])
    assert result.report.marks.marked == {"survey_responses": len(erased_responses),
                                          "devices": len(erased_devices)}
    assert all_passed(build_models(pipeline, now=now))  # marked rows leave the marts consistent


def test_the_command_loads_bigquery_exact(start_sandbox, tmp_path, bigquery_env,
                                          bigquery_destination):
    # The command reads the wall clock, so this sandbox does too; nothing ever waits.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, **bigquery_env)
    done = run_cli(env, "--destination", "bigquery", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "data tests passed" in done.stdout  # it built the models there too

    assert not (tmp_path / "warehouse.duckdb").exists()
    # Reads what the command loaded.
    pipeline = pipeline_on(bigquery_destination, tmp_path / "bigquery_pipelines")
    assert_matches_truth(pipeline, sandbox.truth())


# A model that builds and a data test whose SQL the database refuses (no such column).
BROKEN_TEST = "SELECT x FROM stg_one WHERE no_such_column > 0"


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
