"""The schedules of ``deploy/`` and ``.github/workflows/sync.yml``, each read as its scheduler
reads it and then run for real against the sandbox.

- crontab: five time fields and a command; the command, run as cron runs it (``/bin/sh``, the
  crontab's PATH, credentials from the checkout's ``.dlt/secrets.toml``), twice at once: one
  syncs exactly, the other is turned away by ``flock`` (exit 3) without a request;
- GitHub Actions: triggers, concurrency, every secret mapped to its dlt variable, the steps; the
  run steps executed with bash in the environment the job's ``env:`` mapping gives, into a real
  PostgreSQL (the workflow's default destination), twice, each on a "fresh runner" (slow);
- Airflow: ``classify`` against the real exception types; the DAG file's task in this process
  (the Airflow names it imports stood in for, see ``stand_in_airflow``) syncing exactly and
  raising the fail-or-retry exception for real failures; and the same file in real Airflow
  (``.venv-airflow``, ``make test-warehouses``): parsed by ``DagBag``, run by ``dag.test()``
  with Airflow's own retries.

Each runs ``make`` from a copy of the checkout (``project``): the Makefile, ``pyproject.toml``
and ``constraints.txt`` dated 1970 so ``make`` sees the venv as up to date,
``.dlt/config.toml``, and ``.venv`` linked to this one (the project is installed in it in
editable mode).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import io
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import dlt
import duckdb
import pytest
import requests
import yaml
from croniter import croniter
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.exceptions import SignalReceivedException
from dlt.destinations.exceptions import DatabaseTerminalException, DestinationConnectionError
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.micrometrics.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    CursorRejectedError,
    IncompleteBodyError,
    UnexpectedResponseError,
    UnsendableRequestError,
)
from pipelines.models import DataTestFailed, DataTestResult, ModelsError
from pipelines.models.project import load_project
from pipelines.schedules import classify
from pipelines.sync.lock import SyncLockedError
from pipelines.sync.terminate import Terminated
from tests.cli import ROOT, as_a_process, sync_env
from tests.conftest import KEY, SECRET
from tests.destinations import pipeline_on
from tests.syncing import sync_into
from tests.test_status import status_json
from tests.truth import assert_matches_truth

CRONTAB = ROOT / "deploy" / "crontab"
WORKFLOW = ROOT / ".github" / "workflows" / "sync.yml"
DAG_FILE = ROOT / "deploy" / "airflow" / "micrometrics_sync_dag.py"
AIRFLOW_VENV = ROOT / ".venv-airflow"
SMALL = dict(devices=10, surveys=3, responses=200, page_size=20, rate=1000.0, burst=1000)
TRIES_FAST = {"SOURCES__MICROMETRICS__MAX_ATTEMPTS": "2",
              "SOURCES__MICROMETRICS__BACKOFF_SECONDS": "0.01"}


# -- the Makefile's sync target: what every schedule runs ------------------------------------


def make_rules() -> dict[str, tuple[list[str], list[str]]]:
    """Each explicit target of the Makefile: (prerequisites, recipe lines)."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        match = re.match(r"^([A-Za-z0-9_.$()/%-]+):(?!=)\s*(.*)$", line)
        if match:
            current = []
            rules[match.group(1)] = (match.group(2).split(), current)
        elif not line.startswith("#"):
            current = None
    return rules


def make_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, name
    return match.group(1).strip()


def test_make_sync_runs_the_sync_command_with_args():
    prerequisites, recipe = make_rules()["sync"]
    assert prerequisites == ["install"]  # the venv first, then the command
    assert recipe == ["@$(BIN)/python -m pipelines.sync $(ARGS)"]  # @: stdout is the command's
    assert make_variable("BIN") == "$(VENV)/bin" and make_variable("VENV") == ".venv"


def make_sync_call(words: list[str]) -> dict[str, Any]:
    """``make [flags] sync ARGS=...`` in shell words: its flags and ARGS, checked to be it."""
    assert words[0] == "make", words
    flags = [w for w in words[1:] if w.startswith("-")]
    rest = [w for w in words[1:] if not w.startswith("-")]
    assert set(flags) <= {"-s"}, flags  # silent only: no other behaviour of make changes
    assert rest[0] == "sync" and rest[0] in make_rules(), rest
    args = [w.removeprefix("ARGS=") for w in rest[1:] if w.startswith("ARGS=")]
    assert len(args) == 1 and len(rest) == 2, rest
    return {"flags": flags, "args": args[0]}


