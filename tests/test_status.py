"""``python -m pipelines.status``: high-water marks, open backfills, the last sync's result,
rows per table and freshness (``--max-age``), from the local pipeline state or, with the local
pipeline folder gone, from the destination's; on DuckDB and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.micrometrics.status_keys import REFRESH_FAILED, STATUS_KEY
from pipelines.micrometrics.timeutil import format_timestamp, parse_timestamp
from pipelines.status.cli import age_arg, main
from pipelines.status.record import status_of
from pipelines.sync import run as sync_run
from pipelines.sync.cli import TABLES
from pipelines.sync.lock import sync_lock
from pipelines.sync.options import SyncOptions
from pipelines.sync.summary import destination_counts
from tests.cli import run_cli, run_in_process, sync_env
from tests.conftest import SECRET
from tests.destinations import FAST, pipeline_on
from tests.file_holder import hold_in_another_process
from tests.syncing import RequestCapExceeded, add_malformed_records, sync_into

SMALL = {"devices": 10, "surveys": 3, "responses": 300, **FAST}


def run_status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The status command in this process, as ``tests.cli.run_cli`` runs the sync."""
    return run_in_process(main, ["status"], env, *args)


def status_json(env: dict[str, str], *args: str, code: int = 0) -> dict:
    result = run_status(env, "--json", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1, result.stdout
    assert SECRET not in result.stdout + result.stderr
    return json.loads(result.stdout)


def newest(records: list[dict]) -> datetime:
    return max(parse_timestamp(r["updated_at"]) for r in records)


def assert_streams_match_truth(status: dict, truth: dict, synced_from: datetime) -> None:
    """Each stream's newest record is the sandbox's newest, and its high-water mark the time
    the sync read up to (at least that newest record, not before the sync began)."""
    streams = {s["stream"]: s for s in status["streams"]}
    expected = {"devices": newest(truth["devices"])} | {
        f"survey_responses[{survey['id']}]": newest(
            [r for r in truth["survey_responses"] if r["survey_id"] == survey["id"]])
        for survey in truth["surveys"]}
    assert set(streams) == set(expected)
    for name, newest_record in expected.items():
        stream = streams[name]
        assert parse_timestamp(stream["newest_record"]) == newest_record, name
        high_water = parse_timestamp(stream["high_water"])
        assert high_water >= newest_record and high_water >= synced_from - timedelta(seconds=1)
        assert stream["backfill"] is None and stream["last_deep_pass"]
    assert status["open_backfills"] == []


def status_survives_the_local_folder(start_sandbox, tmp_path: Path, destination: str,
                                     extra_env: dict[str, str], pipeline: dlt.Pipeline) -> None:
    """Sync with the command, then status from the local state; delete the local pipelines
    folder and status again: the same marks and last sync, restored from the destination."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, **extra_env)
    began = datetime.now(UTC)
    done = run_cli(env, "--destination", destination, "--quiet", "--no-models")
    assert done.returncode == 0, done.stderr
    truth = sandbox.truth()
    requests = sandbox.stats()["requests"]
    sandbox.reset_stats()

    local = status_json(env, "--destination", destination)
    assert local["state_source"] == "local" and local["exit_code"] == 0
    assert_streams_match_truth(local, truth, began)
    last = local["last_sync"]
    assert (last["exit_code"], last["exit_cause"], last["error"]) == (0, "ok", None)
    assert last["requests"] == requests and local["last_success"] == last
    assert parse_timestamp(last["started_at"]) >= began - timedelta(seconds=1)
    assert local["tables"] == destination_counts(pipeline, TABLES)
    for table in ("devices", "surveys", "survey_responses"):
        assert local["tables"][table] == len(truth[table])
    assert local["rejected"] == {"total": 0, "by_stream": []}
    assert local["survey_list"] == {"listed": len(truth["surveys"]), "gone": []}
    assert local["quiet_surveys_skipped"] == [] and local["problems"] == []

    pipelines = tmp_path / "dlt" / "pipelines"
    shutil.rmtree(pipelines)
    restored = status_json(env, "--destination", destination)
    assert restored["state_source"] == "destination"
    assert restored["state_versions"] == {"destination": local["state_versions"]["local"]}
    for key in ("streams", "last_sync", "last_success", "tables", "data_as_of",
                "last_deep_pass", "survey_list", "rejected"):
        assert restored[key] == local[key], key
    text = run_status(env, "--destination", destination)
    assert text.returncode == 0, text.stderr
    assert "state: from the destination" in text.stdout and "last sync: ok (exit 0)" in text.stdout
    assert not pipelines.exists()  # status wrote nothing locally
    assert sandbox.stats()["requests"] == 0  # nor asked the API anything


def test_status_shows_marks_rows_and_the_last_sync_also_with_the_local_folder_gone(
        start_sandbox, tmp_path):
    warehouse = dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb"))
    status_survives_the_local_folder(start_sandbox, tmp_path, "duckdb", {},
                                     pipeline_on(warehouse, tmp_path / "reader"))


def test_status_on_postgres_restores_from_the_destination(start_sandbox, tmp_path,
                                                          postgres_credentials):
    status_survives_the_local_folder(
        start_sandbox, tmp_path, "postgres",
        {"DESTINATION__POSTGRES__CREDENTIALS": postgres_credentials},
        pipeline_on(dlt.destinations.postgres(credentials=postgres_credentials),
                    tmp_path / "reader"))


def test_max_age_exit_codes_and_a_failed_sync(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1")
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    success = status_json(env)["last_success"]
    started = parse_timestamp(success["started_at"])

    def at(delta: timedelta) -> str:
        return format_timestamp(started + delta)

    fresh = status_json(env, "--max-age", "1h", "--now", at(timedelta(minutes=59)))
    assert fresh["fresh"] is True and fresh["max_age_seconds"] == 3600
    stale = status_json(env, "--max-age", "1h", "--now", at(timedelta(minutes=61)), code=1)
    assert stale["fresh"] is False and stale["exit_code"] == 1
    assert stale["age_seconds"] == pytest.approx(61 * 60, abs=1)
    text = run_status(env, "--max-age", "2d", "--now", at(timedelta(days=3)))
    assert text.returncode == 1 and "STALE (older than --max-age 2.0 d)" in text.stdout
    assert run_status(env, "--now", at(timedelta(days=300))).returncode == 0  # no --max-age

    # A failed sync is reported as the last sync; freshness stays with the last success.
    wrong = run_cli(dict(env, SOURCES__MICROMETRICS__API_SECRET="not-the-secret"), "--quiet")
    assert wrong.returncode == 1
    after = status_json(env, "--max-age", "1h", "--now", at(timedelta(minutes=59)))
    failed = after["last_sync"]
    assert (failed["exit_code"], failed["exit_cause"]) == (1, "failed")
    assert "HTTP 401" in failed["error"] and "not-the-secret" not in json.dumps(after)
    assert after["last_success"] == success and after["fresh"] is True
    shutil.rmtree(tmp_path / "dlt" / "pipelines")  # the failure is in the destination too
    assert status_json(env)["last_sync"] == failed

    # Bad arguments: exit 2, one JSON line with --json.
    bad = run_status(env, "--max-age", "6 weeks", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["exit_code"] == 2
    assert "not an age" in bad.stderr


def test_status_reads_no_state_of_another_dataset_or_a_moved_file(start_sandbox, tmp_path):
    # One pipeline folder serves every dataset synced from this machine: after dataset b's
    # syncs, its local state is b's, and newer than a's in a's destination.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models", "--dataset", "a").returncode == 0
    wrong = dict(env, SOURCES__MICROMETRICS__API_SECRET="not-the-secret")
    assert run_cli(wrong, "--quiet", "--no-models", "--dataset", "a").returncode == 1
    for _ in range(3):
        assert run_cli(env, "--quiet", "--no-models", "--dataset", "b").returncode == 0

    a = status_json(env, "--dataset", "a")
    assert a["last_sync"]["exit_code"] == 1 and a["state_source"] == "destination"
    assert ("the local pipeline folder holds another target's state (last synced: duckdb "
            "dataset 'b'): not used") in a["problems"]
    assert status_json(env, "--dataset", "b")["last_sync"]["exit_code"] == 0

    (tmp_path / "warehouse.duckdb").rename(tmp_path / "moved.duckdb")
    gone = status_json(env, "--dataset", "b", "--max-age", "1h", code=1)
    assert gone["fresh"] is False and gone["last_success"] is None


def test_status_reads_no_state_of_the_same_dataset_in_another_file(start_sandbox, tmp_path):
    """Same destination kind and dataset name, another DuckDB file (a staging copy synced from
    this machine): its local state, at a higher version, is not this file's."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    other = dict(env, DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "staging.duckdb"))
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    for _ in range(2):
        assert run_cli(other, "--quiet", "--no-models").returncode == 0
    wrong = dict(other, SOURCES__MICROMETRICS__API_SECRET="not-the-secret")
    assert run_cli(wrong, "--quiet", "--no-models").returncode == 1

    mine = status_json(env)
    assert mine["last_sync"]["exit_code"] == 0 and mine["state_source"] == "destination"
    assert ("the local pipeline folder holds another target's state (last synced: duckdb "
            "dataset 'micrometrics', another location): not used") in mine["problems"]
    assert status_json(other, code=0)["last_sync"]["exit_code"] == 1


def test_a_failed_full_refresh_no_longer_vouches_for_the_data(start_sandbox, tmp_path):
    # A full refresh drops the tables as its first round loads: once it fails, the success
    # before it says nothing about what the destination holds, and freshness rests on the
    # streams' own high-water marks, which the refresh resets as it drops the tables.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1",
                   SOURCES__MICROMETRICS__ROUND_PAGES="1")
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    success = status_json(env)["last_success"]
    assert success is not None

    bad = dict(env, SOURCES__MICROMETRICS__WINDOW_PAGES="-1")  # fails before anything
    assert run_cli(bad, "--quiet", "--no-models", "--full-refresh").returncode == 2
    assert status_json(env, "--max-age", "1h")["fresh"] is True

    # Round 1 (one page, no paging cursor) drops the tables and loads that page; the API
    # refuses every cursor after it, and the sync fails in round 2.
    sandbox.script("reject_cursor", count=10, endpoint="survey_responses")
    assert run_cli(env, "--quiet", "--no-models", "--full-refresh").returncode == 1
    after = status_json(env, "--max-age", "1h", code=1)
    assert after["fresh"] is False and after["last_success"] == success
    assert after["last_sync"]["full_refresh"] is True

    sandbox.clear_script()
    assert run_cli(env, "--quiet", "--no-models").returncode == 0  # completes the reload
    assert status_json(env, "--max-age", "1h")["fresh"] is True


