"""``--json``: the sync's summary as exactly one JSON line on stdout, its figures equal to what
the sandbox counted and the destination holds; and one JSON line for every kind of failure."""

from __future__ import annotations

import json
import os
import signal

import pytest

from pipelines.sync import run
from pipelines.sync.json_summary import MIN_REDACTED_LENGTH, redact
from pipelines.sync.lock import sync_lock
from tests.cli import run_cli, sync_env
from tests.conftest import SECRET
from tests.test_status import status_json
from tests.truth import assert_matches_truth

FAST = {"rate": 1000.0, "burst": 1000}
SMALL = {"devices": 10, "surveys": 3, "responses": 300, **FAST}
KEYS = {"exit_code", "exit_cause", "error", "destination", "dataset", "started_at", "finished_at",
        "tables", "requests", "pages", "pages_with_data", "throttled", "retries", "rounds",
        "elapsed_seconds", "floor_seconds", "deep_pass", "reconcile", "marks",
        "quiet_surveys_skipped", "rejected", "warnings", "load_jobs", "models"}


def one_json_line(result) -> dict:
    """The command's stdout must be one line holding one JSON object; never the secret."""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    assert SECRET not in result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict) and KEYS <= set(payload), payload
    return payload


def answers(truth: dict) -> int:
    return sum(len(r.get("answers") or []) for r in truth["survey_responses"])


def test_the_json_summary_equals_the_sandboxs_counters_and_the_destination(
        start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    sandbox.script("spurious_429", count=3)
    env = sync_env(tmp_path, sandbox.url)

    result = run_cli(env, "--json")  # progress lines on (not --quiet): they go to stderr
    assert result.returncode == 0, result.stderr
    assert "devices: " in result.stderr
    summary = one_json_line(result)
    stats, truth = sandbox.stats(), sandbox.truth()
    assert (summary["exit_code"], summary["exit_cause"], summary["error"]) == (0, "ok", None)
    assert summary["requests"] == stats["requests"]
    assert summary["pages"] == stats["pages"]
    assert summary["throttled"] == stats["throttled"] + stats["faults"]["spurious_429"] == 3
    assert summary["retries"] == 0
    tables = summary["tables"]
    for table in ("devices", "surveys", "survey_responses"):
        assert tables[table] == {"loaded": len(truth[table]),
                                 "in_destination": len(truth[table])}, table
    assert tables["survey_responses__answers"]["in_destination"] == answers(truth)
    assert tables["_rejected_records"]["in_destination"] is None  # never created
    assert summary["elapsed_seconds"] > 0  # the floor under a binding limit: see below
    assert summary["deep_pass"]["ran"] is False and summary["reconcile"]["ran"] is False
    assert summary["quiet_surveys_skipped"] == [] and summary["warnings"] == []
    assert summary["load_jobs"]["survey_responses"] >= 1 and summary["rounds"] >= 1
    models = summary["models"]
    assert models["built"] > 0 and models["tests_passed"] > 0 and models["tests_failed"] == 0

    # An incremental sync with a reconcile: rows loaded now are the changes only.
    sandbox.reset_stats()
    changed = sandbox.update_responses(7)
    erased = sandbox.erase_records("devices", [truth["devices"][0]["id"]])
    result = run_cli(env, "--json", "--quiet", "--reconcile", "--no-models")
    assert result.returncode == 0, result.stderr
    summary = one_json_line(result)
    assert summary["requests"] == sandbox.stats()["requests"]
    responses = summary["tables"]["survey_responses"]
    assert responses["in_destination"] == len(truth["survey_responses"])
    assert len(changed) <= responses["loaded"] < len(truth["survey_responses"])  # + lookback
    assert summary["reconcile"]["ran"] is True
    assert summary["reconcile"]["listed"]["devices"] == len(truth["devices"]) - len(erased)
    assert summary["marks"]["marked"] == {"devices": 1}
    assert summary["models"] is None


def test_a_config_error_is_one_json_line_with_exit_code_2(start_sandbox, tmp_path):
    sandbox = start_sandbox(**FAST)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES="-3")
    result = run_cli(env, "--json")
    assert result.returncode == 2
    failure = one_json_line(result)
    assert (failure["exit_code"], failure["exit_cause"]) == (2, "config")
    assert "window_pages" in failure["error"] and "\n" not in failure["error"]
    assert failure["requests"] is None and failure["models"] is None
    assert sandbox.stats()["requests"] == 0

    # A bad command line too: argparse's usage on stderr, the JSON line on stdout.
    bad = run_cli(sync_env(tmp_path, sandbox.url), "--json", "--resources", "nope")
    assert bad.returncode == 2 and "usage:" in bad.stderr
    assert json.loads(bad.stdout)["exit_cause"] == "config"
    assert "unknown resource nope" in json.loads(bad.stdout)["error"]


