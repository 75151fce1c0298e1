"""Which surveys' responses a sync reads: all of them, or, at scale, the quiet ones less often.

Reading a survey costs at least one request even when nothing changed, so an hourly sync of a
tenant with hundreds of surveys would spend most of its requests on surveys nobody answers.
Above ``FEW_SURVEYS`` surveys, a survey is *quiet* when its newest response changed more than
``quiet_survey`` ago (``last_change`` in its state) or it never had one, and a quiet survey is
read:

- when it is *due*: by the next sync (syncs are taken to come as far apart as the last two)
  its last read (``high_water``) would be more than ``quiet_survey`` old; this bounds how late a
  response in a quiet survey can arrive in the destination;
- or when it is among the stalest quiet surveys, so the reads spread evenly over the syncs
  instead of all falling due in the same one: each sync reads the ``quiet × interval /
  quiet_survey`` stalest (``interval``: the time since the previous sync's plan), or the due
  ones if there are more.

Never-read surveys, surveys with a range or window in progress, active ones, and those the
list says were created or changed within ``quiet_survey`` (new or edited) are read every sync.
Nothing is lost by skipping: a skipped survey's next read starts at its own high-water mark
(minus the lookback), so what changed meanwhile comes then. An explicit range, a full
refresh (no state) and ``quiet_survey`` 0 read every survey.

The plan is made once per sync and kept in the survey_responses state (``plan``): the rounds of
one sync follow it, and the summary, ``--dry-run`` and the status report it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipelines.text_lists import first_of

from .timeutil import format_timestamp, parse_timestamp

# Below this many surveys every survey is read every sync: a skipped quiet survey saves one
# request, which pays only at scale.
FEW_SURVEYS = 24


@dataclass(frozen=True)
class Skipped:
    """A quiet survey this sync does not read; what it has may be ``stale`` old."""

    survey_id: Any
    last_read: datetime
    stale: timedelta
    read_by: datetime  # when it is due at the latest


def plan_reads(
    surveys: list[dict[str, Any]],
    per_survey: dict[str, dict[str, Any]],
    plans: dict[str, Any],
    now: datetime,
    quiet_survey: timedelta,
) -> list[dict[str, Any]]:
    """The surveys of ``surveys`` to read in the sync of ``now``, in their listed order.

    Args:
        surveys: The survey list (dicts with ``id``).
        per_survey: Each survey's window state, by ``str(id)`` (``high_water``,
            ``last_change``, ``pending``).
        plans: Where the sync's plan is kept (the survey_responses resource state): the
            rounds of one sync (same ``now``) reuse it.
        now: The sync's reference time.
        quiet_survey: Staleness bound; zero reads every survey.
    """
    stamp = format_timestamp(now)
    kept = plans.get("plan")
    if kept and kept.get("at") == stamp:
        skip = set(kept.get("skipped", {}))
    else:
        skip = {str(s.survey_id) for s in choose_skipped(surveys, per_survey, plans, now,
                                                          quiet_survey)}
        plans["plan"] = {
            "at": stamp,
            "previous_at": (kept or {}).get("at"),
            "quiet_hours": quiet_survey.total_seconds() / 3600,
            "skipped": {sid: per_survey[sid]["high_water"] for sid in sorted(skip)},
            # For --dry-run, which has no list: the surveys new or edited as of this plan, with
            # the time the list gave (one launched or edited since is unknown to it).
            "listed_lately": {str(survey["id"]): format_timestamp(change) for survey in surveys
                              if (change := listed_change(survey)) is not None
                              and now - change < quiet_survey},
        }
    return [survey for survey in surveys if str(survey["id"]) not in skip]


def choose_skipped(
    surveys: list[dict[str, Any]],
    per_survey: dict[str, dict[str, Any]],
    plans: dict[str, Any],
    now: datetime,
    quiet_survey: timedelta,
) -> list[Skipped]:
    """The quiet surveys not due in this sync, beyond the stalest ones read to spread reads."""
    if not quiet_survey or len(surveys) <= FEW_SURVEYS:
        return []
    quiet: list[tuple[datetime, Any]] = []
    for survey in surveys:
        state = per_survey.get(str(survey["id"])) or {}
        if not state.get("high_water") or state.get("pending"):
            continue  # never read, or a read in progress: read it
        last_change = state.get("last_change")
        if last_change and now - parse_timestamp(last_change) < quiet_survey:
            continue  # active
        if listed_lately(survey, now, quiet_survey):
            continue  # new or edited
        quiet.append((parse_timestamp(state["high_water"]), survey["id"]))
    quiet.sort(key=lambda item: (item[0], str(item[1])))  # stalest first
    previous = (plans.get("plan") or {}).get("at")
    interval = now - parse_timestamp(previous) if previous else timedelta(0)
    # Due: it would be more than quiet_survey stale by the next sync (syncs come about
    # ``interval`` apart), so no survey's data is ever older than that.
    due = sum(1 for last_read, _ in quiet if now - last_read + interval > quiet_survey)
    spread = min(len(quiet), math.ceil(len(quiet) * (interval / quiet_survey)))
    return [Skipped(survey_id, last_read, now - last_read, last_read + quiet_survey)
            for last_read, survey_id in quiet[max(due, spread):]]


def listed_lately(survey: dict[str, Any], now: datetime, quiet_survey: timedelta) -> bool:
    """Whether the list says ``survey`` was created or changed within ``quiet_survey``: a survey
    just launched, read once before its first response, was quiet at once (no ``last_change``),
    and its first responses waited up to ``quiet_survey`` on the day its dashboards are
    watched most; an edited one's (a question added) too."""
    change = listed_change(survey)
    return change is not None and now - change < quiet_survey


