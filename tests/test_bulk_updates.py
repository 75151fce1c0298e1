"""Thousands of records sharing one ``updated_at``: syncs terminate exact, no page read twice.

A window can't be split below one instant, so a window is read through to its end and its
paging cursor is checkpointed across rounds. "Pages needed" is what the API contract makes
unavoidable: per stream, ceil(records in the range the sync must read / page size).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.micrometrics.timeutil import parse_timestamp
from tests.syncing import sync_sandbox
from tests.truth import assert_matches_truth, truth_streams

PAGE = 100
FAST = {"rate": 1000.0, "burst": 1000}


def pages_needed(truth: dict, since: datetime | None = None) -> tuple[int, int]:
    """Pages the API must serve at least (records changed since ``since`` per stream, whole
    history when None), and the number of streams (devices, survey list, one per survey)."""

    def changed(records: list[dict]) -> int:
        return sum(1 for r in records
                   if since is None or parse_timestamp(r["updated_at"]) >= since)

    streams = truth_streams(truth)
    # The survey list is always read in full.
    counts = [changed(truth["devices"]), len(truth["surveys"])]
    counts += [changed(stream) for stream in streams[2:]]
    return sum(math.ceil(n / PAGE) for n in counts), len(streams)


def assert_within_budget(sandbox, needed: int, streams: int) -> None:
    requests = sandbox.stats()["requests"]
    assert requests <= 1.05 * needed + streams, (requests, needed, streams)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def add_bulk(sandbox, count: int, at: datetime | None = None, survey_id: int = 237) -> list:
    """``count`` responses with one answer each (keeps the normalize cost of 50,000 records
    low), stamped with one ``updated_at``: ``at``, or now."""
    sandbox.patch_records("surveys", [survey_id], {
        "questions": [{"id": 9001, "type": "nps", "text": "Recommend us?"}]})
    ids = sandbox.add_responses(count, survey_id=survey_id)
    if at is not None:
        sandbox.stamp_records("survey_responses", ids, at=iso(at))
    return ids


@pytest.mark.slow
def test_first_sync_of_50000_records_on_one_instant(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, surveys=1, responses=0, page_size=PAGE, **FAST)
    add_bulk(sandbox, 50_000, datetime.fromtimestamp(clock.now, UTC) - timedelta(days=40))

    result = sync_sandbox(sandbox, tmp_path, clock, max_requests=2_000, round_pages=50, **FAST)

    truth = sandbox.truth()
    assert len({r["updated_at"] for r in truth["survey_responses"]}) == 1
    assert_matches_truth(tmp_path, truth)
    assert_within_budget(sandbox, *pages_needed(truth))
    # The one window of 500 pages was read across rounds of 50 pages.
    assert result.report.rounds >= 10


@pytest.mark.slow
def test_dense_burst_inside_a_quiet_history(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, surveys=2, responses=400, page_size=PAGE, **FAST)
    add_bulk(sandbox, 50_000,
             datetime.fromtimestamp(clock.now, UTC) - timedelta(days=90, seconds=17))

    sync_sandbox(sandbox, tmp_path, clock, max_requests=2_000, **FAST)

    truth = sandbox.truth()
    assert_matches_truth(tmp_path, truth)
    assert_within_budget(sandbox, *pages_needed(truth))


@pytest.mark.slow
def test_incremental_sync_after_a_bulk_update_of_50000_records(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, surveys=1, responses=0, page_size=PAGE, **FAST)
    add_bulk(sandbox, 50_000, datetime.fromtimestamp(clock.now, UTC) - timedelta(days=200))
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(3600)
    sandbox.stamp_records("survey_responses")  # a migration touches every response at once
    clock.advance(60)
    sandbox.reset_stats()
    since = datetime.fromtimestamp(clock.now, UTC) - timedelta(hours=4)  # >= hw - lookback

    sync_sandbox(sandbox, tmp_path, clock, max_requests=2_000, **FAST)

    truth = sandbox.truth()
    assert_matches_truth(tmp_path, truth)
    assert_within_budget(sandbox, *pages_needed(truth, since))


def test_a_refused_cursor_restarts_only_its_window_which_is_then_read_to_its_end(
    start_sandbox, tmp_path, clock
):
    """Rounds of 3 pages over one 12-page instant: the API refusing a cursor restarts that
    window only, and it is then read to its end in the same round (a cursor kept for the next
    round could be refused too, and the window would start over every round)."""
    sandbox = start_sandbox(clock=clock, surveys=1, responses=1_200, page_size=PAGE, **FAST)
    sandbox.stamp_records("survey_responses",
                          at=iso(datetime.fromtimestamp(clock.now, UTC) - timedelta(days=3)))
    sandbox.script("reject_cursor", endpoint="survey_responses")

    result = sync_sandbox(sandbox, tmp_path, clock, window_pages=3, max_requests=200, **FAST)

    truth = sandbox.truth()
    assert_matches_truth(tmp_path, truth)
    assert sandbox.stats()["faults"].get("reject_cursor") == 1
    needed, streams = pages_needed(truth)
    restarted_window = math.ceil(1_200 / PAGE)  # read again once, from its first page
    assert sandbox.stats()["requests"] <= needed + streams + restarted_window
    assert result.report.rounds == 1
