"""The sync command line as a user runs it: env configuration, exit codes, output; in this
process through ``main(argv)``, and in a real one where a kill is what is tested."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.settings import load_settings
from pipelines.status.cli import main as status_main
from pipelines.sync.cli import main
from pipelines.sync.options import SyncOptions
from tests.cli import COMMAND, run_cli, run_in_process, start_sync, sync_env, tmp_cwd
from tests.conftest import KEY, SECRET
from tests.fakes import FakeClock
from tests.syncing import DATASET, query, sync_sandbox
from tests.truth import assert_matches_truth


def test_help_explains_options(tmp_path):
    result = run_cli(sync_env(tmp_path, "https://example.com"), "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--destination", "--dataset", "--start-at", "--end-at", "--resources",
                   "--full-refresh", "--dry-run", "--drop-pending",
                   "SOURCES__MICROMETRICS__API_SECRET"):
        assert option in result.stdout
    # Every setting the configuration spec has, named as a variable.
    from pipelines.micrometrics.settings import (
        MicrometricsConfiguration,
        MicrometricsCredentials,
        _fields,
    )

    text = " ".join(result.stdout.split())
    for key in _fields(MicrometricsConfiguration) | _fields(MicrometricsCredentials):
        assert f"SOURCES__MICROMETRICS__{key.upper()}" in text, key


def test_dry_run_makes_no_request(start_sandbox, tmp_path):
    sandbox = start_sandbox(rate=100.0, burst=100)
    result = run_cli(sync_env(tmp_path, sandbox.url), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "full history" in result.stdout and "estimated requests" in result.stdout
    # A first sync's size is unknown (the API gives no counts): said, with the rate it reads at.
    assert ("a history's size is unknown until it is read: at 1 request/s and 100 records a "
            "page, about 360,000 records an hour") in result.stdout
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"SOURCES__MICROMETRICS__API_SECRET": ""}, "SOURCES__MICROMETRICS__API_SECRET"),
        ({"SOURCES__MICROMETRICS__START_AT": "last tuesday"}, "start_at"),
        ({"SOURCES__MICROMETRICS__BASE_URL": "http://example.com"}, "https"),
        ({"SOURCES__MICROMETRICS__BASE_URL": "https://usr:pw@example.com"},
         "base_url must not hold a user name or password"),
        ({"SOURCES__MICROMETRICS__WINDOW_PAGES": "-3"}, "window_pages"),
        ({"SOURCES__MICROMETRICS__WINDOW_PAGES": "2.5"}, "whole number"),
        ({"SOURCES__MICROMETRICS__LOOKBACK_MINUTES": "5"}, "at least 15"),
        ({"DESTINATION__DUCKDB__CREDENTIALS": "micrometrics.duckdb"}, "same name as the dataset"),
        ({"DESTINATION__DUCKDB__CREDENTIALS__DATABASE": "micrometrics.duckdb"},
         "same name as the dataset"),
        # DuckDB's names are case-insensitive: every sync failed at load (ambiguous reference).
        ({"DESTINATION__DUCKDB__CREDENTIALS": "Micrometrics.duckdb"}, "same name as the dataset"),
    ],
)
def test_bad_configuration_fails_before_any_request(start_sandbox, tmp_path, override, expected):
    sandbox = start_sandbox()
    env = sync_env(tmp_path, sandbox.url)
    env.update(override)
    if not override.get("SOURCES__MICROMETRICS__API_SECRET", "x"):
        del env["SOURCES__MICROMETRICS__API_SECRET"]
    if "DESTINATION__DUCKDB__CREDENTIALS__DATABASE" in override:
        del env["DESTINATION__DUCKDB__CREDENTIALS"]  # the field alone, not the whole value
    result = run_cli(env)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert sandbox.stats()["requests"] == 0


def test_duckdb_file_configured_by_its_database_field(start_sandbox, tmp_path):
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=100)
    env = sync_env(tmp_path, sandbox.url,
                   DESTINATION__DUCKDB__CREDENTIALS__DATABASE=str(tmp_path / "mine.duckdb"))
    del env["DESTINATION__DUCKDB__CREDENTIALS"]
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "warehouse.duckdb").exists()  # the default, in the working directory
    with duckdb.connect(str(tmp_path / "mine.duckdb"), read_only=True) as db:
        (rows,) = db.execute("SELECT count(*) FROM micrometrics.survey_responses").fetchone()
    assert rows == len(sandbox.truth()["survey_responses"])


def test_wrong_secret_exits_with_one_line(start_sandbox, tmp_path):
    sandbox = start_sandbox()
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__API_SECRET="not-the-secret")
    result = run_cli(env, "--quiet")
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "API key and secret" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_ends_exact(start_sandbox, tmp_path):
    # Many small rounds so the kill lands between checkpoints, latency so it lands at all.
    sandbox = start_sandbox(devices=20, surveys=3, responses=900, page_size=20, latency=0.01,
                            rate=200.0, burst=200)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES="3",
                   SOURCES__MICROMETRICS__ROUND_PAGES="3",
                   SOURCES__MICROMETRICS__INITIAL_WINDOW_DAYS="10")
    process = start_sync(env, "--quiet")  # a real process: SIGKILL is what is tested
    assert sandbox.wait_for_requests(25)
    assert process.poll() is None, "sync finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_requests = sandbox.stats()["requests"]

    sandbox.reset_stats()
    result = run_cli(env, "--quiet")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())
    resumed_requests = sandbox.stats()["requests"]

    # Changes made meanwhile, late ones included, arrive with the next sync.
    sandbox.add_responses(10)
    sandbox.update_responses(5)
    sandbox.add_late_responses(5, delay_seconds=1800)
    sandbox.reset_stats()
    assert run_cli(env, "--quiet").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())
    sandbox.reset_stats()

    # The same sync from scratch elsewhere: resuming must have skipped checkpointed windows.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert run_cli(sync_env(scratch, sandbox.url, **{
        k: v for k, v in env.items() if k.startswith("SOURCES__MICROMETRICS__WINDOW")
        or k.startswith("SOURCES__MICROMETRICS__INITIAL")}), "--quiet").returncode == 0
    from_scratch = sandbox.stats()["requests"]
    assert resumed_requests <= from_scratch - 10
    assert first_requests + resumed_requests <= from_scratch + 15  # lost: the round in flight


def test_sync_builds_models_unless_told_not_to(start_sandbox, tmp_path):
    sandbox = start_sandbox(devices=10, surveys=2, responses=120, rate=100.0, burst=100)
    with_models, without = tmp_path / "with", tmp_path / "without"
    with_models.mkdir()
    without.mkdir()
    shown = run_cli(sync_env(with_models, sandbox.url))
    assert shown.returncode == 0
    # Progress while it runs: one line per finished window, on stderr.
    assert "devices: " in shown.stderr and " records in " in shown.stderr
    assert run_cli(sync_env(without, sandbox.url), "--quiet", "--no-models").returncode == 0
    count = "SELECT COUNT(*) FROM micrometrics.fct_survey_responses"
    assert query(with_models, count) == [(120,)]
    with pytest.raises(duckdb.CatalogException):
        query(without, count)


def test_in_process_runs_leave_the_hosts_logging_as_it_was(start_sandbox, tmp_path,
                                                           monkeypatch, capsys):
    # An orchestrator (an Airflow task) calls main() in its own process: its log handlers stay
    # in place and open, and one run's verbosity does not leak into the next.
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=50)
    for key, value in sync_env(tmp_path, sandbox.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    host_log = io.StringIO()
    host = logging.StreamHandler(host_log)
    root, ours = logging.getLogger(), logging.getLogger("micrometrics")
    root.addHandler(host)
    before = (root.handlers[:], root.level, ours.level, ours.propagate, ours.handlers[:])
    try:
        assert main(["--no-models"]) == 0
        first = capsys.readouterr().err
        assert main(["--no-models", "--quiet"]) == 0
        second = capsys.readouterr().err
        logging.getLogger("host").warning("after the syncs")
        assert (root.handlers, root.level, ours.level, ours.propagate, ours.handlers) == before
        assert "after the syncs" in host_log.getvalue() and not host.stream.closed
        assert "records in" in first and "records in" not in second  # progress lines
    finally:
        root.removeHandler(host)


def test_destination_misconfiguration_exits_2_and_every_bad_run_is_recorded(start_sandbox,
                                                                           tmp_path):
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=50)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    requests = sandbox.stats()["requests"]
    for extra, args in [
        ({}, ["--destination", "nosuchdest"]),
        ({"DESTINATION__POSTGRES__CREDENTIALS": "postgresql://u:sekret@db:notaport/x"},
         ["--destination", "postgres"]),
        ({"DESTINATION__SNOWFLAKE__CREDENTIALS": ""}, ["--destination", "snowflake"]),
    ]:
        result = run_cli(dict(env, **extra), "--no-models", *args)
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "sekret" not in result.stderr
    assert sandbox.stats()["requests"] == requests

    bad = run_cli(dict(env, SOURCES__MICROMETRICS__WINDOW_PAGES="-3"), "--quiet")
    assert bad.returncode == 2
    status = json.loads(run_in_process(status_main, ["status"], env, "--json").stdout)
    assert status["last_sync"]["exit_code"] == 2 and "window_pages" in status["last_sync"]["error"]


def test_a_refused_run_on_a_stale_worker_leaves_the_destinations_newer_state(start_sandbox,
                                                                            tmp_path):
    # Two workers, one destination. Worker b's local state is old; recording its refused run
    # must not load that state over the one worker a synced since.
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=50)
    worker_a = sync_env(tmp_path, sandbox.url)
    worker_b = dict(worker_a, DLT_DATA_DIR=str(tmp_path / "dlt_b"))
    assert run_cli(worker_b, "--quiet", "--no-models").returncode == 0
    for _ in range(2):
        assert run_cli(worker_a, "--quiet", "--no-models").returncode == 0
    newest_success = json.loads(run_in_process(status_main, ["status"], worker_a,
                                               "--json").stdout)["last_success"]

    refused = dict(worker_b, SOURCES__MICROMETRICS__WINDOW_PAGES="-1")
    assert run_cli(refused, "--quiet", "--no-models").returncode == 2

    fresh_machine = dict(worker_a, DLT_DATA_DIR=str(tmp_path / "dlt_c"))
    status = json.loads(run_in_process(status_main, ["status"], fresh_machine, "--json").stdout)
    assert status["state_source"] == "destination"
    assert status["last_sync"]["exit_code"] == 2 and status["last_success"] == newest_success


@pytest.mark.parametrize("bounds", [("--start-at", "2026-01-01T00:00:00Z"),
                                    ("--end-at", "2026-01-01T00:00:00Z")])
def test_full_refresh_with_an_explicit_range_is_refused_before_anything(start_sandbox, tmp_path,
                                                                        bounds):
    # The refresh would drop the tables and state, then load back only the range: exit 0 with
    # a fraction of the data, and the status calling it fresh.
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=50)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    state = tmp_path / "dlt" / "pipelines" / "micrometrics" / "state.json"
    before, requests = state.read_bytes(), sandbox.stats()["requests"]
    rows = query(tmp_path, "SELECT count(*) FROM micrometrics.survey_responses")
    result = run_cli(env, "--quiet", "--no-models", "--full-refresh", *bounds)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --full-refresh reloads the whole history: it cannot be combined with "
        "--start-at/--end-at (run them one after the other)"]
    assert sandbox.stats()["requests"] == requests and state.read_bytes() == before
    assert query(tmp_path, "SELECT count(*) FROM micrometrics.survey_responses") == rows


@pytest.mark.parametrize("flag,value", [("--dataset", ""), ("--dataset", "   "),
                                        ("--destination", ""), ("--destination", " ")])
def test_an_empty_or_blank_destination_or_dataset_is_refused_by_every_command(
        start_sandbox, tmp_path, flag, value):
    # Empty, dlt took the dataset (destination) synced last: an unset variable synced into the
    # previous target with exit 0. Blank, the sync failed after its requests.
    from pipelines.models.cli import main as models_main
    from pipelines.report.cli import main as report_main

    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=20)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models", "--dataset", "scratch_copy").returncode == 0
    state = tmp_path / "dlt" / "pipelines" / "micrometrics" / "state.json"
    before, requests = state.read_bytes(), sandbox.stats()["requests"]
    for command in (main, models_main, status_main, report_main):
        result = run_in_process(command, [command.__module__], env, flag, value)
        assert result.returncode == 2, (command.__module__, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert f"argument {flag}: must not be empty or blank" in last
    assert sandbox.stats()["requests"] == requests and state.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--start-at", "2999-01-01T00:00:00Z"], "argument --start-at: must be from 1970-01-01T00:"),
    (["--start-at", "0001-01-01T00:00:00Z"], "argument --start-at: must be from 1970-01-01T00:"),
    (["--start-at", "0001-01-01T00:00:00+05:00"], "argument --start-at: timestamp out of range"),
    (["--end-at", "1969-12-31T23:59:59Z"], "argument --end-at: must be from 1970-01-01T00:"),
    (["--end-at", "2999-01-01T00:00:00Z"], "(leave --end-at out to read up to now)"),
])
def test_a_range_before_1970_or_in_the_future_is_refused_before_any_request(
        start_sandbox, tmp_path, args, message):
    # Accepted, a future start read nothing (exit 0) and a start in year 1 failed after the
    # requests with exit 1 (date value out of range).
    sandbox = start_sandbox()
    result = run_cli(sync_env(tmp_path, sandbox.url), "--quiet", "--no-models", *args)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert sandbox.stats()["requests"] == 0 and not (tmp_path / "dlt").exists()


@pytest.mark.parametrize("args,message", [
    (["--start-at", "in 5 minutes"], "nothing to read: start_at 20"),
    (["--end-at", "2024-06-01T00:00:00Z"], "nothing to read: SOURCES__MICROMETRICS__START_AT "
                                           "2025-01-01T00:00:00.000+00:00 is not before end_at"),
])
def test_a_range_that_ends_before_it_starts_is_refused_before_any_request(
        start_sandbox, tmp_path, args, message):
    # Each bound alone is in range: the API answered the empty range with a 400, exit 1.
    sandbox = start_sandbox()
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    args = [soon if arg == "in 5 minutes" else arg for arg in args]
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__START_AT="2025-01-01T00:00:00Z")
    result = run_cli(env, "--quiet", "--no-models", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize("args", [[], ["--dry-run"]])
def test_a_future_start_at_setting_is_refused_before_any_request(start_sandbox, tmp_path, args):
    # The dry run planned it and exited 0 while the sync refused it.
    sandbox = start_sandbox()
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__START_AT="2999-01-01T00:00:00Z")
    result = run_cli(env, "--quiet", "--no-models", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: SOURCES__MICROMETRICS__START_AT must be from 1970-01-01T00:00:00Z and not in the "
        "future")
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize("dataset,file", [("Micrometrics", "micrometrics.duckdb"),
                                          ("Kiosk-Data", "kiosk_data.duckdb"),
                                          ("kiosk_data", "KIOSK_DATA.duckdb"),
                                          ("micrometrics", "micrometrics_staging.duckdb"),
                                          ("Kiosk-Data", "KIOSK_DATA_STAGING.duckdb")])
def test_a_duckdb_file_named_like_the_dataset_in_another_case_or_form_is_refused(
        start_sandbox, tmp_path, dataset, file):
    # dlt creates the dataset under its normalized name, which DuckDB compares without case:
    # the file's catalog and the dataset clashed at load, on every sync (exit 1).
    sandbox = start_sandbox()
    env = sync_env(tmp_path, sandbox.url, DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / file))
    result = run_cli(env, "--quiet", "--no-models", "--dataset", dataset)
    assert result.returncode == 2, result.stderr
    assert "same name as the dataset" in result.stderr.strip().splitlines()[-1]
    assert sandbox.stats()["requests"] == 0 and not (tmp_path / file).exists()


def test_a_load_job_the_destination_refuses_is_named_in_one_line_without_tracebacks(
        start_sandbox, tmp_path):
    # dlt's message held the first 500 characters of a traceback, not the cause, and its
    # logger printed the traceback (69 lines here; 340 for PostgreSQL's temp_file_limit), with
    # --quiet too and on a sync that ended well after dlt retried a job.
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute("ALTER TABLE micrometrics.devices ALTER COLUMN name SET NOT NULL")
    sandbox.patch_records("devices", [sandbox.truth()["devices"][0]["id"]], {"name": None})
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == ("error: sync failed: the load of devices failed: Constraint Error: "
                         "NOT NULL constraint failed: devices.name; the package stays pending "
                         "and every sync loads it first: fix the cause, or sync once with "
                         "--drop-pending to drop it and read its windows again from the API")
    assert not any(line.lstrip().startswith('File "') for line in lines)
    verbose = run_cli(env, "--no-models", "--verbose")
    assert verbose.returncode == 1 and 'File "' in verbose.stderr  # --verbose keeps them


def test_models_built_by_hand_after_a_failed_load_say_what_the_marts_lack(
        start_sandbox, tmp_path):
    # `make models` built marts from what was loaded and said nothing (exit 0): read as
    # complete while a full refresh was half done, or the last sync's package waited.
    from pipelines.models.cli import main as models_main

    def models() -> str:
        built = run_in_process(models_main, ["pipelines.models"], env, "--quiet")
        assert built.returncode == 0, built.stderr
        return built.stderr

    sandbox = start_sandbox(devices=5, surveys=2, responses=60, page_size=10,
                            rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet").returncode == 0
    assert "warning" not in models()
    # Round 1 drops the tables and loads a page; the API refuses the cursors after it.
    sandbox.script("reject_cursor", count=10, endpoint="survey_responses")
    one_page_rounds = dict(env, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1",
                           SOURCES__MICROMETRICS__ROUND_PAGES="1")
    assert run_cli(one_page_rounds, "--quiet", "--no-models", "--full-refresh").returncode == 1
    assert "a --full-refresh started at" in models()
    sandbox.clear_script()
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert "warning" not in models()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute("ALTER TABLE micrometrics.devices ALTER COLUMN name SET NOT NULL")
    sandbox.patch_records("devices", [sandbox.truth()["devices"][0]["id"]], {"name": None})
    assert run_cli(env, "--quiet", "--no-models").returncode == 1  # refused at load
    assert "1 load package(s) a sync extracted are not loaded yet" in models()


def test_a_date_alone_as_end_at_includes_that_whole_day(start_sandbox, tmp_path):
    # Read as its midnight, --end-at 2026-03-31 left March 31 out of a re-read of March, and
    # --start-at D --end-at D was refused as an empty range.
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=60)
    day = (datetime.now(UTC) - timedelta(days=10)).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    late, next_day = sorted(r["id"] for r in sandbox.truth()["survey_responses"])[:2]
    sandbox.stamp_records("survey_responses", [late], (day + timedelta(hours=23.5)).isoformat())
    sandbox.stamp_records("survey_responses", [next_day],
                          (day + timedelta(hours=24.5)).isoformat())
    on_the_day = set()
    for record in sandbox.truth()["survey_responses"]:
        updated = datetime.fromisoformat(record["updated_at"])
        assert abs(updated - day) > timedelta(seconds=2)  # nothing on a bound: no overlap
        assert abs(updated - day - timedelta(days=1)) > timedelta(seconds=2)
        if day <= updated < day + timedelta(days=1):
            on_the_day.add(record["id"])
    assert late in on_the_day and next_day not in on_the_day
    date = day.date().isoformat()
    done = run_cli(sync_env(tmp_path, sandbox.url), "--quiet", "--no-models",
                   "--resources", "survey_responses", "--start-at", date, "--end-at", date)
    assert done.returncode == 0, done.stderr
    loaded = query(tmp_path, "SELECT id FROM micrometrics.survey_responses")
    assert {id_ for (id_,) in loaded} == on_the_day


def test_responses_alone_naming_a_kiosk_set_up_since_warn_not_fail(start_sandbox, tmp_path):
    """``--resources survey_responses`` (hourly, the rest daily, say) loads responses of a kiosk
    set up since the devices were last read: that sync's build failed
    responses_have_known_device, exit 4 ("do not retry"), and the next full sync passed. It
    warns now; a sync that reads the devices still fails for one it cannot load."""
    sandbox = start_sandbox(rate=1000.0, burst=1000, devices=10, surveys=2, responses=200)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet").returncode == 0
    kiosk, unloadable = sandbox.add_devices(2)
    sandbox.patch_records("devices", [unloadable], {"Name": "not its name"})  # quarantined
    responses = [r["id"] for r in sandbox.truth()["survey_responses"][:2]]
    for response, device in zip(responses, (kiosk, unloadable), strict=True):
        sandbox.patch_records("survey_responses", [response], {"device_id": device})

    subset = run_cli(env, "--json", "--resources", "survey_responses")
    assert subset.returncode == 0, subset.stderr
    [warning] = [line for line in json.loads(subset.stdout)["warnings"] if "data test" in line]
    assert warning.startswith("data test responses_have_known_device: 2 offending rows: ")
    assert f"device_id={kiosk!r}" in warning and "did not read devices" in warning
    full = run_cli(env, "--quiet")
    assert full.returncode == 4
    assert "responses_have_known_device: 1 offending row: " in full.stderr
    assert f"device_id={unloadable!r}" in full.stderr and kiosk not in full.stderr


@pytest.mark.parametrize("with_start", [True, False])
def test_todays_date_as_end_at_goes_on_with_a_reread_stopped_part_way(start_sandbox, tmp_path,
                                                                      with_start):
    # Today's date alone was read up to the moment the command started: the range had another
    # name on every run, and a re-read stopped part-way started over. (The command reads this
    # machine's clock: so does the re-read here.)
    clock = FakeClock(time.time())
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50, page_size=20)
    start = (datetime.fromtimestamp(clock.now, UTC) - timedelta(days=300)).date()
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
    # Without --start-at, from START_AT (the sandbox's history is within it).
    stopped = SyncOptions(start_at=midnight if with_start else load_settings(
        base_url=sandbox.url, api_key=KEY, api_secret=SECRET).start_at)
    with pytest.raises(Exception, match="more than 8 requests"):  # stopped part-way
        sync_sandbox(sandbox, tmp_path, clock, stopped, rate=50.0, burst=50, window_pages=2,
                     max_requests=8)
    env = sync_env(tmp_path, sandbox.url, DLT_DATA_DIR=str(tmp_path))  # the same folder
    today = datetime.now(UTC).date().isoformat()
    starting = ("--start-at", start.isoformat()) if with_start else ()
    plan = run_cli(env, "--dry-run", *starting, "--end-at", today)
    assert plan.returncode == 0, plan.stderr
    streams = [line for line in plan.stdout.splitlines()
               if line.strip().startswith(("devices", "survey_responses["))]
    assert streams and any("full history" not in line for line in streams), plan.stdout


def _without_tables(text: bytes) -> bytes:
    """The schema as dlt itself saved it after a stop raised inside its rebuild."""
    from dlt.common.schema.utils import bump_version_if_modified

    stored = {**json.loads(text), "tables": {}}
    bump_version_if_modified(stored)
    return json.dumps(stored).encode()


@pytest.mark.parametrize("damaged, damage, error", [
    ("state.json", lambda text: b"", "JSONDecodeError"),
    ("schemas/micrometrics.schema.json", lambda text: text[:len(text) // 2], "JSONDecodeError"),
    # As a stop raised inside dlt's schema rebuild once left it, which dlt then saved.
    ("schemas/micrometrics.schema.json", _without_tables, "SchemaCorruptedException")])
def test_a_local_state_or_schema_file_cut_short_is_set_aside_and_the_next_sync_is_exact(
        start_sandbox, tmp_path, damaged, damage, error):
    # A full disk or a power loss empties or cuts dlt's state or schema file: dlt failed on it
    # in every sync after ("Input is a zero-length, empty document"), naming no file.
    sandbox = start_sandbox(devices=5, surveys=2, responses=100, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    folder = tmp_path / "dlt" / "pipelines" / "micrometrics"
    target = folder / damaged
    left = damage(target.read_bytes())
    target.write_bytes(left)
    sandbox.add_responses(5)
    sandbox.update_devices(2)
    # Only a sync, under its lock, moves the folder: another command says so and leaves it.
    plan = run_cli(env, "--dry-run")
    assert plan.returncode == 1
    assert plan.stderr.strip().endswith("the next sync moves it aside and restores the state "
                                        "from the destination"), plan.stderr
    assert not list(folder.parent.glob("micrometrics.unreadable-*"))

    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    (aside,) = folder.parent.glob("micrometrics.unreadable-*")
    assert (aside / damaged).read_bytes() == left  # kept as it was found, for a look
    warning = result.stderr.strip().splitlines()[0]
    assert warning.startswith("warning: this machine's pipeline folder could not be read "
                              f"({error}: "), warning
    assert warning.endswith(f"moved to {aside}: the state comes back from the destination, "
                            f"and what the folder held but had not loaded is read again")
    assert_matches_truth(tmp_path, sandbox.truth())
    again = run_cli(env, "--quiet", "--no-models")
    assert again.returncode == 0 and again.stderr == ""


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB filesystem of its own (tmpfs; needs root, as CI has: skipped elsewhere)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("free_bytes", [0, 4096])
def test_a_first_sync_onto_a_full_disk_leaves_no_duckdb_file_that_fails_every_sync_after(
        start_sandbox, tmp_path, small_disk, free_bytes):
    """DuckDB creates the file, then writes its 12 KB of headers: on a full disk the file stayed
    empty or cut short, and every sync after (the models, the report) failed on it ("not a
    valid DuckDB database file"), the space back, for good."""
    sandbox = start_sandbox(devices=5, surveys=2, responses=100, rate=1000.0, burst=1000)
    database = small_disk / "warehouse.duckdb"
    env = sync_env(tmp_path, sandbox.url, DESTINATION__DUCKDB__CREDENTIALS=str(database))
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    os.truncate(filler, os.path.getsize(filler) - free_bytes)
    full = run_cli(env, "--quiet", "--no-models")
    assert full.returncode == 1, full.stderr
    assert "No space left on device" in full.stderr.strip().splitlines()[-1], full.stderr
    filler.unlink()
    done = run_cli(env, "--quiet", "--no-models")
    assert done.returncode == 0, done.stderr
    # What the failure's record left (its own connection made the file again) is set aside.
    assert all(line.startswith(f"warning: the DuckDB file {database} was cut short as it was "
                               f"created (") for line in done.stderr.splitlines()), done.stderr
    assert_matches_truth(small_disk, sandbox.truth())


def test_a_full_disk_said_only_in_text_is_the_disk_not_a_stuck_package():
    """dlt's normalize passes a worker's error on as text, and DuckDB's IO errors are its own:
    a full disk there said "fix the cause, or sync once with --drop-pending" (the one step that
    can lose data), where freeing space is all it takes. A server's full disk stays its own."""
    import duckdb as duckdb_module
    import psycopg2.errors
    from dlt.load.exceptions import LoadClientJobFailed
    from dlt.normalize.exceptions import NormalizeJobFailed

    from pipelines.micrometrics.messages import hint
    from pipelines.sync.run import failure

    normalize = NormalizeJobFailed("17", "job", "[Errno 28] No space left on device", [])
    duckdb_load = LoadClientJobFailed("17", "survey_responses.x.parquet", "failed", (
        duckdb_module.IOException('IO Error: Could not write file "w.duckdb.wal": No space '
                                  'left on device')))
    for exc, said in ((normalize, "[Errno 28] No space left on device"),
                      (duckdb_load, 'IO Error: Could not write file "w.duckdb.wal": No space '
                                    'left on device')):
        assert failure(exc) == (1, f"sync failed: this machine's disk: {said}; {hint('disk')}")
    server = LoadClientJobFailed("17", "survey_responses.x.sql", "failed", psycopg2.errors.DiskFull(
        'could not extend file "base/16384/2619": No space left on device'))
    assert "this machine's disk" not in failure(server)[1]


def test_a_file_size_limit_is_said_as_the_disk_and_loses_nothing(start_sandbox, tmp_path):
    """ulimit -f (systemd's LimitFSIZE): dlt's wrapper text of the extract step, naming no cause."""
    sandbox = start_sandbox(devices=5, surveys=2, responses=300, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    limited = ["bash", "-c", 'ulimit -f 64 && exec "$@"', "bash"]  # 64 KB a file
    limit = subprocess.run([*limited, *COMMAND, "--quiet", "--no-models"], cwd=tmp_cwd(env),
                           env=env, capture_output=True, text=True, timeout=120)
    assert limit.returncode == 1, limit.stderr
    assert limit.stderr.strip().splitlines()[-1].startswith(
        "error: sync failed: this machine's disk: [Errno 27] File too large"), limit.stderr
    done = run_cli(env, "--quiet", "--no-models")
    assert done.returncode == 0, done.stderr
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_duckdb_file_cut_short_as_it_was_made_is_set_aside_and_made_anew(start_sandbox,
                                                                           tmp_path):
    """As an earlier version left it on a full disk: shorter than an empty database (12 KB),
    no WAL. Every sync failed on it for good; now it is set aside (kept), said, made anew."""
    sandbox = start_sandbox(devices=5, surveys=2, responses=100, rate=1000.0, burst=1000)
    database = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    database.write_bytes((tmp_path / "empty.duckdb").read_bytes()[:4096])
    env = sync_env(tmp_path, sandbox.url)
    done = run_cli(env, "--quiet", "--no-models")
    assert done.returncode == 0, done.stderr
    [aside] = tmp_path.glob("warehouse.duckdb.unfinished-*")
    [warning] = done.stderr.strip().splitlines()
    assert warning == (f"warning: the DuckDB file {database} was cut short as it was created "
                       f"(4096 bytes: a full disk or a file-size limit then) and never held "
                       f"data: moved aside to {aside}, and a new one made"), warning
    assert aside.stat().st_size == 4096
    assert_matches_truth(tmp_path, sandbox.truth())
    # Another file the setting names by mistake (small, no WAL, refused the same way) is not
    # set aside: it is said, and left as it is.
    notes = tmp_path / "notes.txt"
    notes.write_text("kiosk rollout notes\n" * 50)
    env["DESTINATION__DUCKDB__CREDENTIALS"] = str(notes)
    refused = run_cli(env, "--quiet", "--no-models")
    assert refused.returncode == 1 and "not a valid DuckDB database file" in refused.stderr
    assert notes.read_text() == "kiosk rollout notes\n" * 50
    assert not list(tmp_path.glob("notes.txt.unfinished-*"))


def test_a_full_or_read_only_pipelines_disk_is_said_in_one_line_and_shown_by_status(
        start_sandbox, tmp_path, small_disk):
    sandbox = start_sandbox(devices=5, surveys=2, responses=100, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url, DLT_DATA_DIR=str(small_disk / "dlt"))
    assert run_cli(env, "--quiet", "--no-models").returncode == 0

    def status_problems() -> list[str]:
        shown = run_in_process(status_main, ["pipelines.status"], env, "--json")
        return json.loads(shown.stdout)["problems"]

    filler = small_disk / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:  # the disk fills up, as a log or a core dump would fill it
            out.write(b"\0" * 65536)
    sandbox.add_responses(5)
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: sync failed: this machine's disk: [Errno 28] No space left "
                            "on device"), error
    assert error.endswith(f"; {hint('disk')}")
    assert hint("disk").startswith("free space on (or make writable) the disk of the path "
                                   "named, usually the pipelines folder (under DLT_DATA_DIR)")
    pipelines = small_disk / "dlt" / "pipelines"
    assert any(problem.startswith(f"the disk of this machine's pipelines folder {pipelines} is "
                                  f"full (") for problem in status_problems())

    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: sync failed: this machine's disk: [Errno 30] Read-only file system")
    assert (f"this machine's pipelines folder {pipelines} is not writable (read-only?): syncs "
            f"here fail before they start, and cannot record it") in status_problems()

    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert status_problems() == []
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())


