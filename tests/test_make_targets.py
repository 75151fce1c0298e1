"""The Makefile's command targets as a log shipper or a monitor runs them: plain ``make``."""

import json
import os
import subprocess

from tests.cli import ROOT
from tests.conftest import KEY, SECRET


def test_make_sync_json_prints_the_json_line_and_nothing_else(tmp_path):
    """`make sync ARGS="--json"`: stdout is one JSON object on one line (make echoes no
    command, the venv check says nothing there)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOURCES__", "DESTINATION__", "DLT_", "MAKE"))}
    env.update({
        "SOURCES__MICROMETRICS__BASE_URL": "http://127.0.0.1:9",  # a dry run sends nothing
        "SOURCES__MICROMETRICS__API_KEY": KEY,
        "SOURCES__MICROMETRICS__API_SECRET": SECRET,
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
    })
    result = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "sync",
                             "ARGS=--json --dry-run"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["exit_code"] == 0 and summary["exit_cause"] == "ok" and summary["plan"]
    assert SECRET not in result.stdout + result.stderr
