"""One sync at a time per PostgreSQL dataset, whichever machine runs it.

The sync lock (``lock``) is a file on this machine: two machines (an Airflow retry on another
worker while the first attempt still runs, a second host's cron) syncing one PostgreSQL dataset
loaded at once through one staging dataset: one of them failed with a duplicate key in dlt's
merge, or a catalog clash in a model build, which a scheduler does not retry. So on PostgreSQL a
run also holds a session advisory lock named after the dataset, on a connection of its own,
for its length: the server releases it when that connection ends (a killed run leaves none).
A DuckDB file has its own lock; Snowflake and BigQuery have no such lock to take.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import dlt

from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.timeutil import duration, format_timestamp
from pipelines.micrometrics.warehouse import destination_kind

from .lock import SyncLockedError

# The advisory lock's first key: this connector's (the second is the dataset's); "mm" in ASCII.
LOCK_CLASS = 0x6D6D


def lock_key(dataset: str) -> int:
    """The dataset's key: a 32-bit signed int, the same on every machine."""
    return zlib.crc32(dataset.encode()) - (1 << 31)


@contextmanager
def dataset_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Holds the dataset's advisory lock on PostgreSQL for the block; elsewhere, or when the
    server cannot be reached now (the sync then fails, and is recorded, in its own way), no
    lock is taken.

    Raises:
        SyncLockedError: Another session (machine) holds it: naming its address and pid.
    """
    if destination_kind(pipeline) != "postgres":
        yield
        return
    try:
        client = pipeline.sql_client()
        client.open_connection()
    except Exception:  # noqa: BLE001 - no connection now: the sync reports that itself
        yield
        return
    # The schema's name as dlt normalizes it: "Kiosk-Data" and "kiosk_data" are one schema.
    key = lock_key(client.dataset_name)
    try:
        ((taken,),) = client.execute_sql("SELECT pg_try_advisory_lock(%s, %s)", LOCK_CLASS, key)
        if not taken:
            raise SyncLockedError(
                f"another sync of dataset {pipeline.dataset_name!r} is running against this "
                f"PostgreSQL database ({holder(client, key)}); {hint('locked')}")
        yield
    finally:
        client.close_connection()  # ends the session, and its lock with it


def holder(client: object, key: int) -> str:
    """Who holds the lock, as PostgreSQL sees them (address, pid, application)."""
    rows = client.execute_sql(  # type: ignore[attr-defined]
        "SELECT a.client_addr, a.pid, a.application_name, a.backend_start, "
        "now() - a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        LOCK_CLASS, key & 0xFFFFFFFF)
    if not rows:
        return "its session just ended"
    address, pid, application, started, age = rows[0]
    if started is None:  # another role's session: PostgreSQL shows its pid, not its details
        return (f"server pid {pid}, another role's session (its address and start are shown "
                f"to a superuser or a member of pg_read_all_stats)")
    # Its session's age tells a sync at work from one that hangs (the lock is the session's).
    return f"from {address or 'this host (socket)'}, server pid {pid}" + (
        f", {application}" if application else "") + (
        f", session started {format_timestamp(started)} ({duration(age)} ago)")
