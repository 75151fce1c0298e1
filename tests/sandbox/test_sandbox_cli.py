"""The command line: --help, bad options, and a real start/stop on port 0."""

from __future__ import annotations

import subprocess
import sys

import requests

from pipelines.micrometrics.auth import APIAuth

CMD = [sys.executable, "-m", "pipelines.sandbox"]


def test_help_exits_zero():
    result = subprocess.run([*CMD, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--ready-file" in result.stdout and "8765" in result.stdout


def test_invalid_option_is_an_argparse_error():
    result = subprocess.run([*CMD, "--fault-rate", "2"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "--fault-rate: must be" in result.stderr.splitlines()[-1]


def test_smoke_start_and_terminate(tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [*CMD, "--port", "0", "--ready-file", str(ready), "--responses", "50",
         "--api-key", "cli", "--api-secret", "shh"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().strip()  # blocks until the server listens
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = ready.read_text().strip()
        assert line.endswith(url)
        assert proc.stdout.readline().strip() == (  # what to set, ready to paste
            f"point the connector at it: export SOURCES__MICROMETRICS__BASE_URL={url} "
            "SOURCES__MICROMETRICS__API_KEY=cli SOURCES__MICROMETRICS__API_SECRET=shh")
        response = requests.get(url + "/api/experience/surveys", auth=APIAuth("cli", "shh"))
        assert response.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


def test_a_port_in_use_is_one_line_with_exit_2(capsys):
    import socket

    from pipelines.sandbox.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--responses", "10"]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "with --port (0 = any free port)\n")
