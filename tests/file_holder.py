"""Another process that has a DuckDB file open (a status run, a notebook) until told to let go."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cli import ROOT

HOLDER = """
import contextlib, sys, duckdb
with contextlib.ExitStack() as held:
    if sys.argv[3]:  # as a sync: its lock first
        from pipelines.sync.lock import sync_lock
        held.enter_context(sync_lock(sys.argv[3], "micrometrics"))
    connection = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_in_another_process(path, read_only: bool = False,
                            as_a_sync_in: str = "") -> subprocess.Popen:
    """A process (a status run, a notebook) that has the file open until told to let go;
    ``read_only``: as a notebook that only reads does (DuckDB lets several such share it);
    ``as_a_sync_in``: a pipelines folder whose sync lock it holds too, as a sync does."""
    mode = "read_only" if read_only else "read_write"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode, as_a_sync_in],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "held"
    return holder