class Killed(BaseException):
    """The process killed (SIGKILL, OOM) where the test says: nothing records the outcome."""


def test_a_full_refresh_under_way_no_longer_vouches_for_the_data(
        start_sandbox, tmp_path, monkeypatch):
    # While a refresh ran (hours, for a long history), status said "fresh" from the success
    # before it, though its first round had dropped the tables; so after a kill too.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__ROUND_PAGES="1")
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert status_json(env, "--max-age", "1h")["fresh"] is True
    steps = []

    def killed_after_the_first_round() -> None:
        steps.append(1)
        if len(steps) == 2:  # after the packages left, then after round 1
            raise Killed

    monkeypatch.setattr(sync_run, "raise_if_terminated", killed_after_the_first_round)
    monkeypatch.setattr(sync_run, "save_outcome", lambda *args, **kwargs: None)
    with pytest.raises(Killed):
        run_cli(env, "--quiet", "--no-models", "--full-refresh")
    monkeypatch.undo()
    during = status_json(env, "--max-age", "1h", code=1)
    assert during["fresh"] is False and during["last_success"] is not None
    assert run_cli(env, "--quiet", "--no-models").returncode == 0  # completes the reload
    assert status_json(env, "--max-age", "1h")["fresh"] is True


def test_a_load_that_failed_leaves_the_streams_as_the_destination_has_them(
        start_sandbox, tmp_path):
    # The local state, newer, came with a package that never loaded: status showed its windows
    # as synced through the failed sync's start, and "every change up to it is loaded".
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    before = status_json(env)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute("ALTER TABLE micrometrics.devices ALTER COLUMN name SET NOT NULL")
    sandbox.patch_records("devices", [sandbox.truth()["devices"][0]["id"]], {"name": None})
    sandbox.add_responses(5)
    assert run_cli(env, "--quiet", "--no-models").returncode == 1  # refused at load
    after = status_json(env)
    assert after["state_source"] == "destination"
    assert after["streams"] == before["streams"]
    assert after["last_sync"]["exit_code"] == 1  # the local record of how it went
    assert any("1 load package(s) extracted on this machine are not loaded yet" in problem
               for problem in after["problems"])
    # The destination unreadable (a notebook has the file open): no stream from the local
    # windows, which are ahead; the last success still dates the data.
    holder = hold_in_another_process(tmp_path / "warehouse.duckdb")
    try:
        held = status_json(env)
    finally:
        holder.communicate("\n", timeout=30)
    assert held["state_source"] == "local" and held["streams"] == []
    assert held["data_as_of"] == before["last_success"]["started_at"]
    assert any("no stream is shown" in problem for problem in held["problems"])
    # Named, a notebook's as a sync's: dlt's text blamed the credentials and the internet.
    assert any(f"not readable: another process (pid {holder.pid}) has the DuckDB file open" in
               problem for problem in held["problems"]), held["problems"]
    assert not any("credentials" in problem for problem in held["problems"])
    # While a sync runs here, its packages are its own, not a failure's.
    with sync_lock(str(tmp_path / "dlt" / "pipelines"), "micrometrics"):
        running = status_json(env)
    assert any(problem.startswith("a sync is running here (pid ")
               for problem in running["problems"])
    # A kill between normalize's commit and its clean-up leaves one package in two folders:
    # one package, as the dry run and --drop-pending count it (status said 2).
    folder = tmp_path / "dlt" / "pipelines" / "micrometrics"
    [package] = (folder / "load" / "normalized").iterdir()
    shutil.copytree(package, folder / "normalize" / "extracted" / package.name)
    assert any("1 load package(s) extracted on this machine are not loaded yet" in problem
               for problem in status_json(env)["problems"])


