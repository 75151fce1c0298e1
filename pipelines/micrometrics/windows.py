"""Adaptive ``start_at``/``end_at`` windows over ``updated_at``, checkpointed in dlt state.

A stream (one index endpoint) owes a *range* ``[lo, hi]``: the whole history on the first sync,
``[high_water - lookback, now]`` afterwards. The range is walked newest window first:

- with no density known (a stream's first read), the first window is the whole range (or
  ``initial_window`` long when that is set): a window costs a partial last page, so a small
  stream (a survey with a few dozen responses over a year) is one request, not two;
- otherwise the first window is sized from the density seen last run;
- each next window is sized so it should hold about ``target_pages`` pages (dense history gives
  short windows, sparse history long ones);
- after an empty window, a window whose rest of the range is projected to be small, or one that
  reaches below ``floor`` (a survey's creation: its responses can hardly be older), the window
  simply extends to ``lo``: deep empty history costs one request, not one per month;
- a window is always read through to its end, however many pages it turns out to hold: a
  window can't be split below one instant (a bulk update may stamp 50,000 records with one
  ``updated_at``), and giving a window up would read its pages twice. Its progress is
  checkpointed instead: when a round's page budget runs out mid-window, the paging cursor is
  kept in state (``pending.window``) and the next round resumes from it (see ``checkpoint``);
  after the API refused a cursor, the window read again is read to its end whatever the budget
  (a kept cursor could expire before the next round: see ``walk.read_chain``);
- the one exception: a window whose chain of pages would end the sync alone, at slow answers,
  is given up at its 4th page (or, left alone, its 5th or 6th) and read again as two slices
  side by side (``slicing``), once per range; each slice keeps its own cursor in
  ``pending.window.slices``, and the window is done when both are.

Each window reaches ``OVERLAP`` beyond both of its nominal bounds (neighbours share
``2 * OVERLAP``), so a record on a bound is fetched whatever the server's inclusive/exclusive
semantics; merge on ``id`` removes the duplicate. Order inside a
window never matters, because a window only counts as done once all of its pages are read.

The state dict is the stream's slice of dlt resource state; dlt persists it after extract, so a
window marked done here is checkpointed by the round that fetched it (see ``rounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .timeutil import as_sent, format_timestamp, parse_timestamp

OVERLAP = timedelta(seconds=1)
MIN_WINDOW = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A listing of every record there is (the survey list; --reconcile's lists) ends this far past
# the time it is for: a record changed while a long listing runs (a reconcile of 200,000
# responses takes half an hour at 1 request/s), or stamped by a server clock ahead of ours (the
# API allows 15 minutes), is still in it. Left out, it would be taken for deleted.
LISTING_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """One request range for ``start_at``/``end_at``."""

    start: datetime
    end: datetime

    def params(self) -> dict[str, str]:
        return {"start_at": format_timestamp(self.start), "end_at": format_timestamp(self.end)}


def listing_window(now: datetime) -> Window:
    """Every record changed up to ``now``, and ``LISTING_MARGIN`` past it; from ``OVERLAP``
    before the epoch, as every window bound: a record stamped at the epoch itself (a zero
    default) is outside a server's exclusive ``start_at`` (a survey never read, or marked)."""
    return Window(EPOCH - OVERLAP, as_sent(now) + LISTING_MARGIN)


@dataclass(frozen=True)
class WindowSettings:
    """How windows are sized.

    Attributes:
        start_at: Where history begins when nothing was synced yet.
        lookback: Re-read this much before the high-water mark (late uploads).
        initial_window: First window of a range with no density known; None: the whole range.
        target_pages: Pages a window should hold.
        page_size: Records per page assumed until the server's page size has been seen.
        deep_lookback: How far back a deep pass re-reads (late uploads of offline kiosks).
        deep_every: Least time between two deep passes of a stream (zero: every sync).
    """

    start_at: datetime
    lookback: timedelta
    initial_window: timedelta | None
    target_pages: int
    page_size: int = 100
    deep_lookback: timedelta = timedelta(0)
    deep_every: timedelta = timedelta(0)


