"""The destination put back behind this machine's state (a backup restored, the DuckDB file
copied back): the next sync reads again what the destination lacks. This machine's state,
newer, stayed: dlt restores only a newer one, so a week of responses was missing for good,
with exit 0 and no word. On the virtual clock, over HTTP to the sandbox."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import dlt
import duckdb
import psycopg2
import pytest

from pipelines.micrometrics import rolled_back
from pipelines.micrometrics.timeutil import format_timestamp
from pipelines.status.record import SyncOutcome, record_sync
from pipelines.sync.options import SyncOptions
from tests.destinations import FAST, HOUR, pipeline_on
from tests.syncing import DATASET, pipeline_for, sync_into
from tests.truth import assert_matches_truth, query

DAY = 24 * HOUR
ROLLED_BACK = "warning: the destination holds none of the state this machine's last sync loaded"


def a_week_of_syncs(sandbox, pipeline, clock, where) -> None:
    for _ in range(6):  # beyond the deep pass's 72 hours
        clock.advance(DAY)
        sandbox.add_responses(10)
        assert sync_into(sandbox, pipeline, clock).report.warnings == []
    assert_matches_truth(where, sandbox.truth())


def test_a_duckdb_file_copied_back_from_a_backup_is_synced_again(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=100, **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    shutil.copy(tmp_path / "warehouse.duckdb", tmp_path / "backup.duckdb")
    a_week_of_syncs(sandbox, pipeline, clock, tmp_path)
    # A last sync fails at its load, leaving its package here: it goes with the state.
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as db:
        db.execute(f"ALTER TABLE {DATASET}.devices ALTER COLUMN name SET NOT NULL")
    sandbox.patch_records("devices", [sandbox.truth()["devices"][0]["id"]], {"name": None})
    clock.advance(HOUR)
    with pytest.raises(Exception):  # noqa: B017 - the load's failure, as dlt wraps it
        sync_into(sandbox, pipeline, clock)
    [left] = pipeline.list_normalized_load_packages()

    shutil.copy(tmp_path / "backup.duckdb", tmp_path / "warehouse.duckdb")  # the restore
    clock.advance(HOUR)
    sandbox.add_responses(3)
    result = sync_into(sandbox, pipeline, clock)
    [warning] = [w for w in result.report.warnings if w.startswith(ROLLED_BACK)]
    assert f"this machine's state and the package(s) {left} a failed sync left are dropped" \
        in warning
    assert_matches_truth(tmp_path, sandbox.truth())
    # Once: the next sync finds its own state there.
    clock.advance(HOUR)
    sandbox.add_responses(2)
    assert sync_into(sandbox, pipeline, clock).report.warnings == []
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_postgres_database_restored_from_a_backup_is_synced_again(
        start_sandbox, tmp_path, clock, postgres_server):
    url = postgres_server.create_database("live")
    pipeline = pipeline_on(dlt.destinations.postgres(credentials=url), tmp_path / "p")
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=100, **FAST)
    sync_into(sandbox, pipeline, clock)
    admin = psycopg2.connect(postgres_server.url())
    admin.autocommit = True
    try:
        admin.cursor().execute("CREATE DATABASE backup TEMPLATE live")
        a_week_of_syncs(sandbox, pipeline, clock, pipeline)
        admin.cursor().execute("DROP DATABASE live")
        admin.cursor().execute("ALTER DATABASE backup RENAME TO live")
    finally:
        admin.close()
    assert query(pipeline, f"SELECT COUNT(*) FROM {DATASET}.survey_responses") == [(100,)]
    clock.advance(HOUR)
    result = sync_into(sandbox, pipeline, clock)
    assert [w for w in result.report.warnings if w.startswith(ROLLED_BACK)]
    assert_matches_truth(pipeline, sandbox.truth())


def test_a_copy_taken_while_a_load_ran_is_a_rollback_too(start_sandbox, tmp_path, clock):
    # A snapshot taken mid-load (pg_dump, a lagging replica, a file copy) holds the load's
    # state row, a job dlt commits on its own, without its merged rows or its _dlt_loads row:
    # the hash was there, no rollback was seen, and the first sync's history was lost.
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=100, **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as db:
        [(load_id,)] = db.execute(f"SELECT _dlt_load_id FROM {DATASET}._dlt_pipeline_state "
                                  "WHERE version_hash = ?",
                                  [pipeline.get_local_state_val(rolled_back.LOADED_STATE)]
                                  ).fetchall()
        db.execute(f"DELETE FROM {DATASET}._dlt_loads WHERE load_id = ?", [load_id])
        for table in ("survey_responses__answers", "survey_responses", "devices"):
            db.execute(f"DELETE FROM {DATASET}.{table}")
    clock.advance(HOUR)
    result = sync_into(sandbox, pipeline, clock)
    assert [w for w in result.report.warnings if w.startswith(ROLLED_BACK)]
    assert_matches_truth(tmp_path, sandbox.truth())


def test_an_explicit_reread_under_way_is_named_with_its_command(start_sandbox, tmp_path, clock):
    # Its progress lived in this machine's state only: dropped with it, the re-read was never
    # finished, and nothing said so.
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=300, page_size=20,
                            **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    shutil.copy(tmp_path / "warehouse.duckdb", tmp_path / "backup.duckdb")
    clock.advance(DAY)
    now = datetime.fromtimestamp(clock.now, UTC)
    reread = SyncOptions(start_at=now - timedelta(days=300))
    with pytest.raises(Exception, match="request"):
        sync_into(sandbox, pipeline, clock, reread, max_requests=12, window_pages=2)
    shutil.copy(tmp_path / "backup.duckdb", tmp_path / "warehouse.duckdb")
    clock.advance(HOUR)
    [warning] = [w for w in sync_into(sandbox, pipeline, clock).report.warnings
                 if w.startswith(ROLLED_BACK)]
    assert warning.endswith("; run the explicit re-read under way again: `--start-at "
                            f"{format_timestamp(reread.start_at)}`"), warning
    assert_matches_truth(tmp_path, sandbox.truth())


def test_the_connectors_own_operations_are_no_rollback(start_sandbox, tmp_path, clock):
    # Each rewrites state in its own way (a refresh drops the tables, a re-read keeps a slot,
    # --drop-pending drops the local state, status loads its record): none is a restore.
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=60, **FAST)
    pipeline = pipeline_for(tmp_path)
    sync_into(sandbox, pipeline, clock)
    now = datetime.fromtimestamp(clock.now, UTC)
    for options in (SyncOptions(full_refresh=True), SyncOptions(),
                    SyncOptions(start_at=now - timedelta(days=3)),
                    SyncOptions(resources=("devices",)), SyncOptions(drop_pending=True),
                    SyncOptions(reconcile=True)):
        clock.advance(HOUR)
        sandbox.add_responses(3)
        result = sync_into(sandbox, pipeline, clock, options)
        assert not [w for w in result.report.warnings if w.startswith(ROLLED_BACK)], options
        record_sync(pipeline, SyncOutcome(started_at=now, finished_at=now, exit_code=0,
                                          exit_cause="ok", report=result.report))
        assert rolled_back.destination_rolled_back(pipeline) is False, options
    clock.advance(HOUR)
    assert sync_into(sandbox, pipeline, clock).report.warnings == []
    assert_matches_truth(tmp_path, sandbox.truth())


def test_syncs_from_two_machines_are_no_rollback(start_sandbox, tmp_path, clock):
    # Another worker's loads are newer than this one's, not a restore: its state stays there.
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=100, **FAST)
    worker_a, worker_b = (pipeline_for(tmp_path, pipelines_dir=name) for name in ("a", "b"))
    for worker in (worker_a, worker_b, worker_a, worker_b):
        clock.advance(HOUR)
        sandbox.add_responses(5)
        assert sync_into(sandbox, worker, clock).report.warnings == []
        assert rolled_back.destination_rolled_back(worker) is False
    assert_matches_truth(tmp_path, sandbox.truth())

