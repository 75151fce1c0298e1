"""A sync's DuckDB database: opened once a round instead of once a load job, memory bounded.

dlt opens the DuckDB file for each load job (and each query between rounds) and closes it
after; when the last connection to a file closes, DuckDB shuts the database down and
checkpoints it (writes its WAL into the file): 11.6% of a 200k-response sync's time. All
connections a process opens to one file share one database instance, so while the sync holds a
connection, dlt's own connections (opened and closed as before) attach to the open instance
and nothing is checkpointed. The sync closes its connection after each round (one checkpoint
a round, which also hands the round's memory back) and at the end, also when it fails; after
``sync()`` returns the file is closed and free for any process. The pipeline is not changed:
its destination and credentials stay the caller's.

A database held open keeps what its queries allocated, up to DuckDB's memory_limit (80% of
RAM by default), so the sync bounds the instance it holds (``SETTINGS``) unless the user's
DuckDB credentials set the same option in ``global_config``. The instance is shared with any
connection the caller's process holds to the file (a notebook's, an app's), so the sync sets
each option back to the value it found when it closes its connection, also when it fails.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.common.normalizers.naming.snake_case import NamingConvention

from pipelines.error_chain import causes

from . import duckdb_stub
from .errors import ConfigurationError
from .messages import hint
from .warehouse import destination_kind

# Measured with `benchmarks.scale --only 200k|1m` (RESULTS.md). A round's load (parquet into
# staging tables, then the merges) runs in 64MB, spilling the rest to disk (at 32MB a merge
# failed for memory; 48MB lowered no peak). One thread: ~20MB less at the peak and no slower
# (2 cores; the sync's own threads use the other). DuckDB's allocator returning what a task
# freed above 16MB (default 128MB) in the background: ~15MB less at the peak (the checkpoint
# after a round). preserve_insertion_order off: inserts and merges need not keep row order
# (dlt's merges order where they need it).
SETTINGS: dict[str, Any] = {
    "memory_limit": "64MB",
    "threads": 1,
    "preserve_insertion_order": False,
    "allocator_flush_threshold": "16MB",
    "allocator_background_threads": True,
}
# Options dlt passes to duckdb.connect() rather than SET: a second connection to an open file
# must pass the same, or DuckDB refuses it.
CONNECT_OPTIONS = ("custom_user_agent",)
# Another process holding the file (``make status``, ``make models``, a notebook's query) when
# the sync opens it, between two rounds or after its loads: waited for this long, asked again
# every LOCK_POLL_SECONDS. Such holders let go within seconds; without the wait, a status run
# beside a sync failed it, after its loads too (the models unbuilt, exit 1).
LOCK_WAIT_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.5
pause, waited = time.sleep, time.monotonic  # the wait between two tries (tests replace them)
# What DuckDB raises when another process holds the file: it locks a file it opens (read-write
# or read-only) until that process closes it or exits.
FILE_LOCKED = ("Could not set lock on file", "Conflicting lock is held")


def file_held(exc: BaseException) -> BaseException | None:
    """DuckDB's "Could not set lock on file" in ``exc``'s chain (it names the holder's PID)."""
    return next((link for link in causes(exc)
                 if any(text in str(link) for text in FILE_LOCKED)), None)


HOLDER_PID = re.compile(r"\(PID (\d+)\)")


def held_by_another(held: BaseException) -> str:
    """What to do when another process has the DuckDB file (``held``: ``file_held``'s link), in
    words: dlt's wrapper advises checking the credentials and the internet connection."""
    pid = HOLDER_PID.search(str(held))
    return (f"another process{f' (pid {pid.group(1)})' if pid else ''} has the DuckDB file "
            f"open: a sync, or a notebook or BI tool (DuckDB lets one process write a file, or "
            f"several only read it): run again once it ends, or open it there with "
            f"read_only=True and end it")


def duckdb_credentials(pipeline: dlt.Pipeline) -> Any | None:
    """The pipeline's resolved DuckDB credentials (file, read_only, global_config); None for
    another destination or a connection the caller passed (it stays open anyway)."""
    if destination_kind(pipeline) != "duckdb":
        return None
    credentials = pipeline.destination_client().config.credentials
    if credentials.external_conn() is not None or credentials.database in ("", ":memory:"):
        return None  # the caller's connection (open anyway), or no file to hold
    return credentials


def refuse_a_file_named_like_the_dataset(path: str, dataset: str) -> None:
    """A DuckDB file named like the dataset (dlt's default file, ``<pipeline>.duckdb``, is one
    for the pipeline ``micrometrics`` and its dataset) or like the staging dataset dlt merges
    from: DuckDB names the catalog after the file, and ``dataset.table`` is then ambiguous. The
    load failed with a Binder Error, after the whole first round's requests.

    Raises:
        ConfigurationError: naming the file, before any request.
    """
    # DuckDB's names are case-insensitive, and dlt creates the dataset under its normalized name
    # (Micrometrics -> micrometrics), and its merges a staging dataset beside it
    # (micrometrics_staging, dlt's default layout): each clashes with the catalog.
    normalized = NamingConvention().normalize_table_identifier(dataset).lower()
    if Path(path).stem.lower() in {dataset.lower(), normalized, f"{normalized}_staging"}:
        raise ConfigurationError(
            f"DuckDB file {path!r} has the same name as the dataset {dataset!r} (or the staging "
            f"dataset dlt merges from); DuckDB then cannot resolve dataset.table; "
            f"{hint('duckdb_name')}"
        )


log = logging.getLogger("micrometrics")


def plain_file(path: str) -> bool:
    """Whether a DuckDB path names a file as it is (not a URL, nor ``:memory:``)."""
    return "://" not in path and not path.startswith(":")


class HeldDatabase:
    """The sync's own connection to its DuckDB file; ``bounded``: with ``SETTINGS`` applied
    (the loads), else DuckDB's own (the models' queries are not the sync's to bound)."""

    def __init__(self, credentials: Any, bounded: bool = True,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.credentials = credentials
        self.bounded = bounded
        self.clock, self.sleep = clock or waited, sleep or pause
        self.configured = {key.lower(): value
                           for key, value in (credentials.global_config or {}).items()}
        self.connection: Any = None
        # The values the sync found on the instance, read when it first opened it: what it
        # sets back on closing (read once: a value DuckDB shows rounded would drift a round).
        self.found: dict[str, Any] = {}
        self.applied: list[str] = []

    def open(self) -> None:
        self.connection = self.connect()
        try:
            for key, value in SETTINGS.items() if self.bounded else ():
                if key not in self.configured:
                    if key not in self.found:
                        self.found[key] = self.setting(key)
                    self.applied.append(key)
                    self.connection.execute(f"SET GLOBAL {key} = ?", [value])
        except Exception:
            self.close()  # not left open (and the file locked) by a setting DuckDB refused
            raise

    def connect(self) -> Any:
        """A connection to the file, waiting up to ``LOCK_WAIT_SECONDS`` for another process
        that holds it (DuckDB's message names its PID)."""
        import duckdb

        path = str(self.credentials.database or "")
        made_anew = False
        deadline = self.clock() + LOCK_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(
                    database=self.credentials.database, read_only=self.credentials.read_only,
                    config={key: self.configured[key] for key in CONNECT_OPTIONS
                            if key in self.configured},
                )
            except Exception as exc:
                if (not made_anew and plain_file(path) and not self.credentials.read_only
                        and duckdb_stub.never_held_data(path, exc)):
                    duckdb_stub.set_aside(path)  # a full disk cut it short as it was made
                    made_anew = True
                    continue
                if (not isinstance(exc, duckdb.IOException)
                        or not any(text in str(exc) for text in FILE_LOCKED)
                        or self.clock() >= deadline):
                    raise
            self.sleep(LOCK_POLL_SECONDS)

    def checkpoint(self) -> None:
        """Close (DuckDB checkpoints and frees the instance's memory) and open again."""
        self.close()
        self.open()

    def close(self) -> None:
        if self.connection is not None:
            try:
                # The round's checkpoint first, still within the sync's bounds (closing the last
                # connection checkpoints too, but by then the settings are set back).
                with contextlib.suppress(Exception):  # another transaction runs: at close
                    self.connection.execute("CHECKPOINT")
                self.restore()
            finally:
                self.connection.close()  # the last connection: checkpoint and shut down
                self.connection = None

    def setting(self, key: str) -> Any:
        return self.connection.execute("SELECT current_setting(?)", [key]).fetchone()[0]

    def restore(self) -> None:
        """Set back what the sync set: another connection of this process to the file (the
        caller's) goes on with its own settings, not the sync's 64MB and one thread."""
        while self.applied:
            key = self.applied.pop()
            try:
                # DuckDB's default exactly (a memory_limit shows rounded: 18.8 GiB), else the
                # value found as DuckDB showed it
                self.connection.execute(f"RESET GLOBAL {key}")
                if self.setting(key) != self.found[key]:
                    self.connection.execute(f"SET GLOBAL {key} = ?",
                                            [readable(self.found[key])])
            except Exception as exc:  # noqa: BLE001 - never fails the sync, or hides its error
                log.warning("warning: DuckDB's %s could not be set back to %s for this "
                            "process's other connections: %s", key, self.found[key],
                            str(exc).splitlines()[0])


def readable(shown: Any) -> Any:
    """A setting's value as DuckDB shows it, in a form its SET reads: it shows an unlimited
    memory_limit as ``16383.9 PiB`` (its largest: ``-1`` sets it) and reads no PiB."""
    if isinstance(shown, str) and shown.endswith(" PiB"):
        pebibytes = float(shown[:-4])
        return "-1" if pebibytes >= NO_MEMORY_LIMIT_PIB else f"{pebibytes * 1024:.1f} TiB"
    return shown


NO_MEMORY_LIMIT_PIB = 16383.0


@contextmanager
def held_duckdb(pipeline: dlt.Pipeline, bounded: bool = True) -> Iterator[HeldDatabase | None]:
    """Hold the pipeline's DuckDB database open for the block (``bounded``: see
    ``HeldDatabase``); None for other destinations."""
    credentials = duckdb_credentials(pipeline)
    if credentials is None:
        yield None
        return
    held = HeldDatabase(credentials, bounded=bounded)
    held.open()
    try:
        yield held
    finally:
        held.close()
