"""Another process that has a DuckDB file open (a status run, a notebook) until told to let go."""

from __future__ import annotations

import subprocess
import sys

HOLDER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
"""


def hold_in_another_process(path) -> subprocess.Popen:
    """A process (a status run, a notebook) that has the file open until told to let go."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
