"""A sync holds its DuckDB database open through each round (dlt's connections attach to it
instead of opening and checkpointing the file per load job), bounds its memory unless the user
configured it, and leaves the file closed when it returns or fails."""

from __future__ import annotations

import json
import subprocess
import sys

import dlt
import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs import PluggableRunContext
from dlt.common.schema.typing import PIPELINE_STATE_TABLE_NAME as STATE_TABLE
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from pipelines.destination import open_pipeline
from pipelines.micrometrics import duckdb_session
from pipelines.micrometrics.duckdb_session import (
    LOCK_POLL_SECONDS,
    LOCK_WAIT_SECONDS,
    SETTINGS,
    HeldDatabase,
    duckdb_credentials,
)
from pipelines.status.cli import main as status_main
from pipelines.sync import run as sync_run
from pipelines.sync.terminate import Terminated
from tests.cli import run_cli, run_in_process, sync_env
from tests.file_holder import hold_in_another_process
from tests.syncing import DATASET, loaded, sync_into
from tests.truth import assert_matches_truth

# Several rounds: a round is 2 pages of 20 records.
DATA = dict(devices=10, surveys=2, responses=240, page_size=20, rate=1000.0, burst=1000)
ROUNDS = dict(window_pages=2)


def pipeline_at(tmp_path, credentials=None) -> dlt.Pipeline:
    path = str(tmp_path / "warehouse.duckdb")
    return dlt.pipeline(
        pipeline_name="micrometrics",
        destination=dlt.destinations.duckdb(credentials=credentials or path),
        dataset_name="micrometrics", pipelines_dir=str(tmp_path / "pipelines"),
    )


@pytest.fixture
def connections(monkeypatch):
    """The memory_limit each duckdb.connect() of the warehouse finds when it opens: a database
    already open in this process shows its settings, a newly opened one DuckDB's default."""
    found: list[str] = []
    connect = duckdb.connect

    def spying(database=":memory:", *args, **kwargs):
        connection = connect(database, *args, **kwargs)
        if str(database).endswith("warehouse.duckdb"):
            found.append(connection.execute(
                "SELECT current_setting('memory_limit')").fetchone()[0])
        return connection

    monkeypatch.setattr(duckdb, "connect", spying)
    return found


def in_mib(setting: str) -> str:
    with duckdb.connect() as connection:
        connection.execute(f"SET memory_limit = '{setting}'")
        return connection.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def closed_for_other_processes(path) -> bool:
    """Another process can open the file read-write (DuckDB locks an open file)."""
    code = f"import duckdb; duckdb.connect({str(path)!r}).execute('CHECKPOINT').close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_the_database_opens_once_a_round_with_its_memory_bounded(
        start_sandbox, tmp_path, clock, connections):
    sandbox = start_sandbox(clock=clock, **DATA)
    pipeline = pipeline_at(tmp_path)
    report = sync_into(sandbox, pipeline, clock, **ROUNDS).report
    during = list(connections)

    assert report.rounds >= 3
    bounded = in_mib(SETTINGS["memory_limit"])
    opened = [limit for limit in during if limit != bounded]
    # the sync's own connection opens it, once for the sync and again after each round; dlt's
    # many connections (load jobs, state, queries between rounds) all found it open, bounded
    assert len(opened) == report.rounds
    assert len(during) > 3 * report.rounds and set(during) == {*opened, bounded}
    # exact, and the file closed: another process opens it, and so does the caller's pipeline
    assert_matches_truth(tmp_path, sandbox.truth())
    assert closed_for_other_processes(tmp_path / "warehouse.duckdb")
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM survey_responses")
    assert rows[0][0] == len(sandbox.truth()["survey_responses"])
    assert pipeline.destination.config_params["credentials"] == str(
        tmp_path / "warehouse.duckdb")  # the caller's destination is unchanged
    # what runs after the sync (the models) opens the file with DuckDB's own settings again
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as after:
        assert after.execute("SELECT current_setting('memory_limit')").fetchone()[0] != bounded


