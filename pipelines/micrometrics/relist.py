"""The survey list read again at the end of a sync of several rounds.

The list (surveys and their questions) is read once, as a sync begins, and its responses for
as long as the sync runs: a first backfill takes hours at 1 request/s. A survey edited
meanwhile (a question added, and responses answering it read in a later round) left the
question in neither ``surveys__questions`` nor ``survey_questions``: that sync's build failed
``answers_have_known_question`` (exit 4, "do not retry") on a routine edit. So a sync of more
than one round reads the list again (one request a page) and, if a survey changed since,
loads the surveys and the question history once more, from that list.
"""

from __future__ import annotations

from typing import Any

from .client import MicrometricsClient
from .rounds import ExtractTally, SurveyIndex, SyncBounds
from .source import read_survey_list


def changed_list(client: MicrometricsClient, bounds: SyncBounds, first: SurveyIndex,
                 tally: ExtractTally) -> SurveyIndex | None:
    """The survey list read now, if a survey in it changed since ``first`` was read (or came,
    or went); else None."""
    fresh = SurveyIndex(relisted=True)
    read_survey_list(client, bounds, fresh, tally)
    return fresh if _versions(fresh) != _versions(first) else None


def _versions(index: SurveyIndex) -> dict[str, Any]:
    return {str(survey["id"]): survey.get("updated_at") for survey in index.indexed}
