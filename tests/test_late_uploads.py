"""Kiosks offline for hours upload responses stamped when recorded: the deep pass finds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipelines.sync.summary import deep_pass_line
from tests.syncing import loaded, sync_sandbox
from tests.truth import assert_matches_truth, truth_versions

FAST = {"rate": 1000.0, "burst": 1000}
HOUR = 3600


def test_daily_deep_pass_finds_uploads_older_than_the_lookback(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=600, **FAST)
    first = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert first.report.deep_streams == 0  # a first sync reads everything anyway

    clock.advance(HOUR)
    late = sandbox.add_late_responses(5, delay_seconds=10 * HOUR)  # recorded 10 h ago
    within = sandbox.add_late_responses(3, delay_seconds=HOUR // 2)  # inside the lookback
    second = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert second.report.deep_streams == 0
    assert deep_pass_line(second.report) == "deep pass: not due in this sync"
    ids = {row[0] for row in loaded(tmp_path, "survey_responses")}
    assert set(within) <= ids and not set(late) & ids  # the plain lookback missed them

    clock.advance(23 * HOUR)  # 24 h after the first sync's full read: a deep pass is due
    third = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert third.report.deep_found == 5
    assert third.report.deep_streams == 1 + len(sandbox.truth()["surveys"])
    assert deep_pass_line(third.report) == (
        f"deep pass: {third.report.deep_streams} streams re-read from 72 h before their "
        "previous one; 5 records "
        "found that the 120-minute lookback had missed")

    clock.advance(HOUR)  # the next deep pass is a day away again
    fourth = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert fourth.report.deep_streams == 0



def test_the_deep_pass_counts_what_it_found_when_ids_come_as_text(start_sandbox, tmp_path,
                                                                   clock):
    """The API sending ``"10001"`` for 10001: every deep candidate the destination held (by
    integer id) was counted as found, 29 for 3."""
    sandbox = start_sandbox(clock=clock, responses=400, surveys=2, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(HOUR)
    sandbox.add_late_responses(3, delay_seconds=10 * HOUR)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(23 * HOUR)
    sandbox.script("ids_as_text", count=100, endpoint="survey_responses")
    deep = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert sandbox.stats()["faults"]["ids_as_text"] > 0
    assert deep.report.deep_streams > 0 and deep.report.deep_found == 3
    assert_matches_truth(tmp_path, sandbox.truth())

def test_deep_every_zero_runs_it_every_sync_and_finds_nothing_twice(
    start_sandbox, tmp_path, clock
):
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, deep_every_hours=0, **FAST)
    clock.advance(HOUR)
    sandbox.add_late_responses(4, delay_seconds=30 * HOUR)
    sandbox.update_responses(3)  # changed now: the plain lookback's, not the deep pass's
    found = []
    for _ in range(2):
        result = sync_sandbox(sandbox, tmp_path, clock, deep_every_hours=0, **FAST)
        found.append(result.report.deep_found)
        clock.advance(HOUR)
    assert found == [4, 0]
    assert sorted(loaded(tmp_path, "survey_responses")) == truth_versions(
        sandbox.truth()["survey_responses"])


def test_uploads_older_than_the_deep_lookback_need_an_explicit_reread(
    start_sandbox, tmp_path, clock
):
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(HOUR)
    late = sandbox.add_late_responses(2, delay_seconds=100 * HOUR)  # beyond 72 h
    clock.advance(24 * HOUR)
    result = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert result.report.deep_streams > 0 and result.report.deep_found == 0
    assert not set(late) & {row[0] for row in loaded(tmp_path, "survey_responses")}


def test_an_upload_just_after_a_deep_pass_is_found_by_the_next_one(start_sandbox, tmp_path, clock):
    # Deep passes a day apart, each reading 72 h back: a response uploaded 60 h late just after
    # one pass is older than the next pass's high-water mark minus 72 h (hourly syncs keep the
    # mark an hour behind). Counted from the previous pass, the next one still reaches it.
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)  # the full read counts as a deep pass
    clock.advance(24 * HOUR)
    assert sync_sandbox(sandbox, tmp_path, clock, **FAST).report.deep_streams > 0
    late = sandbox.add_late_responses(3, delay_seconds=60 * HOUR)
    clock.advance(23 * HOUR)
    hourly = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert hourly.report.deep_streams == 0
    assert not set(late) & {row[0] for row in loaded(tmp_path, "survey_responses")}
    clock.advance(HOUR)
    deep = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert deep.report.deep_streams > 0 and deep.report.deep_found == 3
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_batch_stamped_at_the_lookbacks_very_start_is_read_with_exclusive_bounds(
        start_sandbox, tmp_path, clock):
    """The API does not say whether start_at is inclusive: on a server where it is not, a late
    batch stamped exactly at high-water minus the lookback was skipped until a deep pass."""
    sandbox = start_sandbox(clock=clock, responses=300, boundary="open", **FAST)
    first = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    high_water = datetime.fromtimestamp(int(clock.now * 1000) / 1000, UTC)
    lookback = first.report.lookback_minutes
    clock.advance(HOUR)
    ids = [r["id"] for r in sandbox.truth()["survey_responses"]][:50]
    at = high_water - timedelta(minutes=lookback)
    sandbox.stamp_records("survey_responses", ids, at=at.isoformat(timespec="milliseconds"))
    second = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert second.report.deep_streams == 0  # the plain lookback, not a deep pass
    assert_matches_truth(tmp_path, sandbox.truth())


def test_the_deep_pass_looks_the_destination_up_once_a_table_and_round(
        start_sandbox, tmp_path, clock, monkeypatch):
    # Per page it was a query on a new connection each: on Snowflake and BigQuery a billed
    # statement each, 4x an hourly sync's statements on the day of a deep pass.
    from pipelines.micrometrics import runner

    lookups: list[tuple[str, int]] = []
    look_up = runner.loaded_versions

    def counted(pipeline, table, ids):
        lookups.append((table, len(ids)))
        return look_up(pipeline, table, ids)

    monkeypatch.setattr(runner, "loaded_versions", counted)
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(2 * HOUR)
    sandbox.add_late_responses(5, delay_seconds=10 * HOUR)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(23 * HOUR)
    deep = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert deep.report.deep_found == 5 and deep.report.rounds == 1
    assert sorted(table for table, _ids in lookups) == ["devices", "survey_responses"]
    assert dict(lookups)["survey_responses"] > 20  # more than a page's worth, in one query
