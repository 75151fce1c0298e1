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
DuckDB credentials set the same option in ``global_config``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt

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


def duckdb_credentials(pipeline: dlt.Pipeline) -> Any | None:
    """The pipeline's resolved DuckDB credentials (file, read_only, global_config); None for
    another destination or a connection the caller passed (it stays open anyway)."""
    destination = pipeline.destination
    if destination is None or destination.destination_type.rsplit(".", 1)[-1] != "duckdb":
        return None
    credentials = pipeline.destination_client().config.credentials
    if credentials.external_conn() is not None or credentials.database in ("", ":memory:"):
        return None  # the caller's connection (open anyway), or no file to hold
    return credentials


class HeldDatabase:
    """The sync's own connection to its DuckDB file."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self.configured = {key.lower(): value
                           for key, value in (credentials.global_config or {}).items()}
        self.connection: Any = None

    def open(self) -> None:
        import duckdb

        self.connection = duckdb.connect(
            database=self.credentials.database, read_only=self.credentials.read_only,
            config={key: self.configured[key] for key in CONNECT_OPTIONS
                    if key in self.configured},
        )
        try:
            for key, value in SETTINGS.items():
                if key not in self.configured:
                    self.connection.execute(f"SET GLOBAL {key} = ?", [value])
        except Exception:
            self.close()  # not left open (and the file locked) by a setting DuckDB refused
            raise

    def checkpoint(self) -> None:
        """Close (DuckDB checkpoints and frees the instance's memory) and open again."""
        self.close()
        self.open()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()  # the last connection: checkpoint and shut down
            self.connection = None


@contextmanager
def held_duckdb(pipeline: dlt.Pipeline) -> Iterator[HeldDatabase | None]:
    """Hold the pipeline's DuckDB database open for the block; None for other destinations."""
    credentials = duckdb_credentials(pipeline)
    if credentials is None:
        yield None
        return
    held = HeldDatabase(credentials)
    held.open()
    try:
        yield held
    finally:
        held.close()