def test_a_users_duckdb_settings_are_kept(start_sandbox, tmp_path, clock, connections):
    sandbox = start_sandbox(clock=clock, **DATA)
    credentials = DuckDbCredentials(str(tmp_path / "warehouse.duckdb"),
                                    global_config={"memory_limit": "300MB"})
    report = sync_into(sandbox, pipeline_at(tmp_path, credentials), clock, **ROUNDS).report

    # dlt sets the user's limit on every connection it opens, the sync's own never sets one
    own = in_mib("300MB")
    assert connections.count(own) > report.rounds
    assert in_mib(SETTINGS["memory_limit"]) not in connections
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_sync_that_fails_mid_way_closes_the_database(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **DATA)
    with pytest.raises(Exception) as failure:
        sync_into(sandbox, pipeline_at(tmp_path), clock, max_requests=8, **ROUNDS)
    assert failure.match("more than 8 requests")  # the cap stopped it, in its third round

    assert closed_for_other_processes(tmp_path / "warehouse.duckdb")
    # the rounds before the failure are in the file
    assert loaded(tmp_path, "devices")


def test_a_credentials_table_in_config_toml_keeps_its_file_and_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[destination.duckdb.credentials]\ndatabase = "mine.duckdb"\n'
        '[destination.duckdb.credentials.global_config]\nmemory_limit = "1GB"\n')
    context = Container()[PluggableRunContext]
    context.reload_providers()
    try:
        pipeline = open_pipeline("duckdb", "micrometrics", str(tmp_path / "pipelines"))
        credentials = duckdb_credentials(pipeline)
    finally:
        monkeypatch.undo()
        context.reload_providers()
    assert credentials.database == str(tmp_path / "mine.duckdb")
    assert credentials.global_config == {"memory_limit": "1GB"}


APP_SETTINGS = ("memory_limit", "threads", "preserve_insertion_order",
                "allocator_flush_threshold", "allocator_background_threads")


def settings_of(connection) -> dict[str, object]:
    return {key: connection.execute("SELECT current_setting(?)", [key]).fetchone()[0]
            for key in APP_SETTINGS}


@pytest.mark.parametrize(("fails", "memory"), [(False, None), (True, None), (False, "-1")],
                         ids=["synced", "failed", "unlimited memory"])
def test_an_apps_connection_to_the_file_keeps_its_settings(
        start_sandbox, tmp_path, clock, fails, memory):
    # A notebook or app in the sync's process holds the warehouse open and calls sync(): both
    # connections share DuckDB's instance, whose settings the sync bounds while it runs.
    sandbox = start_sandbox(clock=clock, **DATA)
    app = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    app.execute("SET threads = 3")  # one the app chose; the rest DuckDB's defaults
    if memory:  # DuckDB shows no limit as 16383.9 PiB, a value its SET does not read
        app.execute("SET memory_limit = ?", [memory])
    before = settings_of(app)
    assert before["memory_limit"] != in_mib(SETTINGS["memory_limit"])

    if fails:
        with pytest.raises(Exception, match="more than 8 requests"):
            sync_into(sandbox, pipeline_at(tmp_path), clock, max_requests=8, **ROUNDS)
    else:
        assert sync_into(sandbox, pipeline_at(tmp_path), clock, **ROUNDS).report.rounds >= 3

    assert settings_of(app) == before
    assert app.execute("SELECT count(*) FROM micrometrics.devices").fetchone()[0] > 0
    app.close()


def test_opening_waits_for_another_process_that_has_the_file_open(tmp_path):
    # Between two rounds, or after its loads, the sync opens the file again: a status run or a
    # notebook's query holding it just then failed the sync (after its loads too: exit 1).
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold_in_another_process(path)
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the holder lets go while the sync waits
        waited.append(seconds)
        holder.communicate("\n", timeout=30)

    held = HeldDatabase(DuckDbCredentials(str(path)), sleep=sleep)
    held.open()
    try:
        assert held.connection.execute("SELECT 42").fetchone() == (42,)
    finally:
        held.close()
    assert waited == [LOCK_POLL_SECONDS]


