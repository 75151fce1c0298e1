"""A full refresh on PostgreSQL: the views that read the tables it drops are set aside first.

dlt drops a refreshed resource's tables with a plain ``DROP TABLE``, which PostgreSQL refuses
while a view reads them (the models' ``stg_*`` views do, and so may an analyst's): once the
models were built, ``--full-refresh`` failed every time, and its package, left pending, failed
every sync after it. So those views (the models' and anyone's, in any schema) are dropped before
the refreshing round and created again from their definitions once it has loaded, or failed, as
the models' build does for the views its own drops take along (``in_place``). DuckDB, Snowflake
and BigQuery let a table under a view be dropped: nothing to do there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.common.schema.utils import get_root_table

from pipelines.models.in_place import dependent_views, quoted, recreate_views


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
               pending_only: bool = False) -> Iterator[list[str]]:
    """On PostgreSQL, ``views_set_aside`` for the tables of ``resources`` (none: nothing to do;
    ``pending_only``: for the tables the packages a sync left will drop, after creating again
    the views a killed sync set aside). Yields the warnings, filled after the block: one per
    view that could not be created again."""
    warnings: list[str] = []
    failed: list[str] = []  # filled by views_set_aside as it ends
    on_postgres = destination == "postgres"
    if on_postgres and pending_only:
        # First: the views a killed sync set aside (setting aside again would overwrite them).
        failed += restore_set_aside(pipeline)
    tables = (pending_drops(pipeline) if pending_only else refreshed_tables(pipeline, resources)
              ) if on_postgres else []
    failed_now: list[str] = []
    try:
        if tables:
            with views_set_aside(pipeline, tables) as failed_now:
                yield warnings
        else:
            yield warnings
    finally:
        warnings += [f"a view set aside for a refresh could not be created again: {line}"
                     for line in failed + failed_now]


def pending_drops(pipeline: dlt.Pipeline) -> list[str]:
    """The tables the packages a sync left will drop as they load (a refresh's first round):
    only those need their views set aside (a view created again loses its grants)."""
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
def views_set_aside(pipeline: dlt.Pipeline, tables: list[str]) -> Iterator[list[str]]:
    """Drops the views that read ``tables`` (on PostgreSQL) for the block and creates them again
    after it (whether it failed or not). Yields a list that is filled, after the block, with one
    line per view that could not be created again (its definition no longer fits the tables).
    Their definitions are kept in the pipeline's folder meanwhile: a sync killed in the block
    (SIGKILL) never creates them again, the next one does (``restore_set_aside``)."""
    failures: list[str] = []
    kept = _kept_at(pipeline)
    with pipeline.sql_client() as client:
        views = _views_reading(client, tables)
        if views:
            kept.write_text(json.dumps(views))
        for schema, name, kind, _definition in views:
            drop = "DROP MATERIALIZED VIEW" if kind == "m" else "DROP VIEW"
            client.execute_sql(f"{drop} IF EXISTS {quoted(schema)}.{quoted(name)} CASCADE")
    try:
        yield failures
    finally:
        if views:
            failures += restore_set_aside(pipeline)


def restore_set_aside(pipeline: dlt.Pipeline) -> list[str]:
    """Creates again the views a killed sync set aside (none: nothing to do); one line per
    view that could not be."""
    kept = _kept_at(pipeline)
    try:
        views = [tuple(view) for view in json.loads(kept.read_text())]
    except (OSError, ValueError):
        return []
    with pipeline.sql_client() as client:
        failures = recreate_views(client, views)  # type: ignore[arg-type]
    kept.unlink(missing_ok=True)
    return failures


def _kept_at(pipeline: dlt.Pipeline) -> Path:
    """Beside the sync's lock, outside the working folder dlt resets when it drops."""
    return Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.views-set-aside.json"


def _views_reading(client: Any, tables: list[str]) -> list[tuple[str, str, str, str]]:
    """Every view reading any of ``tables`` (directly or through another view), each once,
    shallowest first (so those reading others are created after them)."""
    found: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    for table in tables:
        for view in dependent_views(client, client.make_qualified_table_name(table), set()):
            found.setdefault(view[:2], view)
    return list(found.values())
