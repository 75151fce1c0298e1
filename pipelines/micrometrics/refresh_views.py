"""A full refresh on PostgreSQL: the views that read the tables it drops are set aside first.

dlt drops a refreshed resource's tables with a plain ``DROP TABLE``, which PostgreSQL refuses
while a view reads them (the models' ``stg_*`` views do, and so may an analyst's): once the
models were built, ``--full-refresh`` failed every time, and its package, left pending, failed
every sync after it. So those views (the models' and anyone's, in any schema) are dropped before
the refreshing round and created again from their definitions once it has loaded, or failed, as
the models' build does for the views its own drops take along (``in_place``), with their
grants, comments, options, indexes and owner (``kept_attributes``); the dropped tables get
theirs back once a round has loaded them again (a BI role's SELECT on a loaded table). A view
that reads a table or column the first round did not bring back is tried again after each
round and at the sync's end, and given up (with a warning) only then. The definitions, every name
qualified, are kept in the dataset itself (``KEPT_TABLE``), written in the transaction that
drops the views: a sync killed before it created them again is followed by one that may run
elsewhere (a fresh runner, another worker), which lost them for good, silently, when they were
kept in the pipeline's folder (as a version before this one did; its files are still read).
DuckDB, Snowflake and BigQuery let a table under a view be dropped: nothing to do there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.common.schema.utils import get_root_table

from pipelines.models.in_place import (
    RELKINDS,
    View,
    dependent_views,
    exists,
    keep_given_up,
    kept_attributes,
    quoted,
    views_not_recreated,
)

from .target import target_of

# In the dataset: the definitions of the views set aside, until they are created again.
KEPT_TABLE = "_micrometrics_views_set_aside"


def refreshed_tables(pipeline: dlt.Pipeline, resources: Iterable[str]) -> list[str]:
    """The data tables of ``resources`` in the pipeline's schema, nested ones included: what
    dlt's ``drop_resources`` refresh drops."""
    if not pipeline.default_schema_name:
        return []  # nothing loaded yet, nothing to drop
    schema = pipeline.default_schema
    wanted = set(resources)
    return [table["name"] for table in schema.data_tables(include_incomplete=True)
            if get_root_table(schema.tables, table["name"]).get("resource") in wanted]


@contextmanager
def views_kept(pipeline: dlt.Pipeline, destination: str, resources: Iterable[str],
               warnings: list[str], pending_only: bool = False) -> Iterator[None]:
    """On PostgreSQL, ``views_set_aside`` for the tables of ``resources`` (none: nothing to
    set aside; ``pending_only``: for the tables the packages a sync left will drop, after
    creating again the views a killed sync set aside), and after the block, the views set
    aside that can be created again are (see ``restore_set_aside``; the sync's end names
    those that cannot). A grant or other attribute not given back goes into ``warnings``."""
    if destination != "postgres":
        yield
        return
    if pending_only:
        # First: the views a killed sync set aside (setting aside again would overwrite them).
        restore_set_aside(pipeline, warnings, final=False)
    tables = pending_drops(pipeline) if pending_only else refreshed_tables(pipeline, resources)
    try:
        if tables:
            with views_set_aside(pipeline, tables):
                yield
        else:
            yield
    finally:
        restore_set_aside(pipeline, warnings, final=False)  # none kept: one query


def views_not_restored(pipeline: dlt.Pipeline, destination: str) -> list[str]:
    """At a sync's end, on PostgreSQL: the views set aside that still cannot be created again,
    one warning each; they are given up."""
    if destination != "postgres":
        return []
    warnings: list[str] = []
    given_up = restore_set_aside(pipeline, warnings, final=True)
    return [f"warning: a view set aside for a refresh could not be created again: {line}"
            if kind not in RELKINDS["TABLE"] else
            f"warning: the grants and comments of a table a refresh dropped could not be given "
            f"back: {line}" for kind, line in given_up] + warnings


def pending_drops(pipeline: dlt.Pipeline) -> list[str]:
    """The tables the packages a sync left will drop as they load (a refresh's first round):
    only those need their views set aside (a view created again is a new object: what
    depended on it besides, a function's reference, is not given back)."""
    dropped: list[str] = []
    extracted = pipeline._get_normalize_storage().extracted_packages  # noqa: SLF001 - no API
    for load_id in pipeline.list_normalized_load_packages():
        dropped += _dropped(pipeline.get_load_package_state(load_id))
    for load_id in pipeline.list_extracted_load_packages():
        dropped += _dropped(extracted.get_load_package_state(load_id))
    return dropped


def _dropped(state: Any) -> list[str]:
    return [table["name"] for table in state.get("dropped_tables", []) or []]


@contextmanager
def views_set_aside(pipeline: dlt.Pipeline, tables: list[str]) -> Iterator[None]:
    """Drops the views that read ``tables`` (on PostgreSQL) for the block, their definitions
    kept in the dataset (``restore_set_aside`` creates them again, after the block or, when a
    sync was killed in it (SIGKILL), in the next sync, wherever it runs)."""
    with pipeline.sql_client() as client:
        views = _views_reading(client, tables)
        grants = _tables_attributes(client, tables)
        if views or grants:
            with client.begin_transaction():  # kept if, and only if, dropped
                _keep(client, _kept(pipeline, client) + views + grants)
                for schema, name, kind, _definition, _attributes in views:
                    drop = "DROP MATERIALIZED VIEW" if kind == "m" else "DROP VIEW"
                    client.execute_sql(
                        f"{drop} IF EXISTS {quoted(schema)}.{quoted(name)} CASCADE")
            _forget_files(pipeline)
    yield


