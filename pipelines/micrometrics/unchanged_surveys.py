"""Surveys the destination already holds as listed are not loaded again.

The survey list is read in full every sync: it indexes the response streams and shows which
surveys are gone. Loading all of it too merged every survey, and each of its questions twice
(``surveys__questions`` and the history), on every sync: on 2,000 surveys, 14,116 rows and
three load jobs an hour where one survey changed (MERGE billed per statement on a warehouse;
``benchmarks.wide_hourly``). A listed survey whose ``updated_at`` is that of the row a
completed load wrote is left out of the surveys and question-history loads: the merge keeps its
row and child rows, and the history's merge key (``survey_id``) keeps its versions.

All are loaded when no lookup is given (a full refresh, whose tables are dropped only after
the extract, or an explicit re-read), when the table is empty or gone, and once every
``DEEP_EVERY_HOURS`` (24), with the deep pass: a change the vendor made without moving
``updated_at``, or a child table emptied by hand, is loaded again by then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt

from .timeutil import format_timestamp, parse_timestamp

# In the ``surveys`` resource's state: when the whole list was last loaded.
LOADED_IN_FULL_AT = "list_loaded_in_full_at"

LoadedSurveys = Callable[[], dict[Any, Any]]  # {id: updated_at} of the loaded surveys


class UnchangedSurveys:
    """Which listed surveys the destination holds as listed, decided once per source (both
    ``surveys`` and ``survey_questions`` leave the same ones out)."""

    def __init__(self, loaded: LoadedSurveys | None, every: timedelta, now: datetime) -> None:
        self._loaded, self._every, self._now = loaded, every, now
        self._lock = threading.Lock()
        self._ids: frozenset[str] | None = None

    def ids(self, listed: Iterable[dict[str, Any]]) -> frozenset[str]:
        """Keys (``id_key``) of the listed surveys not to load; empty when all are loaded."""
        with self._lock:
            if self._ids is None:
                self._ids = self._find(listed)
            return self._ids

    def _find(self, listed: Iterable[dict[str, Any]]) -> frozenset[str]:
        if self._loaded is None:  # not recorded: a re-read leaves the incremental state be
            return frozenset()
        # Named: the question history's resource asks from its own function.
        state = dlt.current.resource_state("surveys")
        if self._due(state.get(LOADED_IN_FULL_AT)):
            state[LOADED_IN_FULL_AT] = format_timestamp(self._now)
            return frozenset()
        loaded = {id_key(key): instant(when) for key, when in self._loaded().items()}
        return frozenset(
            key for survey in listed
            if (key := id_key(survey.get("id"))) is not None
            and (when := instant(survey.get("updated_at"))) is not None
            and loaded.get(key) == when)

    def _due(self, last: Any) -> bool:
        when = instant(last)
        return when is None or self._now - when >= self._every

    def keep(self, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The listed surveys to load."""
        unchanged = self.ids(listed)
        return [survey for survey in listed if id_key(survey.get("id")) not in unchanged]


def id_key(value: Any) -> str | None:
    """A survey id as the destination's integer column holds it (``237``, ``"237"`` and
    ``237.0`` alike); None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value) if isinstance(value, int | str) else None
        if isinstance(value, float) and value.is_integer():
            number = int(value)
    except ValueError:
        return None
    return None if number is None else str(number)


def instant(value: Any) -> datetime | None:
    """A time as an aware UTC datetime (a naive one read as UTC); None when it is none."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            return None
    return None
