"""Where the data goes: the pipeline, its destination, and the command-line options for them.

Shared by the sync and the models runner so both always address the same dataset.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.schema.exceptions import SchemaCorruptedException
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from pipelines import bigquery_deadline, connection_strings, postgres_sessions
from pipelines.micrometrics.duckdb_session import plain_file, refuse_a_file_named_like_the_dataset
from pipelines.micrometrics.errors import ConfigurationError

log = logging.getLogger("micrometrics")

PIPELINE_NAME = "micrometrics"
DEFAULT_DATASET = "micrometrics"
# Not micrometrics.duckdb: DuckDB names a file's catalog after it, and a catalog and a schema
# (dataset) of the same name make every "micrometrics.table" reference ambiguous.
DEFAULT_DUCKDB_FILE = "warehouse.duckdb"


def configured_duckdb_path() -> str:
    """The DuckDB database configured (``DESTINATION__DUCKDB__CREDENTIALS``, or its
    ``__DATABASE`` field, in any provider dlt reads), else ``warehouse.duckdb``."""
    configured = dlt.config.get("destination.duckdb.credentials")
    if isinstance(configured, Mapping):  # a [destination.duckdb.credentials] table
        configured = configured.get("database")  # its other keys (global_config...) resolve
    if not configured:  # the field alone (DESTINATION__DUCKDB__CREDENTIALS__DATABASE)
        configured = dlt.config.get("destination.duckdb.credentials.database")
    return str(configured) if configured else DEFAULT_DUCKDB_FILE


def missing_duckdb_file(destination: str) -> str | None:
    """The DuckDB file the sync would write, when it does not exist (reading it would create an
    empty one)."""
    if destination != "duckdb":
        return None
    path = configured_duckdb_path()
    if not plain_file(path):
        return None
    return None if Path(path).exists() else path


def duckdb_file(path: str) -> str:
    """``path`` as the sync opens it: a relative file path against the working directory, as
    the README says. Given as it is, dlt reads it against the directory of the pipeline
    folder's first sync (its ``initial_cwd``), for good: a sync from a second checkout, or after
    one cron run without ``cd``, loaded into another directory's file while status, models and
    report read this one's."""
    scheme, sep, rest = path.partition(":///")
    if sep and scheme == "duckdb" and not rest.startswith("/"):  # duckdb:///relative.duckdb
        return f"duckdb:///{os.path.abspath(rest)}"
    return os.path.abspath(path) if plain_file(path) else path


def earlier_duckdb_file(pipeline: dlt.Pipeline) -> tuple[str, str] | None:
    """For a relative DuckDB path: the file it names from the directory of the pipeline folder's
    first sync (where versions before ``duckdb_file`` loaded, wherever they ran), when that is
    another file that exists; and the file it names here."""
    path = configured_duckdb_path()
    if not plain_file(path) or os.path.isabs(path):
        return None
    try:
        first = str(pipeline.get_local_state_val("initial_cwd"))
    except Exception:  # noqa: BLE001 - no local state (a new folder): nothing earlier
        return None
    earlier, here = os.path.abspath(os.path.join(first, path)), duckdb_file(path)
    return (earlier, here) if earlier != here and os.path.isfile(earlier) else None


def duckdb_destination(dataset: str, read_only: bool = False) -> Any:
    """DuckDB at ``configured_duckdb_path()``, refusing a file whose name equals the dataset or
    its staging dataset (DuckDB could not resolve ``dataset.table`` then). ``read_only``: for
    the commands that only read (status, report): DuckDB lets several processes read a file at
    once (a notebook's or BI tool's read-only connection) but only one write it."""
    path = duckdb_file(configured_duckdb_path())
    refuse_a_file_named_like_the_dataset(path, dataset)
    if read_only:
        return dlt.destinations.duckdb(credentials=DuckDbCredentials(path, read_only=True))
    return dlt.destinations.duckdb(credentials=path)


def open_pipeline(destination: str, dataset: str, pipelines_dir: str | None = None,
                  set_aside: bool = False, read_only: bool = False) -> dlt.Pipeline:
    """The connector's dlt pipeline for ``destination`` and ``dataset``; ``set_aside``: a
    folder whose state or schema dlt cannot read is moved aside (the sync, under its lock);
    ``read_only``: a DuckDB file opened only to read (``duckdb_destination``).

    Raises:
        ConfigurationError: An empty or blank name (from a scheduler's parameter as from the
            command line: dlt would take the dataset or destination it used last).
        UnreadableFolder: The folder's state or schema cannot be read (not ``set_aside``).
    """
    for flag, name in (("destination", destination), ("dataset", dataset)):
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"{flag} must not be empty or blank, got {name!r}")
    target: Any = destination
    if destination == "duckdb":
        target = duckdb_destination(dataset, read_only)
    elif destination == "postgres":
        target = postgres_sessions.postgres()
    elif destination == "snowflake":
        target = connection_strings.snowflake()
    elif destination == "bigquery":
        target = bigquery_deadline.bigquery()
    kwargs = {"pipelines_dir": pipelines_dir} if pipelines_dir else {}
    try:
        return dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=target,
                            dataset_name=dataset, **kwargs)
    except (json.JSONDecodeError, SchemaCorruptedException) as exc:
        if not set_aside:
            raise UnreadableFolder(
                f"this machine's pipeline folder could not be read ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}): the next sync moves it aside and restores the "
                f"state from the destination") from exc
        set_aside_damaged_folder(pipelines_dir, exc)
    return dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=target, dataset_name=dataset,
                        **kwargs)


class UnreadableFolder(Exception):
    """This machine's pipeline folder holds a state or schema file dlt cannot read."""


def set_aside_damaged_folder(pipelines_dir: str | None, exc: Exception) -> Path:
    """Moves this machine's pipeline folder aside when dlt cannot read its state or schema
    (cut short or emptied by a full disk or a power loss): dlt failed on it in every command,
    for ever, naming no file. Without it, the sync restores the state of the last completed
    load from the destination and reads again what the folder's packages held, as from a fresh
    runner. Kept aside for a look, not deleted; returns where."""
    folder = Path(pipelines_dir or get_dlt_pipelines_dir()) / PIPELINE_NAME
    if not folder.is_dir():
        raise exc
    aside = folder.with_name(
        f"{folder.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}")
    os.replace(folder, aside)
    log.warning("warning: this machine's pipeline folder could not be read (%s: %s); moved to "
                "%s: the state comes back from the destination, and what the folder held but "
                "had not loaded is read again", type(exc).__name__, " ".join(str(exc).split()),
                aside)
    return aside


def name_arg(value: str) -> str:
    """A destination or dataset name: not empty or blank (dlt would take an empty one for the
    dataset or destination it used last, and fail on a blank one after the requests)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty or blank (an unset variable?)")
    return value


def add_destination_arguments(parser: argparse.ArgumentParser) -> None:
    """``--destination`` and ``--dataset``, the same for every command."""
    parser.add_argument("--destination", default="duckdb", type=name_arg,
                        help="dlt destination: duckdb (default), postgres, snowflake, bigquery")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, type=name_arg,
                        help=f"dataset (schema) name in the destination (default: "
                             f"{DEFAULT_DATASET})")