def project(tmp_path: Path) -> Path:
    """A copy of the checkout where ``make sync`` finds its venv up to date (see above)."""
    # make would otherwise reinstall the shared .venv, from (and pointing at) the temporary copy.
    stamp = ROOT / ".venv" / ".installed"
    inputs = ("pyproject.toml", "constraints.txt")  # what the stamp's rule depends on
    if not stamp.exists() or any(stamp.stat().st_mtime < (ROOT / name).stat().st_mtime
                                 for name in inputs):
        pytest.fail(f"{stamp} is missing or older than {' or '.join(inputs)}: run `make install` "
                    f"first (these tests link .venv into a temporary checkout and run make there)")
    checkout = tmp_path / "checkout"
    (checkout / ".dlt").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", checkout / "Makefile")
    for name in inputs:
        shutil.copy(ROOT / name, checkout / name)
        os.utime(checkout / name, (0, 0))
    shutil.copy(ROOT / ".dlt" / "config.toml", checkout / ".dlt" / "config.toml")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    return checkout


def plain_env(home: Path, path: str = "/usr/local/bin:/usr/bin:/bin") -> dict[str, str]:
    """A bare environment for a user whose home is ``home``. dlt keeps its pipelines in
    ``~/.dlt``, but in ``/var/dlt`` for root: ``DLT_DATA_DIR`` says ``~/.dlt`` whoever runs the
    tests."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8",
            "DLT_DATA_DIR": str(home / ".dlt")}


# -- crontab --------------------------------------------------------------------------------


def crontab() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The crontab's variables and its jobs (schedule, command), as cron reads them."""
    variables, jobs = {}, []
    for line in CRONTAB.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"five time fields and a command: {line!r}"
        jobs.append((" ".join(fields[:5]), fields[5]))
    return variables, jobs


def test_crontab_runs_make_sync_hourly_under_flock():
    variables, jobs = crontab()
    assert variables["SHELL"] == "/bin/sh" and "/usr/bin" in variables["PATH"].split(":")
    assert len(jobs) == 1
    schedule, command = jobs[0]
    assert croniter.is_valid(schedule)
    runs = croniter(schedule, datetime(2026, 1, 1, tzinfo=UTC))
    fires = [runs.get_next(datetime) for _ in range(25)]
    assert {b - a for a, b in zip(fires, fires[1:], strict=False)} == {timedelta(hours=1)}
    assert "%" not in command  # cron would turn it into a newline

    words = shlex.split(command)
    cd, directory, conjunction, *rest = words
    assert (cd, conjunction) == ("cd", "&&") and directory.startswith("/")
    flock, (timeout, kill, grace, limit, *make) = rest[:5], rest[5:]
    assert flock[:4] == ["flock", "-n", "-E", "3"] and flock[4].endswith(".lock")
    # A hung sync does not hold the lock for ever, also where dlt waits out a TERM.
    assert (timeout, kill, grace, limit) == ("timeout", "-k", "10m", "4h")
    redirect = make.index(">>")
    assert make[redirect + 2] == "2>&1"
    call = make_sync_call(make[:redirect])
    assert call == {"flags": [], "args": "--quiet"}


