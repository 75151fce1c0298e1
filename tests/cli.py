"""Run the sync command as a user does: a real process, configured through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import KEY, SECRET

ROOT = Path(__file__).resolve().parents[1]


def sync_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update(
        SOURCES__MICROMETRICS__BASE_URL=base_url,
        SOURCES__MICROMETRICS__API_KEY=KEY,
        SOURCES__MICROMETRICS__API_SECRET=SECRET,
        DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "warehouse.duckdb"),
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    env.update(extra)
    return env


def start_sync(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.sync", *args],
        cwd=tmp_cwd(env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def tmp_cwd(env: dict[str, str]) -> str:
    # Run from the data dir so no project .dlt/ config leaks in; the package comes via PYTHONPATH.
    env["PYTHONPATH"] = str(ROOT)
    return str(Path(env["DLT_DATA_DIR"]).parent)


def run_sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    process = start_sync(env, *args)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