def test_a_sync_holding_the_duckdb_file_is_named_not_blamed_on_credentials(
        start_sandbox, tmp_path):
    """Mid-sync, DuckDB's file is the sync's: status passed on dlt's message ("check if you
    configured the credentials at all ... your internet connection may be down")."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    pipelines_dir = str(tmp_path / "dlt" / "pipelines")
    sync = hold_in_another_process(tmp_path / "warehouse.duckdb", as_a_sync_in=pipelines_dir)
    try:
        running = status_json(env)
    finally:
        sync.communicate("\n", timeout=30)
    held = [problem for problem in running["problems"] if "DuckDB file" in problem]
    [line] = held
    assert line.startswith(f"a sync is running here (pid {sync.pid}, started "), running
    assert line.endswith(" ago)) and holds the DuckDB file: the streams are shown as this "
                         "machine's state has them"), running
    assert not any("credentials" in problem for problem in running["problems"])
    assert running["state_source"] == "local" and running["streams"]

    # A notebook has the file, and a sync waits for it: the notebook is named, not the sync.
    notebook = hold_in_another_process(tmp_path / "warehouse.duckdb")
    try:
        with sync_lock(pipelines_dir, "micrometrics"):
            waiting = status_json(env)
    finally:
        notebook.communicate("\n", timeout=30)
    [line] = [problem for problem in waiting["problems"] if "DuckDB file" in problem]
    assert line.startswith(f"destination duckdb not readable: another process (pid "
                           f"{notebook.pid}) has the DuckDB file open: a sync, or a notebook"), line


def test_status_reads_beside_a_notebook_that_reads(start_sandbox, tmp_path):
    """A notebook or BI tool reading the DuckDB file (read_only=True, as ``make demo``
    suggests) shares it with other readers; status opened it to write and showed no stream."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    shutil.rmtree(tmp_path / "dlt" / "pipelines")  # so that only the destination can tell
    alone = status_json(env)
    reader = hold_in_another_process(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        beside = status_json(env)
    finally:
        reader.communicate("\n", timeout=30)
    assert beside["state_source"] == "destination" and beside["streams"]
    for status in (alone, beside):
        del status["now"], status["age_seconds"]
    assert beside["problems"] == [] and beside == alone


def test_ages_take_units():
    assert age_arg("90s") == timedelta(seconds=90)
    assert age_arg("45m") == timedelta(minutes=45)
    assert age_arg("6h") == timedelta(hours=6)
    assert age_arg("1.5d") == timedelta(hours=36)
    for bad in ("6", "h", "-1h", "6w"):
        with pytest.raises(Exception, match="not an age"):
            age_arg(bad)


def test_an_age_too_long_for_a_date_is_refused_in_one_line(tmp_path):
    # An OverflowError escaped argparse: a traceback and exit 1, as a stale status would be.
    assert age_arg("999999999d") == timedelta(days=999999999)
    env = sync_env(tmp_path, "http://127.0.0.1:9")
    for age in ("1000000000d", "99999999999999d"):
        bad = run_status(env, "--max-age", age)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1].endswith(
            f"argument --max-age: '{age}' is too long an age: at most 999999999 days")