def test_progress_lines_count_pages_a_reader_can_believe(start_sandbox, tmp_path):
    """A window read across rounds said '2629 records in 4 pages' (pages of the last round
    only, records of all of them); page size 20 here."""
    import re

    sandbox = start_sandbox(devices=5, surveys=2, responses=300, page_size=20, rate=1000.0,
                            burst=1000)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__ROUND_PAGES="3",
                   SOURCES__MICROMETRICS__WINDOW_PAGES="1000")
    result = run_cli(env, "--no-models")
    assert result.returncode == 0, result.stderr
    whole = re.findall(r": (\d+) records in (\d+) pages?$", result.stderr, re.M)
    resumed = re.findall(r": (\d+) records, the last (\d+) pages? this round$", result.stderr,
                         re.M)
    assert whole and resumed, result.stderr
    assert all(int(records) <= 20 * int(pages) for records, pages in whole)
    assert all(int(pages) <= 3 and int(records) > 20 * int(pages) for records, pages in resumed)


def test_a_relative_duckdb_path_is_read_from_the_working_directory_of_each_sync(start_sandbox,
                                                                                tmp_path):
    """One pipeline folder (one user's ~/.dlt), syncs from two checkouts with the default
    relative ``warehouse.duckdb``: dlt read it from the directory of the folder's first sync,
    so the second checkout's syncs loaded into the first's file (exit 0) while its status,
    models and report read its own, and failed once the first checkout was removed."""
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=200)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__DUCKDB__CREDENTIALS="warehouse.duckdb")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    assert run_cli(env, "--quiet", "--no-models", cwd=first).returncode == 0
    assert_matches_truth(first, sandbox.truth())
    loaded_first = query(first, f"SELECT count(*) FROM {DATASET}._dlt_loads")

    sandbox.add_responses(20)
    done = run_cli(env, "--quiet", "--no-models", cwd=second)
    assert done.returncode == 0, done.stderr
    assert_matches_truth(second, sandbox.truth())
    assert query(first, f"SELECT count(*) FROM {DATASET}._dlt_loads") == loaded_first  # untouched
    assert (f"this sync loads into {second / 'warehouse.duckdb'}, not "
            f"{first / 'warehouse.duckdb'}, where this folder's first sync ran") in done.stderr

    shutil.rmtree(first)  # the first checkout retired
    sandbox.add_responses(5)
    again = run_cli(env, "--quiet", "--no-models", cwd=second)
    assert again.returncode == 0, again.stderr
    assert_matches_truth(second, sandbox.truth())
    assert "warning" not in again.stderr


