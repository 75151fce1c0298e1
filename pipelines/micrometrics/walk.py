"""Reading one stream: its windows in turn, each window's pages as a chain of cursors, and a
window that would end the sync alone read in two slices side by side (``slicing``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from . import inflight
from .client import MicrometricsClient
from .column_types import as_column_types
from .errors import CursorRejectedError
from .lanes import Lanes
from .misfits import ColumnTypes
from .pages_left import PagesLeft
from .quarantine import as_rejected, split_records
from .quiet import record_last_change
from .rounds import ExtractTally, KnownVersions, RoundBudget
from .slicing import SLICE_ALONE_UNTIL, cut_point, long_enough, slice_now
from .timeutil import format_timestamp, parse_timestamp
from .windows import Slice, StreamWindows, WholeWindow, Window

log = logging.getLogger("micrometrics")

CURSOR_RESTARTS = 2
Progress = WholeWindow | Slice


@dataclass
class StreamRead:
    """What reading one stream needs. ``lanes`` walks a sliced window's slices, and says how
    many streams are unfinished; without it windows are never sliced. ``lock`` guards what
    the slices of a window write to the stream's state at once (its last change, page size)."""

    client: MicrometricsClient
    path: str
    windows: StreamWindows
    budget: RoundBudget
    tally: ExtractTally
    label: str
    known_versions: KnownVersions | None = None
    lanes: Lanes | None = None
    # The table's column types, for values dlt would change to fit them (``misfits``).
    types: ColumnTypes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Read:
    """A chain read to its end: the records it counted, in ``pages`` pages this round
    (``resumed``: it went on from a cursor a round before kept, which read the others)."""

    records: int
    pages: int
    resumed: bool = False

    def said(self) -> str:
        pages = f"{self.pages} page{'' if self.pages == 1 else 's'}"
        return (f"{self.records} records, the last {pages} this round" if self.resumed
                else f"{self.records} records in {pages}")


@dataclass(frozen=True)
class Cut:
    """A chain given up to slice its window at ``at``."""

    at: datetime


def walk(read: StreamRead) -> Iterator[Any]:
    """Yield every page of every window the stream owes, checkpointing each finished window.

    A window is read through to its end whatever its size (records sharing one ``updated_at``
    can't be split into smaller windows). When the round's page budget runs out part-way, the
    cursor of the next page goes to state and the next round resumes from it, so no page is
    read twice. A refused cursor restarts its window, ``CURSOR_RESTARTS`` times at most.
    Each page is booked in ``budget`` before it is requested; other streams may be walked at
    the same time (see ``lanes``), and so may the two slices of a window (see ``slicing``).
    """
    windows = read.windows
    while (window := windows.next_window()) is not None:
        if windows.deep_below is not None:
            read.tally.add(deep_stream=read.label)  # counted as its deep window starts
        if not windows.slices():
            if not read.budget.take():
                return
            may_slice = (read.lanes is not None and windows.may_slice
                         and long_enough(windows.expected_pages(window)))
            ended = yield from read_chain(read, WholeWindow(windows, window), may_slice)
            if isinstance(ended, Read):
                windows.complete(window, ended.records)
                log.info("%s: %s .. %s: %s", read.label, format_timestamp(window.start),
                         format_timestamp(window.end), ended.said())
                continue
            if isinstance(ended, Cut):
                windows.slice(window, ended.at)
                log.info("%s: %s .. %s: sliced at %s, read in two slices side by side",
                         read.label, format_timestamp(window.start),
                         format_timestamp(window.end), format_timestamp(ended.at))
            else:
                return  # out of budget; the cursor is in state
        slices = windows.slices()
        yield from read_slices(read, slices)
        if not all(part.done for part in slices):
            return  # out of budget; each slice's cursor is in state
        records = sum(part.records for part in slices)
        windows.complete(window, records)
        log.info("%s: %s .. %s: %d records in two slices", read.label,
                 format_timestamp(window.start), format_timestamp(window.end), records)


def read_slices(read: StreamRead, slices: list[Slice]) -> Iterator[Any]:
    """The pages of a window's unfinished slices, walked at once in ``read.lanes``."""
    assert read.lanes is not None  # a window is only sliced with lanes to walk its slices
    yield from read.lanes.run([partial(_read_slice, read, part)
                               for part in slices if not part.done])


