"""SIGKILL inside every phase of a sync (a real process, see tests/killer.py), then a rerun.

The rerun always ends exact, loads first what the killed sync left, and then does what its own
flags ask: --full-refresh drops and reloads, --resources fetches only those, --start-at/--end-at
re-reads that range.
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.sandbox import Sandbox, faults
from pipelines.status.cli import main as status_main
from pipelines.status.record import status_of
from pipelines.status.snapshot import local_state
from pipelines.sync import cli
from tests.cli import as_a_process, run_in_process, start_sync, sync_env, tmp_cwd
from tests.destinations import pipeline_on
from tests.http_proxy import refusing_proxy
from tests.syncing import DATASET, query
from tests.test_bigquery_unreachable import bigquery_behind
from tests.truth import assert_matches_truth
from tests.truth import query as query_where

# A first sync of ~40 pages in 3 or 4 rounds, no waiting on the rate limit.
SANDBOX = dict(devices=30, surveys=4, responses=600, page_size=20, rate=1000.0, burst=1000)
WINDOW_PAGES = "13"
FLAGS = ("--quiet", "--no-models")
ROOT_COPY = r'"job": "survey_responses\.\w+\.\d+\.parquet"'  # the responses' staging copy
ROOT_MERGE = r'"job": "survey_responses\.\w+\.\d+\.sql"'  # their merge into the dataset


@dataclass
class Tenant:
    """A sandbox and a destination, and the sync's command line run against them."""

    sandbox: Sandbox
    env: dict[str, str]
    path: Path
    monkeypatch: pytest.MonkeyPatch
    kills: int = 0

    def kill(self, phase: str, after: int, *args: str, match: str = "",
             must_land: bool = True) -> dict | None:
        """Run the sync in a new process that SIGKILLs itself at the ``after``-th call of the
        phase's hook; returns what it saw then (the marker), or None if the sync finished
        first (only when not ``must_land``)."""
        self.kills += 1
        marker = self.path / f"kill-{self.kills}.json"
        env = dict(self.env)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.killer", "--phase", phase, "--after", str(after),
             "--match", match, "--marker", str(marker), "--", *FLAGS, *args],
            cwd=tmp_cwd(env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        out, err = process.communicate(timeout=120)
        if process.returncode == 0 and not must_land:
            assert not marker.exists()
            return None
        assert process.returncode == -signal.SIGKILL, (phase, after, out, err[-3000:])
        seen = json.loads(marker.read_text())
        assert seen["phase"] == phase
        return seen

    def sync(self, *args: str) -> int:
        """The sync's command line in this process (a new process costs a second of imports),
        with the same environment as the killed one."""
        with self.monkeypatch.context() as patch:
            for key in list(os.environ):
                if key.startswith(("SOURCES__", "DESTINATION__")) and key not in self.env:
                    patch.delenv(key)
            for key, value in self.env.items():
                if key.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__")):
                    patch.setenv(key, value)
            patch.chdir(tmp_cwd(dict(self.env)))
            return cli.main([*FLAGS, *args])

    def assert_exact(self) -> None:
        assert_matches_truth(self.path, self.sandbox.truth())

    def requests(self) -> dict[str, int]:
        return dict(self.sandbox.stats()["by_endpoint"])


@pytest.fixture
def tenant(start_sandbox, tmp_path, monkeypatch) -> Tenant:
    sandbox = start_sandbox(**SANDBOX)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES=WINDOW_PAGES,
                   SOURCES__MICROMETRICS__ROUND_PAGES=WINDOW_PAGES)
    return Tenant(sandbox, env, tmp_path, monkeypatch)


def pending(seen: dict) -> list[str]:
    """Packages the killed sync left to load."""
    packages = seen["packages"]
    return packages["extracted"] + packages["normalized"] + packages["loading"]


def load_ids(tenant: Tenant, table: str) -> set[str]:
    return {row[0] for row in query(tenant.path,
                                    f"SELECT DISTINCT _dlt_load_id FROM micrometrics.{table}")}


def query_rw(tenant: Tenant, sql: str) -> None:
    with duckdb.connect(str(tenant.path / "warehouse.duckdb")) as connection:
        connection.execute(sql)


