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
  ``_WorkerForks`` for keeping it that way, and for workers that die with the sync.
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
import sys
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


# Other keys that configure the same thing: dlt looks a pipeline's own section up first
# (``<pipeline_name>.normalize.workers``), and a data_writer setting also in the global section
# or the source's.
ALSO_CONFIGURED_AS = {
    "sources.data_writer.file_max_items": ("data_writer.file_max_items",
                                           "extract.data_writer.file_max_items",
                                           "sources.micrometrics.data_writer.file_max_items"),
    **{f"data_writer.{name}": tuple(f"{section}.data_writer.{name}" for section in (
        "normalize", "extract", "sources", "sources.micrometrics"))
       for name in ("disable_compression", "buffer_max_items")},
}


def configured(key: str, pipeline_name: str) -> bool:
    """Whether the user set ``key`` (or what stands for it) anywhere dlt would find it."""
    also = ALSO_CONFIGURED_AS.get(key, ())
    keys = (key, *also, *(f"{pipeline_name}.{name}" for name in (key, *also)))
    return any(dlt.config.get(name) is not None for name in keys)


def cores() -> int:
    """CPUs this process may run on (its affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def forks_workers(pipeline_name: str) -> bool:
    """Whether dlt would fork its normalize workers here (Linux, main thread, no orchestrator,
    no other start method configured), on at least two cores."""
    if sys.platform != "linux" or cores() < NORMALIZE_WORKERS:
        return False
    method = (dlt.config.get(f"{pipeline_name}.normalize.start_method")
              or dlt.config.get("normalize.start_method"))
    if method is None:
        # Without fixing the process's start method (a host may still set its own).
        method = get_default_start_method(multiprocessing.get_start_method(allow_none=True)
                                          or multiprocessing.get_all_start_methods()[0])
    return method == "fork"


def defaults_for(destination: str, pipeline_name: str) -> dict[str, str]:
    """The environment variables a sync into ``destination`` sets: those of the settings above
    that apply and that the user did not configure."""
    chosen = dict(EVERY_DESTINATION)
    if destination == "duckdb":
        chosen |= DUCKDB
        # Both or neither: rotated files without workers only cost, and a user's worker
        # count or file size is theirs to tune.
        if (not any(configured(key, pipeline_name) for key in PARALLEL_NORMALIZE)
                and forks_workers(pipeline_name)):
            chosen |= PARALLEL_NORMALIZE
    return {variable: value for key, (variable, value) in chosen.items()
            if not configured(key, pipeline_name)}


def uses_workers(pipeline_name: str) -> bool:
    """Whether dlt's normalize, as configured now, runs on more than one process."""
    value = (dlt.config.get(f"{pipeline_name}.normalize.workers")
             or dlt.config.get("normalize.workers") or 1)
    try:
        return int(value) > 1
    except (TypeError, ValueError):
        return False


# While a sync normalizes on forked workers (whoever configured them), each fork dlt makes of
# it (from the main thread; it spawns from any other):
# - freezes the heap first. The workers share the sync's memory until they write to it, and a
#   garbage collection in a worker writes to every object it visits: each worker soon held its
#   own copy of the heap (a 200k-response sync's processes 312 MB together, PSS). Frozen objects
#   are left out of collections (Python's documented remedy), and the parent unfreezes them
#   after the fork (unless the application had frozen its own): 261-266 MB.
# - makes the worker die with the sync (Linux's parent-death signal). A sync killed while its
#   workers normalized left them running, then blocked for ever, and a worker still writing
#   into load/new could meet the next sync's normalize of the same package.
# The settings above are the process's environment, so one sync per process at a time.
PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


class _WorkerForks:
    """What the at-fork hooks need: whether a sync's workers are being forked now, and what
    the fork in progress did."""

    def __init__(self) -> None:
        self.active = threading.Event()
        self.worker = False  # the fork in progress is (likely) one of dlt's workers
        self.froze = False
        self.parent = os.getpid()

    def before(self) -> None:
        self.worker = (self.active.is_set() and _PRCTL is not None
                       and threading.current_thread() is threading.main_thread())
        self.froze = self.worker and gc.get_freeze_count() == 0
        self.parent = os.getpid()
        if self.froze:
            gc.freeze()

    def in_parent(self) -> None:
        if self.froze:
            gc.unfreeze()
        self.worker = self.froze = False

    def in_child(self) -> None:
        if self.worker:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self.parent:  # the sync died before the signal was set
                os._exit(1)


_forks = _WorkerForks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_forks.before, after_in_parent=_forks.in_parent,
                        after_in_child=_forks.in_child)


@contextmanager
def sync_defaults(destination: str, pipeline_name: str) -> Iterator[dict[str, str]]:
    """For the block, the defaults that apply to ``destination`` (see ``defaults_for``)."""
    applied = defaults_for(destination, pipeline_name)
    os.environ.update(applied)
    if uses_workers(pipeline_name):
        _forks.active.set()
    try:
        yield applied
    finally:
        _forks.active.clear()
        for variable in applied:
            os.environ.pop(variable, None)