def _read_slice(read: StreamRead, part: Slice) -> Iterator[Any]:
    if read.budget.take():
        yield from read_chain(read, part, may_slice=False)


def read_chain(read: StreamRead, part: Progress,
               may_slice: bool) -> Generator[Any, None, Read | Cut | None]:
    """Yield the pages of one chain (a window, or a slice of one) from its cursor in state.

    Returns what the chain read once it is read to its end, None when the round's
    budget ran out (the cursor of the next page is in state), or a :class:`Cut` when
    ``may_slice`` and the window is worth slicing (see ``slicing``).
    """
    window: Window = part.window
    restarts = 0
    refused = False
    resumed = part.resume_cursor()[0] is not None  # a round before read its first pages
    while True:
        cursor, records = part.resume_cursor()
        params = window.params() | ({"cursor": cursor} if cursor else {})
        # updated_at of each page read, while the window may still be sliced
        sample: list[list] | None = [] if may_slice and cursor is None else None
        pages = 0
        answered = 0.0  # seconds this chain's answers took, this attempt
        # Its requests go before those of chains with fewer pages left (``inflight``).
        left = PagesLeft(window, read.windows.expected_pages(window))
        try:
            for page in inflight.ranked(read.client.pages(read.path, params=params), left):
                pages += 1
                if refused:
                    log.warning("warning: %s: the API refused a cursor; reading the window "
                                "again, to its end in this round", read.label)
                    refused = False
                answered += read.client.last_answer_seconds()
                records += part.counted(page)
                good, rejected = split_records(page, read.label, page.response.content)
                left.read(good)
                if sample is not None:
                    sample.append([parse_timestamp(r["updated_at"]) for r in good])
                if good:
                    as_column_types(good)
                    if read.types is not None:
                        read.types.route(good)
                    with read.lock:
                        record_last_change(read.windows.state, good)
                    read.tally.deep_candidates(*deep_candidates(good, read))
                    yield good
                if rejected:
                    read.tally.add(rejected=[row["record_key"] for row in rejected])
                    yield as_rejected(rejected)
                next_cursor = page.paginator.next_cursor
                if next_cursor:
                    with read.lock:
                        read.windows.learn_page_size(len(page))
                    if sample is not None and read.lanes is not None and slice_now(
                            pages, read.lanes.unfinished(), answered / pages,
                            read.client.bucket.rate, read.lanes.max_in_flight):
                        if (cut := cut_point(sample, window, read.windows.floor)) is not None:
                            return Cut(cut)  # the slices read these pages again
                    if pages >= SLICE_ALONE_UNTIL:
                        sample = None  # past the last page where a cut is weighed
                    # After a refused cursor the chain is read to its end whatever the budget:
                    # if cursors expire (say, during a round's load), one kept for the next
                    # round would be refused again, and a window longer than a round would
                    # start over every round, never done. (Counted, without asking for another
                    # round: this chain will not need one.)
                    if restarts:
                        read.budget.spend()
                    elif not read.budget.take():
                        # Out of budget mid-chain: this round's state keeps the cursor.
                        part.checkpoint(next_cursor, records)
                        log.info("%s: %s .. %s: %d records so far; continued next round",
                                 read.label, format_timestamp(window.start),
                                 format_timestamp(window.end), records)
                        return None
            break
        except CursorRejectedError:
            # An expired or refused cursor: read this chain again from its first page.
            restarts += 1
            if restarts > CURSOR_RESTARTS:
                raise
            part.restart()
            read.budget.spend()  # the chain's first page, read again whatever the budget
            # Said once that first page came: a 404 to it means the survey is gone instead
            # (removed while its responses were read), which its caller says.
            refused = True
    part.finish(records)
    return Read(records, pages, resumed and not restarts)


def deep_candidates(records: list[dict], read: StreamRead) -> tuple[str, dict[Any, Any]]:
    """In a deep pass, the records changed before the plain lookback's start, as ``(table,
    {id: updated_at})``: those the destination does not hold in this version are late uploads
    the plain lookback missed (looked up once the resource's round is read, ``ExtractTally``)."""
    table = read.label.partition("[")[0]
    below = read.windows.deep_below
    if below is None or read.known_versions is None:
        return table, {}
    return table, {r["id"]: parse_timestamp(r["updated_at"]) for r in records
                   if parse_timestamp(r["updated_at"]) < below}