def test_a_stop_waiting_in_dlts_code_does_not_keep_a_failure_from_being_recorded(
        start_sandbox, tmp_path, monkeypatch):
    """Ctrl-C lands in dlt's code just before its normalize (it waits to leave dlt's code),
    then a SIGTERM inside normalize fails the step: the waiting Ctrl-C was raised while that
    failure was recorded, and status went on showing the run before as the last one."""
    from contextlib import contextmanager

    from dlt.common.runtime import signals as dlt_signals

    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    sandbox.add_responses(5)
    original, sent = dlt_signals.intercepted_signals, []

    @contextmanager
    def stopped_twice():
        if not sent:
            os.kill(os.getpid(), signal.SIGINT)  # in dlt's Pipeline.normalize: it waits
        with original():
            if not sent:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGTERM)  # dlt's own handler: the step fails
            yield

    monkeypatch.setattr(dlt_signals, "intercepted_signals", stopped_twice)
    try:
        result = run_cli(env, "--json", "--quiet", "--no-models")
    except KeyboardInterrupt:
        pytest.fail("the waiting Ctrl-C escaped the sync command")
    assert sent and result.returncode == 1, result.stderr
    said = one_json_line(result)["error"]
    assert said.startswith("sync failed: stopped by SIGTERM"), said
    recorded = status_json(env)["last_sync"]
    assert (recorded["exit_code"], recorded["error"]) == (1, said)
    monkeypatch.setattr(dlt_signals, "intercepted_signals", original)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_stop_that_comes_as_the_sync_finishes_is_said(start_sandbox, tmp_path, monkeypatch):
    """A SIGTERM that lands in dlt's code as it loads the sync's record, the last thing it does:
    with nothing after it to raise it, it was swallowed without a word."""
    from dlt.common.runtime import signals as dlt_signals

    from pipelines.sync import terminate

    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    monkeypatch.setattr(terminate, "HAND_OVER_POLL", 3600.0)  # the watcher looks too late
    original_record, original_clear = run.record_sync, dlt_signals._clear_signals
    steps_of_the_record = []

    def record_sync(*args, **kwargs):
        steps_of_the_record.append("record")
        return original_record(*args, **kwargs)

    def clear_signals():  # dlt's step ends: its handlers are ours again
        original_clear()
        if steps_of_the_record:
            steps_of_the_record.append("step")
            if steps_of_the_record == ["record", "step", "step"]:  # the record's load
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run, "record_sync", record_sync)
    monkeypatch.setattr(dlt_signals, "_clear_signals", clear_signals)
    result = run_cli(env, "--quiet", "--no-models")
    assert steps_of_the_record == ["record", "step", "step"]
    assert (result.returncode, result.stderr) == (
        0, "warning: SIGTERM came as the sync finished; nothing was left to stop\n")
    assert status_json(env)["last_sync"]["exit_code"] == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_config_file_dlt_cannot_read_is_exit_2_in_one_line_for_every_command(
        start_sandbox, tmp_path):
    """A TOML syntax error: status printed a traceback and exited 1 (which --max-age monitors
    read as "stale"), the sync said exit 1 "failed", models dropped the line and column. In
    real processes: where dlt first reads the file is what is tested."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.cli import tmp_cwd

    sandbox = start_sandbox(**FAST)
    env = sync_env(tmp_path, sandbox.url)
    cwd = tmp_cwd(env)
    (Path(cwd) / ".dlt").mkdir(exist_ok=True)
    (Path(cwd) / ".dlt" / "secrets.toml").write_text(
        '[sources.micrometrics]\nwindow_pages = "oops\n')
    said = "error: A problem encountered when loading secrets.toml from paths "
    where = "are not allowed in strings, use \\u000a instead at line 2 col 20\n"
    for command in (("sync", "--json"), ("status", "--max-age", "6h"), ("models",),
                    ("report", "-o", str(tmp_path / "r.html"))):
        result = subprocess.run([sys.executable, "-m", f"pipelines.{command[0]}", *command[1:]],
                                cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.startswith(said) and result.stderr.endswith(where), (
            command, result.stderr)
        assert result.stderr.count("\n") == 1, (command, result.stderr)
        if command[0] == "sync":
            failure = json.loads(result.stdout)
            assert (failure["exit_code"], failure["exit_cause"]) == (2, "config")
    assert sandbox.stats()["requests"] == 0


def test_failed_locked_and_data_test_runs_each_print_one_json_line(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1")

    wrong = run_cli(dict(env, SOURCES__MICROMETRICS__API_SECRET="not-the-secret"), "--json")
    assert wrong.returncode == 1
    failure = one_json_line(wrong)
    assert failure["exit_cause"] == "failed" and "HTTP 401" in failure["error"]
    assert "not-the-secret" not in wrong.stdout + wrong.stderr

    with sync_lock(str(tmp_path / "dlt" / "pipelines"), "micrometrics"):
        held = run_cli(env, "--json", "--quiet")
    assert held.returncode == 3
    assert one_json_line(held)["exit_cause"] == "locked"

    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    # Loaded, then a data test fails: an NPS score of 11, as an API could deliver it.
    truth = sandbox.truth()
    response = truth["survey_responses"][0]
    survey = next(s for s in truth["surveys"] if s["id"] == response["survey_id"])
    nps = next(q["id"] for q in survey["questions"] if q["type"] == "nps")
    sandbox.patch_records("survey_responses", [response["id"]],
                          {"answers": [{"question_id": nps, "value": 11}]})
    result = run_cli(env, "--json", "--quiet")
    assert result.returncode == 4
    summary = one_json_line(result)
    assert summary["exit_cause"] == "data_test" and "scores_in_range" in summary["error"]
    assert summary["tables"]["survey_responses"]["loaded"] >= 1  # the load itself succeeded
    assert summary["models"]["tests_failed"] >= 1
    assert "scores_in_range" in summary["models"]["failed_tests"]
    assert result.stderr.startswith("error: sync failed: data test failed: ")


def test_ctrl_c_while_the_models_build_is_one_failure_with_its_json_line(
        start_sandbox, tmp_path, monkeypatch):
    """Ctrl-C (SIGINT) during the models escaped as a traceback with exit 130 and no JSON line,
    while status recorded exit 1: now one failure, said the same everywhere."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    original = run.build_models

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next line of Python
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "build_models", interrupted)
    try:
        result = run_cli(env, "--json", "--quiet")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the sync command")
    said = ("sync failed: interrupted (Ctrl-C, SIGINT); the next sync loads what this one "
            "committed and goes on from there")
    assert (result.returncode, result.stderr) == (1, f"error: {said}\n")
    summary = one_json_line(result)
    assert (summary["exit_code"], summary["error"]) == (1, said)
    assert summary["tables"]["survey_responses"]["loaded"] == SMALL["responses"]
    recorded = status_json(env)["last_sync"]
    assert (recorded["exit_code"], recorded["error"]) == (1, said)


