"""A table dropped (or renamed) in the destination by hand, its resource's state left behind.

dlt creates a missing table again at the next load, but the resource's windows in the state
(restored from ``_dlt_pipeline_state``, which the drop did not touch) said its history was read:
only the lookback was loaded into the new table, and the rest of the history was missing for
good, with exit 0, the data tests passing and status "fresh". So before the rounds, a resource
whose tables the destination no longer has, while its state says it was read, loses that state
(with a warning) and is read again from its start, as on a first sync.

With packages a killed sync left, the check runs before they load too: the first of them
creates the tables again (holding only what the package read, the lookback's rows), and the
history was lost just the same when the operator had dropped the dataset meanwhile. A table
absent then is lost only if this folder's state knew the target's history (it loaded into it,
or restored its state from it); else the package is the first load of it (a first sync killed
before its first load), not a loss. Tables found gone then also lose the schema's stored
versions before the packages load: dlt creates a missing table only for a schema the
destination does not hold, and every sync failed loading the package, for good.

The resources' state dropped for tables found gone is loaded at once, on its own: a sync
killed before its first round, followed by one on another machine, restored the state saying
read (the package had loaded into the tables again) and the loss stood.
"""

from __future__ import annotations

import logging
from typing import Any

import dlt
from dlt.destinations.job_client_impl import SqlJobClientBase

from .source_state import loaded_at_once, resource_states

log = logging.getLogger("micrometrics")

# Local state (never sent to the destination): a load from this folder reached its target;
# the tables found gone before the pending packages loaded, until their state is dropped (a
# sync stopped in between forgot them, and the loss stood).
LOADED_HERE = "micrometrics_loaded_here"
GONE_BEFORE_PENDING = "micrometrics_gone_before_pending"

# Each resource with read progress in the state, and the tables that hold what it read.
TABLES_OF = {
    "devices": ("devices",),
    "survey_responses": ("survey_responses", "survey_responses__answers"),
}


def note_loaded(pipeline: dlt.Pipeline) -> None:
    """After a load reached the destination (once per folder and target: claim_folder wipes
    the folder, this mark with it, when the target changes)."""
    if not _loaded_here(pipeline):
        pipeline.set_local_state_val(LOADED_HERE, True)


def note_restored(pipeline: dlt.Pipeline) -> None:
    """After the state was restored from the destination: when it says a resource was read,
    this folder knows the target's history as if it had loaded it (a worker's first sync)."""
    resources = resource_states(pipeline.state)
    if any(resources.get(name) for name in TABLES_OF):
        note_loaded(pipeline)


def gone_before_pending(pipeline: dlt.Pipeline) -> list[str]:
    """Before the packages a killed sync left are loaded: the tables they would create again
    that this folder had loaded before (see the module's docstring), with those an earlier
    sync found and was stopped before it dropped their state."""
    left = pipeline.list_extracted_load_packages() or pipeline.list_normalized_load_packages()
    missing = _missing_tables(pipeline) if left and _loaded_here(pipeline) else []
    gone = sorted(set(_local(pipeline, GONE_BEFORE_PENDING) or []) | set(missing))
    if gone:
        pipeline.set_local_state_val(GONE_BEFORE_PENDING, gone)
    if missing:
        _let_dlt_create(pipeline, missing)
    return gone


def forget_lost_tables(pipeline: dlt.Pipeline, gone_before: list[str] | tuple = ()) -> list[str]:
    """Drops the state of each resource whose tables are gone from the destination, now or
    before the pending packages loaded (``gone_before``); returns the tables found gone."""
    resources = resource_states(pipeline.state)
    read = [name for name in TABLES_OF if resources.get(name)]
    missing = _missing_tables(pipeline)
    gone = sorted(set(missing) | set(gone_before))
    if not gone:
        return []
    if missing:
        _create_again(pipeline, missing)
    forgotten = [name for name in read if set(TABLES_OF[name]) & set(gone)]
    # Nothing to load when no state says read (the packages left were dropped with it).
    with loaded_at_once(pipeline) if forgotten else pipeline.managed_state() as state:
        states = resource_states(state)
        for name in forgotten:
            states.pop(name, None)
        state["_local"].pop(GONE_BEFORE_PENDING, None)  # type: ignore[misc]
    log.warning("warning: table(s) %s are gone from the destination (dropped or renamed by "
                "hand?) while the state says they were loaded: read again from the start",
                ", ".join(gone))
    return gone


def _let_dlt_create(pipeline: dlt.Pipeline, missing: list[str]) -> None:
    """dlt creates the tables a load lacks only when the destination does not hold the
    schema's version: the versions go (the tables being absent, their drop is a no-op), as
    dlt's refresh does. Nothing to do when the dataset itself is gone."""
    with pipeline.destination_client() as client:
        if isinstance(client, SqlJobClientBase) and client.is_storage_initialized():
            version_table = client.schema.version_table_name
            if any(columns for _t, columns in client.get_storage_tables([version_table])):
                client.drop_tables(*missing, delete_schema=True)


def _create_again(pipeline: dlt.Pipeline, missing: list[str]) -> None:
    """Creates the ``missing`` tables, empty (and the dataset, when it is gone too), from the
    schema as restored. dlt creates the tables a load lacks only when the destination does not
    hold the schema's version: after a package that created some of them (the others were not
    in it), every load of the others failed, for ever; and the state loaded at once below
    would store that version without them."""
    with pipeline.destination_client() as client:
        if isinstance(client, SqlJobClientBase):
            client.initialize_storage()  # a no-op when the dataset is there
            client.update_stored_schema(
                only_tables=[*missing, *client.schema.dlt_table_names()], force=True)


def _missing_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Tables of the resources the state says were read that the destination does not have."""
    resources = resource_states(pipeline.state)
    read = [name for name in TABLES_OF if resources.get(name)]
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    if not read or schema is None:
        return []  # nothing read yet, or no table ever created
    # Tables with columns only: dlt creates none for a table it has no column of yet.
    created = {table["name"] for table in schema.data_tables()}
    expected = [table for name in read for table in TABLES_OF[name] if table in created]
    with pipeline.destination_client() as client:
        if not client.is_storage_initialized():  # the dataset itself is gone (or never made)
            return expected
        present = {table for table, columns in client.get_storage_tables(expected) if columns}
    return [table for table in expected if table not in present]


def _loaded_here(pipeline: dlt.Pipeline) -> bool:
    return bool(_local(pipeline, LOADED_HERE))


def _local(pipeline: dlt.Pipeline, key: str) -> Any:
    try:
        return pipeline.get_local_state_val(key)
    except KeyError:
        return None
