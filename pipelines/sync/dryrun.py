"""``--dry-run``: the plan from local pipeline state, without a single data request."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

from pipelines.micrometrics.pending import pending_load_ids
from pipelines.micrometrics.quiet import choose_skipped, new_in_last_plan
from pipelines.micrometrics.reconcile import reconcile_estimate
from pipelines.micrometrics.rounds import plan_windows, reread_range
from pipelines.micrometrics.settings import ASSUMED_PAGE_SIZE, Settings
from pipelines.micrometrics.source_state import resource_states
from pipelines.micrometrics.throttle import DEFAULT_BURST, DEFAULT_RATE
from pipelines.micrometrics.windows import EPOCH, StreamWindows
from pipelines.text_lists import SHOWN_LINES

from .options import SyncOptions, make_pipeline
from .summary import floor_seconds


def describe_plan(settings: Settings, options: SyncOptions, now: datetime | None = None,
                  verbose: bool = False) -> str:
    """Streams, what each owes, estimated requests and the least time the rate limit allows;
    ``now``: the sync's clock (default this machine's); ``verbose``: a line for every survey
    (else the first ``SHOWN_LINES``, those to read first)."""
    pipeline = make_pipeline(options)
    states = {} if options.full_refresh else resource_states(pipeline.state)
    now = now or datetime.now(UTC)
    run_end = options.end_at or now
    explicit = options.explicit_range
    # A re-read of the same range stopped part-way goes on from where it stopped.
    reread = reread_range(options.start_at or settings.start_at, options.end_at) \
        if explicit else None
    read_so_far = plan_windows(states, reread, now, options.resources).read_so_far
    windows = settings.window_settings(options.start_at if explicit else None)
    device_windows = windows if explicit else settings.window_settings(EPOCH)
    lines = [f"plan: {options.destination} dataset {options.dataset!r}, up to "
             f"{run_end.isoformat(timespec='seconds')}"]
    estimate, unknown = 0, False

    def stream(label: str, state: dict[str, Any], settings_=windows,
               into: list[str] = lines) -> None:
        nonlocal estimate, unknown
        walker = StreamWindows(copy.deepcopy(state), settings_, run_end)
        text = walker.describe()
        if text != "up to date":
            estimate += 1
            unknown = unknown or text.startswith(("full", "resume"))
        into.append(f"  {label:<28} {text}")

    if "devices" in options.resources:
        devices = states.get("devices", {})
        stream("devices", (read_so_far(devices) if explicit else devices).get("windows", {}),
               device_windows)
    if "surveys" in options.resources or "survey_responses" in options.resources:
        # A page per page size of surveys last listed, and a list of more than one page also
        # lists what changed while it was paged (``listing``): 21 requests for 2,000 surveys.
        pages = math.ceil(len(states.get("surveys", {}).get("known", [])) / page_size(states))
        list_requests = pages + 1 if pages > 1 else 1
        lines.append(f"  {'surveys':<28} full list (every sync; it indexes the responses): "
                     f"{list_requests} request(s)")
        estimate += list_requests
    if "survey_responses" in options.resources:
        responses = states.get("survey_responses", {})
        # The surveys the last list named (a deleted survey's stream state stays behind).
        tracked = states.get("surveys", {})
        gone = {str(sid) for sid, _when in tracked.get("deleted", [])}
        listed = {str(sid) for sid in tracked.get("known", [])} or set(responses.get("surveys", {}))
        known = {sid: state for sid, state in responses.get("surveys", {}).items()
                 if sid in listed and sid not in gone}
        if gone:
            lines.append(f"  {'survey_responses':<28} {len(gone)} survey(s) gone upstream: "
                         f"not read")
        reads = responses.get("reads", {})
        new = new_in_last_plan(reads)  # new or edited: read every sync, as the sync will
        skipped = {} if explicit else {
            str(s.survey_id): s for s in choose_skipped(
                [{"id": sid, "updated_at": new.get(sid)} for sid in sorted(known)], known,
                reads, run_end, settings.quiet_survey)}
        if explicit:  # not the incremental windows: the re-read's own, if it stopped
            per_survey = read_so_far(responses).get("surveys", {})
            known = {sid: per_survey.get(sid, {}) for sid in known}
        to_read: list[str] = []
        for survey_id, state in sorted(known.items()):
            if survey_id not in skipped:
                stream(f"survey_responses[{survey_id}]", state, into=to_read)
        quiet_lines = [f"  {'survey_responses[' + str(q.survey_id) + ']':<28} skipped: quiet, "
                       f"last read {q.stale.total_seconds() / 3600:.1f} h ago, read by "
                       f"{q.read_by.isoformat(timespec='seconds')}"
                       for q in sorted(skipped.values(), key=lambda q: q.last_read)]
        survey_lines = to_read + quiet_lines
        if not verbose and len(survey_lines) > SHOWN_LINES:
            lines += survey_lines[:SHOWN_LINES]
            more = len(survey_lines) - SHOWN_LINES
            quiet_more = min(more, len(quiet_lines))  # the quiet ones come last
            lines.append(f"  ... and {more} more surveys: {more - quiet_more} to read, "
                         f"{quiet_more} skipped as quiet (--dry-run --verbose lists every one)")
        else:
            lines += survey_lines
        if not known:
            lines.append(f"  {'survey_responses':<28} every survey's full history "
                         "(surveys not known before the first sync)")
            unknown = True
    if options.reconcile and not options.full_refresh:
        reconcile_requests, reconcile_lines = reconcile_estimate(pipeline, page_size(states))
        estimate += reconcile_requests
        lines += ["  " + line for line in reconcile_lines]
    left = pending_load_ids(pipeline)
    if left:
        fate = ("dropped with the local state (the destination's replaces it: the plan above "
                "may read more)" if options.drop_pending else "loaded first")
        lines.append(f"  {len(left)} package(s) a failed or killed sync left: {fate}")
    prefix = "at least " if unknown else "about "
    floor = floor_seconds(estimate, DEFAULT_RATE, DEFAULT_BURST)
    lines.append(
        f"estimated requests: {prefix}{estimate}; least time at {DEFAULT_RATE:g} request/s with "
        f"a burst of {DEFAULT_BURST}: {prefix}{floor:.0f}s"
    )
    if unknown:  # a first read: its size shows only as it is read (the API gives no counts)
        lines.append(f"  a history's size is unknown until it is read: at {DEFAULT_RATE:g} "
                     f"request/s and "
                     f"{ASSUMED_PAGE_SIZE} records a page, about "
                     f"{3600 * ASSUMED_PAGE_SIZE * DEFAULT_RATE:,.0f} records an hour "
                     f"(START_AT limits how far back it goes)")
    lines.append("dry run: no data request was made")
    return "\n".join(lines)


def page_size(states: dict[str, Any]) -> int:
    """The server's page size, once seen (in the window states), else the assumed one."""
    seen = [s["page_size"] for s in page_states(states) if s.get("page_size")]
    return max(seen) if seen else ASSUMED_PAGE_SIZE


def page_states(states: dict[str, Any]) -> list[dict[str, Any]]:
    """Window states of every stream (they hold the page size the server was seen to use)."""
    found = [states.get("devices", {}).get("windows", {})]
    found += list(states.get("survey_responses", {}).get("surveys", {}).values())
    return [state for state in found if isinstance(state, dict)]