def listed_change(survey: dict[str, Any]) -> datetime | None:
    """The later of ``survey``'s ``created_at`` and ``updated_at`` as listed, None if neither is
    a time (a malformed one says nothing either way)."""
    times = []
    for field in ("created_at", "updated_at"):
        value = survey.get(field)
        try:
            if isinstance(value, str):
                times.append(parse_timestamp(value))
        except ValueError:
            continue
    return max(times, default=None)


def new_in_last_plan(plans: dict[str, Any]) -> dict[str, str]:
    """The surveys the last plan found new or edited (``listed_lately``), by id, with the time
    the list gave: what ``--dry-run`` knows of the list."""
    return (plans.get("plan") or {}).get("listed_lately") or {}


def skipped_surveys(plans: dict[str, Any], now: datetime,
                    planned_at: datetime | None = None) -> list[Skipped]:
    """What the plan kept in ``plans`` skipped (only the plan made at ``planned_at``, when
    given), with each survey's staleness as of ``now``."""
    plan = plans.get("plan") or {}
    if planned_at is not None and plan.get("at") != format_timestamp(planned_at):
        return []
    quiet_survey = timedelta(hours=plan.get("quiet_hours") or 0)
    out = []
    for survey_id, high_water in (plan.get("skipped") or {}).items():
        last_read = parse_timestamp(high_water)
        out.append(Skipped(survey_id, last_read, now - last_read, last_read + quiet_survey))
    return sorted(out, key=lambda s: s.last_read)


def record_last_change(state: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Keep the newest ``updated_at`` a stream has returned (what makes a survey active)."""
    newest = max((parse_timestamp(r["updated_at"]) for r in records), default=None)
    if newest is None:
        return
    known = state.get("last_change")
    if known is None or newest > parse_timestamp(known):
        state["last_change"] = format_timestamp(newest)


def describe_skipped(skipped: list[Skipped]) -> str:
    """One line: how many quiet surveys were skipped, and the staleness of the stalest."""
    if not skipped:
        return "quiet surveys: none skipped (every survey read)"
    stalest = sorted(skipped, key=lambda s: s.last_read)
    hours = first_of([f"{s.survey_id} {s.stale.total_seconds() / 3600:.1f} h" for s in stalest],
                     "status --json lists them all")
    return (f"quiet surveys: {len(skipped)} not read this sync (no change for the quiet "
            f"period; each is read again before it is that stale); stale by: {hours}")
