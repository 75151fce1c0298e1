"""A new tenant's first syncs leave the models' sources short (dlt creates a table once it
loaded a row, a column once it saw a value): the build waits, or reads NULL, instead of failing
every scheduled sync until the API serves such data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseUndefinedRelation

from pipelines.models import absent, build_models
from pipelines.models.absent import read_absent
from tests.cli import run_cli, sync_env
from tests.models.conftest import rows
from tests.syncing import pipeline_for, sync_into
from tests.truth import query

FAST = {"rate": 1000.0, "burst": 1000}


def test_models_wait_for_tables_not_loaded_yet_then_build(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=0, **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    waiting = build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert waiting.waiting_for == ["survey_responses", "survey_responses__answers"]
    assert waiting.built == [] and waiting.tests == []
    assert "not built yet" in waiting.summary() and "survey_responses" in waiting.summary()

    clock.advance(600)
    added = sandbox.add_responses(30)
    sync_into(sandbox, pipeline, clock)
    built = build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert built.waiting_for == [] and built.built and all(t.passed for t in built.tests)
    facts = rows(pipeline, "SELECT response_id FROM micrometrics.fct_survey_responses")
    assert sorted(r for (r,) in facts) == sorted(added)


def test_a_column_no_record_had_yet_reads_as_null(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=20, **FAST)
    devices = [device["id"] for device in sandbox.truth()["devices"]]
    sandbox.patch_records("devices", devices, {"location_id": None})
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    assert "location_id" not in pipeline.default_schema.get_table_columns("devices")
    report = build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert all(test.passed for test in report.tests)
    assert {loc for (loc,) in query(tmp_path, "SELECT location_id FROM "
                                              "micrometrics.dim_devices")} == {None}

    clock.advance(600)
    sandbox.patch_records("devices", devices[:1], {"location_id": 7})
    sync_into(sandbox, pipeline, clock)
    build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert query(tmp_path, f"SELECT location_id FROM micrometrics.dim_devices "
                           f"WHERE device_id = '{devices[0]}'") == [(7,)]


def test_a_column_another_worker_loaded_is_read_whatever_the_local_schema(
        start_sandbox, tmp_path, clock):
    """Absent means absent from the destination's table: a worker whose local schema predates
    another's load (``make models`` restores nothing) must not read the column as NULL."""
    sandbox = start_sandbox(clock=clock, responses=20, **FAST)
    devices = [device["id"] for device in sandbox.truth()["devices"]]
    sandbox.patch_records("devices", devices, {"location_id": None})
    sync_into(sandbox, pipeline_for(tmp_path, pipelines_dir="worker_a"), clock)
    clock.advance(600)
    sandbox.patch_records("devices", devices[:1], {"location_id": 7})
    sync_into(sandbox, pipeline_for(tmp_path, pipelines_dir="worker_b"), clock)
    stale = pipeline_for(tmp_path, pipelines_dir="worker_a")
    assert "location_id" not in stale.default_schema.get_table_columns("devices")
    build_models(stale, now=datetime.fromtimestamp(clock(), UTC))
    assert query(tmp_path, f"SELECT location_id FROM micrometrics.dim_devices "
                           f"WHERE device_id = '{devices[0]}'") == [(7,)]


class RefusingClient:
    """A SQL client whose every query fails with ``error`` (as dlt's would)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def make_qualified_table_name(self, table: str) -> str:
        return f"micrometrics.{table}"

    def execute_query(self, _sql: str):
        raise self.error


def test_an_error_other_than_a_missing_table_fails_the_build(start_sandbox, tmp_path, clock):
    """No permission, a lost connection: no reason to skip the build and report success. Only
    dlt's "no such table" (any destination's) means not loaded yet."""
    sandbox = start_sandbox(clock=clock, responses=20, **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    with pipeline.sql_client() as client:
        assert absent.loaded_columns(client, "no_such_table") is None
        assert "location_id" in absent.loaded_columns(client, "devices")
    assert absent.loaded_columns(RefusingClient(DatabaseUndefinedRelation("gone")), "t") is None
    with pytest.raises(DatabaseTerminalException, match="permission denied"):
        absent.loaded_columns(RefusingClient(DatabaseTerminalException(
            Exception("permission denied for table t"))), "t")


def test_only_columns_of_a_certain_table_are_read_as_null():
    columns = {"devices": {"id", "name"}, "surveys": {"id"}}
    sql = ("SELECT d.id, d.location_id, s.name, x.anything FROM devices AS d "
           "JOIN surveys AS s ON s.id = d.id JOIN stg_other AS x ON x.id = d.id")
    rewritten = read_absent(sql, columns)
    assert rewritten is not None
    assert "CAST(NULL AS TEXT) AS location_id" in rewritten
    assert "CAST(NULL AS TEXT) AS name" in rewritten  # surveys has no name column
    assert "x.anything" in rewritten and "d.id" in rewritten
    # An unqualified column among several tables: whose it is is not certain, left as is.
    assert read_absent("SELECT location_id FROM devices, surveys", columns) is None
    assert read_absent("SELECT d.id, d.name FROM devices AS d", columns) is None


def test_the_sync_of_a_tenant_without_responses_succeeds(start_sandbox, tmp_path):
    sandbox = start_sandbox(responses=0, **FAST)
    done = run_cli(sync_env(tmp_path, sandbox.url))
    assert done.returncode == 0, done.stderr
    assert "models: not built yet: the destination has no survey_responses" in done.stdout
    summary = json.loads(run_cli(sync_env(tmp_path, sandbox.url), "--json").stdout)
    assert summary["exit_code"] == 0
    assert summary["models"]["waiting_for"] == ["survey_responses", "survey_responses__answers"]
    assert summary["models"]["built"] == 0
