"""What the rounds of one sync share, one concern per object.

dlt writes source state only after a whole extract, so a sync that walked a long backfill in a
single ``pipeline.run`` would lose all of it to a crash. Instead the sync runs rounds of about
``RoundBudget.pages`` pages: every stream fetches pages until the round's budget is spent (a
window cut part-way keeps its cursor in state), the round is loaded, and the next round resumes
from the state that round committed. A crash loses at most the round in flight.

- :class:`SyncBounds`: the sync's fixed time bounds (so rounds continue the same ranges);
- :class:`RoundBudget`: the page budget of the round in flight;
- :class:`SurveyIndex`: the survey list, read once per sync, and which resources emitted it;
- :class:`WindowStates`: where streams keep their windows (dlt state, and a slot apart for an
  explicit re-read, which must not move the incremental state);
- :class:`ExtractTally`: what the extract counted for the summary (quarantine, deep pass).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .timeutil import format_timestamp, parse_timestamp

UNLIMITED = 10**9


@dataclass(frozen=True)
class SyncBounds:
    """Time bounds of one sync.

    Attributes:
        run_end: Upper bound of every window in this sync.
        now: Wall-clock time at the start of the sync (the survey list reaches it; versions of
            questions and deletion marks are stamped with it).
        start_at: Lower bound of an explicit re-read (``--start-at``); None otherwise.
        explicit_range: True for ``--start-at``/``--end-at``: the incremental state stays.
    """

    run_end: datetime
    now: datetime
    start_at: datetime | None = None
    explicit_range: bool = False


# Every round is one pipeline.run: one load job and one MERGE per table, and a fixed cost
# (normalize and load set-up; DuckDB checkpoints its file when the round closes it). Measured on
# 200,000 responses into DuckDB (benchmarks/RESULTS.md, scale): rounds of 50 pages took 77 s,
# of 300 pages 54 s, of 1,000 pages 46 s (then with a higher memory peak, since brought down:
# see dlt_settings). With the normalize on two cores the fixed cost weighs more: 300-page rounds
# 34-36 s, 900-page rounds 26-30 s. A crash costs at most the round in flight, so a DuckDB round
# also ends after ROUND_SECONDS: 900 pages when the API answers fast, about 300 at 1 request/s
# (as before). Warehouses that bill per statement or cap load jobs per table (Snowflake bills
# warehouse time, 60 s minimum each time it resumes; BigQuery bytes scanned per MERGE, 10 MB
# minimum per table read, and 1,500 load jobs per table a day) get longer rounds, by pages only.
LOCAL_ROUND_PAGES = 300
DUCKDB_ROUND_PAGES = 900
ROUND_SECONDS = 300.0
PER_STATEMENT_WAREHOUSES = ("snowflake", "bigquery", "databricks", "redshift", "synapse",
                            "athena", "clickhouse")
WAREHOUSE_ROUND_PAGES = 600


def round_pages_for(destination: str, configured: int | None, window_pages: int) -> int:
    """Pages one round (one load and merge per table) may fetch: ``configured`` when set, else
    by destination (see PER_STATEMENT_WAREHOUSES); never fewer than a window's."""
    if configured is not None:
        return configured
    if destination in PER_STATEMENT_WAREHOUSES:
        return max(WAREHOUSE_ROUND_PAGES, window_pages)
    if destination == "duckdb":
        return max(DUCKDB_ROUND_PAGES, window_pages)
    return max(LOCAL_ROUND_PAGES, window_pages)


def round_seconds_for(destination: str, configured_pages: int | None) -> float | None:
    """How long a round may fetch: ROUND_SECONDS for DuckDB's own round size, else no limit (a
    configured size, and a warehouse's merge count, are by pages)."""
    return ROUND_SECONDS if destination == "duckdb" and configured_pages is None else None


