"""A table dropped (or renamed) in the destination by hand, its resource's state left behind.

dlt creates a missing table again at the next load, but the resource's windows in the state
(restored from ``_dlt_pipeline_state``, which the drop did not touch) said its history was read:
only the lookback was loaded into the new table, and the rest of the history was missing for
good, with exit 0, the data tests passing and status "fresh". So before the rounds, a resource
whose tables the destination no longer has, while its state says it was read, loses that state
(with a warning) and is read again from its start, as on a first sync.
"""

from __future__ import annotations

import logging
from typing import Any

import dlt

log = logging.getLogger("micrometrics")

# Each resource with read progress in the state, and the tables that hold what it read.
TABLES_OF = {
    "devices": ("devices",),
    "survey_responses": ("survey_responses", "survey_responses__answers"),
}


def forget_lost_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Drops the state of each resource whose tables are gone from the destination; returns
    the tables found gone."""
    resources = _resource_states(pipeline.state)
    read = [name for name in TABLES_OF if resources.get(name)]
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    if not read or schema is None:
        return []  # nothing read yet, or no table ever created
    # Tables with columns only: dlt creates none for a table it has no column of yet.
    created = {table["name"] for table in schema.data_tables()}
    expected = [table for name in read for table in TABLES_OF[name] if table in created]
    with pipeline.destination_client() as client:
        present = {table for table, columns in client.get_storage_tables(expected) if columns}
    gone = [table for table in expected if table not in present]
    if not gone:
        return []
    with pipeline.managed_state() as state:
        states = _resource_states(state)
        for name in read:
            if set(TABLES_OF[name]) & set(gone):
                states.pop(name, None)
    log.warning("warning: table(s) %s are gone from the destination (dropped or renamed by "
                "hand?) while the state says they were loaded: read again from the start",
                ", ".join(gone))
    return gone


def _resource_states(state: Any) -> dict[str, Any]:
    return state.get("sources", {}).get("micrometrics", {}).get("resources", {})
