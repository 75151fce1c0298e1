"""Where the sync command's status record sits in the dlt pipeline state (``pipelines.status``
writes it), and the mark the sync itself puts there while a full refresh is under way, so that
status and the report stop vouching for the last success as soon as the refresh's first round
has dropped the tables."""

from __future__ import annotations

from datetime import datetime

import dlt

from .timeutil import format_timestamp

STATUS_KEY = "micrometrics_status"  # top-level key of the dlt pipeline state
# A --full-refresh started (or failed) since the last successful complete sync.
REFRESH_FAILED = "full_refresh_failed_at"


def refresh_under_way(pipeline: dlt.Pipeline, now: datetime, every_resource: bool) -> str | None:
    """Marks the state: a full refresh started at ``now``, committed with its first round
    (which drops the tables), so that status no longer vouches for the last success until a
    sync completes (status said "fresh", and the models built from half-reloaded tables, for
    as long as a refresh ran). Returns the mark, or None when one was there already (an
    earlier refresh that did not complete) and this one, of some resources only, cannot
    complete it."""
    with pipeline.managed_state() as state:
        status = dict(state.get(STATUS_KEY) or {})
        if status.get(REFRESH_FAILED) and not every_resource:
            return None
        status[REFRESH_FAILED] = format_timestamp(now)
        state[STATUS_KEY] = status  # type: ignore[literal-required]
        return status[REFRESH_FAILED]


def refresh_done(pipeline: dlt.Pipeline, mark: str | None) -> None:
    """Clears a refresh's mark once a sync's rounds are loaded: this refresh's own ``mark``, or
    any (None: the sync read every resource to its end, whatever an earlier refresh dropped).
    The command's record loads it at once; a library caller's next sync commits it (its
    record is the only one: the command's clears the mark the same way)."""
    with pipeline.managed_state() as state:
        status = dict(state.get(STATUS_KEY) or {})
        if status.get(REFRESH_FAILED) and mark in (None, status[REFRESH_FAILED]):
            status.pop(REFRESH_FAILED)
            state[STATUS_KEY] = status  # type: ignore[literal-required]