def test_an_open_backfill_shows_until_a_sync_finishes_it(start_sandbox, tmp_path, clock):
    # A sync (through the library: it records no result) stopped part-way by a request cap,
    # after some rounds of 2 pages were committed.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=240, page_size=20,
                            **FAST)
    env = sync_env(tmp_path, sandbox.url)
    warehouse = dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb"))
    pipeline = pipeline_on(warehouse, tmp_path / "dlt" / "pipelines")
    with pytest.raises(Exception) as stopped:
        sync_into(sandbox, pipeline, clock, max_requests=9, window_pages=2,
                  initial_window_days=5)
    assert isinstance(stopped.value, RequestCapExceeded) or "more than 9 requests" in str(
        stopped.value)
    now = format_timestamp(datetime.fromtimestamp(clock(), UTC))

    status = status_json(env, "--now", now, "--max-age", "1d", code=1)
    assert status["open_backfills"], status["streams"]
    assert status["last_sync"] is None and status["data_as_of"] is None  # not complete
    for stream in status["streams"]:
        if stream["backfill"]:
            backfill = stream["backfill"]
            assert parse_timestamp(backfill["from"]) < parse_timestamp(
                backfill["read_down_to"]) <= parse_timestamp(backfill["to"])
    text = run_status(env, "--now", now)
    assert "OPEN backfill" in text.stdout and "open backfills: survey_responses[" in text.stdout

    sync_into(sandbox, pipeline, clock, window_pages=2, round_pages=100, initial_window_days=5)
    done = status_json(env, "--now", now, "--max-age", "1d")
    assert done["open_backfills"] == [] and done["fresh"] is True
    assert_streams_match_truth(done, sandbox.truth(), datetime.fromtimestamp(clock(), UTC))
    assert done["tables"]["survey_responses"] == 240


