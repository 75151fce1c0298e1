"""``--reconcile``: find records erased upstream (a respondent's erasure request, a removed
device) that no incremental read can see, and mark them in the destination.

The API says nothing about deletions, so the only evidence is absence: every id of every
stream is listed (one whole-history window per stream, paged to its end) and the destination's
rows that are not in the listing get ``deleted_at``; marked rows that are listed again are
unmarked. Responses of surveys gone from the survey list are left to the survey marks.
Its cost is one request per page of each stream, shown beforehand by ``--dry-run --reconcile``.

A record changed while the listing runs can move past the cursor (where the server sorts by
time, newest first, to a page already read) and be in no page: before a stream's rows are
marked, what that stream changed since the reconcile began is listed too (one request per
stream where something seems gone, see ``listing``), and what it names is no deletion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dlt

from .client import MicrometricsClient
from .errors import ApiError, survey_gone
from .listing import changed_since, listed_ids
from .marks import MarkCounts, Marker, chunks, in_list, timestamp_literal
from .orphans import forget_returned
from .timeutil import CLOCK_SKEW, format_timestamp
from .windows import Window, listing_window

log = logging.getLogger("micrometrics")


@dataclass
class ReconcileReport:
    """What a reconcile listed, marked and unmarked, and the requests it took."""

    requests: int = 0
    listed: dict[str, int] = field(default_factory=dict)
    marks: MarkCounts = field(default_factory=MarkCounts)


def reconcile(
    client: MicrometricsClient,
    pipeline: dlt.Pipeline,
    now: datetime,
    resources: tuple[str, ...] = ("devices", "survey_responses"),
) -> ReconcileReport:
    """List every id of the selected streams and mark the destination accordingly."""
    report = ReconcileReport()
    started, began = client.stats.requests, client.now()
    window = listing_window(now)
    # A row changed once the listings began may be in none of them (another machine's sync
    # of this dataset loaded it meanwhile: a live response was marked, until a later sync
    # re-read it): only rows changed before this sync, by a clock the API's may differ from by
    # CLOCK_SKEW, are marked; a later reconcile marks the others if they are gone.
    settled = timestamp_literal(format_timestamp(now - CLOCK_SKEW))
    listings: dict[str, tuple[str, set[Any]]] = {}
    if "devices" in resources:
        listings["devices"] = ("1 = 1", listed_ids(client, "/devices", window, False))
    if "survey_responses" in resources:
        surveys = listed_ids(client, "/surveys", window, False)
        responses: set[Any] = set()
        listed_surveys = []
        for survey_id in sorted(surveys, key=repr):
            try:
                responses |= listed_ids(client, f"/surveys/{survey_id}/responses", window,
                                        False)
                listed_surveys.append(survey_id)
            except ApiError as exc:
                if not survey_gone(exc):
                    raise  # a refused cursor is no survey gone (its erasures would go unmarked)
                log.warning("warning: reconcile: survey %s no longer exists (404)", survey_id)
        if listed_surveys:
            listings["survey_responses"] = (in_list("survey_id", listed_surveys), responses)
    when = format_timestamp(now)
    with pipeline.sql_client() as sql:
        marker = Marker(sql)
        for table, (scope, ids) in listings.items():
            report.listed[table] = len(ids)
            rows = marker.ids(table, scope)
            changed_before = {i for i, _mark in marker.ids(
                table, f"({scope}) AND updated_at < {settled}")}
            # As text: an id the API sends as "123" is the table's 123 (marked live rows).
            listed = {str(i) for i in ids}
            gone = [i for i, mark in rows
                    if mark is None and str(i) not in listed and i in changed_before]
            if gone:
                listed |= changed_meanwhile(client, marker, table, gone,
                                            changed_since(began, window))
            # Recorded for a device erased unseen and listed again: the next sync reads it.
            back = forget_returned(pipeline, marker, listed) if table == "devices" else set()
            marker.mark(table, "id", [i for i in gone if str(i) not in listed], when)
            marker.unmark(table, "id", [i for i, mark in rows if mark is not None
                                        and str(i) in listed and str(i) not in back])
    report.marks = marker.counts
    report.requests = client.stats.requests - started
    return report


def changed_meanwhile(client: MicrometricsClient, marker: Marker, table: str, gone: list[Any],
                      since: Window) -> set[str]:
    """Ids (as text) the streams of the rows ``gone`` from ``table``'s listing list in
    ``since``: changed while they were listed."""
    if table == "devices":
        paths = ["/devices"]
    else:
        qualified = marker.table(table)
        surveys: set[Any] = set()
        for part in chunks(gone):
            surveys |= {row[0] for row in marker.client.execute_sql(
                f"SELECT DISTINCT survey_id FROM {qualified} WHERE {in_list('id', part)}") or []}
        paths = [f"/surveys/{survey_id}/responses" for survey_id in sorted(surveys, key=repr)]
    found: set[str] = set()
    for path in paths:
        try:
            found |= {str(i) for i in listed_ids(client, path, since, False)}
        except ApiError as exc:
            if not survey_gone(exc):
                raise
    return found


def pages_of(rows: int, page_size: int) -> int:
    """Requests to list ``rows`` records: one per page, and one for an empty stream."""
    return max(1, -(-rows // page_size))


def reconcile_estimate(pipeline: dlt.Pipeline, page_size: int) -> tuple[int, list[str]]:
    """Requests a reconcile would make, from the rows the destination holds (no API request):
    one per page of devices, of the survey list and of each live survey's responses."""
    per_survey: dict[Any, int] = {}
    with pipeline.sql_client() as sql:
        marker = Marker(sql)
        devices = len(marker.ids("devices"))
        surveys_table = marker.table("surveys")
        for (survey_id,) in (sql.execute_sql(
                f"SELECT id FROM {surveys_table} WHERE deleted_at IS NULL") or []
                if surveys_table else []):
            per_survey[survey_id] = 0
        responses_table = marker.table("survey_responses")
        for survey_id, rows in (sql.execute_sql(
                f"SELECT survey_id, COUNT(*) FROM {responses_table} GROUP BY survey_id") or []
                if responses_table else []):
            if survey_id in per_survey:
                per_survey[survey_id] = int(rows)
    response_pages = sum(pages_of(n, page_size) for n in per_survey.values())
    total = pages_of(devices, page_size) + pages_of(len(per_survey), page_size) + response_pages
    line = (f"reconcile: about {total} requests (devices {pages_of(devices, page_size)}, "
            f"survey list {pages_of(len(per_survey), page_size)}, responses of "
            f"{len(per_survey)} surveys {response_pages}; {page_size} records a page)")
    return total, [line]
