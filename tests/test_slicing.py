"""A window that would end the sync alone, at slow answers, is read in two slices side by side.

One survey holds every response: its window's pages are one chain, and at 1.5 s an answer a
lone chain is slower than 1 request/s. The sandbox's latency runs on the test's virtual clock
(answers take 1.5 s of it, no real wait). Each sync is compared with the ground truth and with
the pages it needs: a stream of n records needs ceil(n / page size) pages; slicing re-reads the
pages read before the cut (``SLICE_AT_PAGE`` here: the survey is alone from its start, so its
window is cut at its 4th page), plus a partial page.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import signal
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.micrometrics.slicing import (
    SLICE_AT_PAGE,
    cut_beyond,
    cut_point,
    slice_now,
    sorted_by_time,
)
from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.micrometrics.windows import Window
from tests.cli import kill_now, run_cli, start_sync, sync_env
from tests.syncing import add_malformed_records, query, sync_sandbox
from tests.truth import assert_matches_truth, truth_streams

PAGE = 20
# One survey, 15 pages of responses; 5 devices (one page) and the survey list (one page).
TENANT = dict(devices=5, surveys=1, responses=300, page_size=PAGE, rate=1.0, burst=10)


def pages_needed(truth: dict) -> int:
    return sum(max(1, math.ceil(len(records) / PAGE)) for records in truth_streams(truth))


def window_starts(stats: dict) -> int:
    """Requests without a cursor: the first page of a window (or a slice), or of the list."""
    return stats["requests"] - stats["throttled"] - stats["cursor_requests"]


def responses_state(pipeline) -> dict:
    surveys = pipeline.state["sources"]["micrometrics"]["resources"]["survey_responses"]
    return json.loads(json.dumps(surveys["surveys"], default=str))


def sync_tenant(start_sandbox, tmp_path, clock, latency: float, max_in_flight: int,
                **sandbox_options):
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep, latency=latency,
                            **{**TENANT, **sandbox_options})
    result = sync_sandbox(sandbox, tmp_path, clock, max_in_flight=max_in_flight)
    assert_matches_truth(tmp_path, sandbox.truth())
    return sandbox, result


def assert_sliced_once(sandbox) -> None:
    """The list, the devices, the survey's window, then its two slices: 5 window starts, and
    at most the pages read before the cut plus a partial page more than the pages needed."""
    stats, needed = sandbox.stats(), pages_needed(sandbox.truth())
    assert window_starts(stats) == 5, stats
    served = stats["requests"] - stats["throttled"]
    assert needed < served <= needed + SLICE_AT_PAGE + 1, (served, needed)


@pytest.mark.parametrize("boundary", ["closed", "open"])
def test_a_long_lone_chain_at_slow_answers_is_read_in_two_slices(start_sandbox, tmp_path,
                                                                 clock, boundary):
    """Exact whatever the server's bounds (``open``: records exactly at the cut are in both
    slices only thanks to their overlap; the one record the cut is taken from was read before
    the cut, so this does not catch a missing overlap). That the slices' walks run at once is
    ``test_inflight``'s (nested lanes); the time it saves is measured in
    ``benchmarks.latency_orders``, not here."""
    sandbox, _ = sync_tenant(start_sandbox, tmp_path, clock, latency=1.5, max_in_flight=4,
                             boundary=boundary)
    assert_sliced_once(sandbox)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_sorted_by_time_are_sliced_beyond_them(start_sandbox, tmp_path, clock, caplog,
                                                     order):
    """Records sent sorted by time: the pages read hold one end of the window, so the cut is
    taken beyond them (oldest first: towards the window's end; newest first: towards the
    survey's creation), not at their median, which would leave one slice nearly all of it.
    Exact, with the slices' re-read pages at most."""
    caplog.set_level(logging.INFO, logger="micrometrics")
    sandbox, _ = sync_tenant(start_sandbox, tmp_path, clock, latency=1.5, max_in_flight=4,
                             order=order)
    assert_sliced_once(sandbox)
    cuts = re.findall(r"sliced at (\S+),", caplog.text)
    assert len(cuts) == 1, caplog.text
    times = sorted(parse_timestamp(r["updated_at"])
                   for r in sandbox.truth()["survey_responses"])
    read = SLICE_AT_PAGE * PAGE  # the records of the pages read before the cut
    if order == "asc":
        assert parse_timestamp(cuts[0]) > times[read - 1]
    else:
        assert parse_timestamp(cuts[0]) < times[-read]


@pytest.mark.parametrize("latency, max_in_flight, order, responses", [
    (0.2, 4, "shuffled", 300), (1.5, 1, "shuffled", 300), (1.5, 4, "asc", 180)],
    ids=["fast answers", "one request in flight", "sorted, not long"])
def test_no_slicing_where_it_cannot_pay(start_sandbox, tmp_path, clock, latency,
                                        max_in_flight, order, responses):
    """Fast answers: a lone chain keeps up with 1 request/s. One request in flight: two
    slices could not overlap. Records sent sorted by time, and 4 pages reach so far into the
    window that it holds about 9 (``MIN_PAGES`` or fewer): the re-read would cost what it
    saves. Either way every request is a page needed."""
    sandbox, _ = sync_tenant(start_sandbox, tmp_path, clock, latency, max_in_flight,
                             order=order, responses=responses)
    stats = sandbox.stats()
    assert window_starts(stats) == 3, stats
    assert stats["requests"] - stats["throttled"] == pages_needed(sandbox.truth())


@pytest.mark.parametrize("order, seed", [(None, 0), ("reverse", 0), ("random", 1)])
def test_a_sliced_window_leaves_the_state_a_single_chain_leaves(start_sandbox, tmp_path,
                                                                tmp_path_factory, order, seed):
    """The slices overlap around the cut; each counts only its side, so the density learnt
    (and every other key of the survey's state) is what reading the window in one chain
    gives, whichever slice's answers come first (the sandbox holds requests in pairs and
    answers them reversed, or shuffled)."""
    from tests.fakes import FakeClock

    states = []
    for latency, where in ((1.5, tmp_path), (0.0, tmp_path_factory.mktemp("chain"))):
        clock = FakeClock()
        sandbox = start_sandbox(clock=clock, sleep=clock.sleep, latency=latency, **TENANT)
        if order and latency:
            # A request alone goes after 0.5 s; the slices send theirs together, well within.
            sandbox.reorder(group=2, order=order, seed=seed, grace=0.5)
        result = sync_sandbox(sandbox, where, clock, max_in_flight=4)
        assert_matches_truth(where, sandbox.truth())
        states.append((window_starts(sandbox.stats()), responses_state(result.pipeline)))
        if order and latency:
            # Pairs held and answered out of order: the list's and the devices' first pages,
            # then the two slices' pages, pair after pair.
            assert sandbox.reordered_groups().count(2) >= 4, sandbox.reordered_groups()
    (sliced_starts, sliced), (chain_starts, chain) = states
    assert (sliced_starts, chain_starts) == (5, 3)
    assert sliced == chain
    assert all("density" in s and "pending" not in s for s in sliced.values())


def test_slices_cut_by_the_rounds_budget_resume_from_their_cursors(start_sandbox, tmp_path,
                                                                   clock):
    """Rounds of 6 pages (the devices' and 4 of the survey's window, then the slices' first
    page): the slices stop part-way in each round and go on from their cursors in the next;
    no slice page is read twice."""
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep, latency=1.5, **TENANT)
    # A slice re-read from its first page each round would never end: fail instead.
    result = sync_sandbox(sandbox, tmp_path, clock, max_in_flight=4, round_pages=6,
                          max_requests=60)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert result.report.rounds >= 3
    stats, needed = sandbox.stats(), pages_needed(sandbox.truth())
    # The 5 of one round, and the closing round of a sync of several (relist: the devices
    # changed since it began, the survey list read again): no slice read again from its
    # first page.
    assert window_starts(stats) == 5 + 2, stats
    assert stats["requests"] - stats["throttled"] <= needed + SLICE_AT_PAGE + 1 + 2


