"""Surveys gone from the full list: marked deleted (``deleted_at``), never dropped.

The survey list is read in full on every sync, so a survey missing from it is gone upstream.
The surveys resource keeps in its dlt state which ids the last list had (``known``), which
surveys are gone and since when (``deleted``: ``[id, when first seen gone]`` pairs), and which
came back in this sync (``restored``). The state travels in the same load package as the list,
so a crash never loses a deletion; the marks themselves are applied to the destination after
the load (``marks``), idempotently, from this state.
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