def test_opening_gives_up_on_a_holder_that_keeps_the_file(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold_in_another_process(path)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    try:
        held = HeldDatabase(DuckDbCredentials(str(path)), clock=lambda: now[0], sleep=sleep)
        with pytest.raises(duckdb.IOException, match="Could not set lock"):
            held.open()
        assert now[0] == LOCK_WAIT_SECONDS  # named (DuckDB's message: the holder's PID)
    finally:
        holder.communicate("\n", timeout=30)


def test_a_status_run_holding_the_file_after_the_loads_does_not_fail_the_sync(
        start_sandbox, tmp_path, monkeypatch):
    # The row counts, the models and the outcome's record opened the file once per query
    # after sync() had let it go: a status run or a notebook holding it then failed the sync
    # (exit 1, the models unbuilt, "check the credentials").
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    path = tmp_path / "warehouse.duckdb"
    holders: list[subprocess.Popen] = []
    real_sync = sync_run.sync

    def sync_then_someone_opens_the_file(*args, **kwargs):
        report = real_sync(*args, **kwargs)
        holders.append(hold_in_another_process(path))
        return report

    def let_go(_seconds: float) -> None:
        holders[-1].communicate("\n", timeout=30)

    monkeypatch.setattr(sync_run, "sync", sync_then_someone_opens_the_file)
    monkeypatch.setattr(duckdb_session, "pause", let_go)
    result = run_cli(sync_env(tmp_path, sandbox.url), "--quiet")
    assert result.returncode == 0, result.stderr
    assert holders and holders[-1].returncode == 0  # it held the file, then let go
    assert "could not be recorded" not in result.stderr


def test_a_failed_syncs_record_waits_for_a_holder_too(start_sandbox, tmp_path, monkeypatch):
    # The failure's record (exit 1, exit 4) opened the file per query: on a holder it stayed in
    # this machine's folder, unsaid, and a fresh runner's status showed the success before it.
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    path = tmp_path / "warehouse.duckdb"
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    state_rows = f"SELECT count(*) FROM {DATASET}.{STATE_TABLE}"
    with duckdb.connect(str(path)) as connection:
        (before,) = connection.execute(state_rows).fetchone()
    holders: list[subprocess.Popen] = []

    def fails_while_someone_has_the_file(*args, **kwargs):
        holders.append(hold_in_another_process(path))
        raise RuntimeError("the API went away")

    monkeypatch.setattr(sync_run, "sync", fails_while_someone_has_the_file)
    monkeypatch.setattr(duckdb_session, "pause",
                        lambda _seconds: holders[-1].communicate("\n", timeout=30))
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1 and "the API went away" in result.stderr
    assert holders[-1].returncode == 0 and "could not be recorded" not in result.stderr
    with duckdb.connect(str(path)) as connection:
        assert connection.execute(state_rows).fetchone() == (before + 1,)  # recorded there


def test_a_stop_while_the_record_waits_for_the_file_is_recorded(start_sandbox, tmp_path,
                                                                monkeypatch):
    # SIGTERM (or a scheduler's timeout) during that wait left no record at all: after a full
    # refresh, status went on saying it had not completed.
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    path = tmp_path / "warehouse.duckdb"
    env = sync_env(tmp_path, sandbox.url)
    holders: list[subprocess.Popen] = []
    save_held = sync_run.save_held

    def someone_opens_the_file_first(pipeline, options, result, code, message):
        if code == 0:  # the success's record, after the loads and the counts
            holders.append(hold_in_another_process(path))
        return save_held(pipeline, options, result, code, message)

    def stopped(_seconds: float) -> None:
        holders[-1].communicate("\n", timeout=30)  # (let go, so the stop can be recorded)
        raise Terminated

    monkeypatch.setattr(sync_run, "save_held", someone_opens_the_file_first)
    monkeypatch.setattr(duckdb_session, "pause", stopped)
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1 and "stopped by SIGTERM" in result.stderr
    # As status shows it (a stopped sync's record is written here only, at once).
    shown = json.loads(run_in_process(status_main, ["status"], env, "--json").stdout)
    assert shown["last_sync"]["exit_code"] == 1 and "SIGTERM" in shown["last_sync"]["error"]


def test_a_sync_that_failed_on_a_holder_does_not_wait_for_it_again_to_record(
        start_sandbox, tmp_path, monkeypatch):
    # It waited a minute to open the file, failed, then waited another minute to record that.
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    holder = hold_in_another_process(tmp_path / "warehouse.duckdb")
    waits: list[float] = []

    def held_by_another(*args, **kwargs):
        raise duckdb.IOException("IO Error: Could not set lock on file: Conflicting lock is "
                                 f"held in python (PID {holder.pid})")

    monkeypatch.setattr(sync_run, "sync", held_by_another)
    monkeypatch.setattr(duckdb_session, "pause", waits.append)
    try:
        result = run_cli(env, "--quiet", "--no-models")
    finally:
        holder.communicate("\n", timeout=30)
    assert result.returncode == 1 and "Conflicting lock" in result.stderr
    assert waits == []