def restore_set_aside(pipeline: dlt.Pipeline, warnings: list[str],
                      final: bool = True) -> list[tuple[str, str]]:
    """Creates again the views set aside for this target (none: nothing to do). One that
    cannot be created yet stays kept: a refresh's first round holds only the tables and
    columns its own pages bring, and a view of a column only later pages carry was dropped
    for good. So those are tried again after each round and at the end of each sync
    (``final``), which gives up on them with one line each (nothing of a sync that completed
    will bring back what they read): ``(relkind, line)`` each. The same for the grants and
    comments of the tables a refresh dropped, given back once they are loaded again. A view
    created again whose grant or other attribute could not be given back is named in
    ``warnings``."""
    with pipeline.sql_client() as client:
        views = _kept(pipeline, client)
        if not views:
            return []
        partly: list[str] = []
        # Each view's CREATE (and each attribute given back) commits on its own.
        failed = views_not_recreated(client, views, partly)
        warnings += [f"warning: set aside for a refresh: {line}" for line in partly]
        with client.begin_transaction():  # what is still kept replaces what was, whole
            _keep(client, [] if final else [view for view, _line in failed])
            given_up = keep_given_up(client, failed) if final else []
    _forget_files(pipeline)
    return [(view[2], line) for (view, _error), line in zip(failed, given_up, strict=False)]


def _kept(pipeline: dlt.Pipeline, client: Any) -> list[View]:
    """The views kept in the dataset, and those an earlier version kept in files (this
    target's, or for any)."""
    views: dict[tuple[str, str], View] = {}
    for path in (_legacy_kept_at(pipeline), _kept_at(pipeline)):
        try:
            for schema, name, kind, definition, *_none in json.loads(path.read_text()):
                views[(schema, name)] = (schema, name, kind, definition, ())
        except (OSError, ValueError):
            continue
    table = client.make_qualified_table_name(KEPT_TABLE)
    if exists(client, table):
        # As JSON: a table an earlier version kept has no attributes column.
        with client.execute_query(f"SELECT to_jsonb(k) FROM {table} k ORDER BY position"
                                  ) as cursor:
            for (row,) in cursor.fetchall():
                views[(row["view_schema"], row["view_name"])] = (
                    row["view_schema"], row["view_name"], row["kind"], row["definition"],
                    tuple(json.loads(row.get("attributes") or "[]")))
    return list(views.values())


def _keep(client: Any, views: list[View]) -> None:
    """Keeps ``views`` (in their order: those reading others after them) in the dataset, in
    place of what was kept; the table goes once none is left."""
    table = client.make_qualified_table_name(KEPT_TABLE)
    if views:
        unique = {(view[0], view[1]): view for view in views}
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (position integer,"
                           " view_schema text, view_name text, kind text, definition text,"
                           " attributes text)")
        # One an earlier version created (a refresh of it killed, the views still kept).
        client.execute_sql(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS attributes text")
        client.execute_sql(f"DELETE FROM {table}")
        for position, (schema, name, kind, definition, attributes) in enumerate(
                unique.values()):
            client.execute_sql(
                f"INSERT INTO {table} (position, view_schema, view_name, kind, definition,"
                " attributes) VALUES (%s, %s, %s, %s, %s, %s)",
                position, schema, name, kind, definition, json.dumps(list(attributes)))
    else:
        client.execute_sql(f"DROP TABLE IF EXISTS {table}")


def _forget_files(pipeline: dlt.Pipeline) -> None:
    """Once what they held is in the table (or created again): an earlier version's files."""
    _kept_at(pipeline).unlink(missing_ok=True)
    _legacy_kept_at(pipeline).unlink(missing_ok=True)


def _kept_at(pipeline: dlt.Pipeline) -> Path:
    """Where an earlier version kept them for this target: beside the sync's lock, one file
    per target (a sync of another dataset on this machine must not create them)."""
    target = json.dumps(target_of(pipeline), sort_keys=True).encode()
    return (Path(pipeline.pipelines_dir)
            / f"{pipeline.pipeline_name}.views-set-aside.{hashlib.sha256(target).hexdigest()[:12]}"
              ".json")


def _legacy_kept_at(pipeline: dlt.Pipeline) -> Path:
    """Where a version before per-target files kept them."""
    return Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.views-set-aside.json"


def _tables_attributes(client: Any, tables: list[str]) -> list[View]:
    """For each of ``tables`` that has any, the statements that give it back its grants,
    comments and indexes once it is loaded again (dlt drops it and creates it anew)."""
    kept = []
    for table in tables:
        attributes = kept_attributes(client, client.make_qualified_table_name(table))
        if attributes:
            kept.append((client.dataset_name, table, "r", "", attributes))
    return kept


def _views_reading(client: Any, tables: list[str]) -> list[View]:
    """Every view reading any of ``tables`` (directly or through another view), each once,
    shallowest first (so those reading others are created after them)."""
    found: dict[tuple[str, str], View] = {}
    for table in tables:
        for view in dependent_views(client, client.make_qualified_table_name(table), set()):
            found.setdefault(view[:2], view)
    return list(found.values())
