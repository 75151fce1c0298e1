"""dlt settings a sync applies for its duration, each only where the user configured nothing.

dlt reads these from its configuration (environment, config.toml); the sync sets them as
environment variables while it runs and removes them afterwards, so what the user configured
wins and nothing sticks to the process. Measured with ``benchmarks.scale`` (RESULTS.md).

Every destination:

- ``data_writer.disable_compression``: dlt gzips the files between its steps (extract ->
  normalize, and text load files); a fifth of a 200k-response sync's CPU (53.6 -> 42.6 CPU-s
  uncompressed). They live only until their load, and loads into DuckDB, Snowflake and BigQuery
  are parquet (compressed within).
- ``data_writer.buffer_max_items`` = 1000: dlt's writers buffer 5,000 items per table; the
  normalize step's copies were ~20MB of a sync's peak memory, and 1,000 cost no measurable time.

DuckDB only (nothing else was measured, and on Snowflake and BigQuery each normalize worker
writes its own load file: a load job more per table and round, which BigQuery caps per day):

- ``normalize.workers`` = 2 and ``sources.data_writer.file_max_items`` = 4000: normalizing
  (dlt's relational normalizer: nested answers into their table, every value checked against
  its column) was 26 of 46 s of a 200k-response sync, one core busy, the other idle. dlt hands a
  package's files to worker processes, whole files only, and the extract writes one file per
  table and round unless its files rotate (the extract's files, not the load files). Only where
  dlt forks its workers (Linux, main thread, no orchestrator): a spawned worker imports dlt anew
  each round, which costs more than it saves. Forked workers share the sync's memory pages
  until they write them (``all processes MB`` in RESULTS.md counts them once); see
  ``_workers_forking`` for keeping it that way, and for workers that die with the sync.
- ``load.workers`` = 1: dlt loads a package's files on up to 20 threads; into one DuckDB
  database they run no faster (one writer), and two parquet files read at once raised a
  900-page round's peak from 283 to 320 MB.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dlt
from dlt.common.runners.pool_runner import get_default_start_method

DISABLE_COMPRESSION = "DATA_WRITER__DISABLE_COMPRESSION"
EVERY_DESTINATION = {
    "data_writer.disable_compression": (DISABLE_COMPRESSION, "true"),
    "data_writer.buffer_max_items": ("DATA_WRITER__BUFFER_MAX_ITEMS", "1000"),
}
NORMALIZE_WORKERS = 2
# A 900-page round of 100 records a page: 23 files. dlt deals files to workers in chunks of
# sorted names, so many files even out what each worker gets.
EXTRACT_FILE_ITEMS = 4000
PARALLEL_NORMALIZE = {
    "normalize.workers": ("NORMALIZE__WORKERS", str(NORMALIZE_WORKERS)),
    "sources.data_writer.file_max_items": ("SOURCES__DATA_WRITER__FILE_MAX_ITEMS",
                                           str(EXTRACT_FILE_ITEMS)),
}
DUCKDB = {"load.workers": ("LOAD__WORKERS", "1")}


def forks_workers() -> bool:
    """Whether dlt would fork its normalize workers here, on at least two cores."""
    return ((os.cpu_count() or 1) >= NORMALIZE_WORKERS
            and get_default_start_method(multiprocessing.get_start_method()) == "fork")


def defaults_for(destination: str) -> dict[str, str]:
    """The environment variables a sync into ``destination`` sets: those of the settings above
    that apply and that the user did not configure."""
    chosen = dict(EVERY_DESTINATION)
    if destination == "duckdb":
        chosen |= DUCKDB
        # Both or neither: rotated files without workers only cost, and a user's worker
        # count or file size is theirs to tune.
        if forks_workers() and all(dlt.config.get(key) is None for key in PARALLEL_NORMALIZE):
            chosen |= PARALLEL_NORMALIZE
    return {variable: value for key, (variable, value) in chosen.items()
            if dlt.config.get(key) is None}


# While a sync normalizes on forked workers (whoever configured them), each fork:
# - freezes the heap first. The workers share the sync's memory until they write to it, and a
#   garbage collection in a worker writes to every object it visits: each worker soon held its
#   own copy of the heap (a 200k-response sync's processes 312 MB together, PSS). Frozen objects
#   are left out of collections (Python's documented remedy), and the parent unfreezes them
#   after the fork: 261-266 MB.
# - makes the worker die with the sync (Linux's parent-death signal). A sync killed while its
#   workers normalized left them running, then blocked for ever, and a worker still writing
#   into load/new could meet the next sync's normalize of the same package.
_workers_forking = threading.Event()
PR_SET_PDEATHSIG = 1


def _before_fork() -> None:
    if _workers_forking.is_set():
        gc.freeze()


def _in_parent() -> None:
    if _workers_forking.is_set():
        gc.unfreeze()


def _in_child(parent: list[int]) -> None:
    if _workers_forking.is_set():
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent[0]:  # the sync died before the signal was set
            os._exit(1)


_parent = [os.getpid()]
os.register_at_fork(before=lambda: (_parent.__setitem__(0, os.getpid()), _before_fork()),
                    after_in_parent=_in_parent, after_in_child=lambda: _in_child(_parent))


def uses_workers() -> bool:
    """Whether dlt's normalize, as configured now, runs on more than one process."""
    try:
        return int(dlt.config.get("normalize.workers") or 1) > 1
    except (TypeError, ValueError):
        return False


@contextmanager
def sync_defaults(destination: str) -> Iterator[dict[str, str]]:
    """For the block, the defaults that apply to ``destination`` (see ``defaults_for``)."""
    applied = defaults_for(destination)
    os.environ.update(applied)
    if uses_workers():
        _workers_forking.set()
    try:
        yield applied
    finally:
        _workers_forking.clear()
        for variable in applied:
            os.environ.pop(variable, None)