class StreamWindows:
    """The windows still owed by one stream, read from and written to its state dict.

    State keys: ``high_water`` (everything updated up to it is extracted), ``pending``
    (``lo``, ``hi``, ``next_hi``: the range being walked, done from ``next_hi`` up to ``hi``;
    ``deep_below``: in a deep pass, where the plain lookback would have started),
    ``deep_at`` (when the last deep pass, or the full first read, of this stream began),
    ``density`` (records per second seen last), ``page_size`` (the server's, as seen),
    ``extend`` (next window goes down to ``lo``). ``pending.window`` is a window read part-way:
    its bounds, the cursor of its next page and the records read so far.
    """

    def __init__(
        self,
        state: dict[str, Any],
        settings: WindowSettings,
        run_end: datetime,
        floor: datetime | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        # State keeps milliseconds, as the API does: compare like with like.
        self.run_end = as_sent(run_end)
        self.floor = floor

    @property
    def high_water(self) -> datetime | None:
        value = self.state.get("high_water")
        return parse_timestamp(value) if value else None

    def _new_range_start(self) -> datetime | None:
        """Where a new range starts (history, or high-water minus lookback); None when the
        stream is already up to ``run_end``."""
        high_water = self.high_water
        if high_water is None:
            return self.settings.start_at - OVERLAP
        if high_water >= self.run_end:
            return None
        # OVERLAP below, as every window bound: a late batch stamped at that very instant
        # would be outside a server's exclusive start_at.
        return high_water - self.settings.lookback - OVERLAP

    def deep_pass_due(self) -> bool:
        """Whether a new range re-reads ``deep_lookback`` instead of the plain lookback: at most
        once every ``deep_every`` per stream (tracked in its state)."""
        if self.high_water is None or self.settings.deep_lookback <= self.settings.lookback:
            return False
        last = self.state.get("deep_at")
        return last is None or self.run_end - parse_timestamp(last) >= self.settings.deep_every

    def deep_start(self) -> datetime:
        """Where a deep pass starts: ``deep_lookback`` before the previous deep pass (or full
        read), not before the high-water mark. A record that became visible just after that
        pass, up to ``deep_lookback`` late, can be older than ``high_water - deep_lookback``
        by the time between two passes: counted from the high-water mark, no pass would read
        it."""
        high_water = self.high_water
        assert high_water is not None  # a deep pass follows a first read
        last = self.state.get("deep_at")
        since = min(high_water, parse_timestamp(last)) if last else high_water
        return since - self.settings.deep_lookback - OVERLAP

    def _open_range(self) -> dict[str, str] | None:
        pending = self.state.get("pending")
        if pending:
            return pending
        lo = self._new_range_start()
        if lo is None:
            return None
        hi = format_timestamp(self.run_end)
        pending = {"lo": format_timestamp(lo), "hi": hi, "next_hi": hi}
        if self.high_water is None:
            self.state["deep_at"] = hi  # a full read covers whatever a deep pass would
        elif self.deep_pass_due():
            pending["deep_below"] = pending["lo"]
            pending["lo"] = format_timestamp(self.deep_start())
            self.state["deep_at"] = hi
        self.state["pending"] = pending
        self.state.pop("extend", None)
        return pending

    @property
    def deep_below(self) -> datetime | None:
        """In a deep pass, where the plain lookback would have started: records changed
        before it are what only the deep pass can find."""
        value = (self.state.get("pending") or {}).get("deep_below")
        return parse_timestamp(value) if value else None

    def next_window(self) -> Window | None:
        """The next window to fetch, or None when the stream is up to ``run_end``. A window read
        part-way by an earlier round comes back with the same bounds (its cursor is bound to
        them): see ``resume_cursor``."""
        pending = self._open_range()
        if pending is None:
            return None
        partial = pending.get("window")
        if partial:
            return Window(parse_timestamp(partial["start"]), parse_timestamp(partial["end"]))
        lo, top = parse_timestamp(pending["lo"]), parse_timestamp(pending["next_hi"])
        # In milliseconds, as sent: a window's span (its density) is then the same whether it
        # was read in one round or resumed from state.
        start = as_sent(top - min(self._length(), top - lo + MIN_WINDOW))
        density = self.state.get("density")
        reaches_all = (
            start <= lo
            or self.state.get("extend")
            or (self.floor is not None and start <= self.floor)
            or (density and density * (start - lo).total_seconds() <= self.target_records)
        )
        # Both ends reach OVERLAP past the nominal bounds: a record exactly on a bound (or
        # updated at the very instant of run_end) is inside whatever the server's semantics.
        if reaches_all:
            return Window(lo, top + OVERLAP)
        return Window(start - OVERLAP, top + OVERLAP)

    def _length(self) -> timedelta:
        density = self.state.get("density")
        if not density:
            return self.settings.initial_window or timedelta.max
        return max(MIN_WINDOW, timedelta(seconds=self.target_records / density))

    @property
    def page_size(self) -> int:
        """The server's page size as seen, else the one assumed."""
        return self.state.get("page_size") or self.settings.page_size

    @property
    def target_records(self) -> int:
        """Records a window should hold: target pages times the page size the server uses."""
        return self.settings.target_pages * self.page_size

    @property
    def may_slice(self) -> bool:
        """Whether a window of the range being walked may still be sliced: once per range, so
        that slicing costs a stream at most one re-read per sync (see ``slicing``)."""
        return not (self.state.get("pending") or {}).get("sliced")

    def slice(self, window: Window, cut: datetime) -> None:
        """Give up ``window``'s chain of pages and read it as two slices side by side, one up
        to ``cut`` and one from it (each reaching ``OVERLAP`` across): see ``slicing``. The
        pages read so far are read again by the slices."""
        pending = self.state["pending"]
        pending["window"] = {
            "start": format_timestamp(window.start),
            "end": format_timestamp(window.end),
            "cut": format_timestamp(cut),
            "slices": [{"records": 0}, {"records": 0}],
        }
        pending["sliced"] = True

    def slices(self) -> list[Slice]:
        """The slices of the window read part-way, or [] when it is not sliced."""
        partial = (self.state.get("pending") or {}).get("window") or {}
        if "slices" not in partial:
            return []
        start, end = parse_timestamp(partial["start"]), parse_timestamp(partial["end"])
        cut = parse_timestamp(partial["cut"])
        older, newer = partial["slices"]
        return [Slice(older, Window(start, cut + OVERLAP), cut, newer=False),
                Slice(newer, Window(cut - OVERLAP, end), cut, newer=True)]

    def resume_cursor(self) -> tuple[str | None, int]:
        """Cursor of the next page of the window read part-way, and the records it has
        returned so far; ``(None, 0)`` for a fresh window."""
        partial = (self.state.get("pending") or {}).get("window") or {}
        return partial.get("cursor"), int(partial.get("records", 0))

    def checkpoint(self, window: Window, cursor: str, records: int) -> None:
        """``window`` is read up to the page before ``cursor``; the round stops here and the
        next one resumes from ``cursor`` (the state travels with the pages just read)."""
        self.state["pending"]["window"] = {
            "start": format_timestamp(window.start),
            "end": format_timestamp(window.end),
            "cursor": cursor,
            "records": records,
        }

    def restart(self) -> None:
        """Forget a part-way window's cursor (the API refused it): read it from its first page,
        same bounds."""
        partial = (self.state.get("pending") or {}).get("window")
        if partial:
            partial.pop("cursor", None)
            partial["records"] = 0

    def expected_pages(self, window: Window) -> float | None:
        """Pages ``window`` should hold at the density of the stream's last window read; None
        when none is known (a stream's first read)."""
        density = self.state.get("density")
        if not density:
            return None
        span = (window.end - window.start).total_seconds()
        return density * span / self.page_size

    def learn_page_size(self, size: int) -> None:
        """A full page (one followed by another) shows the server's page size."""
        self.state["page_size"] = max(size, self.state.get("page_size") or 0)

    def complete(self, window: Window, records: int) -> None:
        """Mark ``window`` as fully read, having returned ``records`` records."""
        pending = self.state["pending"]
        pending.pop("window", None)
        lo = parse_timestamp(pending["lo"])
        if records:
            span = max((window.end - window.start).total_seconds(), 1.0)
            self.state["density"] = records / span
            self.state.pop("extend", None)
        else:
            self.state["extend"] = True
        if window.start <= lo:
            self.state["high_water"] = pending["hi"]
            self.state.pop("pending", None)
            self.state.pop("extend", None)
        else:
            pending["next_hi"] = format_timestamp(window.start + OVERLAP)

    def describe(self) -> str:
        """One line on what is owed, for ``--dry-run``."""
        pending = self.state.get("pending")
        if pending:
            window = pending.get("window") or {}
            partial = (" (a window read part-way, in two slices)" if "slices" in window
                       else " (a window read part-way)" if window else "")
            return (f"resume {pending['lo']} .. {pending['next_hi']} (then up to "
                    f"{pending['hi']}){partial}")
        lo = self._new_range_start()
        if lo is None:
            return "up to date"
        kind = "full history" if self.high_water is None else "incremental"
        if self.deep_pass_due():
            kind = "incremental with a deep pass"
            lo = self.deep_start()
        return f"{kind} {format_timestamp(lo)} .. {format_timestamp(self.run_end)}"


class Slice:
    """One of a window's two slices: its bounds and its progress (``cursor`` of its next page,
    ``records`` counted, ``done``), kept in its own dict of the stream's state so that each
    slice's walk writes only its own.

    The slices overlap by ``2 * OVERLAP`` around the cut; a record there comes in both. Each
    counts only the records on its side of the cut (the newer one also those without a
    readable ``updated_at``), so the window's count, and the density learnt from it, are the
    same as had it been read in one chain.
    """

    def __init__(self, progress: dict[str, Any], window: Window, cut: datetime,
                 newer: bool) -> None:
        self.progress, self.window, self.cut, self.newer = progress, window, cut, newer

    @property
    def done(self) -> bool:
        return bool(self.progress.get("done"))

    @property
    def records(self) -> int:
        return int(self.progress.get("records", 0))

    def resume_cursor(self) -> tuple[str | None, int]:
        return self.progress.get("cursor"), self.records

    def counted(self, page: list[Any]) -> int:
        """The records of ``page`` on this slice's side of the cut."""
        return sum(1 for record in page if self._is_newer(record) == self.newer)

    def _is_newer(self, record: Any) -> bool:
        try:
            return parse_timestamp(record["updated_at"]) >= self.cut
        except (KeyError, TypeError, ValueError):
            return True

    def checkpoint(self, cursor: str, records: int) -> None:
        self.progress.update(cursor=cursor, records=records)

    def restart(self) -> None:
        self.progress.pop("cursor", None)
        self.progress["records"] = 0

    def finish(self, records: int) -> None:
        self.progress.pop("cursor", None)
        self.progress.update(records=records, done=True)


class WholeWindow:
    """A window read as one chain of pages: its progress in ``pending.window`` (the same
    methods as a :class:`Slice`, for the code that reads a chain)."""

    def __init__(self, windows: StreamWindows, window: Window) -> None:
        self.windows, self.window = windows, window

    def resume_cursor(self) -> tuple[str | None, int]:
        return self.windows.resume_cursor()

    def counted(self, page: list[Any]) -> int:
        return len(page)

    def checkpoint(self, cursor: str, records: int) -> None:
        self.windows.checkpoint(self.window, cursor, records)

    def restart(self) -> None:
        self.windows.restart()

    def finish(self, records: int) -> None:
        """Nothing to keep: the walk completes the window (``StreamWindows.complete``)."""
