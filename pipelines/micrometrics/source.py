"""The ``micrometrics`` dlt source: devices, surveys and survey responses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dlt
from dlt.sources import DltResource

from pipelines.terminal_text import shown

from . import cancel
from .cancel import CancelScope
from .client import MicrometricsClient
from .deletions import TrackedSurveys, reread_returned, track_survey_list
from .errors import ApiError, survey_gone
from .lanes import Lanes
from .listing import whole_listing
from .misfits import ColumnTypes
from .quarantine import as_rejected, id_problem, split_records
from .questions import question_history
from .quiet import plan_reads
from .rounds import (
    UNLIMITED,
    ExtractTally,
    KnownVersions,
    RoundBudget,
    SurveyIndex,
    SyncBounds,
    WindowStates,
    reread_range,
)
from .settings import Settings, load_settings, refuse_future_start
from .source_state import SOURCE_NAME
from .timeutil import format_timestamp, parse_timestamp
from .unchanged_surveys import LoadedSurveys, UnchangedSurveys
from .walk import StreamRead, walk
from .windows import EPOCH, StreamWindows, listing_window

log = logging.getLogger("micrometrics")

TIMESTAMP_HINTS: dict[str, Any] = {
    "created_at": {"data_type": "timestamp"},
    # When overlapping windows deliver a record twice in one load, keep its newest version.
    "updated_at": {"data_type": "timestamp", "dedup_sort": "desc"},
    # Not an API field: set in the destination when a record is found gone upstream (survey
    # list, --reconcile). A record that comes back is merged anew, so it is NULL again.
    "deleted_at": {"data_type": "timestamp", "nullable": True},
}
DEVICE_HINTS = {**TIMESTAMP_HINTS, "timezone": {"data_type": "text"}}
RESPONSE_HINTS = {**TIMESTAMP_HINTS, "comment": {"data_type": "text"}}
MERGE = {"disposition": "merge", "strategy": "delete-insert"}
# A response's earliest plausible change: its survey's creation, minus a day of clock slack.
SURVEY_FLOOR_SLACK = timedelta(days=1)


def read_survey_list(
    client: MicrometricsClient, bounds: SyncBounds, index: SurveyIndex, tally: ExtractTally,
) -> SurveyIndex:
    """Every survey, listed once per sync: it is the index of the response streams. Asked for
    once, also when it failed: the resources that ask next get the same error."""
    with index.reading:
        _read_once(client, bounds, index, tally)
        if index.failure is not None:
            raise index.failure
        return index


def prefetch_survey_list(
    client: MicrometricsClient, bounds: SyncBounds, index: SurveyIndex, tally: ExtractTally,
) -> CancelScope:
    """Starts reading the survey list in a thread, so that its answer comes while dlt prepares
    the first round (state, schema, destination: 0.5-1 s); the resources that need the list
    wait for it, and a failure is raised in them (``read_survey_list``). Returns the read's
    scope: a sync that fails cancels it, so that no request of it goes out after the failure
    (a next sync's bucket would know nothing of them, and draw 429s)."""
    holding, stop = threading.Event(), CancelScope()

    def read() -> None:
        with cancel.scope(stop), index.reading:
            holding.set()
            _read_once(client, bounds, index, tally)

    threading.Thread(target=read, name="survey-list", daemon=True).start()
    holding.wait()  # the lock is the thread's before any resource asks for the list
    return stop


def _read_once(
    client: MicrometricsClient, bounds: SyncBounds, index: SurveyIndex, tally: ExtractTally,
) -> None:
    """Reads the list into ``index`` unless it was read or failed; a failure is kept there (to
    be raised where the list is asked for). Called holding ``index.reading``."""
    if index.read or index.failure is not None:
        return
    try:
        # Every survey that exists now, even when an explicit range ends earlier: a survey
        # changed since still has responses inside the range.
        # From the epoch whatever start_at says: surveys are dimensions, and a survey last
        # changed before start_at can still receive responses.
        window = listing_window(max(bounds.run_end, bounds.now))
        listed = once_each(whole_listing(client, "/surveys", window))
        index.listed, index.rejected = split_records(listed, "surveys")
        tally.add(rejected=[row["record_key"] for row in index.rejected])
        # A survey quarantined for its updated_at still indexes its responses; one whose id
        # is no integer does not (its responses, its questions' history and the retiring of
        # its versions all go by that id, where a warehouse takes only an integer).
        index.indexed = [s for s in listed if isinstance(s, dict) and s.get("id") is not None
                         and id_problem(s["id"], integer=True) is None]
    except BaseException as exc:  # noqa: BLE001 - kept, raised by read_survey_list
        index.failure = exc


def once_each(surveys: list[Any]) -> list[Any]:
    """The list with each survey id once (compared as text), the last one listed kept: two
    entries of one survey (a list read while it changed, or a server's repeat) walked its
    responses twice at once, over one state, and failed every sync."""
    by_id: dict[str, Any] = {}
    others = []
    for survey in surveys:
        if isinstance(survey, dict) and survey.get("id") is not None:
            key = str(survey["id"])
            if key in by_id:
                log.warning("warning: the survey list named survey %s more than once; it is "
                            "read once", shown(survey["id"]))
            by_id[key] = survey
        else:
            others.append(survey)  # quarantined as they are
    return [*by_id.values(), *others]


def forget_gone(per_survey: dict[str, Any], listed: set[str]) -> None:
    """Drop the response state of the surveys the full list no longer names: their windows,
    deep pass and any backfill a sync had open when they went. Kept, it grew the state stored
    with every load, and status listed each as a stream, its backfill open for ever. One that
    comes back is read from its start (``deletions.reread_returned``)."""
    for survey_id in [key for key in per_survey if key not in listed]:
        del per_survey[survey_id]


@dlt.source(name=SOURCE_NAME, section="micrometrics")
def micrometrics_source(
    # Optional so that a caller passing ``settings`` needs none of them; load_settings then
    # names whatever is missing.
    base_url: str | None = dlt.config.value,
    api_key: str | None = dlt.secrets.value,
    api_secret: str | None = dlt.secrets.value,
    start_at: str | None = None,
    settings: Settings | None = None,
    client: MicrometricsClient | None = None,
    bounds: SyncBounds | None = None,
    budget: RoundBudget | None = None,
    survey_index: SurveyIndex | None = None,
    window_states: WindowStates | None = None,
    tally: ExtractTally | None = None,
    known_versions: KnownVersions | None = None,
    deletions_before: TrackedSurveys | None = None,
    loaded_surveys: LoadedSurveys | None = None,
) -> list[DltResource]:
    """Devices, surveys (with their question history) and survey responses of one tenant.

    Alone, ``pipeline.run(micrometrics_source())`` is one round up to now: exact and
    incremental, but it gives up what ``pipelines.micrometrics.sync`` adds around it: no
    checkpoint inside the round (dlt saves state only after a whole extract, so a crash loses
    the whole backfill read so far, and a window cut by ``budget`` is continued only by another
    run), no loading of packages a killed run left before extracting (dlt's ``run`` would load
    them and extract nothing), no ``deleted_at`` marks in the destination (surveys gone from the
    list are tracked in state, not marked), no count of what a deep pass found, no reconcile.
    Orchestrators should call ``sync(pipeline)`` instead.

    Args:
        base_url: Tenant base URL (``SOURCES__MICROMETRICS__BASE_URL``).
        api_key: API key (``SOURCES__MICROMETRICS__API_KEY``).
        api_secret: API secret (``SOURCES__MICROMETRICS__API_SECRET``).
        start_at: Where the responses' history starts on the first sync (default
            2000-01-01); devices and surveys are always read in full.
        settings: Pre-validated settings; built from the arguments above when omitted.
        client: A shared client (the sync passes one so stats span rounds).
        bounds: The sync's time bounds (default: up to now, incremental).
        budget: The round's page budget (default: unlimited, one round).
        survey_index: The survey list shared by the rounds of one sync.
        window_states: Where windows are kept (a slot apart for an explicit re-read).
        tally: Counters for the summary.
        known_versions: Destination lookup the deep pass uses to count what it found.
        deletions_before: The surveys gone, and seen back, as the sync began, when it
            tracks the survey list (``surveys`` selected): one listed has its responses read
            again from its start (``deletions.reread_returned``); and a full refresh of
            ``surveys``, which drops the state where they are tracked, tracks them on.
        loaded_surveys: Destination lookup of the loaded surveys' ``updated_at``: a listed
            survey loaded as it is listed is not loaded again, nor are its questions
            (``unchanged_surveys``); without it, the whole list is loaded.

    Returns:
        ``devices``, ``surveys``, ``survey_questions`` (scd2 history) and
        ``survey_responses``; the others merged on ``id``.
    """
    settings = settings or load_settings(
        base_url=base_url, api_key=api_key, api_secret=api_secret, start_at=start_at
    )
    client = client or MicrometricsClient.from_settings(settings)
    now = datetime.now(UTC)
    bounds = bounds or SyncBounds(run_end=now, now=now)
    refuse_future_start(settings.start_at, bounds.now, "the source's clock")
    budget = budget or RoundBudget(UNLIMITED)
    index = survey_index or SurveyIndex()
    states = window_states or WindowStates(
        reread=reread_range(bounds.start_at or settings.start_at, bounds.run_end)
        if bounds.explicit_range else None, begun=format_timestamp(bounds.now))
    tally = tally or ExtractTally()
    window_settings = settings.window_settings(
        bounds.start_at if bounds.explicit_range else None)
    # Devices are dimensions: their history starts at the epoch unless a range is explicit.
    device_windows = (window_settings if bounds.explicit_range
                      else settings.window_settings(EPOCH))
    run_end = bounds.run_end
    # Streams are walked at once; at most max_in_flight of their requests are in flight.
    lanes = Lanes(settings.max_in_flight)
    client.limit_in_flight(settings.max_in_flight)
    known_versions = serialized(known_versions)
    unchanged = UnchangedSurveys(loaded_surveys, settings.deep_every, bounds.now)

    def surveys_listed() -> SurveyIndex:
        return read_survey_list(client, bounds, index, tally)

    @dlt.resource(name="devices", primary_key="id", write_disposition=MERGE,
                  columns=DEVICE_HINTS)
    def devices() -> Iterator[list[dict[str, Any]]]:
        state = states.for_stream(dlt.current.resource_state(), "windows")
        windows = StreamWindows(state, device_windows, run_end)
        # Not sliced (no lanes given): the devices' walk starts before the survey list is
        # read, when "at most one other stream unfinished" would miss every survey's.
        read = StreamRead(client, "/devices", windows, budget, tally, "devices",
                          known_versions, types=column_types("devices", DEVICE_HINTS))
        yield from lanes.run([partial(walk, read)], let_others_start=True)
        tally.look_up_deep("devices", known_versions)

    @dlt.resource(
        name="surveys", primary_key="id", write_disposition=MERGE, columns=TIMESTAMP_HINTS
    )
    def surveys() -> Iterator[list[dict[str, Any]]]:
        types = column_types("surveys", TIMESTAMP_HINTS)
        # The full list on every sync: it must be complete because it drives the response
        # streams and shows deletions; loaded, but for the surveys loaded as they are listed.
        # Emitted in the first round only.
        listing = surveys_listed()
        if listing.first_emit("surveys"):
            # The list is complete: a survey it no longer names is gone (marked, not dropped).
            if not listing.relisted:
                track_survey_list(dlt.current.resource_state(),
                                  [s["id"] for s in listing.indexed], bounds.now,
                                  deletions_before)
            if to_load := unchanged.keep(listing.listed or []):
                yield types.route(to_load)
            if listing.rejected:
                yield as_rejected(listing.rejected)

    @dlt.resource(
        name="survey_responses",
        primary_key="id",
        write_disposition=MERGE,
        # comment is optional in the API; declared so the column exists even before one comes.
        columns=RESPONSE_HINTS,
        nested_hints={"answers": dlt.mark.make_nested_hints(
            # nps and rating answers are numbers, text and choice are strings: one text column,
            # typed per question in the staging models.
            columns=[{"name": "value", "data_type": "text"}]
        )},
    )
    def survey_responses() -> Iterator[list[dict[str, Any]]]:
        types = column_types("survey_responses", RESPONSE_HINTS)  # one for every survey's
        per_survey = states.for_stream(dlt.current.resource_state(), "surveys")
        # The sync's plan of which surveys to read (quiet ones less often) is kept beside them.
        plans = states.for_stream(dlt.current.resource_state(), "reads")

        def streams() -> Iterator[partial[Iterator[Any]]]:
            """One walk per survey, read here (the state dicts are dlt's, in this thread)."""
            listed = surveys_listed().indexed
            persistent = dlt.current.resource_state().setdefault("surveys", {})
            forget_gone(persistent, {str(s["id"]) for s in listed})
            # In the incremental stream state (an explicit range reads windows apart): the
            # next sync that follows the incremental state reads them again.
            returned = [] if deletions_before is None else reread_returned(
                {s["id"] for s in listed}, persistent, deletions_before)
            tally.add(returned=returned)
            for survey_id in returned:
                log.info("survey_responses[%s]: listed again after it was gone; its responses "
                         "are read again from its start", survey_id)
            for survey in plan_reads(listed, per_survey, plans, bounds.now,
                                     settings.quiet_survey if not bounds.explicit_range
                                     else timedelta(0)):
                if str(survey["id"]) in index.gone:
                    continue
                floor = survey_floor(survey)
                state = per_survey.setdefault(str(survey["id"]), {})
                windows = StreamWindows(state, window_settings, run_end, floor=floor)
                yield partial(read_responses, survey["id"], windows)

        def read_responses(survey_id: Any, windows: StreamWindows) -> Iterator[Any]:
            label = f"survey_responses[{survey_id}]"
            try:
                yield from walk(StreamRead(client, f"/surveys/{survey_id}/responses", windows,
                                           budget, tally, label, known_versions, lanes, types))
            except ApiError as exc:
                if not survey_gone(exc):
                    raise
                # Deleted since the list was read: what was loaded stays; the next sync's list
                # will not name it again, and no later round of this one asks for it.
                index.gone.add(str(survey_id))
                log.warning("warning: %s: the survey no longer exists (404); skipped", label)

        # The surveys' streams are walked at once, max_in_flight requests in flight.
        yield from lanes.run(streams(), let_others_start=True)
        tally.look_up_deep("survey_responses", known_versions)

    # Quarantined surveys with an id too: their questions type their answers. Not those
    # whose survey is loaded as listed: their versions are the history's already.
    survey_questions = question_history(lambda: surveys_listed().indexed, index, bounds.now,
                                        to_load=unchanged.keep)

    return [devices, surveys, survey_questions, survey_responses]


def column_types(table: str, hints: dict[str, Any]) -> ColumnTypes:
    """``table``'s column types as its resource declares them and the schema has them as this
    extract starts (``misfits``); called in the resource, where dlt names the schema."""
    columns = dlt.current.source_schema().tables.get(table, {}).get("columns", {})
    return ColumnTypes(hints, columns)


def serialized(known_versions: KnownVersions | None) -> KnownVersions | None:
    """``known_versions`` callable from the threads walking streams, one call at a time (it
    opens a client of the destination)."""
    if known_versions is None:
        return None
    lock = threading.Lock()

    def locked(table: str, ids: list) -> dict:
        with lock:
            return known_versions(table, ids)

    return locked


def survey_floor(survey: dict[str, Any]) -> datetime | None:
    try:
        return parse_timestamp(survey["created_at"]) - SURVEY_FLOOR_SLACK
    except (KeyError, TypeError, ValueError):
        return None
