"""A real PostgreSQL 15 server for the tests, started from the machine's binaries.

``postgres_server`` (session scope) runs ``initdb`` into a fresh directory and starts the server
on 127.0.0.1 at a free port; under pytest-xdist every worker process has its own session, so
its own data directory and port. It is stopped (``pg_ctl -m immediate stop``) at session end.
``postgres_credentials`` gives each test a database of its own (``CREATE DATABASE test_<n>``),
so tests stay independent. The server refuses to run as root: as root, the binaries run as the
``postgres`` system user (``runuser``). Missing binaries fail the fixture with a clear message
(``.ci/run`` installs them on CI machines).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"


@dataclass
class PostgresServer:
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        # psycopg2 needs a password in the URL even though trust auth ignores it.
        return f"postgresql://{SUPERUSER}:x@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(self.url())
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (PostgreSQL 15 first, then PATH)."""
    for directory in BIN_DIRS:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    pytest.fail(
        "PostgreSQL server binaries not found (initdb, pg_ctl in /usr/lib/postgresql/15/bin or "
        "on PATH); the PostgreSQL tests need a real server: install it with "
        "`apt-get install -y postgresql-15` (.ci/run does that on CI machines)",
        pytrace=False,
    )


def as_server_user(command: list[str]) -> list[str]:
    """The server refuses root: run its binaries as the ``postgres`` system user then."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        pytest.fail("running as root, but `runuser` is missing: cannot start PostgreSQL as the "
                    f"{SYSTEM_USER!r} user", pytrace=False)
    return ["runuser", "-u", SYSTEM_USER, "--", *command]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], what: str) -> None:
    done = subprocess.run(as_server_user(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"PostgreSQL {what} failed ({done.returncode}): {command}\n"
                    f"{done.stdout}\n{done.stderr}", pytrace=False)


def start_server(binaries: Path, root: Path) -> PostgresServer:
    data_dir = root / "data"
    run([str(binaries / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", SUPERUSER,
         "-E", "UTF8", "--no-sync"], "initdb")
    log = root / "server.log"
    for _ in range(5):  # another process may take the free port before the server binds it
        port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        done = subprocess.run(
            as_server_user([str(binaries / "pg_ctl"), "-D", str(data_dir), "-l", str(log),
                            "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return PostgresServer(port, data_dir)
    pytest.fail(f"PostgreSQL did not start:\n{done.stdout}\n{done.stderr}\n"
                f"{log.read_text() if log.exists() else ''}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = find_binaries()
    # Not under pytest's tmp dir: its root is private to this user, and the server user must
    # reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="micrometrics-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER, SYSTEM_USER)
    server = None
    try:
        server = start_server(binaries, root)
        yield server
    finally:
        if server is not None:
            subprocess.run(as_server_user([str(binaries / "pg_ctl"), "-D", str(server.data_dir),
                                           "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count(1)


@pytest.fixture
def postgres_credentials(postgres_server: PostgresServer) -> str:
    """A connection URL to a new, empty database of this test's own."""
    return postgres_server.create_database(f"test_{next(_databases)}")