def test_a_fresh_runners_run_refused_for_its_settings_is_recorded_in_the_destination(
        start_sandbox, tmp_path):
    # Refused before the sync restored any state (GitHub Actions: a fresh runner every run),
    # the record stayed on the runner, and status everywhere showed the success before as the
    # last sync.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    shutil.rmtree(tmp_path / "dlt")
    refused = run_cli(dict(env, SOURCES__MICROMETRICS__LOOKBACK_MINUTES="5"), "--quiet")
    assert refused.returncode == 2
    shutil.rmtree(tmp_path / "dlt")
    status = status_json(env)
    assert status["state_source"] == "destination"
    assert status["last_sync"]["exit_code"] == 2 and status["last_success"]["exit_code"] == 0
    assert "lookback_minutes must be at least 15" in status["last_sync"]["error"]


def test_a_first_run_refused_for_its_settings_is_shown(start_sandbox, tmp_path):
    # Before anything was loaded: its record is what makes the DuckDB file (kept so: a version
    # that did not make it showed "last sync: none recorded").
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    refused = run_cli(dict(env, SOURCES__MICROMETRICS__LOOKBACK_MINUTES="5"), "--quiet")
    assert refused.returncode == 2
    status = status_json(env)
    assert status["last_sync"]["exit_code"] == 2 and status["last_success"] is None
    assert "lookback_minutes must be at least 15" in status["last_sync"]["error"]


