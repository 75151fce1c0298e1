"""What a sync of several rounds reads again at its end: the dimensions changed while it ran.

The survey list (surveys and their questions) is read once, as a sync begins, and the devices
in its first round, while responses are read for as long as the sync runs: a first backfill
takes hours at 1 request/s. A survey edited meanwhile (a question added, and responses
answering it read in a later round) left the question in neither ``surveys__questions`` nor
``survey_questions``; a kiosk set up meanwhile, its responses read in a later round, was in no
devices row. Either failed that sync's build (``answers_have_known_question``,
``responses_have_known_device``: exit 4, "do not retry") on a routine change, until the next
sync. So a sync of more than one round ends with one more: the devices changed since it began
(its incremental read, up to now: a request or two), and, when the list read again (a request
a page) differs from the first, the surveys and the question history from that list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .client import MicrometricsClient
from .questions import RESOURCE as QUESTION_HISTORY
from .rounds import ExtractTally, SurveyIndex, SyncBounds
from .source import read_survey_list


@dataclass(frozen=True)
class CatchUp:
    """The resources of the closing round, its bounds, and the survey list read again (None:
    the first one stands)."""

    resources: tuple[str, ...]
    bounds: SyncBounds
    index: SurveyIndex | None


def catch_up_resources(client: MicrometricsClient, bounds: SyncBounds, chosen: list[str],
                       first: SurveyIndex, tally: ExtractTally) -> CatchUp:
    """What the closing round of a sync of several rounds reads: ``devices`` up to now (not in
    an explicit re-read, whose range is its own), and the surveys with their questions if the
    list changed since ``first`` was read."""
    resources: list[str] = []
    if "devices" in chosen and not bounds.explicit_range:
        resources.append("devices")
    fresh = None
    if {"surveys", QUESTION_HISTORY} <= set(chosen) and first.read:
        fresh = changed_list(client, bounds, first, tally)
        if fresh is not None:
            resources += ["surveys", QUESTION_HISTORY]
    later = bounds if bounds.explicit_range else dataclasses.replace(
        bounds, run_end=max(bounds.run_end, client.now()))
    return CatchUp(tuple(resources), later, fresh)


def changed_list(client: MicrometricsClient, bounds: SyncBounds, first: SurveyIndex,
                 tally: ExtractTally) -> SurveyIndex | None:
    """The survey list read now, if a survey in it changed since ``first`` was read (or came,
    or went); else None. Loaded, it is not tracked for deletions (``SurveyIndex.relisted``)."""
    fresh = SurveyIndex(relisted=True)
    read_survey_list(client, bounds, fresh, tally)
    return fresh if _versions(fresh) != _versions(first) else None


def _versions(index: SurveyIndex) -> dict[str, Any]:
    return {str(survey["id"]): survey.get("updated_at") for survey in index.indexed}
