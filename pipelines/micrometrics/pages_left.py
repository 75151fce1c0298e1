"""How many pages a chain of pages has left, as far as the pages it has read can tell.

The request whose chain has the most pages left goes first (``inflight``): a stream's pages are
a chain, and the longest one, left alone at the end, paces the sync at one answer's latency a
page. The API gives no counts, so an estimate comes from one of:

- pages sent in time order (told from the first ``SAMPLED_PAGES``: ``in_time_order``): they
  hold one end of the window, so the stretch of time they have not reached, at the
  density they show, is what is left (oldest first: up to the window's end; newest first: down
  to its start). Every stream of a tenant shares its ups and downs of density over time, and
  a first sync's windows start together, so the estimates rank the chains even where the
  density read so far is not the density ahead;
- else the stream's density in its last window read (``StreamWindows.expected_pages``: a later
  sync), less the pages read;
- else nothing (a stream's first read, records in no order): None; such chains go before
  those with an estimate, first come, first served among them.
"""

from __future__ import annotations

from datetime import datetime

from .timeutil import parse_timestamp
from .windows import Window

# Pages whose updated_at tell whether the server sends them in time order; later pages only
# move the ends of what was read.
SAMPLED_PAGES = 4
# Records of a page that may fall within the middle of the page before it in a feed in time
# order (records edited since, out of place); drawn from the whole window, most of them do.
OUT_OF_PLACE = 0.25


class PagesLeft:
    """The estimate for one chain reading ``window``; ``expected`` is the pages the window
    should hold at the stream's last density (None when unknown). ``read`` each page's
    records as it comes."""

    def __init__(self, window: Window, expected: float | None = None) -> None:
        self._window = window
        self._expected = expected
        self._pages = 0
        self._sample: list[list[datetime]] = []
        self._in_order = False
        self._oldest: datetime | None = None
        self._newest: datetime | None = None
        self._oldest_first = True

    def read(self, records: list[dict]) -> None:
        """Counts a page read. Its records' ``updated_at`` are parsed only where they can
        tell something: all of them in the first pages, then the ends of pages in time order
        (the sync's CPU a record counts at an unlimited rate)."""
        self._pages += 1
        if len(self._sample) < SAMPLED_PAGES:
            times = sorted(parse_timestamp(r["updated_at"]) for r in records)
            self._sample.append(times)
            filled = [page for page in self._sample if page]
            self._in_order = in_time_order(filled)
            if self._in_order:
                self._oldest_first = _middle(filled[-1]) >= _middle(filled[0])
        elif self._in_order and records:
            times = sorted(parse_timestamp(r["updated_at"]) for r in (records[0], records[-1]))
        else:
            return
        if times:
            self._oldest = times[0] if self._oldest is None else min(self._oldest, times[0])
            self._newest = times[-1] if self._newest is None else max(self._newest, times[-1])

    def __call__(self) -> float | None:
        """Pages left to read (at least 1: it is asked for as the next page is), or None."""
        if self._in_order and (left := self._from_order()) is not None:
            return max(left, 1.0)
        if self._expected is not None:
            return max(self._expected - self._pages, 1.0)
        return None

    def _from_order(self) -> float | None:
        assert self._oldest is not None and self._newest is not None
        read = (self._newest - self._oldest).total_seconds()
        if read <= 0:
            return None
        # Newest first, down to the window's start even where the survey's creation is above
        # it: a creation below the pages read for some streams and not for others would rank
        # them on two scales (the sandbox draws a survey's creation apart from its responses).
        ahead = (self._window.end - self._newest if self._oldest_first
                 else self._oldest - self._window.start)
        return self._pages * max(ahead.total_seconds(), 0.0) / read


def _middle(times: list[datetime]) -> datetime:
    return times[len(times) // 2]


def in_time_order(pages: list[list[datetime]]) -> bool:
    """Whether pages (each's times sorted) come in time order, one way or the other: each page
    lies beyond the middle 80% of the page before it. Unlike ``slicing.sorted_by_time`` this
    holds where the density changes along the window (the oldest pages of recent-heavy
    history each span months, the newest hours)."""
    if len(pages) < 2:
        return False
    for before, page in zip(pages, pages[1:], strict=False):
        low, high = before[len(before) // 10], before[-1 - len(before) // 10]
        within = sum(1 for at in page if low < at < high)
        if within > OUT_OF_PLACE * len(page):
            return False
    return True