def change_upstream(sandbox, rng: random.Random | None = None) -> None:
    rng = rng or random.Random(0)
    sandbox.add_responses(rng.randint(10, 40))
    sandbox.update_responses(rng.randint(5, 30))
    sandbox.update_devices(rng.randint(1, 4))


# -- kills inside each phase: first in a first sync, then in an incremental one ------------------


def check_extract(seen: dict) -> None:
    # Pages read, their records in an extract package that was never committed.
    assert seen["step"] == "extract" and seen["pages_in_step"] >= 2
    assert seen["packages"]["extracting"] and not pending(seen)


def check_extract_commit(seen: dict) -> None:
    # The package carries the state it advanced; the state saved locally is still the old one.
    assert seen["step"] == "extract"
    (load_id,) = seen["committed"]
    assert seen["packages"]["extracted"] == [load_id]
    assert seen["package_state_versions"][load_id] > seen["saved_state_version"]


def check_normalize(seen: dict) -> None:
    # Extracted (state committed locally), normalized files half-written, nothing loaded.
    assert seen["step"] == "normalize"
    assert seen["load_id"] in seen["packages"]["extracted"]
    assert seen["load_id"] in seen["packages"]["normalizing"]


def check_normalize_commit(seen: dict) -> None:
    # dlt's normalize moved the package to load/ but had not deleted its extracted copy.
    assert seen["step"] == "normalize"
    assert seen["load_id"] in seen["packages"]["extracted"]
    assert seen["load_id"] in seen["packages"]["normalized"]


def check_load(seen: dict) -> None:
    # Part of the package's jobs done in the destination, this one about to run.
    assert seen["step"] == "load" and seen["packages"]["loading"] == pending(seen)


def check_load_commit(seen: dict) -> None:
    # The destination committed the responses' staging copy; dlt had not recorded it.
    assert seen["step"] == "load" and seen["job_state"] == "completed"
    assert seen["load_id"] in seen["packages"]["loading"]
    assert seen["job"].startswith("survey_responses.")


def check_rounds(seen: dict) -> None:
    # Between rounds: the first loaded, the second not extracted yet, nothing pending.
    assert seen["step"] is None and seen["pages_of_the_last_round"] > 0
    assert seen["packages"]["loaded"] and not pending(seen)


def rerun_is_exact(tenant: Tenant) -> None:
    tenant.sandbox.reset_stats()
    assert tenant.sync() == 0
    tenant.assert_exact()
    assert tenant.requests().get("survey_responses", 0) > 0  # it went on fetching


@pytest.mark.slow
def test_kill_while_extracting(tenant):
    check_extract(tenant.kill("extract", 9))  # mid-fetch in the first round of a first sync
    rerun_is_exact(tenant)
    change_upstream(tenant.sandbox)
    check_extract_commit(tenant.kill("extract-commit", 1))
    rerun_is_exact(tenant)


@pytest.mark.slow
def test_kill_while_normalizing(tenant):
    check_normalize(tenant.kill("normalize", 2))  # round 1 loaded, round 2 extracted
    rerun_is_exact(tenant)
    change_upstream(tenant.sandbox)
    check_normalize_commit(tenant.kill("normalize-commit", 1))
    rerun_is_exact(tenant)


@pytest.mark.slow
def test_kill_while_workers_normalize_takes_them_down(tenant):
    # Two normalize workers, each with several extract files of the round to normalize.
    tenant.env.update(NORMALIZE__WORKERS="2", SOURCES__DATA_WRITER__FILE_MAX_ITEMS="50")
    seen = tenant.kill("normalize-workers", 1)
    assert seen["step"] == "normalize" and len(seen["workers"]) == 2
    assert seen["packages"]["extracted"]
    for pid in seen["workers"]:
        assert exits_within(pid, seconds=10), f"worker {pid} outlived the killed sync"
    rerun_is_exact(tenant)


