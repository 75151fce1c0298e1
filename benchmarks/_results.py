"""Shared helpers: machine description and a marked section of ``benchmarks/RESULTS.md``."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line: cores, Python, dlt and duckdb versions, date."""
    import dlt
    import duckdb

    return (
        f"nproc {os.cpu_count()}, Python {platform.python_version()} ({sys.platform}), "
        f"dlt {dlt.__version__}, duckdb {duckdb.__version__}, "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_section(name: str, body: str) -> None:
    """Replace the ``name`` section of RESULTS.md (between its markers), or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print(f"wrote section {name!r} of {RESULTS}")
