"""BigQuery for the tests: ``bqemulator`` (an emulator on DuckDB) in a process of its own.

bqemulator pins sqlglot and duckdb versions that conflict with ours, so it runs from its own
venv, ``.venv-bqemulator`` (``make test-warehouses`` builds it), through
``tests/emulator_workarounds.py``, which patches what it gets wrong for us and prints
a readiness line with its port. ``bigquery_emulator`` (session scope: under pytest-xdist one per
worker process) starts it on a port the OS picks free and stops it at session end;
``bigquery_destination`` gives each test a dlt bigquery destination in a project of its own (the
emulator keeps datasets per project), with the client-side workarounds applied;
``bigquery_env`` is the same as environment variables, for the command line.
"""

from __future__ import annotations

import itertools
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dlt
import pytest

from tests.emulator_workarounds import (
    BIGQUERY_LOCATION,
    BIGQUERY_PROJECT,
    BIGQUERY_READY,
    bigquery_client_env,
    use_anonymous_google_credentials,
)

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-bqemulator"
LAUNCHER = ROOT / "tests" / "emulator_workarounds.py"
START_TIMEOUT = 60.0


@dataclass
class BigQueryEmulator:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def emulator_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"the BigQuery emulator's venv is missing ({python}): run "
                    "`make test-warehouses`, which builds .venv-bqemulator from "
                    "tests/emulators/bqemulator.txt and runs these tests", pytrace=False)
    return python


def start_emulator(*args: str) -> BigQueryEmulator:
    """Starts the patched emulator and returns once its readiness line names its URL; fails
    the test (with the emulator's log) if it exits or is not ready within START_TIMEOUT."""
    python = emulator_python()
    log = Path(tempfile.mkdtemp(prefix="bqemulator-")) / "emulator.log"  # its cwd too
    with log.open("wb") as stderr:  # -I: nothing from our environment's PYTHON* or tests/
        process = subprocess.Popen([str(python), "-I", str(LAUNCHER), "bigquery", *args],
                                   stdout=subprocess.PIPE, stderr=stderr, cwd=log.parent)
    emulator = BigQueryEmulator("", process, log)
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not emulator.url:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                failed_to_start(emulator, f"not ready after {START_TIMEOUT:.0f} s")
            line = process.stdout.readline().decode(errors="replace")
            if not line:  # it exited
                failed_to_start(emulator, "exited before it was ready")
            if line.startswith(BIGQUERY_READY):
                emulator.url = line.split()[-1]
    return emulator


def failed_to_start(emulator: BigQueryEmulator, what: str) -> None:
    tail = emulator.log_tail()
    stop_emulator(emulator)
    pytest.fail(f"bqemulator {what} (exit status {emulator.process.returncode}); its log "
                f"ends:\n{tail}", pytrace=False)


def stop_emulator(emulator: BigQueryEmulator) -> None:
    process = emulator.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stdout.close()
    shutil.rmtree(emulator.log.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """The emulator with every workaround, for this session (this xdist worker)."""
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        stop_emulator(emulator)


_projects = itertools.count(1)


@pytest.fixture
def bigquery_project() -> str:
    """A project of this test's own: the emulator keeps datasets per project, so tests that all
    use the dataset ``micrometrics`` never see each other's tables."""
    return f"{BIGQUERY_PROJECT}{next(_projects)}"  # no hyphens: see BIGQUERY_PROJECT


@pytest.fixture
def bigquery_env(bigquery_emulator: BigQueryEmulator, bigquery_project: str,
                 monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment variables pointing dlt and google-cloud-bigquery at the emulator, in this
    test's project (for ``tests.cli.run_cli``); anonymous credentials are patched in for the
    test's duration."""
    if bigquery_emulator.process.poll() is not None:  # else every request retries for minutes
        pytest.fail(f"bqemulator exited ({bigquery_emulator.process.returncode}) during the "
                    f"session:\n{bigquery_emulator.log_tail()}", pytrace=False)
    use_anonymous_google_credentials(monkeypatch, bigquery_project)
    return bigquery_client_env(bigquery_emulator.url, bigquery_project)


@pytest.fixture
def bigquery_destination(bigquery_env: dict[str, str], bigquery_project: str,
                         monkeypatch: pytest.MonkeyPatch):
    """A dlt bigquery destination on the emulator, in this test's own project; the client-side
    workarounds (endpoint, anonymous credentials, uncompressed load files) applied to this
    process for the test's duration."""
    for name, value in bigquery_env.items():
        monkeypatch.setenv(name, value)
    return dlt.destinations.bigquery(project_id=bigquery_project, location=BIGQUERY_LOCATION)
