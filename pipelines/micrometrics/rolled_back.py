"""A destination put back behind this machine's state: restored from a backup, a copy of the
DuckDB file put back, a fail-over to a replica that lagged.

dlt restores the destination's state only when it is newer than the local one, so after such a
restore this machine's state went on saying every window was read through the last sync: the
records loaded between the backup and the restore were missing for good, with exit 0, the data
tests passing and status "fresh" (the deep pass reaches back 72 hours, no further). Each load
from this folder notes the hash of the state it carried (dlt's ``_last_extracted_hash``: every
package left was loaded by then). A sync that finds no state of that hash in the destination
drops this folder's state, and the packages a killed sync left (their windows are read again),
and takes the destination's, so what it lacks is read again. A dataset gone altogether is
``lost_tables``'s case.
"""

from __future__ import annotations

import logging

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.job_client_impl import SqlJobClientBase

from .pending import pending_load_ids, unfinished_rereads
from .warehouse import sql_literal

log = logging.getLogger("micrometrics")

# Local state (never sent to the destination): the hash of the newest state a load from this
# folder carried to its target.
LOADED_STATE = "micrometrics_loaded_state"


def note_loaded_state(pipeline: dlt.Pipeline) -> None:
    """After a load from this folder completed (nothing left to load)."""
    loaded = pipeline.state.get("_local", {}).get("_last_extracted_hash")
    if loaded:
        pipeline.set_local_state_val(LOADED_STATE, loaded)


def destination_rolled_back(pipeline: dlt.Pipeline) -> bool:
    """Whether the destination holds no state of the hash this folder's last load carried."""
    try:
        loaded = pipeline.get_local_state_val(LOADED_STATE)
    except KeyError:
        return False  # nothing loaded from here yet (or by a version that noted none)
    if not loaded or not pipeline.config.restore_from_destination:
        return False
    with pipeline.destination_client() as client:
        if not isinstance(client, SqlJobClientBase) or not client.is_storage_initialized():
            return False
        sql, naming = client.sql_client, client.schema.naming
        states = sql.make_qualified_table_name(client.schema.state_table_name)
        loads = sql.make_qualified_table_name(client.schema.loads_table_name)
        version_hash, state_load, load_id, status = (
            sql.escape_column_name(naming.normalize_identifier(name))
            for name in ("version_hash", "_dlt_load_id", "load_id", "status"))
        try:
            # Of a completed load, as dlt's own restore reads the state: a snapshot taken
            # mid-load holds the state's row (a job committed on its own) without the merges.
            rows = sql.execute_sql(
                f"SELECT COUNT(*) FROM {states} s JOIN {loads} l ON l.{load_id} = s.{state_load} "
                f"WHERE s.{version_hash} = {sql_literal(loaded)} AND l.{status} = 0")
        except DestinationUndefinedEntity:  # DatabaseUndefinedRelation among others
            return False  # no state there at all: the dataset's tables are gone (lost_tables)
    return not rows or rows[0][0] == 0


def forget_rolled_back(pipeline: dlt.Pipeline) -> str:
    """Drops this folder's state and packages (the sync restores the destination's next);
    returns the warning, also logged: it names the packages and an explicit re-read under way,
    which only its own command reads again."""
    left = pending_load_ids(pipeline)
    again = "".join(f"; run the explicit re-read under way again: `{command}`"
                    for command in unfinished_rereads(pipeline))
    warning = ("warning: the destination holds none of the state this machine's last sync "
               "loaded (restored from a backup, or a replica behind?): this machine's state"
               + (f" and the package(s) {', '.join(left)} a failed sync left are" if left
                  else " is")
               + " dropped and the destination's taken, so what the destination lacks is read "
               f"again{again}")
    log.warning(warning)
    pipeline.drop()
    return warning