def test_dry_run_json_holds_the_plan(start_sandbox, tmp_path):
    sandbox = start_sandbox(**FAST)
    result = run_cli(sync_env(tmp_path, sandbox.url), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = one_json_line(result)
    assert plan["exit_cause"] == "ok" and any("full history" in line for line in plan["plan"])
    assert sandbox.stats()["requests"] == 0


def test_floor_seconds_is_what_the_sandboxs_rate_limit_allows(start_sandbox, tmp_path):
    # A limit that binds: 20 requests/s after a burst of 10 (the client's own burst is never
    # below 10, so the floor it reports and the sandbox's agree only from 10 up).
    rate, burst = 20.0, 10
    sandbox = start_sandbox(devices=10, surveys=3, responses=300, page_size=20, rate=rate,
                            burst=burst)
    result = run_cli(sync_env(tmp_path, sandbox.url), "--json", "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    summary = one_json_line(result)
    requests = sandbox.stats()["requests"]
    assert summary["requests"] == requests > burst
    assert summary["floor_seconds"] == round((requests - burst) / rate, 3) > 0


def test_the_deep_pass_in_json_found_the_late_uploads(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    late = sandbox.add_late_responses(4, delay_seconds=10 * 3600)  # beyond the 120-min lookback
    result = run_cli(dict(env, SOURCES__MICROMETRICS__DEEP_EVERY_HOURS="0"),
                     "--json", "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    summary = one_json_line(result)
    deep = summary["deep_pass"]
    assert deep["ran"] is True and deep["lookback_hours"] == 72
    # Every stream re-read its deep lookback: devices and each survey's responses, including
    # those whose deep window held nothing new.
    assert deep["streams"] == 1 + len(sandbox.truth()["surveys"])
    assert deep["found"] == len(late) == 4


def test_retries_in_json_are_the_sandboxs_503_answers(start_sandbox, tmp_path):
    sandbox = start_sandbox(**SMALL)
    sandbox.script("http_503", count=2)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__BACKOFF_SECONDS="0.01")
    result = run_cli(env, "--json", "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    summary = one_json_line(result)
    faults = sandbox.stats()["faults"]
    assert faults["http_503"] == 2 and sum(faults.values()) == 2
    assert summary["retries"] == faults["http_503"]
    assert summary["requests"] == sandbox.stats()["requests"]


def test_secrets_are_redacted():
    assert len(SECRET) >= MIN_REDACTED_LENGTH
    assert redact(f"failed: {SECRET} in url", [None, SECRET]) == "failed: *** in url"
    assert redact(None, [SECRET]) is None
    exactly = "x" * MIN_REDACTED_LENGTH
    assert redact(f"a {exactly} b", [exactly]) == "a *** b"


def test_a_short_secret_is_not_redacted_so_messages_stay_readable():
    # Replacing "s" everywhere would turn "sync failed" into "***ync failed" and show the secret.
    message = "sync failed: HTTP 401 on GET /surveys: bad signature"
    assert redact(message, ["s", "short", "x" * (MIN_REDACTED_LENGTH - 1)]) == message


def test_a_one_letter_secret_leaves_the_json_error_as_on_stderr(start_sandbox, tmp_path):
    sandbox = start_sandbox(**FAST)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__API_SECRET="s",
                   SOURCES__MICROMETRICS__MAX_ATTEMPTS="1")
    result = run_cli(env, "--json", "--quiet", "--no-models")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert "***" not in error and error.startswith("sync failed: ") and "HTTP 401" in error
    assert result.stderr.strip().splitlines()[-1] == f"error: {error}"


def test_a_sync_that_fails_after_loading_reports_what_it_did(start_sandbox, tmp_path):
    """Round 1 loads, round 2 fails (the API refuses every paging cursor): the JSON line and
    the status record keep round 1's rows, the requests and the rounds, not nulls."""
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1",
                   SOURCES__MICROMETRICS__ROUND_PAGES="1")
    sandbox.script("reject_cursor", count=10, endpoint="survey_responses")
    failed = run_cli(env, "--json", "--no-models")
    assert failed.returncode == 1, failed.stderr
    summary = one_json_line(failed)
    assert summary["requests"] == sandbox.stats()["requests"] > 0
    assert summary["rounds"] >= 1
    assert summary["tables"]["devices"]["loaded"] == 10
    record = status_json(env)["last_sync"]
    assert record["exit_code"] == 1 and record["rows_loaded"]["devices"] == 10
    assert record["requests"] == summary["requests"]
