"""Syncs against the sandbox over real HTTP into a real DuckDB file: exact and incremental."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dlt
import duckdb
import pytest

from pipelines.error_chain import causes
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.rounds import REREAD
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.timeutil import format_timestamp, parse_timestamp
from pipelines.sync.dryrun import describe_plan
from pipelines.sync.options import SyncOptions
from tests.conftest import KEY, SECRET
from tests.destinations import HOUR
from tests.syncing import DATASET, pipeline_for, query, sync_into, sync_sandbox
from tests.truth import assert_matches_truth, truth_streams


def test_full_sync_is_exact_and_paced_at_the_floor(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock)  # default data and the API's default rate limit
    started = clock.now
    result = sync_sandbox(sandbox, tmp_path, clock)
    elapsed = clock.now - started

    truth = sandbox.truth()
    assert_matches_truth(tmp_path, truth)
    month_ago = datetime.fromtimestamp(clock.now, UTC) - timedelta(days=31)
    old = [d for d in truth["devices"] if parse_timestamp(d["updated_at"]) < month_ago]
    assert len(old) > len(truth["devices"]) // 2  # beyond the API's one-month default

    stats = sandbox.stats()
    assert stats["throttled"] == 0 and result.client.stats.throttled == 0
    assert stats["requests"] == result.client.stats.requests
    assert stats["requests"] <= 1.05 * stats["pages_with_data"]
    floor = stats["requests"] - 10  # burst of 10, then 1 request/s
    assert elapsed <= 1.05 * floor
    # Loaded from parquet files, not insert statements.
    jobs = [job.job_file_info.file_format
            for info in result.report.load_infos for package in info.load_packages
            for job in package.jobs["completed_jobs"]
            if not job.job_file_info.table_name.startswith("_dlt")]
    # ("sql" jobs are dlt's merge statements that follow the data files)
    assert "parquet" in jobs and set(jobs) <= {"parquet", "sql"}


def test_requests_do_not_grow_with_years_of_empty_history(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=800, rate=50.0, burst=50)
    counts = []
    for start_at in ("2024-06-01T00:00:00Z", "1971-01-01T00:00:00Z"):
        sandbox.reset_stats()
        target = tmp_path / start_at[:4]
        target.mkdir()
        sync_sandbox(sandbox, target, clock, rate=50.0, burst=50, start_at=start_at)
        counts.append(sandbox.stats()["requests"])
    assert counts[1] == counts[0]


def test_incremental_sync_applies_new_updated_and_late_records(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=1500)
    sync_sandbox(sandbox, tmp_path, clock)
    clock.advance(600)
    sandbox.add_responses(20)
    sandbox.update_responses(15)
    sandbox.add_late_responses(10, delay_seconds=3000)  # uploaded 50 minutes late
    sandbox.update_devices(3)
    sandbox.add_devices(2)
    new_survey = sandbox.add_survey()
    sandbox.add_responses(5, survey_id=new_survey)
    clock.advance(60)
    sandbox.reset_stats()

    sync_sandbox(sandbox, tmp_path, clock)

    assert_matches_truth(tmp_path, sandbox.truth())
    streams = 2 + len(sandbox.truth()["surveys"])  # devices, the survey list, one per survey
    assert sandbox.stats()["requests"] <= streams + 2


@pytest.mark.parametrize(
    "boundary,order",
    [("open", "shuffled"),
     *(pytest.param(b, o, marks=pytest.mark.slow)
       for b, o in (("closed", "asc"), ("left", "desc"), ("right", "shuffled")))],
)
def test_exact_whatever_bounds_and_order(start_sandbox, tmp_path, clock, boundary, order):
    # Small windows (about 2 pages) so many records sit near window bounds.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=160, page_size=10,
                            boundary=boundary, order=order, rate=50.0, burst=50)
    # Two records exactly on computed bounds: the sync's end, and the first window's start
    # (run_end - 20 days - the overlap). Only the overlap keeps them under "open" bounds.
    run_end = datetime.fromtimestamp(clock.now, UTC)
    on_bounds = [run_end, run_end - timedelta(days=20, seconds=1)]
    responses = [r["id"] for r in sandbox.truth()["survey_responses"]][:2]
    for response, moment in zip(responses, on_bounds, strict=True):
        sandbox.patch_records("survey_responses", [response],
                              {"updated_at": moment.isoformat(timespec="milliseconds")
                               .replace("+00:00", "Z")})
    result = sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, window_pages=4,
                          initial_window_days=20)
    assert result.report.rounds > 3
    assert_matches_truth(tmp_path, sandbox.truth())
    clock.advance(120)
    sandbox.update_responses(10)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, window_pages=4)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_records_stamped_at_the_epoch_are_listed_under_an_exclusive_start(
        start_sandbox, tmp_path, clock):
    # A zero default stamp: the survey list and --reconcile's listings start at the epoch,
    # which a server reading start_at as exclusive leaves out (the survey never read, or its
    # responses marked deleted; the device marked by a reconcile).
    sandbox = start_sandbox(clock=clock, devices=5, surveys=3, responses=60, boundary="open",
                            rate=1000.0, burst=1000)
    truth = sandbox.truth()
    sandbox.stamp_records("surveys", [truth["surveys"][0]["id"]], at="1970-01-01T00:00:00Z")
    sandbox.stamp_records("devices", [truth["devices"][0]["id"]], at="1970-01-01T00:00:00Z")
    result = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True),
                          rate=1000.0, burst=1000)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert not any(result.report.reconcile.marks.marked.values())


def test_exact_with_ten_percent_faults(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=2000, page_size=25, fault_rate=0.1,
                            rate=50.0, burst=50)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    assert sum(sandbox.stats()["faults"].values()) > 3
    assert result.client.stats.retries > 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_resources_option_loads_only_those(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, SyncOptions(resources=("devices",)), rate=50.0,
                 burst=50)
    tables = {row[0] for row in query(
        tmp_path, "SELECT table_name FROM information_schema.tables "
                  "WHERE table_schema = 'micrometrics' AND table_name NOT LIKE '_dlt%'")}
    assert tables == {"devices"}
    assert sandbox.stats()["by_endpoint"].get("survey_responses", 0) == 0


def test_explicit_range_rereads_without_moving_state(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50)
    first = sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    state_before = first.pipeline.state["sources"]["micrometrics"]["resources"]
    now = datetime.fromtimestamp(clock.now, UTC)
    # Changed inside the range without a new updated_at: only a re-read can notice.
    inside = [r["id"] for r in sandbox.truth()["survey_responses"]
              if now - timedelta(days=59) < parse_timestamp(r["updated_at"])
              < now - timedelta(days=31)][:3]
    assert inside
    sandbox.patch_records("survey_responses", inside, {"comment": "edited quietly"}, bump=False)
    sandbox.reset_stats()
    again = sync_sandbox(
        sandbox, tmp_path, clock,
        SyncOptions(start_at=now - timedelta(days=60), end_at=now - timedelta(days=30)),
        rate=50.0, burst=50,
    )
    assert incremental(again.pipeline) == incremental(first.pipeline, state_before)
    assert sandbox.stats()["records_served"] > 0
    assert_matches_truth(tmp_path, sandbox.truth())


def planned_streams(sandbox, tmp_path, clock, options: SyncOptions,
                    pipelines_dir: str = "pipelines") -> list[str]:
    """--dry-run's line for each stream (devices, each survey's responses)."""
    settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET)
    plan = describe_plan(settings, replace(options, pipelines_dir=str(tmp_path / pipelines_dir)),
                         now=datetime.fromtimestamp(clock.now, UTC))
    return [line for line in plan.splitlines()[1:]
            if line.strip().startswith(("devices", "survey_responses["))]


def incremental(pipeline, resources=None) -> dict:
    """The resources' incremental state: without an explicit re-read's slot."""
    resources = pipeline.state["sources"]["micrometrics"]["resources"] \
        if resources is None else resources
    return {name: {k: v for k, v in state.items() if k != REREAD}
            for name, state in resources.items()}


@pytest.mark.parametrize("end", ["given", "left out"])
def test_an_explicit_reread_stopped_part_way_goes_on_where_it_stopped(start_sandbox, tmp_path,
                                                                      clock, end):
    # Its windows were the sync's scratch: run again, it started over, and a re-read longer
    # than a scheduler's time limit never ended.
    sandbox = start_sandbox(clock=clock, responses=600, rate=50.0, burst=50, page_size=20)
    first = sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    state_before = incremental(first.pipeline)
    now = datetime.fromtimestamp(clock.now, UTC)
    reread = SyncOptions(start_at=now - timedelta(days=300),
                         end_at=now - timedelta(days=5) if end == "given" else None)
    small = {"rate": 50.0, "burst": 50, "window_pages": 2}  # rounds of 2 pages
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, reread, **small)
    whole = sandbox.stats()["requests"]
    assert whole > 20
    streams = planned_streams(sandbox, tmp_path, clock, reread)
    assert len(streams) == 6 and all("full history" in line for line in streams), streams
    # Changed inside the range without a new updated_at: only a re-read notices.
    inside = [r["id"] for r in sandbox.truth()["survey_responses"]
              if now - timedelta(days=299) < parse_timestamp(r["updated_at"])
              < now - timedelta(days=6)]
    sandbox.patch_records("survey_responses", inside, {"comment": "edited quietly"}, bump=False)
    sandbox.reset_stats()
    # The same range again, after it was done: read from its start (on another worker, which
    # finds it done in the destination's state), and stopped half-way.
    worker_b = pipeline_for(tmp_path, pipelines_dir="worker_b")
    stopped = whole // 2
    with pytest.raises(Exception) as failed:
        sync_into(sandbox, worker_b, clock, reread, max_requests=stopped, **small)
    assert any(type(link).__name__ == "RequestCapExceeded" for link in causes(failed.value))
    # --dry-run shows what is left: some streams read to the range's end or part-way.
    streams = planned_streams(sandbox, tmp_path, clock, reread, "worker_b")
    assert len(streams) == 6 and any("full history" not in line for line in streams), streams
    sandbox.reset_stats()
    clock.advance(HOUR)
    resumed = sync_into(sandbox, worker_b, clock, reread, **small)
    # The rest only, give or take the round in flight (2 pages) and the survey list; the
    # devices, read to the range's end before the stop, not again. A range left open reads
    # on to the new now: each stream it had finished, its lookback since (a page each).
    tails = 0 if end == "given" else 6
    assert stopped + sandbox.stats()["requests"] <= whole + 3 + tails
    assert sandbox.stats()["by_endpoint"].get("devices", 0) == (0 if end == "given" else 1)
    assert any(w.startswith("warning: this re-read goes on with the one of the same range begun ")
               for w in resumed.report.warnings), resumed.report.warnings
    assert_matches_truth(tmp_path, sandbox.truth())  # every quiet edit, in either part
    assert incremental(worker_b) == state_before
    # The next incremental sync drops the finished re-read's slots.
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    resources = first.pipeline.state["sources"]["micrometrics"]["resources"]
    assert not any(REREAD in state for state in resources.values())


def test_a_reread_stopped_over_a_week_ago_starts_anew_and_a_subset_finishes_only_its_own(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=600, rate=50.0, burst=50, page_size=20)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    now = datetime.fromtimestamp(clock.now, UTC)
    reread = SyncOptions(start_at=now - timedelta(days=300), end_at=now - timedelta(days=5))
    small = {"rate": 50.0, "burst": 50, "window_pages": 2}

    def stopped_part_way() -> None:
        with pytest.raises(Exception, match="more than 12 requests"):
            sync_sandbox(sandbox, tmp_path, clock, reread, max_requests=12, **small)

    stopped_part_way()
    # What it had read may have changed quietly since: begun over a week ago, read anew.
    clock.advance(8 * 24 * HOUR)
    sandbox.reset_stats()
    anew = sync_sandbox(sandbox, tmp_path, clock, reread, **small)
    whole = sandbox.stats()["requests"]
    assert whole > 20 and sandbox.stats()["by_endpoint"]["devices"] == 2
    assert not any("goes on" in w for w in anew.report.warnings)
    # Stopped again; the devices alone go on (theirs were read to the end: nothing to read),
    # and leave the responses' part unfinished: all of the range goes on after them.
    stopped_part_way()
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, replace(reread, resources=("devices",)), **small)
    assert sandbox.stats()["by_endpoint"] == {}
    sync_sandbox(sandbox, tmp_path, clock, reread, **small)
    assert 12 + sandbox.stats()["requests"] <= whole + 3
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_reread_whose_last_load_failed_reads_nothing_again(start_sandbox, tmp_path, clock,
                                                             monkeypatch):
    # Marked done by its last round's extract, the same command run again after that round's
    # load failed (a lock timeout, a scheduler's time limit) read the whole range again.
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50, page_size=20)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    now = datetime.fromtimestamp(clock.now, UTC)
    reread = SyncOptions(start_at=now - timedelta(days=300), end_at=now - timedelta(days=5))
    load = dlt.Pipeline.load
    failures = iter([RuntimeError("the destination went away")])

    def fails_once(self, *args, **kwargs):
        if (failure := next(failures, None)) is not None:
            raise failure
        return load(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "load", fails_once)
    sandbox.reset_stats()
    with pytest.raises(Exception, match="the destination went away"):
        sync_sandbox(sandbox, tmp_path, clock, reread, rate=50.0, burst=50)
    assert sandbox.stats()["requests"] > 10  # the whole range, in one round
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, reread, rate=50.0, burst=50)
    assert sandbox.stats()["by_endpoint"] == {"surveys": 1}  # its package loaded, no more
    assert_matches_truth(tmp_path, sandbox.truth())


def test_full_refresh_reloads_everything(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, SyncOptions(full_refresh=True), rate=50.0, burst=50)
    assert sandbox.stats()["records_served"] >= 300 + 40  # the whole history again
    assert_matches_truth(tmp_path, sandbox.truth())


def test_start_at_limits_responses_not_devices_or_surveys(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=1200, rate=50.0, burst=50)
    start = datetime.fromtimestamp(clock.now, UTC) - timedelta(days=60)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, start_at=start.isoformat())
    truth = sandbox.truth()
    recent = [r for r in truth["survey_responses"] if parse_timestamp(r["updated_at"]) >= start]
    assert 0 < len(recent) < len(truth["survey_responses"])
    assert_matches_truth(tmp_path, {**truth, "survey_responses": recent})


def test_oversized_windows_are_read_through_across_rounds(start_sandbox, tmp_path, clock,
                                                          caplog):
    # Two pages a window as target: the 30-day first windows hold many more; they are read
    # to their end across rounds of two pages, from the checkpointed cursor, never re-read.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=100, page_size=10,
                            rate=100.0, burst=100)
    with caplog.at_level("INFO", logger="micrometrics"):
        sync_sandbox(sandbox, tmp_path, clock, rate=100.0, burst=100, window_pages=2)
    assert any("continued next round" in message for message in caplog.messages)
    assert_matches_truth(tmp_path, sandbox.truth())
    needed = sum(-(-len(stream) // 10) for stream in truth_streams(sandbox.truth()))
    # No page is read twice: beyond the pages needed, at most one partial page per window
    # (windows this small make that visible) and the survey list's own request.
    windows = sum(1 for message in caplog.messages if "records in" in message)
    assert sandbox.stats()["requests"] <= needed + windows + 1


def test_full_refresh_of_one_resource_keeps_the_others(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, SyncOptions(full_refresh=True, resources=("devices",)),
                 rate=50.0, burst=50)
    assert sandbox.stats()["by_endpoint"].get("survey_responses", 0) == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_survey_deleted_during_a_sync_is_skipped_not_fatal(start_sandbox, tmp_path, clock,
                                                           caplog):
    sandbox = start_sandbox(clock=clock, responses=300, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    doomed = sandbox.truth()["surveys"][-1]["id"]
    listed = MicrometricsClient.pages

    def delete_after_listing(self, path, params=None):
        yield from listed(self, path, params)
        if path == "/surveys":
            sandbox.remove_survey(doomed)  # between the list and its responses

    clock.advance(60)
    with caplog.at_level("WARNING", logger="micrometrics"), pytest.MonkeyPatch.context() as mp:
        mp.setattr(MicrometricsClient, "pages", delete_after_listing)
        sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    assert any(f"survey_responses[{doomed}]: the survey no longer exists" in message
               for message in caplog.messages)
    assert_matches_truth_except(tmp_path, sandbox.truth(), survey=doomed)


def assert_matches_truth_except(tmp_path, truth, survey):
    """The destination equals the truth, plus what it had of a survey deleted upstream."""
    kept = query(tmp_path, f"SELECT COUNT(*) FROM {DATASET}.survey_responses "
                           f"WHERE survey_id = {survey}")[0][0]
    assert kept > 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute(f"DELETE FROM {DATASET}.survey_responses__answers WHERE _dlt_root_id "
                           f"IN (SELECT _dlt_id FROM {DATASET}.survey_responses "
                           f"WHERE survey_id = {survey})")
        connection.execute(f"DELETE FROM {DATASET}.survey_responses WHERE survey_id = {survey}")
        connection.execute(f"DELETE FROM {DATASET}.surveys__questions WHERE _dlt_root_id IN "
                           f"(SELECT _dlt_id FROM {DATASET}.surveys WHERE id = {survey})")
        connection.execute(f"DELETE FROM {DATASET}.surveys WHERE id = {survey}")
    assert_matches_truth(tmp_path, truth)


def test_summary_counts_load_jobs_per_table(start_sandbox, tmp_path, clock):
    from pipelines.sync.summary import load_jobs_line, load_jobs_per_table

    sandbox = start_sandbox(clock=clock, devices=5, surveys=1, responses=60, page_size=10,
                            rate=100.0, burst=100)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=100.0, burst=100, window_pages=4)
    jobs = load_jobs_per_table(result.report)
    # Every round that loaded responses made a parquet file and a merge of them.
    response_rounds = sum(
        1 for info in result.report.load_infos for package in info.load_packages
        if any(job.job_file_info.table_name == "survey_responses"
               for job in package.jobs["completed_jobs"]))
    assert result.report.rounds > 1 and response_rounds > 1
    assert jobs["survey_responses"] == 2 * response_rounds
    assert jobs["surveys"] == 2  # the list is loaded in the first round only
    assert load_jobs_line(result.report).startswith("load jobs per table: devices ")


def test_round_pages_bounds_the_merges_of_a_backfill(start_sandbox, tmp_path, clock):
    from pipelines.sync.summary import load_jobs_per_table

    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=400, page_size=10,
                            rate=100.0, burst=100)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=100.0, burst=100, window_pages=2,
                          round_pages=15)
    assert_matches_truth(tmp_path, sandbox.truth())
    requests = result.client.stats.requests
    # Each round is one load job and one merge per table: a backfill of N pages in rounds of
    # ROUND_PAGES pages merges each table at most ceil(N / ROUND_PAGES) times (+1 for the last
    # round's remainder). One window's pages a round (the DuckDB default) would take N / 2.
    assert requests > 40
    assert 2 <= result.report.rounds <= -(-requests // 15) + 1
    assert load_jobs_per_table(result.report)["survey_responses"] // 2 <= result.report.rounds



@pytest.mark.parametrize("bounds", [{"start_at": "2026-01-01T00:00:00Z"},
                                    {"end_at": "2026-01-01T00:00:00Z"}])
def test_sync_refuses_a_full_refresh_with_an_explicit_range(start_sandbox, tmp_path, clock,
                                                            bounds):
    # The refresh would drop the tables and state, then load back only the range.
    from pipelines.micrometrics.errors import ConfigurationError

    sandbox = start_sandbox(clock=clock)
    options = SyncOptions(full_refresh=True, **{k: parse_timestamp(v) for k, v in bounds.items()})
    with pytest.raises(ConfigurationError, match="full_refresh .* start_at or end_at"):
        sync_sandbox(sandbox, tmp_path, clock, options)
    assert sandbox.stats()["requests"] == 0 and not (tmp_path / "warehouse.duckdb").exists()


@pytest.mark.parametrize("setting, option", [
    ("start_at", {}), (None, {"start_at": 1}), (None, {"end_at": 1})])
def test_sync_refuses_a_start_or_end_ahead_of_its_own_clock(start_sandbox, tmp_path, clock,
                                                          setting, option):
    """Against the sync's clock (injected here, as a library caller may), not this machine's: a
    future start read nothing, or failed after the requests."""
    from pipelines.micrometrics.errors import ConfigurationError

    sandbox = start_sandbox(clock=clock)
    ahead = datetime.fromtimestamp(clock(), UTC) + timedelta(days=60)
    settings = {"start_at": format_timestamp(ahead)} if setting else {}
    options = SyncOptions(**{k: ahead for k in option})
    with pytest.raises(ConfigurationError, match="not in the future") as refused:
        sync_sandbox(sandbox, tmp_path, clock, options, **settings)
    assert sandbox.stats()["requests"] == 0
    assert "ahead of the sync's clock" in str(refused.value)
    if setting:  # the setting is named as it is set
        assert str(refused.value).startswith("SOURCES__MICROMETRICS__START_AT must be")


def test_the_source_alone_refuses_a_future_start_before_any_request(start_sandbox, tmp_path):
    from pipelines.micrometrics import micrometrics_source
    from pipelines.micrometrics.errors import ConfigurationError
    from tests.conftest import KEY, SECRET
    from tests.syncing import pipeline_for

    sandbox = start_sandbox(rate=1000.0, burst=1000)
    with pytest.raises(Exception) as refused:
        pipeline_for(tmp_path).run(micrometrics_source(
            base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
            start_at="2999-01-01T00:00:00Z"))
    assert any(isinstance(link, ConfigurationError) for link in causes(refused.value))
    assert sandbox.stats()["requests"] == 0


def test_a_table_dropped_by_hand_is_read_again_from_the_start(start_sandbox, tmp_path, clock):
    # dlt creates it again, but the state (in _dlt_pipeline_state, untouched) said its history
    # was read: only the lookback came back, for good, with exit 0 and every data test passing.
    sandbox = start_sandbox(clock=clock, devices=8, surveys=3, responses=300,
                            rate=1000.0, burst=1000)
    sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)

    def synced_after(*statements: str) -> str:
        """The one warning of the sync after ``statements``, which loads the truth."""
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
            for statement in statements:
                connection.execute(statement)
        clock.advance(3600)
        sandbox.add_responses(5)
        result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
        assert_matches_truth(tmp_path, sandbox.truth())
        (warning,) = result.report.warnings
        return warning

    warning = synced_after(f"ALTER TABLE {DATASET}.survey_responses RENAME TO responses_old",
                           f"DROP TABLE {DATASET}.devices")
    assert "devices" in warning and "survey_responses" in warning
    clock.advance(3600)
    again = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert again.report.warnings == []  # once
    # The answers alone: their responses' rows were all there.
    warning = synced_after(f"DROP TABLE {DATASET}.survey_responses__answers")
    assert "survey_responses__answers" in warning


def test_times_with_spaces_or_an_offset_in_seconds_load_as_the_instants_they_are(
        start_sandbox, tmp_path, clock):
    # Taken (not quarantined), they loaded as NULL beside a new text variant column, for good.
    sandbox = start_sandbox(clock=clock, devices=3, surveys=1, responses=20,
                            rate=1000.0, burst=1000)
    odd = {990001: " 2026-03-15T10:00:00.000Z ", 990002: "2026-03-15T10:00:00.000Z\n",
           990003: "2026-03-15T15:45:30.000+05:45:30"}
    for rid, at in odd.items():
        sandbox.add_malformed("survey_responses", {"id": rid, "updated_at": at, "created_at": at,
                                                   "answers": []})
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert result.report.warnings == [] and result.report.rejected == 0
    want = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
    loaded_times = query(tmp_path, f"SELECT id, updated_at, created_at FROM "
                                   f"{DATASET}.survey_responses WHERE id >= 990001 ORDER BY id")
    assert [(rid, a.astimezone(UTC), b.astimezone(UTC)) for rid, a, b in loaded_times] == [
        (rid, want, want) for rid in odd]


def test_every_table_dropped_the_dataset_kept_is_read_again(start_sandbox, tmp_path, clock):
    # dlt's own tables gone too (_dlt_version with them): deleting the schema's stored versions
    # failed on the missing table, and so did every sync after it.
    sandbox = start_sandbox(clock=clock, devices=5, surveys=2, responses=100,
                            rate=1000.0, burst=1000)
    sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        tables = connection.execute("SELECT table_name FROM information_schema.tables "
                                    f"WHERE table_schema = '{DATASET}'").fetchall()
        for (table,) in tables:
            connection.execute(f"DROP TABLE {DATASET}.{table}")
    clock.advance(3600)
    sandbox.add_responses(3)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert "survey_responses" in result.report.warnings[0]
