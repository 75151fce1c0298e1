"""Surveys gone from the full list: marked deleted (``deleted_at``), never dropped.

The survey list is read in full on every sync, so a survey missing from it is gone upstream.
The surveys resource keeps in its dlt state which ids the last list had (``known``), which
surveys are gone and since when (``deleted``: ``[id, when first seen gone]`` pairs), and which
came back in this sync (``restored``). The state travels in the same load package as the list,
so a crash never loses a deletion; the marks themselves are applied to the destination after
the load (``marks``), idempotently, from this state.

A survey that comes back (undeleted, or a new survey given the old id) has its responses read
again from its start (:func:`reread_returned`): the merge brings back, unmarked, exactly the
ones the API serves again; those it no longer serves (erased meanwhile, or the old survey's)
stay marked. Unmarking every response marked with the survey brought those back as live rows.
Returns are kept (``returns``) until a sync reads the responses: ``--resources surveys`` may see
one and read none. Once the responses' state records the return handled, it is forgotten
(:func:`forget_handled_returns`): kept, every later ``--full-refresh`` announced it back again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .source_state import resource_states
from .timeutil import format_timestamp


@dataclass(frozen=True)
class TrackedSurveys:
    """What the surveys' state said as a sync began: the surveys gone (``deleted``) and every
    return seen (``returned``: ``(id, the deletion it came back from)``, kept until the
    responses are read again, whichever later sync that is: one of ``--resources surveys``
    reads no responses)."""

    deleted: list[tuple[Any, str]]
    returned: list[tuple[Any, str]]

    @classmethod
    def of(cls, state: dict[str, Any]) -> TrackedSurveys:
        return cls(deleted_surveys(state), [tuple(pair) for pair in state.get("returns", [])])


def track_survey_list(state: dict[str, Any], listed_ids: list[Any], now: datetime,
                      before: TrackedSurveys | None = None) -> None:
    """Update ``state`` with the ids of a complete survey list read at ``now``.

    ``before``: the state as the sync began, for a full refresh of ``surveys``, which drops
    the state (the responses keep their marks unless they were refreshed too, so a survey
    among them that comes back must still be seen restored and its responses read again).
    """
    # Ids are compared as text: a server that sends 237 in one list and "237" in the next
    # names one survey, not one gone and one new (every survey and response was marked).
    # Each keeps the form it was first tracked in, as loaded first: the marks compare it with
    # the tables' ids, and a text literal for an integer column fails on BigQuery.
    first_form = {str(survey_id): survey_id
                  for survey_id, _ in [*state.get("returns", []), *state.get("deleted", [])]}
    first_form.update({str(survey_id): survey_id for survey_id in state.get("known", [])})
    listed = {str(survey_id): first_form.get(str(survey_id), survey_id)
              for survey_id in listed_ids}
    deleted = {str(survey_id): (survey_id, when) for survey_id, when in state.get("deleted", [])}
    returns = {str(survey_id): (survey_id, when) for survey_id, when in state.get("returns", [])}
    if "known" not in state and before is not None:  # a first list, or one after a refresh
        for survey_id, when in before.deleted:
            deleted.setdefault(str(survey_id), (survey_id, when))
        for survey_id, when in before.returned:
            returns.setdefault(str(survey_id), (survey_id, when))
    restored = {key: deleted.pop(key) for key in list(deleted) if key in listed}
    returns.update(restored)
    for survey_id in state.get("known", []):
        if str(survey_id) not in listed:
            deleted.setdefault(str(survey_id), (survey_id, format_timestamp(now)))
    state["known"] = sorted(listed.values(), key=repr)
    state["deleted"] = sorted(deleted.values(), key=repr)
    state["restored"] = sorted(restored.values(), key=repr)
    state["returns"] = sorted(returns.values(), key=repr)


def deleted_surveys(state: dict[str, Any]) -> list[tuple[Any, str]]:
    """``(survey id, deleted_at)`` of every survey gone from the list."""
    return [(survey_id, when) for survey_id, when in state.get("deleted", [])]


def restored_surveys(state: dict[str, Any]) -> list[tuple[Any, str]]:
    """``(survey id, the deleted_at it had)`` of the surveys that came back in the last sync
    that read the list."""
    return [(survey_id, when) for survey_id, when in state.get("restored", [])]


def reread_returned(listed_ids: set[Any], per_survey: dict[str, dict[str, Any]],
                    before: TrackedSurveys) -> list[Any]:
    """Start over the response state of each survey gone, or seen back, as the sync began
    (``before``) that is listed; once per return (``returned_from`` keeps the deletion it came
    back from), whatever the rounds and syncs. Returns their ids. Only in a sync that also
    tracks the list (``surveys`` selected): one that does not would mark the responses read
    again, their survey still gone in its state."""
    restarted = []
    listed = {str(survey_id) for survey_id in listed_ids}
    for survey_id, when in dict(before.returned + before.deleted).items():
        if str(survey_id) not in listed:
            continue
        if (per_survey.get(str(survey_id)) or {}).get("returned_from") == when:
            continue  # an earlier round of this sync started it over
        per_survey[str(survey_id)] = {"returned_from": when}
        restarted.append(survey_id)
    return restarted


def forget_handled_returns(state: dict[str, Any]) -> list[Any]:
    """Drops from the surveys' ``returns`` those whose responses were started over for that
    return (``returned_from`` in the survey's response state, see :func:`reread_returned`);
    returns their ids. ``state``: the pipeline state."""
    resources = resource_states(state)
    surveys = resources.get("surveys") or {}
    per_survey = (resources.get("survey_responses") or {}).get("surveys") or {}
    handled = [(survey_id, when) for survey_id, when in surveys.get("returns", [])
               if (per_survey.get(str(survey_id)) or {}).get("returned_from") == when]
    if handled:
        surveys["returns"] = [list(pair) for pair in surveys["returns"]
                              if tuple(pair) not in handled]
    return [survey_id for survey_id, _when in handled]