def exits_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` (not ours to wait for) has ended or ends within ``seconds``."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([handle], [], [], seconds)  # readable once it exits
        return bool(ready)
    finally:
        os.close(handle)


def test_status_after_a_first_sync_killed_in_its_load_blames_no_unreadable_destination(tenant):
    # The destination was read (its tables counted) but holds no state yet: status said it was
    # "not readable".
    tenant.kill("load", 1)
    shown = run_in_process(status_main, ["status"], dict(tenant.env), "--json")
    problems = json.loads(shown.stdout)["problems"]
    assert any("load package(s) extracted on this machine are not loaded yet" in problem
               and "; the destination holds no state yet (its first load did not finish), so "
                   "no stream is shown" in problem for problem in problems), problems
    assert not any("not readable" in problem for problem in problems), problems
    rerun_is_exact(tenant)


@pytest.mark.slow
def test_kill_while_loading(tenant):
    check_load(tenant.kill("load", 4))  # a first sync's first load, part-way
    rerun_is_exact(tenant)

    # Into a destination that holds data. Edited quietly (updated_at unchanged), older than
    # the lookback: only a re-read brings them, here one whose first round is killed right
    # after the destination committed the responses' staging copy, before dlt recorded it.
    # The plain rerun does not re-read them: they arrive through the package left behind.
    now = datetime.now(UTC)
    edited = [r["id"] for r in tenant.sandbox.truth()["survey_responses"]
              if now - timedelta(days=15) < parse_timestamp(r["updated_at"])
              < now - timedelta(days=1)]
    assert len(edited) > 10
    tenant.sandbox.patch_records("survey_responses", edited, {"comment": "edited quietly"},
                                 bump=False)
    recent = (now - timedelta(days=20)).isoformat()  # one round: the edits are all in it
    check_load_commit(tenant.kill("load-commit", 1, "--start-at", recent, match=ROOT_COPY))
    rerun_is_exact(tenant)

    # An incremental sync cut just before its responses' merge (staging loaded, the
    # dataset's rows not replaced yet).
    change_upstream(tenant.sandbox)
    seen = tenant.kill("load", 1, match=ROOT_MERGE)
    check_load(seen)
    assert seen["job"].endswith(".sql")
    rerun_is_exact(tenant)


def test_kill_between_rounds(tenant):
    check_rounds(tenant.kill("rounds", 2))
    rerun_is_exact(tenant)


# -- the rerun does what its own flags ask ------------------------------------------------------


def kill_between_extract_and_load(tenant: Tenant, *args: str) -> str:
    seen = tenant.kill("normalize", 1, *args)
    check_normalize(seen)
    return seen["load_id"]


@pytest.mark.slow
def test_full_refresh_after_a_kill_drops_and_reloads(tenant):
    assert tenant.sync() == 0
    # Deleted in the destination by hand: only a real refresh brings these back.
    query_rw(tenant, "DELETE FROM micrometrics.devices WHERE id IN "
                     "(SELECT id FROM micrometrics.devices ORDER BY id LIMIT 3)")
    query_rw(tenant, "DELETE FROM micrometrics.survey_responses WHERE id IN "
                     "(SELECT id FROM micrometrics.survey_responses ORDER BY updated_at LIMIT 5)")
    change_upstream(tenant.sandbox)
    left = kill_between_extract_and_load(tenant)
    tenant.sandbox.reset_stats()
    assert tenant.sync("--full-refresh") == 0
    tenant.assert_exact()
    # Every row was loaded by the refresh, after the package the killed sync left.
    for table in ("devices", "surveys", "survey_responses"):
        assert min(map(float, load_ids(tenant, table))) > float(left), table
    assert tenant.sandbox.stats()["records_served"] >= 600 + 30


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["same machine", "fresh runner"])
def test_full_refresh_killed_once_the_tables_are_dropped_reloads_everything(tenant, runner):
    # dlt drops (and creates again, empty) the tables as the refresh's first load begins, in a
    # transaction of its own; the state saying the history was read used to be reset only by
    # that round's package. A fresh runner (GitHub Actions, another worker) restored the old
    # state and read only the lookback into the emptied tables: 0 devices and 5 responses of
    # 600, exit 0, status "fresh".
    assert tenant.sync() == 0
    seen = tenant.kill("load", 1, "--full-refresh", match=r'"job": "devices\.')
    assert seen["step"] == "load" and pending(seen)
    assert query(tenant.path, "SELECT count(*) FROM micrometrics.devices") == [(0,)]
    if runner == "fresh runner":
        shutil.rmtree(tenant.path / "dlt")  # the package left goes with the machine
        Container()[PipelineContext].deactivate()  # the first sync's, in this process
    env = dict(tenant.env, SOURCES__MICROMETRICS__API_SECRET="unused by status")
    during = run_in_process(status_main, ["status"], env, "--json", "--max-age", "1h")
    assert during.returncode == 1 and json.loads(during.stdout)["fresh"] is False
    tenant.sandbox.reset_stats()
    assert tenant.sync() == 0
    tenant.assert_exact()
    if runner == "fresh runner":  # every page read again, not only the lookback's
        assert tenant.requests()["survey_responses"] >= 600 // SANDBOX["page_size"]


# -- a package left, then tables dropped by hand: the history comes back from any machine ------

DROP_RESPONSES = ("DROP TABLE micrometrics.survey_responses__answers;"
                  "DROP TABLE micrometrics.survey_responses")
DROP_DATASET = ("DROP SCHEMA micrometrics CASCADE;"
                "DROP SCHEMA IF EXISTS micrometrics_staging CASCADE")


@pytest.mark.slow
@pytest.mark.parametrize("dropped", ["tables", "dataset"])
def test_tables_dropped_while_a_package_is_left_come_back_whole(tenant, dropped):
    # The package loaded first failed on every sync for good: dlt creates a missing table only
    # for a schema the destination does not hold ("Table with name survey_responses does not
    # exist"), and a resumed load emptied a staging table that was gone.
    assert tenant.sync() == 0
    change_upstream(tenant.sandbox)
    if dropped == "tables":
        check_extract_commit(tenant.kill("extract-commit", 1))
        query_rw(tenant, DROP_RESPONSES)
    else:  # part-way through loading, a staging copy committed and not recorded
        check_load_commit(tenant.kill("load-commit", 1, match=ROOT_COPY))
        query_rw(tenant, DROP_DATASET)
    rerun_is_exact(tenant)


def on_machine(tenant: Tenant, name: str) -> None:
    """The syncs from now on run with a pipeline folder of their own (another worker); its
    state comes from the destination."""
    tenant.env["DLT_DATA_DIR"] = str(tenant.path / name)
    Container()[PipelineContext].deactivate()  # the last sync's, in this process


@pytest.mark.slow
def test_a_loss_found_before_a_kill_is_not_forgotten_by_another_machine(tenant):
    # Found as the package left reloaded the dropped tables (with its rows only), the loss was
    # kept in the local folder until the first round: killed before it, the next sync on
    # another machine restored the state saying read, and 23 of 320 responses stayed.
    assert tenant.sync() == 0
    change_upstream(tenant.sandbox)
    check_extract_commit(tenant.kill("extract-commit", 1))
    query_rw(tenant, DROP_DATASET)
    seen = tenant.kill("extract", 2)  # after the package loaded and the loss was found
    assert seen["step"] == "extract" and not pending(seen)
    on_machine(tenant, "fresh_runner")
    rerun_is_exact(tenant)


@pytest.mark.slow
def test_a_workers_first_package_reloads_a_dropped_dataset_whole(tenant):
    # A worker whose first sync restored the state from the destination, killed with its
    # package left, took that package for the dataset's first load after the dataset was
    # dropped: 22 of 320 responses, exit 0, for good.
    assert tenant.sync() == 0
    change_upstream(tenant.sandbox)
    on_machine(tenant, "worker_b")
    check_extract_commit(tenant.kill("extract-commit", 1))
    query_rw(tenant, DROP_DATASET)
    rerun_is_exact(tenant)


@pytest.mark.slow
def test_resources_after_a_kill_loads_the_left_package_and_fetches_only_those(tenant):
    left = kill_between_extract_and_load(tenant)  # a first sync: its package holds responses
    tenant.sandbox.reset_stats()
    assert tenant.sync("--resources", "devices") == 0
    requests = tenant.requests()
    assert requests.get("devices", 0) > 0
    assert requests.get("surveys", 0) == requests.get("survey_responses", 0) == 0
    assert load_ids(tenant, "survey_responses") == {left}  # loaded, not fetched again
    truth = tenant.sandbox.truth()
    assert sorted(query(tenant.path, "SELECT id, updated_at FROM micrometrics.devices")) == \
        sorted((d["id"], parse_timestamp(d["updated_at"])) for d in truth["devices"])
    assert tenant.sync() == 0
    tenant.assert_exact()


@pytest.mark.slow
def test_explicit_range_after_a_kill_rereads_that_range(tenant):
    assert tenant.sync() == 0
    now = datetime.now(UTC)
    start, end = now - timedelta(days=400), now - timedelta(days=30)
    inside = [r["id"] for r in tenant.sandbox.truth()["survey_responses"]
              if start < parse_timestamp(r["updated_at"]) < end]
    assert len(inside) > 40
    tenant.sandbox.patch_records("survey_responses", inside[:10], {"comment": "edited quietly"},
                                 bump=False)
    change_upstream(tenant.sandbox)
    left = kill_between_extract_and_load(tenant)
    tenant.sandbox.reset_stats()
    assert tenant.sync("--start-at", start.isoformat(), "--end-at", end.isoformat()) == 0
    stats = tenant.sandbox.stats()
    # The range was read again: at least one page per 20 of its responses.
    assert stats["by_endpoint"]["survey_responses"] >= len(inside) // 20
    assert stats["records_served"] >= len(inside)
    assert left in load_ids(tenant, "devices") | load_ids(tenant, "survey_responses")
    edited = query(tenant.path, "SELECT COUNT(*) FROM micrometrics.survey_responses "
                                "WHERE comment = 'edited quietly'")
    assert edited == [(10,)]
    assert tenant.sync() == 0
    tenant.assert_exact()


@pytest.mark.slow
def test_a_reread_killed_in_each_phase_goes_on_where_it_stopped(start_sandbox, tmp_path,
                                                                monkeypatch):
    # Its windows were the sync's scratch: each rerun started the range over, and a re-read
    # longer than a scheduler's time limit never ended.
    sandbox = start_sandbox(**{**SANDBOX, "responses": 1000})  # a re-read of 4 rounds
    tenant = Tenant(sandbox, sync_env(tmp_path, sandbox.url,
                                      SOURCES__MICROMETRICS__WINDOW_PAGES=WINDOW_PAGES,
                                      SOURCES__MICROMETRICS__ROUND_PAGES=WINDOW_PAGES),
                    tmp_path, monkeypatch)
    assert tenant.sync() == 0
    now = datetime.now(UTC)
    reread = ("--start-at", (now - timedelta(days=400)).isoformat(),
              "--end-at", (now - timedelta(hours=1)).isoformat())
    sandbox.reset_stats()
    assert tenant.sync(*reread) == 0
    whole = sandbox.stats()["requests"]
    assert whole > 3 * int(WINDOW_PAGES)  # four rounds at least
    # Changed without a new updated_at: only the re-read brings them, in whichever run.
    quiet = [r["id"] for r in sandbox.truth()["survey_responses"]
             if parse_timestamp(r["updated_at"]) < now - timedelta(hours=2)]
    sandbox.patch_records("survey_responses", quiet, {"comment": "edited quietly"}, bump=False)
    sandbox.reset_stats()
    # The same range again (done: read from its start), killed in its 2nd round's extract
    # (those pages lost); the next run in normalize, the one after in the load of what that
    # one left, the next between its rounds.
    tenant.kill("extract", int(WINDOW_PAGES) + 5, *reread)
    check_normalize(tenant.kill("normalize", 1, *reread))
    check_load(tenant.kill("load", 1, *reread))
    check_rounds(tenant.kill("rounds", 2, *reread))
    assert tenant.sync(*reread) == 0
    # The range once, but for the round lost in the first kill (with the requests in flight
    # then) and each run's survey list: started over each time, 3x the range.
    assert sandbox.stats()["requests"] <= whole + int(WINDOW_PAGES) + 8
    tenant.assert_exact()


# -- kills at random moments --------------------------------------------------------------------

RANDOM_POINTS = [("extract", 12), ("extract-commit", 3), ("normalize", 2), ("normalize-commit", 2),
                 ("load", 10), ("load-commit", 10), ("rounds", 3)]


@pytest.mark.slow
def test_kills_at_seeded_random_moments_end_exact(tenant):
    """Six syncs in a row, each killed at a random point and each the rerun of the one before,
    with random flags (long syncs too, so later kills have a backfill to land in) and changes
    upstream in between; then one plain sync."""
    rng = random.Random(86)
    recent = (datetime.now(UTC) - timedelta(days=45)).isoformat()
    landed = []
    for attempt in range(6):
        if attempt:
            change_upstream(tenant.sandbox, rng)
        args = rng.choice([(), (), ("--full-refresh",), ("--start-at", recent)])
        phase, high = rng.choice(RANDOM_POINTS)
        after = rng.randint(2 if phase == "rounds" else 1, high)
        # An extract's commit, not the record's state-only package after the rounds.
        match = '"step": "extract"' if phase == "extract-commit" else ""
        seen = tenant.kill(phase, after, *args, match=match, must_land=False)
        if seen:  # else that sync finished before the call
            assert seen["step"] == {"rounds": None}.get(phase, phase.split("-")[0])
            landed.append((phase, after, args))
    assert len(landed) >= 5, landed
    assert tenant.sync() == 0
    tenant.assert_exact()


# -- SIGTERM: a timeout, a stop, a shutdown ------------------------------------------------------


def terminate(tenant: Tenant, phase: str, after: int, match: str = "",
              sent: str = "TERM") -> dict:
    """The sync in a new process sent SIGTERM at the phase's hook, with ``--json``: it must end
    as a reported failure (exit 1, the error line, the JSON line), not die silently."""
    tenant.kills += 1
    marker = tenant.path / f"term-{tenant.kills}.json"
    env = dict(tenant.env)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.killer", "--signal", sent, "--phase", phase,
         "--after", str(after), "--match", match, "--marker", str(marker), "--", *FLAGS,
         "--json"],
        cwd=tmp_cwd(env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = process.communicate(timeout=120)
    assert json.loads(marker.read_text())["phase"] == phase  # the signal was sent there
    assert process.returncode == 1, (phase, process.returncode, err[-3000:])
    said = "interrupted (Ctrl-C, SIGINT)" if sent == "INT" else "stopped by SIGTERM"
    assert f"error: sync failed: {said}" in err, err[-3000:]
    summary = json.loads(out)
    assert summary["exit_code"] == 1 and said in summary["error"]
    return summary


@pytest.mark.parametrize("sent", ["TERM", "INT"])
def test_a_stop_while_dlt_rebuilds_a_schema_waits_for_it(tenant, sent):
    """A stop raised inside dlt's schema rebuild left a schema with no tables, which dlt then
    saved: every later sync failed on it, for good. It now waits until dlt is done with it."""
    assert tenant.sync() == 0
    change_upstream(tenant.sandbox)
    terminate(tenant, "schema", 1, '"live": true, "ours": true', sent)
    rerun_is_exact(tenant)


def stopped_once(process: subprocess.Popen, ready: threading.Event, within: float
                 ) -> tuple[str, str]:
    """SIGTERM to the sync once ``ready`` is set; it must end ``within`` seconds: its output."""
    try:
        assert ready.wait(60), "the sync never got where it is to be stopped"
        process.send_signal(signal.SIGTERM)
        assert exits_within(process.pid, within)
        return process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_while_a_response_trickles_its_head_ends_the_sync_at_once(start_sandbox,
                                                                         tmp_path, monkeypatch):
    """A server sending a response's status and headers a byte now and then: the stopping sync
    waited for that request until the head came whole (for ever, at a byte every 50 s; cron's
    KILL then left no record). The stop ends the requests on the wire."""
    monkeypatch.setattr(faults, "TRICKLE_SECONDS", 3.0)  # the head whole in 27 s
    trickling = threading.Event()

    def sleep(seconds: float) -> None:
        trickling.set()
        time.sleep(seconds)

    sandbox = start_sandbox(**SANDBOX, sleep=sleep)
    sandbox.script("trickled_headers", endpoint="survey_responses")
    env = sync_env(tmp_path, sandbox.url)
    process = start_sync(env, *FLAGS)
    _out, err = stopped_once(process, trickling, within=10)
    assert process.returncode == 1 and "error: sync failed: stopped by SIGTERM" in err, err
    recorded = json.loads(run_in_process(status_main, ["status"], env, "--json").stdout)
    assert recorded["last_sync"]["exit_code"] == 1


@pytest.mark.warehouses  # BigQuery's client: the warehouses extra (make test-warehouses)
@pytest.mark.parametrize("loaded_before", [False, True])
def test_sigterm_while_the_destination_cannot_be_reached_ends_the_sync_at_once(tmp_path,
                                                                               loaded_before):
    """BigQuery's client retries an unreachable Google for up to 10 minutes, inside dlt's
    restore of the state from the destination (a new folder) or its check that the dataset is
    there (a folder that has loaded): a stop waited for dlt's code to end all that time (cron's
    KILL then left no record). A destination's SQL client may stop, as it may fail."""
    from pipelines.destination import open_pipeline
    from pipelines.micrometrics.rolled_back import LOADED_STATE

    with refusing_proxy() as (proxy, reached):  # no way to Google: a proxy that cannot reach it
        env = bigquery_behind(proxy, tmp_path)
        if loaded_before:  # as a load leaves the folder: the state it loaded, noted
            with as_a_process(env, io.StringIO()):
                open_pipeline("bigquery", DATASET).set_local_state_val(LOADED_STATE, "loaded")
        process = start_sync(env, *FLAGS, "--destination", "bigquery", "--json")
        out, err = stopped_once(process, reached, within=20)  # reached: trying Google
    assert process.returncode == 1 and "error: sync failed: stopped by SIGTERM" in err, err
    assert json.loads(out)["exit_code"] == 1
    # Recorded here (status would wait for Google as the sync did).
    state, _ = local_state(str(tmp_path / "dlt" / "pipelines"))
    last_sync = status_of(state)["last_sync"]
    assert last_sync["exit_code"] == 1 and "SIGTERM" in last_sync["error"]


@pytest.mark.slow
def test_sigterm_in_every_phase_is_a_reported_and_recorded_failure(tenant):
    # Between rounds of a first sync (3-4 rounds), then inside each step of later ones; and
    # the same stop sent twice at once, as `timeout make sync` delivers it (timeout signals
    # make and then its process group; make passes it on), outside dlt's steps and inside.
    for phase, after, match, sent in (("rounds", 2, "", "TERM"), ("extract", 3, "", "TERM"),
                                      ("normalize", 1, "", "TERM"),
                                      ("load", 1, ROOT_MERGE, "TERM"),
                                      ("extract", 3, "", "TERMx2"),
                                      ("load", 1, ROOT_MERGE, "TERMx2")):
        if phase != "rounds":
            change_upstream(tenant.sandbox)
        terminate(tenant, phase, after, match, sent)
        status = subprocess.run(
            [sys.executable, "-m", "pipelines.status", "--json"], cwd=tmp_cwd(dict(tenant.env)),
            env=dict(tenant.env), capture_output=True, text=True, timeout=120)
        recorded = json.loads(status.stdout)["last_sync"]
        assert recorded["exit_code"] == 1 and "SIGTERM" in recorded["error"], phase
        rerun_is_exact(tenant)


@pytest.mark.slow
def test_a_state_row_postgres_committed_before_dlt_recorded_it(start_sandbox, tmp_path,
                                                               monkeypatch, postgres_credentials):
    """dlt's state row is appended to the dataset itself, not staged. Committed there and not
    recorded (a kill; or a full disk, every time: dlt cannot write its record), it was loaded
    again, and broke PostgreSQL's unique key on every later sync, the data short."""
    sandbox = start_sandbox(**SANDBOX)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES=WINDOW_PAGES,
                   SOURCES__MICROMETRICS__ROUND_PAGES=WINDOW_PAGES,
                   DESTINATION__POSTGRES__CREDENTIALS=postgres_credentials)
    tenant = Tenant(sandbox, env, tmp_path, monkeypatch)
    seen = tenant.kill("load-commit", 1, "--destination", "postgres",
                       match=r'"job": "_dlt_pipeline_state\.')
    assert seen["job"].startswith("_dlt_pipeline_state.") and seen["job_state"] == "completed"
    assert seen["load_id"] in seen["packages"]["loading"]

    assert tenant.sync("--destination", "postgres") == 0
    where = pipeline_on(dlt.destinations.postgres(credentials=postgres_credentials),
                        tmp_path / "reader")
    assert_matches_truth(where, sandbox.truth())
    assert query_where(where, f"SELECT _dlt_load_id FROM {DATASET}._dlt_pipeline_state "
                              f"GROUP BY _dlt_load_id HAVING count(*) > 1") == []


def live_rows_of_gone_survey(tenant: Tenant, survey) -> list[tuple]:
    return query(tenant.path, f"SELECT count(*) FROM {DATASET}.survey_responses "
                              f"WHERE survey_id = {survey} AND deleted_at IS NULL")


@pytest.mark.slow
@pytest.mark.parametrize("then", [(), ("--drop-pending",)])
def test_a_refresh_killed_before_its_first_round_keeps_track_of_surveys_gone(tenant, then):
    """The refresh's reset state, loaded first on its own, had dropped which surveys the last
    list named: a survey deleted upstream before it stayed live, with its responses, for good."""
    assert tenant.sync() == 0
    gone = tenant.sandbox.truth()["surveys"][1]["id"]
    tenant.sandbox.remove_survey(gone)
    check_extract(tenant.kill("extract", 3, "--full-refresh"))
    assert tenant.sync(*then) == 0
    assert live_rows_of_gone_survey(tenant, gone) == [(0,)]
    assert query(tenant.path, f"SELECT deleted_at IS NOT NULL FROM {DATASET}.surveys "
                              f"WHERE id = {gone}") == [(True,)]
    live = query(tenant.path, f"SELECT id FROM {DATASET}.surveys WHERE deleted_at IS NULL")
    assert sorted(live) == sorted((s["id"],) for s in tenant.sandbox.truth()["surveys"])


@pytest.mark.slow
def test_drop_pending_names_a_reread_whose_package_was_committed_before_the_local_save(
        tenant, capsys):
    """Killed between the package's commit and the local save of the state, the re-read's slot
    is only in the package: dropped, the warning did not name it, and nothing read it again."""
    assert tenant.sync() == 0
    quietly = [r["id"] for r in tenant.sandbox.truth()["survey_responses"]]
    tenant.sandbox.patch_records("survey_responses", quietly, {"comment": "edited quietly"},
                                 bump=False)
    check_extract_commit(tenant.kill("extract-commit", 1, "--start-at", "2000-01-01"))
    capsys.readouterr()
    assert tenant.sync("--dry-run", "--drop-pending") == 0
    assert ("1 package(s) a failed or killed sync left: dropped with the local state"
            in capsys.readouterr().out)
    assert tenant.sync("--drop-pending") == 0
    assert ("; run the explicit re-read among them again: `--start-at "
            "2000-01-01T00:00:00.000+00:00`: dropped" in capsys.readouterr().err)
    assert tenant.sync("--start-at", "2000-01-01T00:00:00.000+00:00") == 0
    tenant.assert_exact()


@pytest.mark.slow
def test_an_extract_killed_before_its_commit_leaves_nothing_to_drop(tenant, capsys):
    assert tenant.sync() == 0
    change_upstream(tenant.sandbox)
    seen = tenant.kill("extract", 2)  # pages read, the package not committed
    assert seen["step"] == "extract" and not pending(seen)
    capsys.readouterr()
    assert tenant.sync("--dry-run", "--drop-pending") == 0
    assert "package(s) a failed or killed sync left" not in capsys.readouterr().out
    assert tenant.sync("--drop-pending") == 0
    assert "--drop-pending" not in capsys.readouterr().err  # the local state was kept
    tenant.assert_exact()
