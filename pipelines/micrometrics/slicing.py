"""When a window's chain of pages is worth giving up for two slices read side by side.

A window's pages form a chain (each cursor comes with the page before), so a stream that is
still being read when the others are done is paced by its answers, not by the rate limit: at
1.5 s an answer, 0.67 requests/s. With one dominant survey a first sync took 1.5x the rate
limit's floor whatever the order of requests (``benchmarks.latency_orders``). The API gives no
counts and the order of records within a window is unknown, so the rest of a chain can't be
narrowed: slicing a window reads it again, from its first page, as two windows cut at the
median ``updated_at`` of the records read so far (a sample of the window, unless the server
sends records in time order: see below). That costs
the pages read so far, plus a partial page, so it is done only where the tail is coming:

- at the window's ``SLICE_AT_PAGE``-th page, in the round that started it (a stream long
  enough to matter has shown itself, and little has been read that must be read again), when
  at most one other stream of the sync is unfinished (``Lanes.unfinished``): with more, their
  requests keep the rate limit busy anyway; or at a later page up to ``SLICE_ALONE_UNTIL``,
  once no other stream is unfinished (the other streams' last pages may come just after this
  one's 4th: a rule of page 4 alone then never fired, 1.5x the floor);
- when the window's answers are slow: a lone chain is then slower than the rate limit (an
  answer takes longer than ``SLOWER_THAN_RATE`` tokens' leak) and each answer takes at least
  ``SLOW_ANSWER`` seconds. Fast answers leave nothing worth a re-read: on a rate-limited
  tenant a chain keeps up with the limit alone, and at an unlimited rate the sync is paced by
  its own CPU, while the re-read pages are requests the vendor counts;
- when two requests may be in flight (``MAX_IN_FLIGHT`` of 2 or more): one at a time, two
  slices are no faster than one chain;
- when the window may be long: on a stream's first read (no density known), or when the
  density of the stream's last window read puts more than ``MIN_PAGES`` pages in it (below
  that, two slices of half the pages plus the re-read end no sooner than the chain);
- where to cut: at the median of the pages read when they look unordered (a sample of the
  window); when they come sorted by time they hold one end of the window, and a cut at their
  median would leave one slice nearly the whole of it: the cut is then the middle, in time, of
  the stretch from the far end of the pages read to where the records can end (the window's
  end, or the survey's creation: ``cut_beyond``), and only if the window looks long;
- once per range of a stream (``StreamWindows.may_slice``), and not at an instant that holds
  much of the sample (a bulk update stamps thousands of records with one ``updated_at``: both
  slices would read them all).

``benchmarks.schedule_model`` chose the rule (page 4 with at most one other stream, or pages
5-6 alone: wider rules re-read more than they save on tenants of many uneven surveys);
measured results are in ``benchmarks/RESULTS.md`` (latency_orders).
"""

from __future__ import annotations

import statistics
from datetime import datetime

from .windows import OVERLAP, Window

SLICE_AT_PAGE = 4
# ... or up to this page, for a chain left alone (two more pages read again, at most).
SLICE_ALONE_UNTIL = 6
MIN_PAGES = 2 * (SLICE_AT_PAGE + 1)
SLOWER_THAN_RATE = 1.2
SLOW_ANSWER = 0.25  # seconds
# Streams unfinished, the one asking included, at most: itself and one other.
SLICE_WHEN_UNFINISHED = 2
# A cut is refused when this share of the sample lies within OVERLAP of it (both slices would
# read those records).
CROWDED_SHARE = 0.1


def slice_now(pages: int, unfinished: int, answer_seconds: float, rate: float,
              max_in_flight: int) -> bool:
    """Whether a chain that has just read its ``pages``-th page should be sliced, with
    ``unfinished`` streams of the sync left (itself included), its answers having taken
    ``answer_seconds`` on average, under a rate limit of ``rate`` requests a second and
    ``max_in_flight`` requests in flight at most."""
    slow = answer_seconds >= SLOW_ANSWER and answer_seconds * rate >= SLOWER_THAN_RATE
    due = ((pages == SLICE_AT_PAGE and unfinished <= SLICE_WHEN_UNFINISHED)
           or (SLICE_AT_PAGE < pages <= SLICE_ALONE_UNTIL and unfinished <= 1))
    return due and slow and max_in_flight >= 2