def test_the_record_reaches_the_destination_with_restoring_turned_off(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, RESTORE_FROM_DESTINATION="false")
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    shutil.rmtree(tmp_path / "dlt")
    restored = status_json(dict(env, RESTORE_FROM_DESTINATION="true"))
    assert restored["state_source"] == "destination"
    assert restored["last_sync"]["exit_code"] == 0


def test_a_machine_whose_packages_another_overtook_shows_the_destinations_record(
        start_sandbox, tmp_path, monkeypatch):
    # Worker A's sync failed at load, its package left; the retry on worker B succeeded. On
    # A, status showed A's failure as the last sync and said its next sync would load the
    # package, which that sync drops (overtaken).
    sandbox = start_sandbox(**SMALL)
    worker_a = sync_env(tmp_path, sandbox.url)
    assert run_cli(worker_a, "--quiet", "--no-models").returncode == 0
    sandbox.add_responses(3)
    load = dlt.Pipeline.load

    def went_away(self, *args, **kwargs):
        raise ConnectionError("the destination went away")

    monkeypatch.setattr(dlt.Pipeline, "load", went_away)
    assert run_cli(worker_a, "--quiet", "--no-models").returncode == 1
    monkeypatch.setattr(dlt.Pipeline, "load", load)
    (tmp_path / "worker_b").mkdir()
    worker_b = dict(worker_a, DLT_DATA_DIR=str(tmp_path / "worker_b" / "dlt"))
    assert run_cli(worker_b, "--quiet", "--no-models").returncode == 0

    on_a = status_json(worker_a)
    assert on_a["last_sync"] == status_json(worker_b)["last_sync"]
    assert on_a["last_sync"]["exit_code"] == 0
    assert ["1 load package(s) extracted on this machine are older than a sync made since from "
            "another machine: the next sync here drops them; until then the streams are shown "
            "as the destination has them"] == on_a["problems"]


def test_a_stopped_reread_shows_until_the_same_command_finishes_it(start_sandbox, tmp_path,
                                                                   clock):
    # Only the same --start-at/--end-at command goes on with it: status said "open backfills:
    # none", and the operator whose re-read hit a time limit never knew it was unfinished.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=240, page_size=20,
                            **FAST)
    env = sync_env(tmp_path, sandbox.url)
    warehouse = dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb"))
    pipeline = pipeline_on(warehouse, tmp_path / "dlt" / "pipelines")
    sync_into(sandbox, pipeline, clock)
    began = datetime.fromtimestamp(clock(), UTC)
    reread = SyncOptions(start_at=began - timedelta(days=300), end_at=began - timedelta(days=5))
    with pytest.raises(Exception, match="more than 6 requests"):
        sync_into(sandbox, pipeline, clock, reread, max_requests=6, window_pages=2)
    clock.advance(3600)
    sync_into(sandbox, pipeline, clock)  # an incremental sync neither goes on nor drops it
    now = format_timestamp(datetime.fromtimestamp(clock(), UTC))

    (stopped,) = status_json(env, "--now", now)["stopped_rereads"]
    assert stopped["from"] == format_timestamp(reread.start_at)
    assert stopped["to"] == format_timestamp(reread.end_at)
    assert stopped["begun"] == format_timestamp(began)
    assert stopped["goes_on_until"] == format_timestamp(began + timedelta(days=7))
    assert "survey_responses" in stopped["unfinished"] and stopped["expired"] is False
    text = run_status(env, "--now", now).stdout
    assert (f"stopped re-read: --start-at {stopped['from']} --end-at {stopped['to']}, begun "
            f"{stopped['begun']}, unfinished: ") in text
    assert f"the same command goes on with it until {stopped['goes_on_until']}" in text
    # Past a week it is started anew: said so, and the next incremental sync forgets it.
    later = format_timestamp(began + timedelta(days=8))
    (expired,) = status_json(env, "--now", later)["stopped_rereads"]
    assert expired["expired"] is True
    assert "begun too long ago: the same command starts it anew" in run_status(
        env, "--now", later).stdout

    sync_into(sandbox, pipeline, clock, reread)
    assert status_json(env, "--now", now)["stopped_rereads"] == []
    assert "stopped re-read" not in run_status(env, "--now", now).stdout

    with pytest.raises(Exception, match="more than 6 requests"):
        sync_into(sandbox, pipeline, clock, reread, max_requests=6, window_pages=2)
    assert status_json(env, "--now", now)["stopped_rereads"]
    clock.advance(8 * 24 * 3600)
    sync_into(sandbox, pipeline, clock)
    assert status_json(env)["stopped_rereads"] == []


