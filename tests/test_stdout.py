"""The commands' stdout, in real processes (the process's own stdout is what is tested): a
stdout whose encoding lacks the tenant's characters, a full one, and a pipe its reader closed
change neither what a command did nor its exit status."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from pipelines.stdout import Stdout
from tests.cli import run_cli, run_in_process, sync_env, tmp_cwd

COMMAND = [sys.executable, "-m"]
CAFE = "Café ☕ 東京"


def run(env: dict[str, str], module: str, *args: str, stdout) -> subprocess.CompletedProcess:
    cwd = tmp_cwd(env)
    return subprocess.run([*COMMAND, module, *args], cwd=cwd, env=env, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=300, check=False,
                          encoding=env.get("PYTHONIOENCODING", "utf-8"))


def last_sync(env: dict[str, str]) -> dict:
    from pipelines.status.cli import main as status_main

    status = run_in_process(status_main, ["status"], env, "--json")
    return json.loads(status.stdout)["last_sync"]


@pytest.fixture
def tenant(start_sandbox, tmp_path):
    """A synced tenant with a survey named outside Latin-1, and the commands' environment."""
    sandbox = start_sandbox(rate=1000.0, burst=1000, responses=100)
    survey = min(sandbox.truth()["surveys"], key=lambda record: record["id"])
    sandbox.patch_records("surveys", [survey["id"]], {"name": CAFE})
    env = sync_env(tmp_path, sandbox.url)
    first = run_cli(env, "--quiet", "--no-models")
    assert first.returncode == 0, first.stderr
    return env


def test_text_a_stdout_cannot_encode_is_escaped_and_the_sync_succeeds(tenant):
    env = {**tenant, "PYTHONIOENCODING": "latin-1"}
    for module, args in (("pipelines.sync", ("--quiet", "--preview")), ("pipelines.models", ()),
                         ("pipelines.status", ())):
        done = run(env, module, *args, stdout=subprocess.PIPE)
        assert done.returncode == 0, (module, done.stderr)
        assert "Traceback" not in done.stderr
        if module != "pipelines.status":  # the preview names the survey
            assert r"Café \u2615 \u6771\u4eac" in done.stdout, module
    assert last_sync(tenant)["exit_code"] == 0


def test_a_full_stdout_is_one_warning_and_the_sync_stands(tenant):
    with open("/dev/full", "w") as full:
        for args in (("--quiet",), ("--quiet", "--json")):
            done = run(tenant, "pipelines.sync", *args, stdout=full)
            assert done.returncode == 0, done.stderr
            what = "the JSON summary" if "--json" in args else "the summary"
            assert done.stderr == (f"warning: {what} could not be written to stdout ([Errno 28] "
                                   f"No space left on device); what the command did stands\n")
            assert last_sync(tenant)["exit_code"] == 0
        status = run(tenant, "pipelines.status", stdout=full)
    assert status.returncode == 0 and status.stderr.startswith(
        "warning: the status could not be written to stdout ([Errno 28]")


def test_a_pipe_its_reader_closed_is_no_failure_and_no_traceback(tenant):
    read, write = os.pipe()
    os.close(read)  # `| head -1` gone before the command writes
    try:
        for module, args in (("pipelines.sync", ("--quiet",)), ("pipelines.status", ()),
                             ("pipelines.status", ("--json",)), ("pipelines.models", ())):
            done = run(tenant, module, *args, stdout=write)
            assert (done.returncode, done.stderr) == (0, ""), module
    finally:
        os.close(write)
    assert last_sync(tenant)["exit_code"] == 0


def test_a_stdout_closed_at_start_is_no_failure(tenant):
    """``>&-``: Python starts with ``sys.stdout`` None, which print() writes nothing to."""
    for module, args in (("pipelines.sync", ("--quiet",)),
                         ("pipelines.sync", ("--quiet", "--json")),
                         ("pipelines.status", ("--json",)), ("pipelines.models", ()),
                         ("pipelines.report", ())):
        done = subprocess.run([*COMMAND, module, *args], cwd=tmp_cwd(tenant), env=tenant,
                              stderr=subprocess.PIPE, text=True, timeout=300, check=False,
                              preexec_fn=lambda: os.close(1))  # noqa: PLW1509 - the test
        assert (done.returncode, done.stderr) == (0, ""), module
    assert last_sync(tenant)["exit_code"] == 0


def test_a_bad_command_line_with_json_and_a_full_stdout_exits_2(tmp_path):
    env = sync_env(tmp_path, "http://127.0.0.1:9")
    with open("/dev/full", "w") as full:
        for module in ("pipelines.sync", "pipelines.status"):
            done = run(env, module, "--json", "--no-such-option", stdout=full)
            assert done.returncode == 2, (module, done.stderr)
            assert "Exception ignored" not in done.stderr and "usage:" in done.stderr


def test_after_a_failed_write_nothing_more_is_tried():
    class Full(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            raise OSError(28, "No space left on device")

    stream = Full()
    out = Stdout(stream)
    out("one")
    out("two")
    assert stream.writes == 1 and isinstance(out.error, OSError)