BIGQUERY = "DESTINATION__BIGQUERY__CREDENTIALS__"


@pytest.mark.parametrize(("destination", "settings", "missing"), [
    ("postgres", {}, "credentials (set DESTINATION__POSTGRES__CREDENTIALS, or its fields "
                     "DESTINATION__POSTGRES__CREDENTIALS__<FIELD>: database, password, username, "
                     "host)"),
    ("postgres",  # peer/trust-style: no password
     {"DESTINATION__POSTGRES__CREDENTIALS": "postgresql://loader@db.internal:5432/warehouse"},
     "credentials.password (set DESTINATION__POSTGRES__CREDENTIALS__PASSWORD)"),
    # BigQuery takes a service account's or OAuth's fields: the form begun is named, alone.
    ("bigquery", {f"{BIGQUERY}PROJECT_ID": "p", f"{BIGQUERY}PRIVATE_KEY": "k"},
     f"credentials.client_email (set {BIGQUERY}CLIENT_EMAIL)"),
    ("bigquery", {f"{BIGQUERY}PROJECT_ID": "p", f"{BIGQUERY}CLIENT_ID": "c"},
     f"credentials.client_secret (set {BIGQUERY}CLIENT_SECRET), "
     f"credentials.refresh_token (set {BIGQUERY}REFRESH_TOKEN)"),
])
def test_missing_destination_settings_are_named_with_their_variables_by_every_command(
        tmp_path, destination, settings, missing):
    """dlt's text lists every key it tried, and the missing field (a password left out of a
    connection string) came after the 500 characters a line shows; the report said 'no
    credentials' with the variable set."""
    from pipelines.models.cli import main as models_main
    from pipelines.report.cli import main as report_main

    env = {**sync_env(tmp_path, "http://127.0.0.1:9"), **settings}
    for command, command_main in (("sync", main), ("status", status_main),
                                  ("models", models_main), ("report", report_main)):
        done = run_in_process(command_main, [command], env, "--destination", destination)
        assert done.returncode == 2, (command, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert f"missing configuration: {missing}; or the same keys in .dlt/secrets.toml" in line, (
            command, line)


def test_a_snowflake_password_with_an_unencoded_at_sign_is_refused_and_shown_nowhere(tmp_path):
    """As PostgreSQL's (test_postgres): the account read past the password's "@" was blamed
    ("Invalid account identifier"), and the password's rest went with it."""
    from pipelines.models.cli import main as models_main
    from pipelines.report.cli import main as report_main

    env = {**sync_env(tmp_path, "http://127.0.0.1:9"), "DESTINATION__SNOWFLAKE__CREDENTIALS":
           "snowflake://loader:Pw@Leak-7731@kgiotue-wn98412/dlt_data?warehouse=COMPUTE_WH"}
    for command, command_main in (("sync", main), ("status", status_main),
                                  ("models", models_main), ("report", report_main)):
        done = run_in_process(command_main, [command], env, "--destination", "snowflake")
        assert done.returncode == 2, (command, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert "DESTINATION__SNOWFLAKE__CREDENTIALS: the user or password in the connection " \
               "string holds a character that must be percent-encoded there" in line, line
        assert "Leak" not in done.stdout + done.stderr, command
    assert not [path for path in tmp_path.rglob("*") if path.is_file()
                and b"Leak" in path.read_bytes()]


@pytest.mark.parametrize(("configured", "opened"), [
    ("warehouse.duckdb", "{cwd}/warehouse.duckdb"),
    ("data/w.duckdb", "{cwd}/data/w.duckdb"),
    ("duckdb:///w.duckdb", "duckdb:///{cwd}/w.duckdb"),
    ("duckdb:////srv/w.duckdb", "duckdb:////srv/w.duckdb"),
    ("/srv/w.duckdb", "/srv/w.duckdb"),
    (":memory:", ":memory:"),
])
def test_a_relative_duckdb_path_in_any_form_is_opened_from_the_working_directory(
        tmp_path, monkeypatch, configured, opened):
    from pipelines.destination import duckdb_file

    monkeypatch.chdir(tmp_path)
    assert duckdb_file(configured) == opened.format(cwd=tmp_path)


@pytest.mark.parametrize("end_at", ["2026-03-31", "20260331", "2026-090", "2026-W14-2"])
def test_every_iso_form_of_one_day_as_end_at_includes_that_whole_day(tmp_path, end_at):
    done = run_cli(sync_env(tmp_path, "http://127.0.0.1:9"), "--dry-run",
                   "--start-at", "2026-03-01", "--end-at", end_at)
    assert done.returncode == 0, done.stderr
    assert "up to 2026-04-01T00:00:00+00:00" in done.stdout + done.stderr


@pytest.mark.parametrize("flag", ["--start-at", "--end-at"])
@pytest.mark.parametrize("value", ["2026-03", "2026", "2026-W13", "2026W13"])
def test_a_month_a_year_or_a_week_as_a_bound_is_refused(tmp_path, flag, value):
    # Read as its first day's midnight, --end-at 2026-03 left March out (and 2026-W13 took
    # only its Monday).
    bounds = {"--start-at": "2026-01-01", "--end-at": "2026-04-01", flag: value}
    done = run_cli(sync_env(tmp_path, "http://127.0.0.1:9"), "--dry-run", *(
        part for pair in bounds.items() for part in pair))
    assert done.returncode == 2
    assert (f"argument {flag}: {value!r} is a year, a month or a week, not one day: give a "
            f"date (2026-03-31) or a time with an offset") in done.stderr
