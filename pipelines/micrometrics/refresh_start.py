"""A ``--full-refresh``'s start, in the destination before dlt drops the tables.

dlt's refresh drops (and creates again, empty) the refreshed resources' tables in a
transaction of its own as the first round's load begins, while the reset of their state, and
the mark that status reads (``status_keys.refresh_under_way``), travel in that round's package,
loaded after. A refresh stopped in between (killed, a lost connection) left the destination's
state saying the history was read: the machine that ran it loads the package it left first,
but a fresh runner (GitHub Actions, an Airflow retry on another worker) restores that state,
reads only the lookback into the emptied tables, and the rest of the history was gone for good,
with exit 0 and status "fresh". So the reset and the mark are loaded first, on their own; a
refresh stopped before its drop then costs a read from the start, merged over the tables.
"""

from __future__ import annotations

from collections.abc import Iterable

import dlt

from .source_state import loaded_at_once, resource_states

# The surveys resource's deletion tracking (``deletions``), kept across a refresh's reset.
SURVEY_TRACKING = ("known", "deleted", "restored", "returns")


def load_refresh_start(pipeline: dlt.Pipeline, resources: Iterable[str]) -> None:
    """Resets the state of the ``resources`` the refresh drops (as dlt's ``drop_resources``
    will again, at the first round's extract) and loads that state on its own, with the
    refresh's mark. Nothing to load when none of them has state (nothing read yet)."""
    resources = list(resources)
    if not any(resource_states(pipeline.state).get(name) for name in resources):
        return
    with loaded_at_once(pipeline) as state:
        states = resource_states(state)
        for name in resources:
            dropped = states.pop(name, None)
            if name == "surveys" and dropped:
                # Which surveys the last list had, and which are gone: a refresh stopped after
                # this load and before its first round's (whose list is tracked against the
                # state as the sync began) left a survey deleted meanwhile live for good.
                states[name] = {key: dropped[key] for key in SURVEY_TRACKING if key in dropped}
