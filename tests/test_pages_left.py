"""How many pages a chain has left (``pipelines.micrometrics.pages_left``), and the sync's
requests carrying it to the order of requests (``inflight.ranked``)."""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.micrometrics import inflight
from pipelines.micrometrics.pages_left import PagesLeft, in_time_order
from pipelines.micrometrics.session import MicrometricsSession
from pipelines.micrometrics.timeutil import format_timestamp
from pipelines.micrometrics.windows import Window
from tests.syncing import sync_sandbox
from tests.truth import assert_matches_truth

WINDOW = Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
PAGE = 37


def spread(count: int, seed: int = 1) -> list[dict]:
    """``count`` records changed at even steps over the window (a record's ``updated_at``)."""
    step = (WINDOW.end - WINDOW.start) / (count + 1)
    records = [{"id": i, "updated_at": format_timestamp(WINDOW.start + step * (i + 1))}
               for i in range(count)]
    random.Random(seed).shuffle(records)
    return records


def by_time(records: list[dict], newest_first: bool = False) -> list[dict]:
    return sorted(records, key=lambda r: r["updated_at"], reverse=newest_first)


def pages_of(records: list[dict]) -> list[list[dict]]:
    return [records[i:i + PAGE] for i in range(0, len(records), PAGE)]


def estimates(records: list[dict], expected: float | None = None) -> list[float | None]:
    """The estimate after each page but the last (as its next page is asked for)."""
    left = PagesLeft(WINDOW, expected)
    out = []
    for page in pages_of(records)[:-1]:
        left.read(page)
        out.append(left())
    return out


@pytest.mark.parametrize("newest_first", [False, True])
def test_pages_in_time_order_tell_the_pages_left_from_the_second_page(newest_first):
    """Oldest or newest first, 40 pages over the year: from the second page on, the estimate
    is within a page or 15% of the pages truly left (the first page alone tells no order)."""
    pages = 40
    found = estimates(by_time(spread(pages * PAGE), newest_first))
    assert found[0] is None
    for read, estimate in enumerate(found[1:], start=2):
        truly = pages - read
        assert estimate is not None
        assert abs(estimate - truly) <= max(1.0, 0.15 * truly), (read, estimate, truly)


def test_a_longer_chain_in_time_order_has_more_left_at_every_page():
    """Two surveys over the same year, one four times as dense: at each page both have read,
    the denser has more pages left, whatever the ups and downs of density they share (here:
    denser recent months, as the sandbox's)."""
    def recent_heavy(count: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        span = WINDOW.end - WINDOW.start
        return [{"id": i, "updated_at": format_timestamp(WINDOW.end - span * rng.random() ** 2)}
                for i in range(count)]

    long = estimates(by_time(recent_heavy(24 * PAGE, 1)))
    short = estimates(by_time(recent_heavy(6 * PAGE, 2)))
    for page, (more, fewer) in enumerate(zip(long[1:], short[1:], strict=False), start=2):
        assert more > fewer, (page, more, fewer)


def test_pages_in_no_order_tell_nothing_unless_the_last_density_is_known():
    """Shuffled pages: no estimate on a stream's first read; with the density of the stream's
    last window read (a later sync), the pages expected less those read, never below one."""
    shuffled = spread(10 * PAGE)
    assert estimates(shuffled) == [None] * 9
    assert estimates(shuffled, expected=6.0) == [5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_past_the_sampled_pages_records_in_no_order_are_not_parsed():
    """The CPU a record costs at an unlimited rate: once the first pages showed no order, a
    page's records are counted, not parsed (a record the quarantine let through is never
    malformed here; this page's would raise if parsed)."""
    left = PagesLeft(WINDOW)
    for page in pages_of(spread(5 * PAGE))[:4]:
        left.read(page)
    left.read([{"id": 1, "updated_at": "not a time"}])
    assert left() is None


def test_a_sync_in_time_order_ranks_its_chains_and_one_in_no_order_leaves_them_unranked(
        start_sandbox, tmp_path, clock, monkeypatch):
    """End to end over HTTP: every response request of a sync states its chain's pages left.
    The sandbox's oldest-first feed: from each survey's third page on, the estimate is known,
    and the longest survey's is above every other survey's at the same page. Shuffled: no
    estimate at all on a first sync, so requests go first come, first served."""
    seen: dict[str, dict[int, list[float | None]]] = {}
    send = MicrometricsSession.send

    def recording(self, request, **kwargs):
        if match := re.search(r"/surveys/(\d+)/responses", request.url):
            pages = seen.setdefault(match.group(1), defaultdict(list))
            pages[len(pages)].append(inflight.current_left())
        return send(self, request, **kwargs)

    monkeypatch.setattr(MicrometricsSession, "send", recording)
    for order in ("asc", "shuffled"):
        seen.clear()
        sandbox = start_sandbox(clock=clock, order=order, surveys=3, responses=900,
                                page_size=20, devices=5)
        sync_sandbox(sandbox, tmp_path / order, clock, max_in_flight=4, rate=1000.0,
                     burst=1000)
        assert_matches_truth(tmp_path / order, sandbox.truth())
        counts: dict[str, int] = defaultdict(int)
        for record in sandbox.truth()["survey_responses"]:
            counts[str(record["survey_id"])] += 1
        assert {survey: len(pages) for survey, pages in seen.items()} == {
            survey: math.ceil(n / 20) for survey, n in counts.items()}
        first = {survey: [values[0] for _, values in sorted(pages.items())]
                 for survey, pages in seen.items()}
        if order == "shuffled":
            assert all(value is None for values in first.values() for value in values)
            continue
        longest = max(counts, key=counts.__getitem__)
        for survey, values in first.items():
            assert values[0] is None and values[1] is None  # no order seen yet
            assert all(value is not None for value in values[2:]), (survey, values)
            if survey != longest:
                for page, value in enumerate(values[2:], start=2):
                    assert first[longest][page] > value, (survey, page, first)


def test_estimates_hold_a_window_that_ends_before_its_pages():
    """A page stamped after the window's end (a server clock ahead) leaves nothing ahead, not
    a negative count: one page left, the one being asked for."""
    late = [{"id": i, "updated_at": format_timestamp(WINDOW.end + timedelta(hours=i))}
            for i in range(2 * PAGE)]
    left = PagesLeft(WINDOW)
    for page in pages_of(late):
        left.read(page)
    assert left() == 1.0


def test_time_order_is_told_with_records_out_of_place_and_density_changing():
    """A feed in time order with two records edited since (out of place), over history whose
    density grows a hundredfold: in order. Drawn from the whole window: not."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = sorted(start + timedelta(hours=400 * (i / 80) ** 3) for i in range(80))
    pages = [times[i:i + 20] for i in range(0, 80, 20)]
    pages[0][5], pages[3][7] = pages[3][7], pages[0][5]
    pages = [sorted(page) for page in pages]
    assert in_time_order(pages)
    assert in_time_order([sorted(page) for page in reversed(pages)])
    drawn = random.Random(7).sample(times, 80)
    assert not in_time_order([sorted(drawn[i:i + 20]) for i in range(0, 80, 20)])