def test_a_first_sync_that_fails_is_recorded_locally_until_a_sync_loads(start_sandbox,
                                                                          tmp_path):
    # Nothing was ever loaded, so there is no schema to carry the state to the destination:
    # the failure is kept locally, and reaches the destination with the next sync's load.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    wrong = run_cli(dict(env, SOURCES__MICROMETRICS__API_SECRET="not-the-secret"), "--quiet")
    assert wrong.returncode == 1
    status = status_json(env, "--max-age", "1d", code=1)
    assert status["state_source"] == "local" and status["last_sync"]["exit_cause"] == "failed"
    assert status["last_success"] is None and status["fresh"] is False

    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    shutil.rmtree(tmp_path / "dlt" / "pipelines")
    restored = status_json(env, "--max-age", "1d")
    assert restored["state_source"] == "destination"
    assert restored["last_sync"]["exit_cause"] == "ok" and restored["fresh"] is True


def test_status_counts_rejected_records_the_last_reconcile_and_the_deep_pass(start_sandbox,
                                                                             tmp_path):
    sandbox = start_sandbox(**SMALL)
    add_malformed_records(sandbox)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0

    # Rejected records: the total and per stream, as many as the sandbox served malformed.
    malformed = {kind: len(records) for kind, records in sandbox.malformed().items() if records}
    status = status_json(env)
    assert status["rejected"]["total"] == sum(malformed.values()) == 3
    by_stream: dict[str, int] = {}
    for row in status["rejected"]["by_stream"]:
        kind = row["stream"].split("[")[0]  # survey_responses[<survey id>]
        by_stream[kind] = by_stream.get(kind, 0) + row["rows"]
    assert by_stream == malformed
    assert status["last_reconcile"] is None

    # A reconcile: status shows what the sync's summary said it did.
    erased = sandbox.erase_records("devices", [sandbox.truth()["devices"][0]["id"]])
    result = run_cli(env, "--json", "--quiet", "--no-models", "--reconcile")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    reconciled = status_json(env)
    reconcile = reconciled["last_reconcile"]
    assert reconcile == {"at": summary["started_at"],
                         "requests": summary["reconcile"]["requests"],
                         "listed": summary["reconcile"]["listed"],
                         "marked": summary["marks"]["marked"],
                         "unmarked": summary["marks"]["unmarked"]}
    assert reconcile["requests"] > 0 and reconcile["marked"] == {"devices": len(erased)}

    # A deep pass (due every sync with DEEP_EVERY_HOURS=0): status' last deep pass is its time.
    before = reconciled["last_deep_pass"]
    result = run_cli(dict(env, SOURCES__MICROMETRICS__DEEP_EVERY_HOURS="0"),
                     "--json", "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["deep_pass"]["ran"] is True
    after = status_json(env)
    deep_at = parse_timestamp(after["last_deep_pass"])
    assert deep_at > parse_timestamp(before)
    started, finished = (parse_timestamp(summary[key]) for key in ("started_at", "finished_at"))
    assert started - timedelta(seconds=1) <= deep_at <= finished
    assert after["last_reconcile"] == reconcile  # kept: this sync did not reconcile


def test_status_unavailable_exits_3(tmp_path):
    # No local state, and a destination that refuses connections: nothing could be read.
    env = sync_env(tmp_path, "https://127.0.0.1:1",
                   DESTINATION__POSTGRES__CREDENTIALS="postgresql://u:p@127.0.0.1:1/nowhere")
    result = run_status(env, "--destination", "postgres", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert json.loads(result.stdout)["exit_code"] == 3
    assert "status unavailable" in result.stderr
    assert "3 status unavailable" in " ".join(run_status(env, "--help").stdout.split())


def test_a_survey_gone_with_its_backfill_open_leaves_the_status_and_the_state(
        start_sandbox, tmp_path, clock):
    """A survey deleted while a sync was reading its history kept its open backfill in state:
    status showed it open (\"the next sync continues it\") for ever, and every gone survey's
    windows stayed in the state stored with each load."""
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=240, page_size=20,
                            **FAST)
    env = sync_env(tmp_path, sandbox.url)
    warehouse = dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb"))
    pipeline = pipeline_on(warehouse, tmp_path / "dlt" / "pipelines")
    with pytest.raises(Exception):  # noqa: B017 - stopped part-way by the request cap
        sync_into(sandbox, pipeline, clock, max_requests=9, window_pages=2,
                  initial_window_days=5)
    now = format_timestamp(datetime.fromtimestamp(clock(), UTC))
    open_ = status_json(env, "--now", now, "--max-age", "1d", code=1)["open_backfills"]
    gone = next(int(stream[len("survey_responses["):-1]) for stream in open_
                if stream.startswith("survey_responses["))
    sandbox.remove_survey(gone)

    sync_into(sandbox, pipeline, clock, window_pages=2, round_pages=100, initial_window_days=5)
    done = status_json(env, "--now", now, "--max-age", "1d")
    assert done["open_backfills"] == []
    assert not [s for s in done["streams"] if s["stream"] == f"survey_responses[{gone}]"]
    per_survey = pipeline.state["sources"]["micrometrics"]["resources"]["survey_responses"][
        "surveys"]
    assert sorted(per_survey) == sorted(str(s["id"]) for s in sandbox.truth()["surveys"])


def test_a_completed_refresh_leaves_no_mark_of_one_under_way(start_sandbox, tmp_path, clock):
    # The mark outlived refreshes that completed: from sync() (no command record to clear it),
    # and a refresh of some resources: status stopped vouching, and make models warned, for good.
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(dlt.destinations.duckdb(credentials=str(tmp_path / "w.duckdb")),
                           tmp_path / "pipelines")
    sync_into(sandbox, pipeline, clock, **FAST)
    for resources in (None, ("devices",)):
        sync_into(sandbox, pipeline, clock, SyncOptions(full_refresh=True, resources=resources),
                  **FAST)
        assert REFRESH_FAILED not in status_of(pipeline.state)
    # One that did not complete stays marked through a refresh of some resources after it.
    status = {REFRESH_FAILED: "2026-03-15T00:00:00.000+00:00"}
    with pipeline.managed_state() as state:
        state[STATUS_KEY] = status
    sync_into(sandbox, pipeline, clock, SyncOptions(full_refresh=True, resources=("devices",)),
              **FAST)
    assert status_of(pipeline.state)[REFRESH_FAILED] == status[REFRESH_FAILED]
    # ... until a sync reads every resource to its end: from sync() too, which records nothing.
    sync_into(sandbox, pipeline, clock, **FAST)
    assert REFRESH_FAILED not in status_of(pipeline.state)


def test_a_postgres_folder_marked_by_an_earlier_version_is_named_so(start_sandbox, tmp_path,
                                                                    postgres_credentials):
    """A marker written before the database was part of it names only the server: status
    took it for another target's, as the sync does, but said it last synced 'None'."""
    from pipelines.destination import open_pipeline
    from pipelines.micrometrics.target import marker_path, target_of

    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=postgres_credentials)
    assert run_cli(env, "--destination", "postgres", "--quiet", "--no-models").returncode == 0
    folder = tmp_path / "dlt" / "pipelines"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_credentials)
        pipeline = open_pipeline("postgres", "micrometrics", str(tmp_path / "scratch"))
        older = target_of(pipeline, with_fields=False)
        pipeline.deactivate()
    marker_path(folder, "micrometrics").write_text(json.dumps(older))
    status = status_json(env, "--destination", "postgres")
    assert status["state_source"] == "destination"
    assert ("the local pipeline folder holds another target's state (last synced: postgres "
            "dataset 'micrometrics', marked by an earlier version, which named no database: "
            "perhaps another; the next sync takes it for another and restores its own): not used"
            ) in status["problems"]
