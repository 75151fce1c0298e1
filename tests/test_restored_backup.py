"""The destination put back behind this machine's state (a backup restored, the DuckDB file
copied back): the next sync reads again what the destination lacks. This machine's state,
newer, stayed: dlt restores only a newer one, so a week of responses was missing for good,
with exit 0 and no word. On the virtual clock, over HTTP to the sandbox."""

from __future__ import annotations

import shutil

import dlt
import duckdb
import psycopg2

from pipelines.micrometrics import rolled_back
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
    failed = _raises(lambda: sync_into(sandbox, pipeline, clock))
    assert failed and pipeline.list_normalized_load_packages()

    shutil.copy(tmp_path / "backup.duckdb", tmp_path / "warehouse.duckdb")  # the restore
    clock.advance(HOUR)
    sandbox.add_responses(3)
    result = sync_into(sandbox, pipeline, clock)
    assert [w for w in result.report.warnings if w.startswith(ROLLED_BACK)], \
        result.report.warnings
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


def _raises(call) -> bool:
    try:
        call()
    except Exception:  # noqa: BLE001 - the load's failure, whatever dlt wraps it in
        return True
    return False