@pytest.mark.slow  # the crontab's line in a real shell: flock, make and the command: ~5-9 s
def test_crontab_command_syncs_once_when_two_runs_overlap(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    checkout = project(tmp_path)
    (checkout / ".dlt" / "secrets.toml").write_text(
        f'[sources.micrometrics]\nbase_url = "{sandbox.url}"\n'
        f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    variables, [(_, command)] = crontab()
    directory, lock = shlex.split(command)[1], shlex.split(command)[7]
    command = (command.replace(directory, str(checkout))
               .replace(lock, str(tmp_path / "sync.lock")))
    # What cron gives a job: the crontab's variables, HOME, nothing of ours (no SOURCES__...).
    env = plain_env(tmp_path / "home", variables["PATH"]) | {"SHELL": variables["SHELL"]}

    def run() -> int:
        return subprocess.run([variables["SHELL"], "-c", command], env=env, cwd=tmp_path / "home",
                              timeout=120).returncode

    # A run still holding the crontab's lock (held here, as flock(1) holds it): turned away.
    with open(tmp_path / "sync.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        turned_away = run()
        home = tmp_path / "home"
        assert turned_away == 3, (home / "micrometrics-sync.log").read_text()
        assert sandbox.stats()["requests"] == 0  # at once: make never ran
    assert run() == 0  # the lock released: the next run syncs

    log = (tmp_path / "home" / "micrometrics-sync.log").read_text()
    assert "pipelines.sync" not in log  # the recipe starts with @: make echoes no command
    assert log.count("\nrequests ") == 1 and "data tests passed" in log, log
    # Every request the sandbox saw is the winner's: the other run made none.
    assert f"\nrequests {sandbox.stats()['requests']}, " in log
    assert_matches_truth(checkout, sandbox.truth())  # warehouse.duckdb of the checkout


# -- GitHub Actions ---------------------------------------------------------------------------

SECRETS = {  # env variable: secret, as the workflow's header documents them
    "SOURCES__MICROMETRICS__BASE_URL": "MICROMETRICS_BASE_URL",
    "SOURCES__MICROMETRICS__API_KEY": "MICROMETRICS_API_KEY",
    "SOURCES__MICROMETRICS__API_SECRET": "MICROMETRICS_API_SECRET",
    "DESTINATION__POSTGRES__CREDENTIALS": "POSTGRES_CREDENTIALS",
    "DESTINATION__SNOWFLAKE__CREDENTIALS": "SNOWFLAKE_CREDENTIALS",
    "DESTINATION__BIGQUERY__CREDENTIALS": "BIGQUERY_CREDENTIALS",
}


def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    document["on"] = document.pop(True, document.get("on"))
    return document


def job() -> dict[str, Any]:
    [(_, only)] = workflow()["jobs"].items()
    return only


def step(uses: str | None = None, name: str | None = None) -> dict[str, Any]:
    [found] = [s for s in job()["steps"]
               if (uses and s.get("uses", "").startswith(uses + "@")) or (name and s.get("name")
                                                                          == name)]
    return found


def test_workflow_runs_hourly_and_on_demand_never_two_at_once():
    document = workflow()
    [schedule] = document["on"]["schedule"]
    assert croniter.is_valid(schedule["cron"])
    runs = croniter(schedule["cron"], datetime(2026, 1, 1, tzinfo=UTC))
    first, second = runs.get_next(datetime), runs.get_next(datetime)
    assert second - first == timedelta(hours=1)
    inputs = document["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"destination", "args"}
    assert all(not spec.get("required") and spec["default"] == "" for spec in inputs.values())
    assert document["concurrency"]["cancel-in-progress"] is False
    assert document["concurrency"]["group"] == "micrometrics-sync"  # a fixed group: one at once
    assert document["permissions"] == {"contents": "read"}


def test_workflow_maps_every_secret_to_its_dlt_variable_in_the_sync_step_only():
    env = step(name="Sync")["env"]
    for variable, secret in SECRETS.items():
        assert env[variable] == f"${{{{ secrets.{secret} }}}}", variable
    # No other step (checkout, setup-python, pip, upload-artifact) can read a secret.
    assert not any("secrets." in str(value) for value in job().get("env", {}).values())
    for each in job()["steps"]:
        if each.get("name") != "Sync":
            assert "secrets." not in str(each), each
    text = WORKFLOW.read_text()
    referenced = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text))
    assert referenced == set(SECRETS.values())
    for each in job()["steps"]:  # secrets and inputs only through env, never pasted in a script
        assert "${{" not in each.get("run", ""), each


def test_workflow_steps_install_python_run_make_sync_and_keep_the_summary():
    setup = step(uses="actions/setup-python")["with"]
    assert setup == {"python-version": "3.11", "cache": "pip",
                     "cache-dependency-path": "pyproject.toml\nconstraints.txt\n"}
    assert step(uses="actions/checkout")
    sync_lines = [line for line in step(name="Sync")["run"].splitlines()
                  if line.strip().startswith("exec make ")]
    [line] = sync_lines
    words = shlex.split(line)[1:]
    redirect = words.index(">")
    call = make_sync_call(words[:redirect])
    assert call["flags"] == ["-s"]  # no recipe echo: stdout is the JSON line
    assert call["args"].split()[:3] == ["--json", "--quiet", "--destination"]
    summary = words[redirect + 1]
    upload = step(uses="actions/upload-artifact")
    assert upload["if"] == "always()" and upload["with"]["path"] == summary


FAKE_MAKE = """#!/bin/bash
trap 'echo TERM > "$GOT"; exit 143' TERM
echo $$ > "$READY"
sleep 60 & wait
"""


def test_a_stop_sent_to_the_sync_steps_shell_reaches_make(tmp_path):
    """A cancelled run: GitHub's runner signals the step's shell (SIGINT, then SIGTERM, then it
    kills the process tree). A shell running make as its child dies of the TERM and leaves
    make, and the sync, to be killed unwarned: no error line, no JSON line, nothing recorded
    for status. The step ``exec``s make, so the TERM reaches make, which passes it to the sync
    (which ends as a reported failure: ``pipelines/sync/terminate.py``). A stand-in make
    records the signal; the script runs as GitHub runs it, ``bash -e <file>``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    ready, got = tmp_path / "ready", tmp_path / "got"
    os.mkfifo(ready)
    script = tmp_path / "step.sh"
    script.write_text(step(name="Sync")["run"])
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "READY": str(ready), "GOT": str(got),
           "SYNC_ARGS": "", "MICROMETRICS_DESTINATION": "postgres"}
    shell = subprocess.Popen(["bash", "-e", str(script)], cwd=tmp_path, env=env)
    make = None
    try:
        with open(ready) as started:  # blocks until the stand-in make runs
            make = int(started.read())
        ended = os.pidfd_open(make)  # readable once it has ended (it may be the shell's pid)
        try:
            shell.send_signal(signal.SIGTERM)
            assert shell.wait(timeout=30) != 0
            # The stand-in ends at once when the TERM reaches it, else after 60 s.
            assert select.select([ended], [], [], 30)[0], "make never got the TERM"
        finally:
            os.close(ended)
        make = None
        assert got.read_text() == "TERM\n"
    finally:
        if shell.poll() is None:
            shell.kill()
        if make is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(make, signal.SIGKILL)


def evaluate(value: Any, contexts: dict[str, dict[str, str]]) -> str:
    """A workflow value with ``${{ a.b || c.d || 'literal' }}`` expressions (all this workflow
    uses; anything else fails the test) evaluated as GitHub does."""
    def expression(match: re.Match) -> str:
        for term in (t.strip() for t in match.group(1).split("||")):
            if re.fullmatch(r"'[^']*'", term):
                result = term[1:-1]
            else:
                context, _, name = term.partition(".")
                assert context in contexts and re.fullmatch(r"[A-Za-z0-9_]+", name), term
                result = contexts[context].get(name, "")
            if result:
                return result
        return ""

    return re.sub(r"\$\{\{(.*?)\}\}", expression, str(value))


def run_workflow(checkout: Path, home: Path, contexts: dict[str, dict[str, str]]
                 ) -> list[subprocess.CompletedProcess]:
    """The job's run steps in order, each with ``bash -e`` (GitHub's default shell) in the
    workspace, stopping at the first that fails, as the runner does."""
    env = plain_env(home) | {name: evaluate(value, contexts)
                             for name, value in job().get("env", {}).items()}
    done = []
    for each in job()["steps"]:
        if "run" not in each:
            continue
        step_env = env | {name: evaluate(value, contexts)
                          for name, value in each.get("env", {}).items()}
        done.append(subprocess.run(["bash", "-e", "-c", each["run"]], cwd=checkout,
                                   env=step_env, capture_output=True, text=True, timeout=300))
        if done[-1].returncode != 0:
            break
    return done


@pytest.mark.slow  # two real runs of make and the command into PostgreSQL: ~12 s
def test_workflow_run_steps_sync_into_postgres_and_resume_on_a_fresh_runner(
        start_sandbox, postgres_credentials, tmp_path):
    sandbox = start_sandbox(**SMALL)
    checkout = project(tmp_path)
    secrets = {"MICROMETRICS_BASE_URL": sandbox.url, "MICROMETRICS_API_KEY": KEY,
               "MICROMETRICS_API_SECRET": SECRET, "POSTGRES_CREDENTIALS": postgres_credentials}
    # A scheduled run: no inputs, no repository variables (the destination defaults).
    first = run_workflow(checkout, tmp_path / "runner1",
                         {"secrets": secrets, "vars": {}, "inputs": {}})
    assert [r.returncode for r in first] == [0, 0], first[-1].stderr[-3000:]
    summary = (checkout / "sync-summary.json").read_text().splitlines()
    assert len(summary) == 1 and json.loads(summary[0])["exit_code"] == 0
    check = pipeline_on(dlt.destinations.postgres(postgres_credentials), tmp_path / "check")
    assert_matches_truth(check, sandbox.truth())
    full = sandbox.stats()["requests"]

    # Later, on a new runner (nothing of the first one's home, so no local dlt state): dlt
    # restores the state from PostgreSQL and the sync reads only what changed.
    sandbox.add_responses(15)
    sandbox.update_devices(2)
    sandbox.reset_stats()
    second = run_workflow(checkout, tmp_path / "runner2",
                          {"secrets": secrets, "vars": {"MICROMETRICS_DESTINATION": "postgres"},
                           "inputs": {"args": "--resources devices,surveys,survey_responses"}})
    assert [r.returncode for r in second] == [0, 0], second[-1].stderr[-3000:]
    assert_matches_truth(check, sandbox.truth())
    assert sandbox.stats()["requests"] < full / 2, (sandbox.stats()["requests"], full)


def test_workflow_refuses_args_that_would_reach_the_shell(tmp_path):
    checkout = project(tmp_path)
    contexts = {"secrets": {}, "vars": {}, "inputs": {"args": "--quiet; touch pwned"}}
    done = run_workflow(checkout, tmp_path / "runner", contexts)
    assert [r.returncode for r in done] == [0, 2]  # installed, then refused before make
    assert "args may hold only" in done[-1].stdout
    assert not (checkout / "pwned").exists() and not (checkout / "sync-summary.json").exists()


# -- Airflow: the retry classification ------------------------------------------------------


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised from ``inner``, as dlt wraps what a step raised."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:  # noqa: BLE001
        return exc


def step_failed(inner: BaseException) -> BaseException:
    return chained(PipelineStepFailed(mock.Mock(pipeline_name="micrometrics"), "extract",
                                      "load_id", inner, None), inner)


FAILED_TEST = DataTestResult("scores_in_range", 1, ("nps_score",), ((11,),))


# Built in the test, not at collection: some dlt exceptions set up dlt's run context when
# formatted, which must not happen while pytest collects.
@pytest.mark.parametrize("make,retry", [
    (lambda: ConfigurationError("missing configuration: SOURCES__MICROMETRICS__API_SECRET"), False),
    (lambda: step_failed(ApiError("GET", "/devices", 503, "the API kept failing")), True),
    (lambda: step_failed(ApiError("GET", "/devices", 500, "")), True),
    (lambda: step_failed(ApiError("GET", "/devices", None, "could not connect")), True),
    (lambda: step_failed(ApiError("GET", "/devices", 429, "throttled")), True),
    (lambda: step_failed(CursorRejectedError("GET", "/devices?cursor=x", 400, "cursor")), True),
    (lambda: step_failed(ApiError("GET", "/devices", 404, "check base_url")), False),
    (lambda: step_failed(ApiError("GET", "/devices", 501, "not implemented")), False),
    (lambda: step_failed(ApiError("GET", "/devices", 524, "origin timed out")), True),
    (lambda: step_failed(UnsendableRequestError("GET", "/devices", None, "not sent")), False),
    (lambda: step_failed(AuthenticationError("GET", "/devices", 401, "key and secret")), False),
    (lambda: step_failed(UnexpectedResponseError("GET", "/devices", 200, "not JSON")), False),
    (lambda: step_failed(IncompleteBodyError("GET", "/devices", 200, "cut short")), True),
    (lambda: SyncLockedError("another sync of pipeline 'micrometrics' is running"), True),
    # Another process (make status, a BI tool, the duckdb CLI) has the DuckDB file open.
    (lambda: duckdb.IOException(
        'IO Error: Could not set lock on file "/data/warehouse.duckdb": Conflicting lock is '
        "held in /usr/bin/python3 (PID 4242)"), True),
    (lambda: step_failed(duckdb.IOException(
        'IO Error: Could not set lock on file "/data/warehouse.duckdb": Conflicting lock is '
        "held in /usr/bin/duckdb (PID 4242)")), True),
    (lambda: duckdb.IOException('IO Error: Cannot open file "/data/x.duckdb": Permission '
                                "denied"), False),
    (lambda: DataTestFailed([FAILED_TEST]), False),
    (lambda: chained(ModelsError("model stg_devices failed"),
                     DestinationConnectionError("postgres", "ds", "connection reset", None)), True),
    (lambda: chained(ModelsError("model stg_devices failed"),
                     DatabaseTerminalException(Exception("syntax error"))), False),
    (lambda: ModelsError("two models are named 'x'"), False),
    (lambda: step_failed(DestinationConnectionError("postgres", "ds", "no route", None)), True),
    (lambda: step_failed(ConfigFieldMissingException(PostgresCredentials(), {})), False),
    (lambda: step_failed(requests.ConnectionError("connection reset")), True),
    (lambda: ValueError("unknown resources ['x']"), False),
    (lambda: RuntimeError("something else"), False),
    # A stop (a shutdown, a timeout): ours, or dlt's from inside a step (a "terminal" one).
    (lambda: Terminated(), True),
    (lambda: chained(PipelineStepFailed(mock.Mock(pipeline_name="micrometrics"), "load",
                                        "load_id", SignalReceivedException(15), None),
                     SignalReceivedException(15)), True),
    # Ctrl-C: Python's, or dlt's from inside a step (not a "terminal destination error").
    (lambda: KeyboardInterrupt(), True),
    (lambda: chained(PipelineStepFailed(mock.Mock(pipeline_name="micrometrics"), "normalize",
                                        "load_id", SignalReceivedException(2), None),
                     SignalReceivedException(2)), True),
])
def test_classify_retries_only_transient_causes(make, retry):
    verdict = classify(make())
    assert verdict.retry is retry, verdict
    assert verdict.reason and "\n" not in verdict.reason


def test_ctrl_c_inside_a_dlt_step_is_said_as_an_interruption():
    """dlt raises a Ctrl-C in its normalize or load as a "terminal" step failure, with advice
    (abort-packages) that would drop what the sync committed."""
    from pipelines.sync.run import failure

    stopped = chained(PipelineStepFailed(mock.Mock(pipeline_name="micrometrics"), "normalize",
                                         "load_id", SignalReceivedException(2), None),
                      SignalReceivedException(2))
    assert failure(stopped) == (1, "sync failed: interrupted (Ctrl-C, SIGINT); the next sync "
                                   "loads what this one committed and goes on from there")
    assert classify(stopped).reason.startswith("interrupted (SIGINT)")


# -- Airflow: the DAG file's task in this process --------------------------------------------


class StandInAirflowException(Exception):
    """airflow.exceptions.AirflowException: the task failed, Airflow retries if it may."""


class StandInAirflowFailException(StandInAirflowException):
    """airflow.exceptions.AirflowFailException: failed, not retried."""


def stand_in_airflow() -> tuple[dict[str, types.ModuleType], dict[str, Any]]:
    """Stand-ins for the names the DAG file imports from Airflow 3 (``DAG``, ``Param``,
    ``PythonOperator``, the two exceptions), recording what the file declares. Only for
    loading it here; real Airflow runs the same file in the ``warehouses`` test below."""
    declared: dict[str, Any] = {"tasks": []}

    class DAG:
        def __init__(self, **kwargs: Any) -> None:
            declared["dag"] = kwargs

        def __enter__(self) -> DAG:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def operator(**kwargs: Any) -> None:
        declared["tasks"].append(kwargs)

    names = {
        "airflow": {}, "airflow.sdk": {"DAG": DAG, "Param": lambda default, **_: default},
        "airflow.providers": {}, "airflow.providers.standard": {},
        "airflow.providers.standard.operators": {},
        "airflow.providers.standard.operators.python": {"PythonOperator": operator},
        "airflow.exceptions": {"AirflowException": StandInAirflowException,
                               "AirflowFailException": StandInAirflowFailException},
    }
    modules = {}
    for name, attributes in names.items():
        modules[name] = types.ModuleType(name)
        modules[name].__dict__.update(attributes)
    return modules, declared


@pytest.fixture
def dag_module() -> tuple[types.ModuleType, dict[str, Any]]:
    modules, declared = stand_in_airflow()
    spec = importlib.util.spec_from_file_location("micrometrics_sync_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    # The stand-ins exist only while the file is imported (dlt probes for Airflow at times).
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        spec.loader.exec_module(module)
    finally:
        for name, before in saved.items():
            if before is None:
                del sys.modules[name]
            else:
                sys.modules[name] = before
    return module, declared


def test_dag_declares_one_hourly_sync_one_run_at_a_time_with_retries(dag_module):
    module, declared = dag_module
    dag = declared["dag"]
    assert dag["dag_id"] == "micrometrics_sync" and croniter.is_valid(dag["schedule"])
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    assert dag["default_args"]["retries"] == 3
    assert dag["params"] == {"destination": "postgres", "dataset": "micrometrics"}
    [task] = declared["tasks"]
    assert task == {"task_id": "sync", "python_callable": module.sync_micrometrics}
    # The schedules agree: cron, GitHub Actions and Airflow sync at the same minute.
    assert dag["schedule"] == crontab()[1][0][0] == workflow()["on"]["schedule"][0]["cron"]


def run_task(module: types.ModuleType, env: dict[str, str]) -> Any:
    """The DAG's task callable as Airflow calls it (``params`` from the context), in this
    process with exactly ``env`` as its environment."""
    Path(env["DLT_DATA_DIR"]).parent.mkdir(parents=True, exist_ok=True)
    with as_a_process(env, io.StringIO()):
        return module.sync_micrometrics(params={"destination": "duckdb",
                                                "dataset": "micrometrics"}, ti=None)


def test_dag_task_syncs_exactly_and_incrementally(dag_module, start_sandbox, tmp_path):
    module, _ = dag_module
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    summary = run_task(module, env)
    truth = sandbox.truth()
    assert_matches_truth(tmp_path, truth)
    assert (summary["exit_code"], summary["exit_cause"], summary["error"]) == (0, "ok", None)
    tables = summary["tables"]
    for table in ("devices", "surveys", "survey_responses"):
        assert tables[table] == {"loaded": len(truth[table]),
                                 "in_destination": len(truth[table])}, table
    assert summary["requests"] == sandbox.stats()["requests"]
    models = summary["models"]
    assert models["tests_passed"] == len(load_project().tests) > 0  # every data test in sql/
    assert models["tests_failed"] == 0 and models["built"] > 0
    json.dumps(summary)  # what Airflow pushes to XCom

    # Recorded as a command-line sync is: `make status` sees the scheduled run.
    last = status_json(env)["last_success"]
    assert last["exit_cause"] == "ok" and last["requests"] == summary["requests"]

    sandbox.add_responses(7)
    sandbox.reset_stats()
    again = run_task(module, env)
    assert_matches_truth(tmp_path, sandbox.truth())
    assert again["requests"] == sandbox.stats()["requests"] < summary["requests"]


def test_dag_task_fails_fatal_causes_at_once_and_retries_transient_ones(
        dag_module, start_sandbox, tmp_path):
    module, _ = dag_module
    sandbox = start_sandbox(**SMALL)

    def fails(name: str, **extra: str) -> StandInAirflowException:
        with pytest.raises(StandInAirflowException) as raised:
            run_task(module, sync_env(tmp_path / name, sandbox.url, **extra))
        return raised.value

    missing = sync_env(tmp_path / "missing", sandbox.url)
    del missing["SOURCES__MICROMETRICS__API_SECRET"]
    with pytest.raises(StandInAirflowFailException, match="not retried: configuration error"):
        run_task(module, missing)
    refused = fails("refused", SOURCES__MICROMETRICS__API_SECRET="not-the-secret")
    assert type(refused) is StandInAirflowFailException and "HTTP 401" in str(refused)
    assert isinstance(refused.__cause__, PipelineStepFailed)  # judged by the ApiError inside

    # 503 on every attempt of the devices request: the client gives up, Airflow may retry.
    sandbox.script("http_503", count=2, endpoint="devices")
    outage = fails("outage", **TRIES_FAST)
    assert type(outage) is StandInAirflowException
    assert "retryable: the API kept failing" in str(outage) and "HTTP 503" in str(outage)
    # ... and the retry (the outage over) completes the sync, exactly.
    run_task(module, sync_env(tmp_path / "outage", sandbox.url, **TRIES_FAST))
    assert_matches_truth(tmp_path / "outage", sandbox.truth())

    locked_env = sync_env(tmp_path / "locked", sandbox.url)
    lock = Path(locked_env["DLT_DATA_DIR"]) / "pipelines" / "micrometrics.sync.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another sync of the pipeline is running
        sandbox.reset_stats()
        locked = fails("locked")
    assert type(locked) is StandInAirflowException and "another sync is running" in str(locked)
    assert sandbox.stats()["requests"] == 0


def test_dag_task_does_not_retry_a_failed_data_test(dag_module, start_sandbox, tmp_path):
    module, _ = dag_module
    sandbox = start_sandbox(**SMALL)
    truth = sandbox.truth()
    nps = {s["id"]: q["id"] for s in truth["surveys"] for q in s["questions"]
           if q["type"] == "nps"}
    response = next(r for r in truth["survey_responses"] if r["survey_id"] in nps)
    # A score out of range, as an API could deliver it: loaded, then a data test fails.
    sandbox.patch_records("survey_responses", [response["id"]], {
        "answers": [{"question_id": nps[response["survey_id"]], "value": 11}]})
    env = sync_env(tmp_path, sandbox.url)
    with pytest.raises(StandInAirflowFailException,
                       match="not retried: loaded, but a data test failed: .*scores_in_range"):
        run_task(module, env)
    assert_matches_truth(tmp_path, sandbox.truth())  # the load itself is good
    assert status_json(env)["last_sync"]["exit_cause"] == "data_test"


# -- Airflow: the DAG in real Airflow -------------------------------------------------------


def airflow_python() -> Path:
    python = AIRFLOW_VENV / "bin" / "python"
    if not (AIRFLOW_VENV / ".installed").exists():
        pytest.fail(f"Airflow's venv is missing or incomplete ({AIRFLOW_VENV}): build it with "
                    f"`make test-warehouses` (it creates .venv-airflow from "
                    f"deploy/airflow/requirements.txt and this project), then rerun",
                    pytrace=False)
    return python


@pytest.mark.warehouses  # runs with `make test-warehouses`, which builds .venv-airflow
def test_dag_in_real_airflow_syncs_retries_transient_failures_and_fails_fatal_ones(
        start_sandbox, tmp_path):
    python = airflow_python()
    good, outage, other = (start_sandbox(**SMALL) for _ in range(3))
    outage.script("http_503", count=2, endpoint="devices")  # the first try only
    scenarios = [
        ("synced", good, {}),
        ("retried", outage, TRIES_FAST),
        ("refused", other, {"SOURCES__MICROMETRICS__API_SECRET": "not-the-secret"}),
        ("misconfigured", other, {"SOURCES__MICROMETRICS__BASE_URL": "ftp://nowhere"}),
    ]
    plan = {"dag_id": "micrometrics_sync", "scenarios": [
        {"name": name, "conf": {"destination": "duckdb"},
         "env": {k: v for k, v in sync_env(tmp_path / name, sandbox.url, **extra).items()
                 if k.startswith(("SOURCES__", "DESTINATION__", "DLT_DATA_DIR"))}}
        for name, sandbox, extra in scenarios]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("SOURCES__", "DESTINATION__", "DLT_", "AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAG_FILE.parent),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", RUNTIME__DLTHUB_TELEMETRY="false")
    migrate = subprocess.run([str(python.parent / "airflow"), "db", "migrate"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    done = subprocess.run([str(python), str(ROOT / "tests" / "airflow_dag_runner.py"),
                           str(tmp_path / "plan.json"), str(tmp_path / "result.json")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    result = json.loads((tmp_path / "result.json").read_text())

    bag = result["dagbag"]
    assert bag["import_errors"] == {} and bag["dag_ids"] == ["micrometrics_sync"]
    assert bag["parse_imported"] == []  # parsing imports neither the connector nor dlt
    assert bag["schedule"] == crontab()[1][0][0]
    assert bag["max_active_runs"] == 1 and bag["catchup"] is False
    [task] = bag["tasks"]
    assert task["task_id"] == "sync" and task["operator"] == "PythonOperator"
    assert task["callable"] == "sync_micrometrics" and task["retries"] == 3

    runs = result["runs"]
    tries = {name: [(t["state"], t["try_number"]) for t in run["tasks"]]
             for name, run in runs.items()}
    assert runs["synced"]["state"] == "success" and tries["synced"] == [("success", 1)]
    assert_matches_truth(tmp_path / "synced", good.truth())
    # Failed on its first try, retried by Airflow, which completed it.
    assert runs["retried"]["state"] == "success" and tries["retried"] == [("success", 2)]
    assert_matches_truth(tmp_path / "retried", outage.truth())
    assert "retryable: the API kept failing" in log
    # Failed at once: Airflow had three retries left and used none.
    for name in ("refused", "misconfigured"):
        assert runs[name]["state"] == "failed" and tries[name] == [("failed", 1)], name
    assert "AirflowFailException: not retried: the API refused" in log
    assert "AirflowFailException: not retried: configuration error" in log


def test_a_postgres_that_cannot_be_reached_now_is_retried_a_missing_database_is_not(
        start_sandbox, tmp_path, clock, postgres_server):
    # dlt 1.31 raises psycopg2's own OperationalError for a failed connect, not a transient
    # error of its own: the scheduler must still tell a restart from a wrong database name.
    sandbox = start_sandbox(clock=clock, responses=50, rate=1000.0, burst=1000)
    verdicts = []
    for name, url in (("down", "postgresql://loader:pw@127.0.0.1:1/db"),
                      ("missing", postgres_server.url("no_such_database"))):
        pipeline = pipeline_on(dlt.destinations.postgres(credentials=url), tmp_path / name)
        with pytest.raises(Exception) as raised:
            sync_into(sandbox, pipeline, clock)
        verdicts.append(classify(raised.value).retry)
    assert verdicts == [True, False]


def test_a_duckdb_file_another_process_holds_open_is_retried(start_sandbox, tmp_path, clock):
    # A BI tool, the duckdb CLI or `make status` has the warehouse open: DuckDB refuses the
    # sync the file, until that process lets go of it; Airflow's retry then syncs.
    sandbox = start_sandbox(clock=clock, responses=50, rate=1000.0, burst=1000)
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
                               "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        pipeline = pipeline_on(dlt.destinations.duckdb(credentials=str(path)),
                               tmp_path / "pipelines")
        with pytest.raises(Exception) as raised:
            sync_into(sandbox, pipeline, clock)
        verdict = classify(raised.value)
    finally:
        holder.stdin.close()  # the holder reads to the end of its input, then exits
        holder.wait(timeout=60)
    assert verdict.retry, verdict
    assert "another process has the DuckDB file open" in verdict.reason
    assert f"(PID {holder.pid})" in verdict.reason
    sync_into(sandbox, pipeline, clock)  # the retry, once the file is free
    assert_matches_truth(tmp_path, sandbox.truth())


class AirflowTaskTimeout(BaseException):
    """Airflow's execution_timeout raises this (a BaseException) in the task's thread."""


def test_a_schedulers_timeout_is_recorded_for_status(dag_module, start_sandbox, tmp_path,
                                                     monkeypatch):
    """Airflow retries the task; status must still show the run that timed out as the last
    one, not the one before."""
    module, _ = dag_module
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    run_task(module, env)
    rounds = iter(range(100))

    def timed_out(self, *args, **kwargs):
        if next(rounds) == 0:
            raise AirflowTaskTimeout("Timeout, PID: 4242")
        return run(self, *args, **kwargs)

    run = dlt.Pipeline.run
    monkeypatch.setattr(dlt.Pipeline, "run", timed_out)
    with pytest.raises(AirflowTaskTimeout):
        run_task(module, env)
    last = status_json(env)["last_sync"]
    assert last["exit_code"] == 1 and "timed out" in last["error"], last