def long_enough(expected_pages: float | None) -> bool:
    """Whether a window expected to hold ``expected_pages`` (None: unknown) may be worth it."""
    return expected_pages is None or expected_pages > MIN_PAGES


def cut_point(pages: list[list[datetime]], window: Window,
              floor: datetime | None = None) -> datetime | None:
    """Where to cut ``window``, from the ``updated_at`` of the ``pages`` read so far: their
    median when they are a sample of the window; when they come sorted by time, the middle of
    the stretch from their far end to where the records can end (``cut_beyond``; ``floor``:
    the survey's creation). None when a cut would not split the window: the pages bunched at
    one instant, a sorted window not long, or a cut at its bounds."""
    ordered = sorted(at for page in pages for at in page)
    if not ordered or _middle_half(ordered) <= 0:
        return None
    if sorted_by_time(pages):
        cut = cut_beyond(pages, ordered, window, floor)
        if cut is None:
            return None
    else:
        cut = ordered[len(ordered) // 2]
    if not window.start + OVERLAP < cut < window.end - OVERLAP:
        return None
    # A bulk update at the cut shows in a sample; beyond sorted pages it cannot be seen.
    near = sum(1 for at in ordered if abs(at - cut) <= OVERLAP)
    if near > CROWDED_SHARE * len(ordered):
        return None
    return cut


def cut_beyond(pages: list[list[datetime]], ordered: list[datetime], window: Window,
               floor: datetime | None) -> datetime | None:
    """The cut for pages sorted by time: they hold one end of the window, and the records not
    read yet lie beyond them. Oldest first: between the oldest read and the window's end;
    newest first: between the survey's creation (``floor``) and the newest read (the window's
    start may be years before the survey: no cut without a floor the pages have not passed).
    The middle of that stretch in time, when the records spread over it at the density read
    so far would fill more than ``MIN_PAGES`` pages (else the window is not long: no cut).
    A guess, as every cut is: the slices read the whole window again, so it only decides how
    evenly the two share it."""
    filled = [page for page in pages if page]  # a page of rejected records samples nothing
    if len(filled) < 2:
        return None
    oldest_first = statistics.median_low(filled[-1]) >= statistics.median_low(filled[0])
    if oldest_first:
        start, end = ordered[0], window.end
    elif floor is not None and floor < ordered[0]:
        start, end = max(window.start, floor), ordered[-1]
    else:
        # Newest first with no creation below them: even a sound window start (a later sync's
        # lookback) is left alone; such windows are seldom long enough to be weighed at all.
        return None
    read = (ordered[-1] - ordered[0]).total_seconds()
    stretch = (end - start).total_seconds()
    if read <= 0 or len(filled) * stretch / read <= MIN_PAGES:
        return None
    return start + (end - start) / 2


def sorted_by_time(pages: list[list[datetime]]) -> bool:
    """Whether the pages look sent in time order rather than drawn from the whole window: the
    middle half (interquartile range) of a typical page spans less than half the middle half
    of all of them. Sampled pages each span about the whole; sorted pages each hold their own
    stretch of time (a quarter of the whole, in 4 pages), and a few records out of place move
    no quartile. One instant holding the middle half: not a sample worth cutting either."""
    spreads = [_middle_half(page) for page in pages if len(page) >= 4]
    if len(spreads) < 2:
        return False
    whole = _middle_half([at for page in pages for at in page])
    return whole <= 0 or statistics.median(spreads) < whole / 2


def _middle_half(times: list[datetime]) -> float:
    ordered = sorted(times)
    return (ordered[3 * len(ordered) // 4] - ordered[len(ordered) // 4]).total_seconds()
