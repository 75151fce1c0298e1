"""Another process that has a DuckDB file open (a status run, a notebook) until told to let go."""

from __future__ import annotations

import subprocess
import sys

HOLDER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
print("held", flush=True)
sys.stdin.readline()
"""


def hold_in_another_process(path, read_only: bool = False) -> subprocess.Popen:
    """A process (a status run, a notebook) that has the file open until told to let go;
    ``read_only``: as a notebook that only reads does (DuckDB lets several such share it)."""
    mode = "read_only" if read_only else "read_write"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
