"""A full sync of the default sandbox in real time versus the floor its rate limit allows.

The sandbox runs with its defaults (1 request/s, burst 10), the real sync CLI
(``python -m pipelines.sync --quiet``) runs in a subprocess against it, and the request count
comes from the sandbox's own counters. A leaky bucket that starts empty admits ``burst``
requests at once and then ``rate`` per second, so no client can finish ``requests`` requests in
less than ``floor = (requests - burst) / rate`` seconds; ``elapsed / floor`` is the overhead.

With ``--incremental`` the sandbox then gains 20 responses and updates 10, and a second sync
(after a pause that lets the bucket drain, so the same floor applies) is measured too.

Run from the repository root::

    .venv/bin/python -m benchmarks.sync_floor [--quick] [--incremental]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._results import machine, write_section
from pipelines.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
API_KEY, API_SECRET = "bench-key", "bench-secret"
RATE, BURST = 1.0, 10  # the sandbox defaults, i.e. the API's default limit
QUICK_RESPONSES = 1500


def floor_seconds(requests: int) -> float:
    return max(0.0, (requests - BURST) / RATE)


def run_sync(sandbox: Sandbox, tmp: Path) -> dict[str, Any]:
    """One ``python -m pipelines.sync --quiet`` against ``sandbox``; its traffic and time."""
    env = {
        **os.environ,
        "SOURCES__MICROMETRICS__BASE_URL": sandbox.url,
        "SOURCES__MICROMETRICS__API_KEY": API_KEY,
        "SOURCES__MICROMETRICS__API_SECRET": API_SECRET,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp / "warehouse.duckdb"),
        "DLT_DATA_DIR": str(tmp / "dlt"),
        "PYTHONPATH": str(ROOT),
    }
    sandbox.reset_stats()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.sync", "--quiet", "--no-models"],
        cwd=tmp, env=env, capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sync failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    stats = sandbox.stats()
    requests = stats["requests"]
    # The sync's own clock (first request to last load), from its summary line.
    own = re.search(r"^elapsed ([0-9.]+)s", proc.stdout, re.MULTILINE)
    floor = floor_seconds(requests)
    return {
        "requests": requests,
        "pages_with_data": stats["pages_with_data"],
        "empty_pages": stats["empty_pages"],
        "records": stats["records_served"],
        "throttled": stats["throttled"],
        "elapsed": elapsed,
        "floor": floor,
        "ratio": elapsed / floor if floor > 0 else float("nan"),
        "own": float(own.group(1)) if own else float("nan"),
        "summary": proc.stdout.strip(),
    }


def row(label: str, r: dict[str, Any]) -> str:
    within = r["floor"] > 0
    ratio = f"{r['ratio']:.2f}" if within else "n/a (within burst)"
    own_ratio = f"**{r['own'] / r['floor']:.2f}**" if within else "n/a"
    return (
        f"| {label} | {r['requests']} | {r['pages_with_data']} | {r['empty_pages']} "
        f"| {r['records']} | {r['throttled']} | {r['elapsed']:.1f} | {r['own']:.1f} "
        f"| {r['floor']:.1f} | {ratio} | {own_ratio} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smaller sandbox ({QUICK_RESPONSES} responses) for a smoke run")
    parser.add_argument("--incremental", action="store_true",
                        help="then add 20 and update 10 responses and sync again")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    kwargs: dict[str, Any] = {"responses": QUICK_RESPONSES} if args.quick else {}
    sandbox = Sandbox(API_KEY, API_SECRET, rate=RATE, burst=BURST, **kwargs).start()
    truth = {k: len(v) for k, v in sandbox.truth().items()}
    runs: list[tuple[str, dict[str, Any]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as name:
            tmp = Path(name)
            full = run_sync(sandbox, tmp)
            runs.append(("full sync", full))
            print(full["summary"])
            if args.incremental:
                sandbox.add_responses(20)
                sandbox.update_responses(10)
                time.sleep(BURST / RATE + 1)  # let the bucket drain: same floor formula
                incremental = run_sync(sandbox, tmp)
                runs.append(("incremental (+20 new, 10 updated)", incremental))
                print(incremental["summary"])
    finally:
        sandbox.stop()

    lines = [
        "| run | requests | pages with data | empty pages | records served | 429s "
        "| wall s | sync s | floor s | wall / floor | sync / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(row(label, r) for label, r in runs),
    ]
    table = "\n".join(lines)
    flags = " ".join(f for f, on in (("--quick", args.quick),
                                      ("--incremental", args.incremental)) if on)
    body = (
        "## Sync vs rate-limit floor (sandbox, 1 request/s, burst 10)\n\n"
        f"`.venv/bin/python -m benchmarks.sync_floor{' ' + flags if flags else ''}`; "
        f"{machine()}.\n\n"
        f"Sandbox: {', '.join(f'{n} {k}' for k, n in truth.items())}, page size 100. "
        "Wall is the time of the `python -m pipelines.sync --quiet --no-models` subprocess "
        "(interpreter start included); sync is the sync's own elapsed time from its summary "
        "(first request to last load: extract, normalize, load into DuckDB); "
        f"floor = (requests - {BURST}) / {RATE:g} per s.\n\n"
        f"{table}\n"
    )
    print()
    print(table)
    if not args.no_write:
        write_section("sync_floor", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
