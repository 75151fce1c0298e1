"""``make demo``: sandbox API -> sync -> models -> summary, offline, in about a minute.

Starts the sandbox on a free loopback port, runs the real sync command against it into
``demo.duckdb`` (its own pipeline state under ``.demo/``, so a real pipeline on this machine is
untouched), shows a few example queries, stops the sandbox, and writes the report
(``python -m pipelines.report``) to ``report.html``; its path is the last line printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.destination import DEFAULT_DATASET
from pipelines.micrometrics import RESOURCES
from pipelines.sync.cli import build_parser as sync_parser

DEMO_DB = Path("demo.duckdb")
DEMO_STATE = Path(".demo")
DEMO_REPORT = Path("report.html")
KEY, SECRET = "demo-key", "demo-secret"
# A roomier limit than the API's 1/s so the demo takes seconds; the client learns it from
# the RateLimit-Rate header like it would from the real API.
# Three kiosks gone quiet, so the report's "devices gone quiet" panel has something to show.
SANDBOX_ARGS = ["--rate", "20", "--burst", "20", "--silent-devices", "3"]

EXAMPLES = {
    "responses per survey": (
        "SELECT survey_id, COUNT(*) AS responses, MIN(created_at)::DATE AS first, "
        "MAX(created_at)::DATE AS last FROM micrometrics.survey_responses "
        "GROUP BY 1 ORDER BY 1"
    ),
    "devices by status": (
        "SELECT status, COUNT(*) AS devices FROM micrometrics.devices GROUP BY 1 ORDER BY 1"
    ),
    "NPS per survey over the last 90 days (mart_nps_daily)": (
        "SELECT survey_id, SUM(nps_responses) AS answers, "
        "ROUND(100.0 * (SUM(promoters) - SUM(detractors)) / SUM(nps_responses), 1) AS nps "
        "FROM micrometrics.mart_nps_daily "
        "WHERE response_date > (SELECT MAX(response_date) FROM micrometrics.mart_nps_daily) - 90 "
        "GROUP BY 1 ORDER BY 1"
    ),
    "devices gone quiet (dim_devices)": (
        "SELECT COUNT(*) FILTER (WHERE is_silent) AS silent, "
        "COUNT(*) FILTER (WHERE status = 'active') AS active, "
        "MIN(last_response_at)::DATE AS oldest_last_response FROM micrometrics.dim_devices"
    ),
}


def start_sandbox() -> tuple[subprocess.Popen, str]:
    ready = Path(tempfile.mkdtemp()) / "url"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.sandbox", "--port", "0", "--api-key", KEY,
         "--api-secret", SECRET, "--ready-file", str(ready), *SANDBOX_ARGS],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("demo: the sandbox did not start")
        time.sleep(0.05)
    return process, ready.read_text().strip()


def show(title: str, sql: str) -> None:
    with duckdb.connect(str(DEMO_DB), read_only=True) as connection:
        result = connection.sql(sql)
        print(f"\n-- {title}")
        print(" | ".join(result.columns))
        for row in result.fetchall():
            print(" | ".join("" if value is None else str(value) for value in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.demo", description=__doc__.split("\n\n")[0],
        epilog=f"It deletes and rewrites {DEMO_DB}, {DEMO_STATE}/ and {DEMO_REPORT} in the "
               "current directory. Other arguments go to the sync command "
               "(python -m pipelines.sync --help).")
    _, sync_args = parser.parse_known_args(argv)  # --help ends here, before anything is deleted
    # The sync's arguments checked before anything is deleted, too; the demo's examples and
    # report read its own DuckDB file and dataset, which these would move or leave empty.
    given = sync_parser().parse_args(sync_args)
    if (given.dry_run or given.no_models or set(given.resources) != set(RESOURCES)
            or given.destination != "duckdb" or given.dataset != DEFAULT_DATASET):
        parser.error("the demo loads everything, models included, into its own DuckDB file: "
                     "--dry-run, --no-models, --resources, --destination and --dataset are for "
                     "python -m pipelines.sync")
    DEMO_DB.unlink(missing_ok=True)
    DEMO_REPORT.unlink(missing_ok=True)
    shutil.rmtree(DEMO_STATE, ignore_errors=True)
    sandbox, url = start_sandbox()
    print(f"sandbox API on {url}")
    env = dict(
        os.environ,
        SOURCES__MICROMETRICS__BASE_URL=url,
        SOURCES__MICROMETRICS__API_KEY=KEY,
        SOURCES__MICROMETRICS__API_SECRET=SECRET,
        DESTINATION__DUCKDB__CREDENTIALS=str(DEMO_DB),
        DLT_DATA_DIR=str(DEMO_STATE.resolve()),
    )
    try:
        code = subprocess.call([sys.executable, "-m", "pipelines.sync", *sync_args], env=env)
        if code != 0:
            return code
        for title, sql in EXAMPLES.items():
            show(title, sql)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    # The duckdb command line is not part of the Python package: the line says both ways.
    print(f"\nexplore it: duckdb {DEMO_DB}  (tables in schema micrometrics; without the duckdb "
          f"command line: {Path(sys.executable).name} -c \"import duckdb; "
          f"c = duckdb.connect('{DEMO_DB}', read_only=True); "
          f"c.sql('SHOW ALL TABLES').show()\")")
    # The same command as `make report`, on the demo's marts: one HTML file, no server needed.
    code = subprocess.call([sys.executable, "-m", "pipelines.report", "--quiet",
                            "--output", str(DEMO_REPORT)], env=env)
    if code != 0:
        return code
    print(f"report: {DEMO_REPORT.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