@pytest.mark.slow  # a real sync process at real 1.3 s answers
def test_sigkill_while_slices_are_pending_then_rerun_is_exact(start_sandbox, tmp_path):
    """Rounds of 6 pages: the first round ends with the survey's window sliced and its slices
    part-way (committed in state); the process is SIGKILLed in the second round with a
    request in flight; the rerun goes on from the slices and ends exact."""
    sandbox = start_sandbox(latency=1.3, **TENANT)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__ROUND_PAGES="6",
                   SOURCES__MICROMETRICS__MAX_IN_FLIGHT="4")
    process = start_sync(env, "--quiet", "--no-models")
    try:
        # The list and 6 pages in round 1; the 10th request is round 2's.
        assert sandbox.wait_for_requests(10, timeout=120)
        assert sandbox.wait_for_in_flight(1, timeout=30)
        kill_now(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    state = json.loads((tmp_path / "dlt" / "pipelines" / "micrometrics" / "state.json")
                       .read_text())
    surveys = state["sources"]["micrometrics"]["resources"]["survey_responses"]["surveys"]
    (survey,) = surveys.values()
    assert "slices" in survey["pending"]["window"], survey  # committed by round 1

    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_window_bunched_at_one_instant_is_not_sliced(start_sandbox, tmp_path, clock):
    """A bulk update stamped every response with one ``updated_at``: no cut splits them (both
    slices would read them all), so the window is read in one chain."""
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep, latency=1.5, **TENANT)
    # Inside the window, 60 days before the clock's now (2026-03-15).
    sandbox.stamp_records("survey_responses", at="2026-01-14T08:00:00.000+00:00")
    sync_sandbox(sandbox, tmp_path, clock, max_in_flight=4)
    assert_matches_truth(tmp_path, sandbox.truth())
    stats = sandbox.stats()
    assert window_starts(stats) == 3, stats
    assert stats["requests"] - stats["throttled"] == pages_needed(sandbox.truth())


