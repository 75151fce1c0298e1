"""A sync cut between extract (where dlt commits state) and load: nothing duplicated or lost."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.micrometrics import sync
from pipelines.micrometrics.rounds import RoundBudget, SyncBounds
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.source import micrometrics_source
from pipelines.micrometrics.source_state import resource_states
from pipelines.sync.options import SyncOptions
from tests.conftest import KEY, SECRET
from tests.syncing import DATASET, pipeline_for, sync_into, sync_sandbox
from tests.truth import assert_matches_truth


def extract_one_round_and_die(sandbox, tmp_path, clock, client, pipelines_dir="pipelines"):
    """Extract one round (dlt writes the windows it finished to local state) and stop there,
    as if the process died before normalize and load."""
    settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
                             window_pages=2)
    now = datetime.fromtimestamp(clock(), UTC)
    budget = RoundBudget(pages=2)
    pipeline = pipeline_for(tmp_path, pipelines_dir=pipelines_dir)
    pipeline.extract(micrometrics_source(settings=settings, client=client,
                                         bounds=SyncBounds(now, now), budget=budget))
    assert budget.more, "the round should have stopped part-way"
    return pipeline


def test_state_committed_but_not_loaded_is_loaded_by_the_next_sync(
    start_sandbox, tmp_path, clock, virtual_client
):
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    # The next sync (a new process: a new pipeline object over the same directories) first
    # loads the package the dead one extracted, then resumes after its checkpoint.
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, window_pages=10)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_local_state_lost_after_extract_falls_back_to_the_destination(
    start_sandbox, tmp_path, clock, virtual_client
):
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    clock.advance(300)
    sandbox.add_responses(30)
    sandbox.update_responses(20)
    # State advanced locally for data that never reached the destination; then the working
    # directory is lost (a new container): the destination's state is the truth again.
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    shutil.rmtree(tmp_path / "pipelines")
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_window_whose_kept_cursor_expires_between_rounds_still_finishes(
    start_sandbox, tmp_path, clock, monkeypatch
):
    # Cursors that expire while a round loads: the cursor one round kept is refused at the
    # next. The window is read again from its first page, and must then be read to its end,
    # or a window longer than a round would start over every round and never be done.
    sandbox = start_sandbox(clock=clock, surveys=1, devices=3, responses=400, page_size=10,
                            rate=1000.0, burst=1000)
    run = dlt.Pipeline.run
    rounds: list[int] = []

    def cursors_expire_during_the_load(self, *args, **kwargs):
        if rounds:
            sandbox.clear_script()
            sandbox.script("reject_cursor", endpoint="survey_responses")
        rounds.append(len(rounds) + 1)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "run", cursors_expire_during_the_load)
    sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, round_pages=10,
                 max_requests=200)

    assert_matches_truth(tmp_path, sandbox.truth())
    # 41 pages of responses: 10 in the first round, all of them again in the second; then
    # the closing round of a sync of several (see relist): the devices changed since it began
    # and the survey list read again.
    assert len(rounds) == 3 and sandbox.stats()["requests"] <= 10 + 1 + 41 + 2 + 2


def test_a_package_left_on_a_worker_another_worker_overtook_is_not_loaded(
    start_sandbox, tmp_path, clock, virtual_client
):
    # Worker a is killed after an extract; the schedule's retry runs on worker b (its own
    # disk), which syncs newer versions of the same records. When a runs again, its package
    # is older than b's loads: loaded, it would put older versions back.
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    worker_a = pipeline_for(tmp_path, pipelines_dir="a")
    sync_into(sandbox, worker_a, clock, rate=50.0, burst=50)
    clock.advance(300)
    sandbox.update_responses(200)
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50),
                              pipelines_dir="a")
    clock.advance(300)
    sandbox.stamp_records("survey_responses")  # every response changed again
    sync_into(sandbox, pipeline_for(tmp_path, pipelines_dir="b"), clock, rate=50.0, burst=50)

    sync_into(sandbox, pipeline_for(tmp_path, pipelines_dir="a"), clock, rate=50.0, burst=50)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_loaded_packages_older_than_a_week_are_deleted(start_sandbox, tmp_path, clock):
    """Two packages an hourly sync: kept for ever they would fill the disk of an unattended
    machine; the recent ones stay for inspection."""
    sandbox = start_sandbox(clock=clock, responses=50, rate=1000.0, burst=1000)
    first = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    loaded = Path(first.pipeline.working_dir) / "load" / "loaded"
    (package,) = list(loaded.iterdir())
    day = 86400
    old, recent = (f"{time.time() - days * day:.6f}" for days in (8, 6))
    shutil.copytree(package, loaded / old)
    shutil.copytree(package, loaded / recent)
    second = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    left = {path.name for path in loaded.iterdir()}
    assert old not in left and {recent, package.name} <= left
    # this sync's (none when nothing changed: no data, no state)
    assert len(left - {recent, package.name}) == sum(
        len(info.loads_ids) for info in second.report.load_infos)


@pytest.mark.parametrize("refresh_devices_first", [False, True])
def test_a_dataset_dropped_while_a_package_is_pending_is_read_again_from_the_start(
    start_sandbox, tmp_path, clock, virtual_client, refresh_devices_first
):
    # The pending package loaded first created the tables again with its rows only (the
    # lookback's), so the check for lost tables found them there: 6 of 304 responses, for good,
    # with exit 0 and every data test passing.
    sandbox = start_sandbox(clock=clock, responses=300, page_size=20, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    clock.advance(3600)
    sandbox.add_responses(4)
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute(f"DROP SCHEMA {DATASET} CASCADE")
    # The next sync drops the package with the local state instead of loading it (it found
    # the tables gone); stopped (SIGTERM) right after, the one after it reads from the start.
    stopped = pipeline_for(tmp_path)
    with pytest.raises(Stopped):
        sync(stopped, settings=load_settings(
            base_url=sandbox.url, api_key=KEY, api_secret=SECRET, max_in_flight=1),
            client=virtual_client(sandbox, 50.0, 50), clock=clock, after_step=stop)
    assert not stopped.has_pending_data and not resource_states(stopped.state)
    if refresh_devices_first:  # it keeps the responses' state: their loss must not be forgotten
        sync_sandbox(sandbox, tmp_path, clock, SyncOptions(full_refresh=True,
                                                           resources=("devices",)),
                     rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    assert_matches_truth(tmp_path, sandbox.truth())


class Stopped(Exception):
    pass


def stop() -> None:
    raise Stopped("SIGTERM")


def test_a_first_sync_killed_before_its_first_load_is_not_taken_for_a_dropped_dataset(
    start_sandbox, tmp_path, clock, virtual_client
):
    # Its package is the tables' first load: nothing was lost, nothing is read again.
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    result = sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, window_pages=10)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert result.report.warnings == []  # no table taken for lost, no history read again


def test_stored_schema_versions_older_than_a_week_before_the_newest_are_deleted_daily(
        start_sandbox, tmp_path, clock, monkeypatch):
    # The question history's scd2 boundary changes the schema every sync: dlt stored a copy
    # (about 9 KB) in _dlt_version and in the staging dataset's every sync, for ever.
    from pipelines.micrometrics import housekeeping

    pruned: list[int] = []
    prune = housekeeping._prune_versions
    monkeypatch.setattr(housekeeping, "_prune_versions",
                        lambda client, keep: pruned.append(1) or prune(client, keep))
    sandbox = start_sandbox(clock=clock, responses=50, rate=1000.0, burst=1000)

    def sync_on_a_fresh_runner() -> None:  # no local folder: what it knows, it restores
        shutil.rmtree(tmp_path / "pipelines", ignore_errors=True)
        # A survey edited each time: its questions' versions are loaded (an unchanged survey's
        # are not, and change no schema).
        survey = sandbox.truth()["surveys"][0]["id"]
        sandbox.patch_records("surveys", [survey], {"name": f"edited at {clock():.0f}"})
        sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)

    for _ in range(3):
        sync_on_a_fresh_runner()
        clock.advance(3600)
    tables = [f"{DATASET}._dlt_version", f"{DATASET}_staging._dlt_version"]

    def versions() -> list[int]:
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
            return [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in tables]

    stored = versions()
    assert stored == [3, 3]  # a new version each sync
    assert pruned == []  # the first had nothing stored yet, and noted the day with its data
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        for table in tables:  # all but the newest made 8 days before it
            connection.execute(f"UPDATE {table} SET inserted_at = inserted_at - INTERVAL 8 DAY "
                               f"WHERE inserted_at < (SELECT max(inserted_at) FROM {table})")
    sync_on_a_fresh_runner()
    # Within a day of the last pruning: nothing done, this sync's version added...
    assert versions() == [count + 1 for count in stored]
    clock.advance(86400)
    sync_on_a_fresh_runner()
    # ...the next day: the versions made 8 days before go, the 2 recent ones and its own stay.
    assert versions() == [3, 3] and pruned == [1, 1]  # the dataset's and its staging twin's


def test_stored_states_older_than_a_month_before_the_newest_loaded_are_deleted_daily(
        start_sandbox, tmp_path, clock):
    # dlt appends the whole state to _dlt_pipeline_state with each load (two a sync from the
    # command): 52,000 rows in 3 years of hourly syncs, 118 MB on PostgreSQL with 30 surveys.
    sandbox = start_sandbox(clock=clock, responses=50, rate=1000.0, burst=1000)
    table = f"{DATASET}._dlt_pipeline_state"

    def states() -> int:
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
            return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def sync_an_hour_later() -> list[str]:
        sandbox.patch_records("survey_responses", [sandbox.truth()["survey_responses"][0]["id"]],
                              {"comment": f"edited at {clock():.0f}"})
        clock.advance(3600)
        return sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000).report.warnings

    for _ in range(3):
        assert sync_an_hour_later() == []
    stored = states()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        # All but the newest made 31 days before it.
        connection.execute(f"UPDATE {table} SET created_at = created_at - INTERVAL 31 DAY "
                           f"WHERE created_at < (SELECT max(created_at) FROM {table})")
    assert sync_an_hour_later() == []  # within a day of the last pruning: nothing done
    added = states() - stored
    assert added >= 1
    clock.advance(86400)
    # The next day, before its rounds: the rows made 31 days before go; the newest stays (the
    # one this machine loaded last: no rollback taken), and the last sync's and its own come.
    assert sync_an_hour_later() == []
    assert states() == 1 + 2 * added
    shutil.rmtree(tmp_path / "pipelines")  # a fresh runner restores from what is left
    assert sync_an_hour_later() == []
    assert_matches_truth(tmp_path, sandbox.truth())