@dataclass
class RoundBudget:
    """The page budget of one round; ``more`` says a stream had to stop for it. Shared by the
    streams walked at once (see ``lanes``): a page is taken before it is requested, under a
    lock, so the round never fetches more than ``pages`` whatever the threads. With
    ``seconds``, the budget is also spent once the round has fetched for that long."""

    pages: int = UNLIMITED
    spent: int = 0
    more: bool = False
    seconds: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _started: float = field(default=0.0, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._started = self.clock()  # a round begins when the budget is made, or new_round

    def new_round(self) -> None:
        with self._lock:
            self.spent = 0
            self.more = False
            self._started = self.clock()

    def take(self) -> bool:
        """Books one page (to start or continue a window) in this round; False, and the sync
        needs another round, once the budget is spent."""
        with self._lock:
            in_time = self.seconds is None or self.clock() - self._started < self.seconds
            if self.spent < self.pages and in_time:
                self.spent += 1
                return True
            self.more = True
            return False

    def spend(self, pages: int = 1) -> None:
        """Counts pages fetched without booking (a window read again after a refused cursor)."""
        with self._lock:
            self.spent += pages


@dataclass
class SurveyIndex:
    """The survey list, read once per sync: it is the surveys table and the index of the
    response streams. ``listed`` holds the well-formed surveys, ``rejected`` the quarantined
    ones, ``indexed`` every survey with an id (a quarantined survey still has responses)."""

    listed: list[dict[str, Any]] | None = None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    indexed: list[dict[str, Any]] = field(default_factory=list)
    emitted_by: set[str] = field(default_factory=set)
    # The list read again at the end of a long sync (``relist``): loaded, not tracked for
    # deletions (the sync's first list was, and its marks follow from that).
    relisted: bool = False
    # Surveys found gone (404) while their responses were read: not asked again this sync.
    gone: set[str] = field(default_factory=set)
    # The list is read ahead in a thread of its own (``prefetch_survey_list``): a resource
    # asking for it waits for that read, and gets its error if it failed.
    reading: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    failure: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def read(self) -> bool:
        return self.listed is not None

    def first_emit(self, resource: str) -> bool:
        """True the first time ``resource`` asks: what comes from the list is emitted in one
        round only."""
        if resource in self.emitted_by:
            return False
        self.emitted_by.add(resource)
        return True


# Where an explicit re-read keeps its windows in a resource's state, apart from the incremental
# ones (which it must not move).
REREAD = "reread"


@dataclass
class WindowStates:
    """Where a stream keeps its windows: its dlt resource state; for an explicit re-read
    (``reread``: its range), a slot of that state of its own (``REREAD``), which the incremental
    windows never see.

    The slots are checkpointed with each round, as the incremental windows are: a re-read
    killed or failed part-way, run again with the same range within ``RESUME_WITHIN``, goes on
    with that re-read (``origin``) from its last round instead of starting over (one longer
    than a scheduler's time limit never ended), each resource's slot, finished or not, where
    it was. Once the sync has loaded its every round, the slots of the resources it read are
    marked done (``finish``, loaded at once: another worker, or a fresh runner, would take the
    re-read for unfinished and read nothing): the same range asked again is read again from
    its start, and the next incremental sync drops the slots once all are done.

    Attributes:
        reread: The explicit range, as asked (``start|end``, ``start|now`` without an end);
            None for an incremental sync.
        origin: The re-read this sync starts or goes on with: a slot of another is replaced.
        begun: When that re-read began (ISO 8601).
        resumed: This sync goes on with a re-read begun by an earlier one.
        resources: The resources this sync reads: only their slots are marked done.
        drop_slots: An incremental sync drops the re-read slots (all done).
    """

    reread: str | None = None
    origin: str = field(default_factory=lambda: uuid.uuid4().hex)
    begun: str = ""
    resumed: bool = False
    resources: tuple[str, ...] = ()
    drop_slots: bool = False

    @property
    def explicit(self) -> bool:
        return self.reread is not None

    def for_stream(self, resource_state: dict[str, Any], key: str) -> dict[str, Any]:
        if self.reread is None:
            if self.drop_slots:
                resource_state.pop(REREAD, None)
            return resource_state.setdefault(key, {})
        return self._slot(resource_state).setdefault(key, {})

    def finish(self, resources: dict[str, Any]) -> None:
        """Every round of the sync loaded (``resources``: ``{resource: state}``, the pipeline
        state's, changed in place): its re-read is done for the resources it read."""
        for name in self.resources:
            if slot := self.read_so_far(resources.get(name) or {}):
                slot["done"] = True

    def read_so_far(self, resource_state: dict[str, Any]) -> dict[str, Any]:
        """The resource's slot of this sync's re-read as the state holds it, else {}."""
        slot = resource_state.get(REREAD)
        ours = isinstance(slot, dict) and (slot.get("range"), slot.get("origin")) == (
            self.reread, self.origin)
        return slot if ours else {}

    def _slot(self, resource_state: dict[str, Any]) -> dict[str, Any]:
        slot = self.read_so_far(resource_state)
        if not slot:
            slot = resource_state[REREAD] = {"range": self.reread, "origin": self.origin,
                                             "started": self.begun}
        return slot


# A re-read stopped longer ago is started anew: what it had read may have changed quietly
# since (no new updated_at), which only reading it again shows.
RESUME_WITHIN = timedelta(days=7)


def reread_slots(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """The re-read slots in the resources' states (``{resource: state}``)."""
    return [state[REREAD] for state in resources.values()
            if isinstance(state, dict) and isinstance(state.get(REREAD), dict)]


def plan_windows(resources: dict[str, Any], reread: str | None, now: datetime,
                 chosen: Iterable[str]) -> WindowStates:
    """Where this sync's streams keep their windows, from the resources' states as the sync
    begins (``{resource: state}``) and the resources it reads (``chosen``): an explicit
    ``reread`` goes on with a re-read of the same range that one of them has not finished,
    begun within ``RESUME_WITHIN``, else starts one; an incremental sync drops the slots once
    all are done."""
    if reread is None:  # an unfinished re-read begun too long ago will not be gone on with
        return WindowStates(drop_slots=all(slot.get("done") or not _resumable(slot, now)
                                           for slot in reread_slots(resources)))
    chosen = tuple(chosen)
    unfinished = [
        slot for slot in reread_slots({name: resources.get(name) for name in chosen})
        if slot.get("range") == reread and not slot.get("done") and _resumable(slot, now)]
    if not unfinished:
        return WindowStates(reread=reread, begun=format_timestamp(now), resources=chosen)
    stopped = max(unfinished, key=resumable_until)
    return WindowStates(reread=reread, origin=str(stopped.get("origin")),
                        begun=str(stopped.get("started")), resumed=True, resources=chosen)


def resumable_until(slot: dict[str, Any]) -> datetime | None:
    """Until when the same command goes on with the re-read ``slot`` is part of
    (``RESUME_WITHIN`` after it began); None when when it began is unreadable (never)."""
    try:
        return parse_timestamp(slot["started"]) + RESUME_WITHIN
    except (KeyError, TypeError, ValueError):
        return None


def _resumable(slot: dict[str, Any], now: datetime) -> bool:
    until = resumable_until(slot)
    return until is not None and now <= until


def reread_range(start: datetime, end: datetime | None) -> str:
    """An explicit range as ``WindowStates.reread`` names it; ``end`` None: up to now (a range
    without an end goes on where it stopped, up to the new now)."""
    return f"{format_timestamp(start)}|{format_timestamp(end) if end else 'now'}"


@dataclass
class ExtractTally:
    """What the extract counted: records quarantined, streams that ran a deep pass, and the
    records only the deep pass found. Streams walked at once count through ``add``.

    Records are counted by key, once per sync: a page can be read twice (a window read again
    after a refused cursor, a window's first pages read again by its slices, the overlap
    around a cut or a window bound), and a record read twice is still one record."""

    deep_streams: set[str] = field(default_factory=set)
    rejected_keys: set[str] = field(default_factory=set)
    deep_keys: set[tuple] = field(default_factory=set)
    returned: set[Any] = field(default_factory=set)
    # The deep pass's records older than the plain lookback, by table, not looked up yet.
    deep_older: dict[str, dict[Any, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def rejected(self) -> int:
        return len(self.rejected_keys)

    @property
    def deep_found(self) -> int:
        return len(self.deep_keys)

    def add(self, rejected: Iterable[str] = (), deep_found: Iterable[tuple] = (),
            deep_stream: str | None = None, returned: Iterable[Any] = ()) -> None:
        """Counts, from any of the threads walking streams: the ``record_key`` of records
        quarantined, the ``(table, id, updated_at)`` of those the deep pass found, the surveys
        back upstream whose responses are read again."""
        with self._lock:
            self.rejected_keys.update(rejected)
            self.deep_keys.update(deep_found)
            if deep_stream is not None:
                self.deep_streams.add(deep_stream)
            self.returned.update(returned)


    def deep_candidates(self, table: str, older: dict[Any, Any]) -> None:
        """Records a deep pass read from before the plain lookback (``{id: updated_at}``)."""
        if older:
            with self._lock:
                self.deep_older.setdefault(table, {}).update(older)

    def look_up_deep(self, table: str, known_versions: KnownVersions | None) -> None:
        """Counts, of ``table``'s deep candidates, those the destination does not hold in that
        version: once a resource's round is read, before its load. One lookup per table and
        round (a thousand ids a query): per page, it was a query and a connection each, on
        Snowflake and BigQuery a billed statement each, 4x an hourly sync's on deep days."""
        with self._lock:
            older = self.deep_older.pop(table, {})
        if known_versions is None or not older:
            return
        ids = list(older)
        for start in range(0, len(ids), LOOKUP_IDS):
            chunk = ids[start:start + LOOKUP_IDS]
            # By the id's text: the API may send "10001" for the 10001 the destination holds.
            known = {str(rid): version for rid, version in known_versions(table, chunk).items()}
            self.add(deep_found=[(table, rid, older[rid]) for rid in chunk
                                 if known.get(str(rid)) != older[rid]])


LOOKUP_IDS = 1000

# ``{id: updated_at}`` the destination holds for a table and ids (the deep pass asks).
KnownVersions = Callable[[str, list], dict]
