"""The ``micrometrics`` dlt source: devices, surveys and survey responses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource

from .client import MicrometricsClient
from .deletions import track_survey_list
from .errors import ApiError, CursorRejectedError
from .quarantine import as_rejected, split_records
from .questions import question_history
from .rounds import SyncRun
from .settings import Settings, load_settings
from .timeutil import format_timestamp, parse_timestamp
from .windows import StreamWindows, Window

log = logging.getLogger("micrometrics")

TIMESTAMP_HINTS: dict[str, Any] = {
    "created_at": {"data_type": "timestamp"},
    # When overlapping windows deliver a record twice in one load, keep its newest version.
    "updated_at": {"data_type": "timestamp", "dedup_sort": "desc"},
    # Not an API field: set in the destination when a record is found gone upstream (survey
    # list, --reconcile). A record that comes back is merged anew, so it is NULL again.
    "deleted_at": {"data_type": "timestamp", "nullable": True},
}
MERGE = {"disposition": "merge", "strategy": "delete-insert"}
CURSOR_RESTARTS = 2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A response's earliest plausible change: its survey's creation, minus a day of clock slack.
SURVEY_FLOOR_SLACK = timedelta(days=1)


def walk(
    client: MicrometricsClient, path: str, windows: StreamWindows, run: SyncRun, label: str
) -> Iterator[Any]:
    """Yield every page of every window the stream owes, checkpointing each finished window.

    A window is read through to its end whatever its size (records sharing one ``updated_at``
    can't be split into smaller windows). When the round's page budget runs out part-way, the
    cursor of the next page goes to state and the next round resumes from it, so no page is
    read twice. A refused cursor restarts its window, ``CURSOR_RESTARTS`` times at most.
    """
    while (window := windows.next_window()) is not None:
        if not run.may_start_window():
            return
        restarts = 0
        while True:
            cursor, records = windows.resume_cursor()
            params = window.params() | ({"cursor": cursor} if cursor else {})
            pages = rejected_count = 0
            try:
                for page in client.pages(path, params=params):
                    pages += 1
                    run.spend(1)
                    records += len(page)
                    good, rejected = split_records(page, label)
                    if good:
                        count_deep_finds(good, windows, run, label)
                        yield good
                    if rejected:
                        rejected_count += len(rejected)
                        yield as_rejected(rejected)
                    next_cursor = page.paginator.next_cursor
                    if next_cursor:
                        windows.learn_page_size(len(page))
                        if not run.may_continue_window():
                            # Out of budget mid-window: this round's state keeps the cursor.
                            windows.checkpoint(window, next_cursor, records)
                            run.rejected += rejected_count
                            log.info("%s: %s .. %s: %d records so far; continued next round",
                                     label, format_timestamp(window.start),
                                     format_timestamp(window.end), records)
                            return
                break
            except CursorRejectedError:
                # An expired or refused cursor: read this window again from its first page.
                restarts += 1
                if restarts > CURSOR_RESTARTS:
                    raise
                windows.restart()
                run.rejected += rejected_count
                log.warning("warning: %s: the API refused a cursor; reading the window again",
                            label)
        run.rejected += rejected_count
        windows.complete(window, records)
        log.info(
            "%s: %s .. %s: %d records in %d pages",
            label, format_timestamp(window.start), format_timestamp(window.end), records, pages,
        )


def count_deep_finds(
    records: list[dict], windows: StreamWindows, run: SyncRun, label: str
) -> None:
    """In a deep pass, count the records changed before the plain lookback's start that the
    destination does not hold in this version: late uploads the plain lookback missed."""
    below = windows.deep_below
    if below is None:
        return
    run.deep_streams.add(label)
    if run.known_versions is None:
        return
    older = {r["id"]: parse_timestamp(r["updated_at"]) for r in records
             if parse_timestamp(r["updated_at"]) < below}
    if older:
        known = run.known_versions(label.partition("[")[0], list(older))
        run.deep_found += sum(1 for rid, at in older.items() if known.get(rid) != at)


def survey_list(client: MicrometricsClient, settings: Settings, run: SyncRun) -> list[dict]:
    """Every survey, listed once per sync: it is the index of the response streams."""
    if run.surveys is None:
        # Every survey that exists now, even when an explicit range ends earlier: a survey
        # changed since still has responses inside the range.
        # From the epoch whatever start_at says: surveys are dimensions, and a survey last
        # changed before start_at can still receive responses.
        window = Window(EPOCH, max(run.run_end, run.now or run.run_end))
        listed = [s for page in client.pages("/surveys", window.params()) for s in page]
        run.surveys, run.rejected_surveys = split_records(listed, "surveys")
        run.rejected += len(run.rejected_surveys)
        # A survey quarantined for its updated_at still indexes its responses.
        run.response_index = [s for s in listed if isinstance(s, dict) and s.get("id") is not None]
    return run.surveys


@dlt.source(name="micrometrics", section="micrometrics")
def micrometrics_source(
    # Optional so that a caller passing ``settings`` needs none of them; load_settings then
    # names whatever is missing.
    base_url: str | None = dlt.config.value,
    api_key: str | None = dlt.secrets.value,
    api_secret: str | None = dlt.secrets.value,
    start_at: str | None = None,
    settings: Settings | None = None,
    client: MicrometricsClient | None = None,
    run: SyncRun | None = None,
) -> list[DltResource]:
    """Devices, surveys and survey responses of one Micrometrics tenant.

    Args:
        base_url: Tenant base URL (``SOURCES__MICROMETRICS__BASE_URL``).
        api_key: API key (``SOURCES__MICROMETRICS__API_KEY``).
        api_secret: API secret (``SOURCES__MICROMETRICS__API_SECRET``).
        start_at: Where the responses' history starts on the first sync (default
            2000-01-01); devices and surveys are always read in full.
        settings: Pre-validated settings; built from the arguments above when omitted.
        client: A shared client (the sync passes one so stats span rounds).
        run: The sync's round context; a single round up to now when omitted.

    Returns:
        The resources ``devices``, ``surveys`` and ``survey_responses``, each merged on ``id``.
    """
    settings = settings or load_settings(
        base_url=base_url, api_key=api_key, api_secret=api_secret, start_at=start_at
    )
    client = client or MicrometricsClient.from_settings(settings)
    run = run or SyncRun(run_end=datetime.now(UTC), round_pages=10**9)
    window_settings = settings.window_settings(run.start_at if run.explicit_range else None)
    # Devices are dimensions: their history starts at the epoch unless a range is explicit.
    device_windows = window_settings if run.explicit_range else settings.window_settings(EPOCH)
    run_end = run.run_end

    @dlt.resource(name="devices", primary_key="id", write_disposition=MERGE,
                  columns={**TIMESTAMP_HINTS, "timezone": {"data_type": "text"}})
    def devices() -> Iterator[list[dict[str, Any]]]:
        state = run.stream_state(dlt.current.resource_state(), "windows")
        windows = StreamWindows(state, device_windows, run_end)
        yield from walk(client, "/devices", windows, run, "devices")

    @dlt.resource(
        name="surveys", primary_key="id", write_disposition=MERGE, columns=TIMESTAMP_HINTS
    )
    def surveys() -> Iterator[list[dict[str, Any]]]:
        # The full list on every sync: it is small, and it must be complete anyway because it
        # drives the response streams. Emitted in the first round only.
        listed = survey_list(client, settings, run)
        if not run.surveys_emitted:
            run.surveys_emitted = True
            # The list is complete: a survey it no longer names is gone (marked, not dropped).
            track_survey_list(dlt.current.resource_state(),
                              [s["id"] for s in run.response_index], run.now or run.run_end)
            if listed:
                yield listed
            if run.rejected_surveys:
                yield as_rejected(run.rejected_surveys)

    @dlt.resource(
        name="survey_responses",
        primary_key="id",
        write_disposition=MERGE,
        # comment is optional in the API; declared so the column exists even before one comes.
        columns={**TIMESTAMP_HINTS, "comment": {"data_type": "text"}},
        nested_hints={"answers": dlt.mark.make_nested_hints(
            # nps and rating answers are numbers, text and choice are strings: one text column,
            # typed per question in the staging models.
            columns=[{"name": "value", "data_type": "text"}]
        )},
    )
    def survey_responses() -> Iterator[list[dict[str, Any]]]:
        per_survey = run.stream_state(dlt.current.resource_state(), "surveys")
        survey_list(client, settings, run)
        for survey in run.response_index:
            floor = survey_floor(survey)
            state = per_survey.setdefault(str(survey["id"]), {})
            windows = StreamWindows(state, window_settings, run_end, floor=floor)
            label = f"survey_responses[{survey['id']}]"
            try:
                yield from walk(client, f"/surveys/{survey['id']}/responses", windows, run,
                                label)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # Deleted since the list was read: what was loaded stays; the next sync's list
                # will not name it again.
                log.warning("warning: %s: the survey no longer exists (404); skipped", label)

    def listed_surveys() -> list[dict[str, Any]]:
        survey_list(client, settings, run)
        return run.response_index  # quarantined surveys with an id too: their questions count

    survey_questions = question_history(listed_surveys, run)

    return [devices, surveys, survey_questions, survey_responses]


def survey_floor(survey: dict[str, Any]) -> datetime | None:
    try:
        return parse_timestamp(survey["created_at"]) - SURVEY_FLOOR_SLACK
    except (KeyError, TypeError, ValueError):
        return None
