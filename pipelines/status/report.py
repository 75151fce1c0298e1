"""The status report: per stream, where it stands; the last syncs; freshness.

Built from a pipeline state (see ``snapshot``) as plain data, for the text and ``--json``.

Per stream (devices, and each survey's responses), from its window state (``windows``):
``high_water`` (every change up to it is extracted: it is the end of the last range read to its
end), ``newest_record`` (the newest ``updated_at`` the stream has returned), ``deep_at`` (when
the last deep pass, or the first full read, began), and an open backfill: a range not walked to
its end yet (``pending``: the next sync continues it, from the cursor of a window read
part-way when there is one). Apart from them, explicit re-reads stopped part-way
(``stopped_rereads``), which only the same command continues.

Freshness (``data_as_of``): the start of the last successful complete sync the command recorded
(exit 0 or 4, every resource, not an explicit ``--start-at``/``--end-at`` re-read), or, when
newer, the oldest high-water mark among the streams the last sync was to read (for syncs run
through the library, which record nothing): the destination holds every change made before it.
A ``--full-refresh`` that failed since the last success leaves only the high-water marks.
Quiet surveys the last sync skipped on purpose and surveys gone from the list do not count
(their own staleness is listed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipelines.micrometrics.quiet import skipped_surveys
from pipelines.micrometrics.rounds import REREAD, resumable_until
from pipelines.micrometrics.source_state import resource_states
from pipelines.micrometrics.timeutil import format_timestamp, parse_timestamp
from pipelines.sync.json_summary import quiet_surveys_json

from .record import REFRESH_FAILED, status_of
from .snapshot import Snapshot


def survey_key(survey_id: str) -> tuple[int, str]:
    return (0, f"{int(survey_id):020d}") if str(survey_id).isdigit() else (1, str(survey_id))


def stream_status(name: str, state: dict[str, Any]) -> dict[str, Any]:
    """One stream's standing, from its window state."""
    pending = state.get("pending")
    backfill = None
    if pending:
        backfill = {
            "from": pending.get("lo"),
            "to": pending.get("hi"),
            "read_down_to": pending.get("next_hi"),
            "window_part_way": bool(pending.get("window")),
            "deep_pass": bool(pending.get("deep_below")),
        }
    return {
        "stream": name,
        "high_water": state.get("high_water"),
        "newest_record": state.get("last_change"),
        "last_deep_pass": state.get("deep_at"),
        "backfill": backfill,
    }


def streams_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Devices, then each survey's responses, in survey id order."""
    resources = resource_states(state)
    streams = []
    devices = resources.get("devices", {}).get("windows")
    if devices is not None:
        streams.append(stream_status("devices", devices))
    per_survey = resources.get("survey_responses", {}).get("surveys", {})
    for survey_id in sorted(per_survey, key=survey_key):
        entry = stream_status(f"survey_responses[{survey_id}]", per_survey[survey_id])
        entry["survey_id"] = survey_id
        streams.append(entry)
    return streams


def survey_list(state: dict[str, Any]) -> dict[str, Any] | None:
    """The survey list (read in full every sync): surveys listed and surveys gone."""
    surveys = resource_states(state).get("surveys")
    if not surveys:
        return None
    return {"listed": len(surveys.get("known", [])),
            "gone": [{"survey_id": sid, "since": when} for sid, when in surveys.get("deleted", [])]}


def stopped_rereads(state: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The explicit ``--start-at``/``--end-at`` re-reads stopped part-way (killed, failed, a
    scheduler's time limit): their range, when they began, the resources they have not
    finished, and until when the same command goes on with them (``RESUME_WITHIN``; past
    that, ``expired``: it starts anew, and the next incremental sync forgets it). No sync but
    that command continues one: unseen, it stayed unfinished."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, resource in resource_states(state).items():
        slot = resource.get(REREAD) if isinstance(resource, dict) else None
        if not isinstance(slot, dict) or slot.get("done") or "|" not in str(slot.get("range")):
            continue
        start, _, end = str(slot["range"]).partition("|")
        entry = found.setdefault((str(slot["range"]), str(slot.get("origin"))), {
            "from": start, "to": None if end == "now" else end, "begun": slot.get("started"),
            "goes_on_until": format_timestamp(until) if (until := resumable_until(slot)) else None,
            "expired": until is not None and until < now, "unfinished": []})
        entry["unfinished"].append(name)
    return sorted(found.values(), key=lambda entry: str(entry["begun"]))


def newest(values: list[str | None]) -> str | None:
    stamps = [parse_timestamp(value) for value in values if value]
    return format_timestamp(max(stamps)) if stamps else None


def data_as_of(status: dict[str, Any], streams: list[dict[str, Any]],
               skipped: set[str], listing: dict[str, Any] | None,
               listed_ids: set[str] | None) -> datetime | None:
    """Until when the destination holds every change (see the module's docstring)."""
    candidates = []
    success = status.get("last_success")
    if success and not status.get(REFRESH_FAILED):
        candidates.append(parse_timestamp(success["started_at"]))
    gone = {str(entry["survey_id"]) for entry in (listing or {}).get("gone", [])}
    counted = [s for s in streams
               if "survey_id" not in s or (str(s["survey_id"]) not in skipped | gone
                                           and (listed_ids is None
                                                or str(s["survey_id"]) in listed_ids))]
    if counted and all(s["high_water"] for s in counted):
        candidates.append(min(parse_timestamp(s["high_water"]) for s in counted))
    return max(candidates) if candidates else None


def build_report(snapshot: Snapshot, now: datetime, max_age: timedelta | None,
                 destination: str, dataset: str) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (also its ``--json``)."""
    state = snapshot.state or {}
    status = status_of(state)
    streams = streams_of(state)
    reads = resource_states(state).get("survey_responses", {}).get("reads", {})
    skipped = skipped_surveys(reads, now)
    listing = survey_list(state)
    known = resource_states(state).get("surveys", {}).get("known")
    as_of = data_as_of(status, streams, {str(s.survey_id) for s in skipped}, listing,
                       {str(i) for i in known} if known is not None else None)
    age = (now - as_of) if as_of else None
    fresh = None if max_age is None else (age is not None and age <= max_age)
    counts = snapshot.counts
    return {
        "destination": destination,
        "dataset": dataset,
        "now": format_timestamp(now),
        "state_source": snapshot.source,
        "state_versions": dict(snapshot.versions),
        "last_sync": status.get("last_sync"),
        "last_success": status.get("last_success"),
        "last_reconcile": status.get("last_reconcile"),
        "last_deep_pass": newest([s["last_deep_pass"] for s in streams]),
        "data_as_of": format_timestamp(as_of) if as_of else None,
        "age_seconds": round(age.total_seconds(), 3) if age is not None else None,
        "max_age_seconds": max_age.total_seconds() if max_age is not None else None,
        "fresh": fresh,
        "streams": streams,
        "open_backfills": [s["stream"] for s in streams if s["backfill"]],
        "stopped_rereads": stopped_rereads(state, now),
        "survey_list": listing,
        "quiet_surveys_skipped": quiet_surveys_json(skipped),
        "tables": counts,
        "rejected": None if snapshot.rejected is None else {
            "total": sum(n for _, _, n in snapshot.rejected),
            "by_stream": [{"stream": stream, "reason": reason, "rows": n}
                          for stream, reason, n in snapshot.rejected]},
        "sync_running": None if snapshot.running is None else {
            "pid": snapshot.running.pid,
            "started_at": format_timestamp(snapshot.running.started_at)},
        "problems": list(snapshot.problems),
    }
