"""Keep the pipeline folder from growing for ever on a machine that syncs unattended.

dlt keeps every load package it completed (``load/loaded/<load id>``: the data files, a copy of
the schema, the state): two per hourly sync (the data and the outcome record), tens of
thousands a year, gigabytes, and copies of responses a purge removed from the tables. Nothing of
ours reads them once loaded (a killed sync's leftovers are the packages *not* loaded). After a
sync, the completed ones older than ``KEEP_LOADED`` are deleted; the recent ones stay for
inspection (``dlt pipeline micrometrics load-package <id>``).

In the destination, dlt stores a copy of the schema (about 9 KB) in ``_dlt_version`` of the
dataset and of its staging dataset whenever the schema changes, and the question history's
scd2 boundary (the sync's start, a table hint) changes it every sync: a row per sync in each,
for ever (2 years of hourly syncs: a 290 MB DuckDB file, and ``status`` reading the schema back
took 2.4 s and 500 MB, as does every sync on a fresh runner). Once a day, the versions more
than ``KEEP_LOADED`` older than the newest are deleted (dlt reads only the newest, or the
current one by its hash).

dlt also appends the whole state (2 KB with 30 surveys, 13 KB with 500) to
``_dlt_pipeline_state`` with every load: two rows per sync (the data's and the outcome
record's), 52,000 in 3 years of hourly syncs (118 MB of PostgreSQL for 10 MB of data, measured
with 30 surveys; about 680 MB with 500, from the row's size), read by nothing but the newest.
On the same daily turn, the rows made more than ``KEEP_STATES`` before the newest of a completed
load are deleted. Longer than the versions' week: a machine that last synced within it still
finds the state it loaded (``rolled_back``); one idle for longer takes the destination's state
as after a restored backup, with its warning (nothing lost: the windows of packages it had left
are read again).
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.job_client_impl import SqlJobClientBase

log = logging.getLogger("micrometrics.sync")

KEEP_LOADED = timedelta(days=7)
KEEP_STATES = timedelta(days=30)
PRUNE_VERSIONS_EVERY = timedelta(days=1)
# In the pipeline state, which travels with the data: when the versions were last pruned (in
# local state, a fresh runner (GitHub Actions, a container) pruned on every sync).
VERSIONS_PRUNED_AT = "micrometrics_versions_pruned_at"


def prune_loaded_packages(pipeline: dlt.Pipeline, keep: timedelta = KEEP_LOADED) -> list[str]:
    """Delete the completed load packages older than ``keep``; returns their load ids. A load
    id is the time its package was made (dlt's, on this machine's clock)."""
    loaded = Path(pipeline.working_dir) / "load" / "loaded"
    if not loaded.is_dir():
        return []
    oldest = time.time() - keep.total_seconds()
    pruned = []
    for package in sorted(loaded.iterdir()):
        try:
            made = float(package.name)
        except ValueError:
            continue  # not a package of dlt's
        if package.is_dir() and made < oldest:
            shutil.rmtree(package, ignore_errors=True)
            pruned.append(package.name)
    if pruned:
        log.debug("deleted %d load packages loaded more than %s ago", len(pruned), keep)
    return pruned


def prune_schema_versions(pipeline: dlt.Pipeline, now: datetime,
                          keep: timedelta = KEEP_LOADED) -> int:
    """At most once every ``PRUNE_VERSIONS_EVERY`` (by ``now``, the sync's clock): deletes the
    schema versions stored more than ``keep`` before the newest, in the dataset and in its
    staging dataset, and the pipeline's states stored more than ``KEEP_STATES`` before its
    newest loaded one; returns how many versions and states."""
    try:
        last = float(pipeline.state.get(VERSIONS_PRUNED_AT))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        last = None
    if last is not None and 0 <= now.timestamp() - last < PRUNE_VERSIONS_EVERY.total_seconds():
        return 0
    deleted = 0
    try:
        with pipeline.destination_client() as client:
            if not isinstance(client, SqlJobClientBase):
                return 0
            if client.is_storage_initialized():  # else a first sync: nothing stored yet
                deleted += _prune_versions(client, keep)
                deleted += _prune_states(client, pipeline.pipeline_name, KEEP_STATES)
            if hasattr(client, "with_staging_dataset"):
                with client.with_staging_dataset():
                    if client.is_storage_initialized():
                        deleted += _prune_versions(client, keep)
    except Exception as exc:  # noqa: BLE001 - housekeeping: the sync itself succeeded
        log.warning("warning: old stored schema versions or states could not be deleted "
                    "(tried again next sync): %s", " ".join(str(exc).split())[:200])
        return deleted
    with pipeline.managed_state() as state:
        state[VERSIONS_PRUNED_AT] = now.timestamp()  # type: ignore[literal-required]
    if deleted:
        log.debug("deleted %d stored schema versions and states older than the newest",
                  deleted)
    return deleted


def _prune_versions(client: SqlJobClientBase, keep: timedelta) -> int:
    sql = client.sql_client
    table = sql.make_qualified_table_name(client.schema.version_table_name)
    name, inserted = (sql.escape_column_name(column) for column in ("schema_name", "inserted_at"))
    where = f"{name} = %s AND {inserted} < %s"
    try:
        rows = sql.execute_sql(f"SELECT MAX({inserted}) FROM {table} WHERE {name} = %s",
                               client.schema.name)
        newest = rows[0][0] if rows else None
        if newest is None:
            return 0
        return _delete(sql, table, where, client.schema.name, newest - keep)
    except DestinationUndefinedEntity:
        return 0  # no such dataset (or no version stored) yet


def _prune_states(client: SqlJobClientBase, pipeline_name: str, keep: timedelta) -> int:
    """Deletes ``pipeline_name``'s stored states made more than ``keep`` before its newest of a
    completed load (the one dlt restores: a newer row of a load that never completed is no
    reference, and is kept)."""
    sql, naming = client.sql_client, client.schema.naming
    states = sql.make_qualified_table_name(client.schema.state_table_name)
    loads = sql.make_qualified_table_name(client.schema.loads_table_name)
    name, created, state_load, load_id, status = (
        sql.escape_column_name(naming.normalize_identifier(column))
        for column in ("pipeline_name", "created_at", "_dlt_load_id", "load_id", "status"))
    where = f"{name} = %s AND {created} < %s"
    try:
        rows = sql.execute_sql(
            f"SELECT MAX(s.{created}) FROM {states} s JOIN {loads} l "
            f"ON l.{load_id} = s.{state_load} WHERE s.{name} = %s AND l.{status} = 0",
            pipeline_name)
        newest = rows[0][0] if rows else None
        if newest is None:
            return 0
        return _delete(sql, states, where, pipeline_name, newest - keep)
    except DestinationUndefinedEntity:
        return 0  # no state stored yet


def _delete(sql: Any, table: str, where: str, *args: Any) -> int:
    """Deletes the rows of ``table`` matching ``where`` (with ``args``); returns how many
    (counted first: not every destination's cursor tells how many a DELETE removed)."""
    rows = sql.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE {where}", *args)
    count = int(rows[0][0]) if rows else 0
    if count:
        sql.execute_sql(f"DELETE FROM {table} WHERE {where}", *args)
    return count
