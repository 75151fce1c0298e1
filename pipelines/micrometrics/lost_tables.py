"""A table dropped (or renamed) in the destination by hand, its resource's state left behind.

dlt creates a missing table again at the next load, but the resource's windows in the state
(restored from ``_dlt_pipeline_state``, which the drop did not touch) said its history was read:
only the lookback was loaded into the new table, and the rest of the history was missing for
good, with exit 0, the data tests passing and status "fresh". So before the rounds, a resource
whose tables the destination no longer has, while its state says it was read, loses that state
(with a warning, loaded at once on its own: a sync killed before its first round, then one on
another machine, would restore "read") and is read again from its start, as on a first sync;
the tables are then created again, empty (dlt creates a table a load lacks only for a schema
version the destination does not hold: the loads failed for good).

With packages a killed sync left, the check runs before they load too: loaded, they created
the tables again with their own rows only (the lookback's), and the state they carry said
read, on every machine; or, started before the drop, they failed on the missing tables every
sync, for good (dlt creates a package's tables once). So the packages are dropped with the
local state instead (``pending.finish_pending``), which the destination's replaces: the check
after the restore then finds the tables gone from there, or the dataset gone with its state.
A table counts as lost when the destination's stored schema says it was created (one only in
a package's schema, a worker's first package, is not: it was never loaded), or, the dataset
itself gone, when this folder's state knew the target's history (it loaded into it, or
restored its state from it): else the package is the first load of it (a first sync killed
before its first load), not a loss.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dlt
from dlt.common.schema import Schema
from dlt.destinations.job_client_impl import SqlJobClientBase

from .source_state import SOURCE_NAME, loaded_at_once, resource_states

log = logging.getLogger("micrometrics")

# Local state (never sent to the destination): a load from this folder reached its target (or
# its state was restored from there); the tables an earlier version found gone before the
# pending packages loaded (read, then dropped).
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
    """Before the packages a killed sync left are loaded: the target's tables, loaded before,
    that are gone (see the module's docstring); [] without packages."""
    left = pipeline.list_extracted_load_packages() or pipeline.list_normalized_load_packages()
    if not left or not _loaded_here(pipeline):
        return []
    return _missing_tables(pipeline, stored=True)


def forget_lost_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Drops the state of each resource whose tables are gone from the destination (loaded at
    once), then creates every missing table again; returns the tables of read resources found
    gone. In that order: a sync stopped in between finds the tables still missing and only
    creates them."""
    resources = resource_states(pipeline.state)
    read = [name for name in TABLES_OF if resources.get(name)]
    absent = _missing_tables(pipeline, stored=False, read_only=False)
    earlier = _local(pipeline, GONE_BEFORE_PENDING) or []
    gone = sorted({t for name in read for t in TABLES_OF[name] if t in absent} | set(earlier))
    forgotten = [name for name in read if set(TABLES_OF[name]) & set(gone)]
    if forgotten or earlier:
        with loaded_at_once(pipeline) if forgotten else pipeline.managed_state() as state:
            states = resource_states(state)
            for name in forgotten:
                states.pop(name, None)
            state["_local"].pop(GONE_BEFORE_PENDING, None)  # type: ignore[misc]
    if absent:
        _create_again(pipeline, absent)
    if gone:
        log.warning("warning: table(s) %s are gone from the destination (dropped or renamed by "
                    "hand?) while the state says they were loaded: read again from the start",
                    ", ".join(gone))
    return gone


def _create_again(pipeline: dlt.Pipeline, missing: list[str]) -> None:
    """Creates the ``missing`` tables, empty (and the dataset, when it is gone too), from the
    schema as restored. dlt creates the tables a load lacks only when the destination does not
    hold the schema's version: after a package that created some of them (the others were not
    in it), every load of the others failed, for ever; and the state loaded at once before
    this stores that version without them."""
    with pipeline.destination_client() as client:
        if isinstance(client, SqlJobClientBase):
            client.initialize_storage()  # a no-op when the dataset is there
            client.update_stored_schema(
                only_tables=[*missing, *client.schema.dlt_table_names()], force=True)


def _missing_tables(pipeline: dlt.Pipeline, stored: bool, read_only: bool = True) -> list[str]:
    """The tables the destination does not have, of the resources the state says were read
    (``read_only``; else of every resource) and created there: by the destination's stored
    schema (``stored``) or the local one; by the local one when the dataset itself is gone."""
    resources = resource_states(pipeline.state)
    names = [table for name in TABLES_OF if resources.get(name) or not read_only
             for table in TABLES_OF[name]]
    local = pipeline.default_schema if pipeline.default_schema_name else None
    if not names:
        return []  # nothing read yet
    with pipeline.destination_client() as client:
        if not client.is_storage_initialized():  # the dataset itself is gone (or never made)
            return [table for table in names if table in _created(local)]
        schema = _stored_schema(client) if stored else local
        expected = [table for table in names if table in _created(schema)]
        present = {table for table, columns in client.get_storage_tables(expected) if columns}
    return [table for table in expected if table not in present]


def _created(schema: Schema | None) -> set[str]:
    """Tables with data in ``schema``: dlt creates none for a table it has no column of yet."""
    return {table["name"] for table in schema.data_tables()} if schema is not None else set()


def _stored_schema(client: Any) -> Schema | None:
    """The newest version of the source's schema the destination holds, or None."""
    if not isinstance(client, SqlJobClientBase):
        return None
    info = client.get_stored_schema(SOURCE_NAME)
    return Schema.from_dict(json.loads(info.schema)) if info is not None else None


def _loaded_here(pipeline: dlt.Pipeline) -> bool:
    return bool(_local(pipeline, LOADED_HERE))


def _local(pipeline: dlt.Pipeline, key: str) -> Any:
    try:
        return pipeline.get_local_state_val(key)
    except KeyError:
        return None
