"""Snowflake for the tests: fakesnow (an emulator on DuckDB) in server mode, over real HTTP.

``fakesnow_server`` (session scope) starts ``tests/emulator_workarounds.py snowflake`` with the
emulator's own venv (``.venv-fakesnow``, built by ``make test-warehouses``: fakesnow pins sqlglot
and duckdb versions that conflict with ours), which patches fakesnow's known gaps and serves on
127.0.0.1 at a port the OS picks; it reports that port on stdout once it accepts connections, so
nothing polls. Under pytest-xdist every worker process has its own session, so its own server.
It stops at session end, when its stdin closes (so also when the test process dies). Its log is
``fakesnow.log`` in its session directory (shown when it fails to start), which also holds its
internal stages (``TMPDIR``).

``snowflake_credentials`` gives each test a database of its own (fakesnow creates a database at
login), so tests stay independent; ``snowflake_destination`` is the dlt destination for it and
``snowflake_env`` the environment variables that configure the same for the command line.
"""

from __future__ import annotations

import itertools
import os
import selectors
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import pytest

from tests.emulator_workarounds import FAKESNOW_READY, fakesnow_command

ROOT = Path(__file__).resolve().parents[1]
FAKESNOW_PYTHON = ROOT / ".venv-fakesnow" / "bin" / "python"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


@dataclass
class FakesnowServer:
    port: int
    log: Path

    def credentials(self, database: str) -> str:
        """dlt credentials for ``database`` (fakesnow accepts any user and password)."""
        return (f"snowflake://user:pass@fakesnow/{database}?warehouse=WH&role=R"
                f"&host=127.0.0.1&port={self.port}&protocol=http")


def emulator_python() -> Path:
    """The emulator venv's python, after checking both venvs have what these tests need."""
    build = ("build it with `make test-warehouses` (it creates .venv-fakesnow from "
             "tests/emulators/fakesnow.txt and installs the `warehouses` extra into .venv), "
             "then rerun")
    # The Makefile writes the stamp once pip has installed everything: no stamp, no emulator.
    if not FAKESNOW_PYTHON.exists() or not (FAKESNOW_PYTHON.parents[1] / ".installed").exists():
        pytest.fail(f"the Snowflake emulator's venv is missing or incomplete "
                    f"({FAKESNOW_PYTHON.parents[1]}): {build}", pytrace=False)
    try:
        import snowflake.connector  # noqa: F401 - the `warehouses` extra
    except ImportError:
        pytest.fail(f"the Snowflake connector is not installed in this venv: {build}",
                    pytrace=False)
    return FAKESNOW_PYTHON


def wait_ready(process: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> int:
    """The port from the server's ``FAKESNOW_READY <port>`` line; fails the fixture if it
    exits first or says nothing within ``timeout``."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            line = process.stdout.readline()
            if not line:  # the server exited
                break
            if line.startswith(FAKESNOW_READY):
                return int(line.split()[1])
    process.kill()
    process.wait()
    pytest.fail(f"fakesnow did not start (exit status {process.returncode}); its log "
                f"{log}:\n{log.read_text(errors='replace')[-4000:]}", pytrace=False)


@pytest.fixture(scope="session")
def fakesnow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakesnowServer]:
    python = emulator_python()
    root = tmp_path_factory.mktemp("fakesnow")
    log = root / "fakesnow.log"
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(root)  # its stage bucket (a temporary directory) stays in the session's
    with log.open("wb") as stderr:
        # stdin stays open while this process lives: the server stops when it closes, should
        # this process die without its teardown.
        process = subprocess.Popen(fakesnow_command(python), cwd=root, env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                   text=True)
    try:
        yield FakesnowServer(wait_ready(process, log), log)
    finally:
        process.stdin.close()  # asks it to stop
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


_databases = itertools.count(1)


@pytest.fixture
def snowflake_credentials(fakesnow_server: FakesnowServer) -> str:
    """dlt credentials for a new, empty database of this test's own."""
    return fakesnow_server.credentials(f"TEST_{next(_databases)}")


@pytest.fixture
def snowflake_destination(snowflake_credentials: str) -> Any:
    """A dlt Snowflake destination on this test's database."""
    return dlt.destinations.snowflake(credentials=snowflake_credentials)


@pytest.fixture
def snowflake_env(snowflake_credentials: str) -> dict[str, str]:
    """The environment variables that point ``--destination snowflake`` at this test's
    database (the same as ``snowflake_destination``'s)."""
    return {"DESTINATION__SNOWFLAKE__CREDENTIALS": snowflake_credentials}
