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
from dlt.destinations.job_client_impl import SqlJobClientBase

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
        sql = client.sql_client
        table = sql.make_qualified_table_name(client.schema.state_table_name)
        column = sql.escape_column_name(client.schema.naming.normalize_identifier("version_hash"))
        try:
            rows = sql.execute_sql(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = {sql_literal(loaded)}")
        except Exception:  # noqa: BLE001 - no state table: the dataset's tables are gone
            return False
    return not rows or rows[0][0] == 0


def forget_rolled_back(pipeline: dlt.Pipeline) -> str:
    """Drops this folder's state and packages (the sync restores the destination's next);
    returns the warning, also logged."""
    warning = ("warning: the destination holds none of the state this machine's last sync "
               "loaded (restored from a backup, or a replica behind?): this machine's state is "
               "dropped and the destination's taken, so what the destination lacks is read "
               "again")
    log.warning(warning)
    pipeline.drop()
    return warning