def test_a_window_known_to_be_short_is_not_sliced(start_sandbox, tmp_path, clock):
    """The next sync: 100 new responses (5 pages) in a window the density seen says holds
    far fewer than ``MIN_PAGES``; the slices' re-read would cost more than it saves."""
    sandbox, result = sync_tenant(start_sandbox, tmp_path, clock, latency=1.5,
                                  max_in_flight=4)
    survey = sandbox.truth()["surveys"][0]["id"]
    for _ in range(100):  # ten seconds apart: a cut could split them
        clock.advance(10)
        sandbox.add_responses(1, survey_id=survey)
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, max_in_flight=4)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert window_starts(sandbox.stats()) == 3, sandbox.stats()


def test_pages_sorted_by_time_are_told_from_samples_even_with_records_out_of_place():
    """A feed sorted by time with a record edited since (out of place) is still sorted: a cut
    at the median would still sit at one end. Pages drawn from the whole window are not."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in range(80)]
    in_order = [times[i:i + 20] for i in range(0, 80, 20)]
    in_order[0][5], in_order[3][7] = in_order[3][7], in_order[0][5]
    assert sorted_by_time(in_order)
    assert sorted_by_time([list(reversed(page)) for page in reversed(in_order)])
    shuffled = random.Random(7).sample(times, 80)
    assert not sorted_by_time([shuffled[i:i + 20] for i in range(0, 80, 20)])


def test_records_read_again_by_the_slices_are_quarantined_and_counted_once(start_sandbox,
                                                                           tmp_path, clock):
    """Malformed records come on the first page of every window that holds them: the whole
    window's and both slices'. Each is one quarantined record in the summary."""
    sandbox = start_sandbox(clock=clock, sleep=clock.sleep, latency=1.5, **TENANT)
    add_malformed_records(sandbox)
    result = sync_sandbox(sandbox, tmp_path, clock, max_in_flight=4)
    assert window_starts(sandbox.stats()) == 5  # sliced
    malformed = sum(len(records) for records in sandbox.malformed().values())
    assert malformed == 3 and result.report.rejected == malformed
    assert query(tmp_path, "SELECT count(*) FROM micrometrics._rejected_records")[0][0] == 3


def test_pages_sorted_by_time_are_cut_in_the_middle_of_the_stretch_they_have_not_reached():
    """Four pages of a year's window, sorted by time, each a day long: oldest first, the rest
    lies between the oldest read and the window's end; newest first, between the survey's
    creation and the newest read, and only with a creation older than what was read (the
    window's start can be years before the survey). A stretch the pages nearly cover is not
    long: no cut."""
    window = Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    day = timedelta(days=1)

    def pages(first: datetime, step: timedelta) -> list[list[datetime]]:
        return [[first + step * p + step * i / 20 for i in range(20)] for p in range(4)]

    oldest_first = pages(datetime(2025, 3, 1, tzinfo=UTC), day)
    ordered = sorted(at for page in oldest_first for at in page)
    assert cut_beyond(oldest_first, ordered, window, None) == ordered[0] + (
        window.end - ordered[0]) / 2
    assert cut_point(oldest_first, window) == cut_beyond(oldest_first, ordered, window, None)
    newest_first = [list(reversed(page)) for page in pages(datetime(2025, 12, 31, tzinfo=UTC),
                                                           -day)]
    ordered = sorted(at for page in newest_first for at in page)
    creation = datetime(2025, 6, 1, tzinfo=UTC)
    assert cut_beyond(newest_first, ordered, window, creation) == creation + (
        ordered[-1] - creation) / 2
    assert cut_beyond(newest_first, ordered, window, None) is None
    assert cut_beyond(newest_first, ordered, window, ordered[2]) is None
    nearly_all = pages(datetime(2025, 9, 1, tzinfo=UTC), 30 * day)  # 4 months of 4
    ordered = sorted(at for page in nearly_all for at in page)
    assert cut_beyond(nearly_all, ordered, window, None) is None


def test_a_chain_is_sliced_at_page_4_with_one_other_stream_left_or_at_page_5_or_6_alone():
    """The rule ``benchmarks.schedule_model`` chose, decision by decision (which page a chain
    reaches while which streams are unfinished depends on thread timing, so no sync can pin
    it): page 4 with itself and one other stream unfinished; pages 5 and 6 only alone (the
    others' last pages came just after its 4th: without this, one dominant survey among 5
    ran 1.53x the floor in latency_orders); never before page 4 nor after page 6, never at
    fast answers or with one request in flight."""
    slow = {"answer_seconds": 1.5, "rate": 1.0, "max_in_flight": 4}
    assert slice_now(4, 2, **slow) and slice_now(4, 1, **slow)
    assert not slice_now(4, 3, **slow)
    assert slice_now(5, 1, **slow) and slice_now(6, 1, **slow)
    assert not slice_now(5, 2, **slow) and not slice_now(6, 2, **slow)
    assert not slice_now(3, 1, **slow) and not slice_now(7, 1, **slow)
    assert not slice_now(5, 1, answer_seconds=0.2, rate=1.0, max_in_flight=4)
    assert not slice_now(5, 1, answer_seconds=1.5, rate=1.0, max_in_flight=1)
