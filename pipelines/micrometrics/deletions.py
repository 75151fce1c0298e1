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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .timeutil import format_timestamp


def track_survey_list(state: dict[str, Any], listed_ids: list[Any], now: datetime,
                      deleted_before: list[tuple[Any, str]] | None = None) -> None:
    """Update ``state`` with the ids of a complete survey list read at ``now``.

    ``deleted_before``: the deletions a full refresh of ``surveys`` dropped with its state
    (``deleted_surveys`` of the state before it). The responses keep their marks unless they
    were refreshed too, so a survey among them that comes back must still be seen restored.
    """
    listed = set(listed_ids)
    deleted = {survey_id: when for survey_id, when in state.get("deleted", [])}
    if "known" not in state:  # a first list: a new pipeline, or one whose state was dropped
        for survey_id, when in deleted_before or []:
            deleted.setdefault(survey_id, when)
    restored = {survey_id: deleted.pop(survey_id) for survey_id in list(deleted)
                if survey_id in listed}
    for survey_id in set(state.get("known", [])) - listed:
        deleted.setdefault(survey_id, format_timestamp(now))
    state["known"] = sorted(listed, key=repr)
    state["deleted"] = sorted(deleted.items(), key=repr)
    state["restored"] = sorted(restored.items(), key=repr)


def deleted_surveys(state: dict[str, Any]) -> list[tuple[Any, str]]:
    """``(survey id, deleted_at)`` of every survey gone from the list."""
    return [(survey_id, when) for survey_id, when in state.get("deleted", [])]


def restored_surveys(state: dict[str, Any]) -> list[tuple[Any, str]]:
    """``(survey id, the deleted_at it had)`` of the surveys that came back in the last sync
    that read the list."""
    return [(survey_id, when) for survey_id, when in state.get("restored", [])]


def reread_returned(listed_ids: set[Any], per_survey: dict[str, dict[str, Any]],
                    gone: list[tuple[Any, str]]) -> list[Any]:
    """Start over the response state of each survey of ``gone`` (gone from the list when the
    sync began: ``(id, deleted_at)``) that is listed again; once per return (``returned_from``
    keeps the deletion it came back from), whatever the rounds. Returns their ids."""
    restarted = []
    for survey_id, when in gone:
        if survey_id not in listed_ids:
            continue
        if (per_survey.get(str(survey_id)) or {}).get("returned_from") == when:
            continue  # an earlier round of this sync started it over
        per_survey[str(survey_id)] = {"returned_from": when}
        restarted.append(survey_id)
    return restarted
