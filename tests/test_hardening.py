"""The failure matrix: each case ends exact, or fails with one actionable line and loses nothing."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.session import could_not_connect
from pipelines.micrometrics.timeutil import format_timestamp
from pipelines.sandbox import Sandbox
from pipelines.status.snapshot import sync_running
from pipelines.sync import lock as sync_lock_module
from pipelines.sync.json_summary import RunResult
from pipelines.sync.lock import SyncLockedError, sync_lock
from pipelines.sync.logs import OneLine
from pipelines.sync.options import SyncOptions
from pipelines.sync.run import run_sync as run_locked_sync
from tests.cli import run_cli, run_in_process, run_sync, start_sync, sync_env
from tests.conftest import KEY, SECRET
from tests.syncing import add_malformed_records, query
from tests.truth import assert_matches_truth

FAST_RETRIES = {"SOURCES__MICROMETRICS__MAX_ATTEMPTS": "2",
                "SOURCES__MICROMETRICS__BACKOFF_SECONDS": "0.01"}
TABLES = ("devices", "surveys", "surveys__questions", "survey_responses",
          "survey_responses__answers")


SMALL = dict(devices=12, surveys=2, responses=150, page_size=25, rate=200.0, burst=200)


def small_sandbox(start_sandbox, **options):
    return start_sandbox(**{**SMALL, **options})


def snapshot(tmp_path: Path) -> dict:
    """Everything a failed sync must leave untouched: rows and the pipeline state."""
    rows = {t: query(tmp_path, f"SELECT * EXCLUDE (_dlt_id) FROM micrometrics.{t} ORDER BY ALL")
            for t in TABLES}
    state = json.loads((tmp_path / "dlt" / "pipelines" / "micrometrics" / "state.json")
                       .read_text())
    return {"rows": rows, "state": state.get("sources")}


def assert_one_line_failure(result, *needles: str, code: int = 1) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0]


@pytest.fixture(scope="module")
def synced_once(tmp_path_factory):
    """One sandbox and one good sync of it (its DuckDB file and pipeline folder), shared by the
    failure cases: each starts from a copy, so what one case's failed sync did (or wrongly
    did) never reaches another."""
    with Sandbox(api_key=KEY, api_secret=SECRET, **SMALL) as sandbox:
        template = tmp_path_factory.mktemp("synced")
        env = sync_env(template, sandbox.url, **FAST_RETRIES)
        assert run_cli(env, "--quiet", "--no-models").returncode == 0
        yield sandbox, template


@pytest.fixture
def synced(synced_once, tmp_path):
    """A sandbox and a destination that already holds one good sync."""
    sandbox, template = synced_once
    sandbox.clear_script()  # an earlier case's faults not used up
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    env = sync_env(tmp_path, sandbox.url, **FAST_RETRIES)
    return sandbox, env, snapshot(tmp_path)


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "wrong_key", "unreachable", "wrong_path", "html_page", "empty_body",
     "truncated_body", "cursor_refused", "connection_dropped", "server_down"],
)
def test_failures_say_what_to_do_and_lose_nothing(synced, tmp_path, case):
    sandbox, env, before = synced
    sandbox.update_responses(5)  # there is something new the failed sync must not half-load
    args = ["--quiet", "--no-models"]
    if case == "wrong_secret":
        env["SOURCES__MICROMETRICS__API_SECRET"] = "not-the-secret"
        needles = ["HTTP 401", hint("auth")]
    elif case == "wrong_key":
        env["SOURCES__MICROMETRICS__API_KEY"] = "nobody"
        needles = ["HTTP 401", hint("auth")]
    elif case == "unreachable":
        sandbox_port = sandbox.url.rsplit(":", 1)[1]
        env["SOURCES__MICROMETRICS__BASE_URL"] = f"http://127.0.0.1:{int(sandbox_port) ^ 1}"
        needles = ["could not connect to 127.0.0.1", hint("unreachable")]
    elif case == "wrong_path":
        env["SOURCES__MICROMETRICS__BASE_URL"] = sandbox.url + "/api/experience"
        needles = ["HTTP 404", hint("not_found")]
    elif case == "html_page":
        sandbox.script("html_200", count=50)
        needles = ["the body is not JSON", hint("not_json")]
    elif case in ("empty_body", "truncated_body"):
        # The API's own page, cut short: not base_url's doing (it was blamed on a proxy, and
        # a scheduler never retried it).
        sandbox.script("empty_200" if case == "empty_body" else "truncated_body", count=50)
        needles = ["the body was empty or its JSON cut short", hint("server")]
    elif case == "cursor_refused":
        sandbox.script("reject_cursor", count=50)
        args += ["--start-at", "2000-01-01T00:00:00Z"]  # a re-read long enough to page
        needles = ["HTTP 400", "invalid cursor", hint("cursor")]
    elif case == "connection_dropped":
        # Connected, then dropped by the server: not base_url's fault.
        sandbox.script("dropped_connection", count=50)
        needles = ["ConnectionError from 127.0.0.1", "attempts", hint("server")]
    else:
        sandbox.script("http_503", count=50)
        needles = ["HTTP 503", hint("server")]
    result = run_cli(env, *args)
    assert_one_line_failure(result, *needles)
    assert "not-the-secret" not in result.stderr
    assert snapshot(tmp_path) == before

    verbose = run_cli(env, *args, "--verbose")
    assert "Traceback" in verbose.stderr  # --verbose shows where it failed


def test_clock_skew_is_named_as_the_cause(start_sandbox, tmp_path):
    skew = [0.0]
    sandbox = small_sandbox(start_sandbox, clock=lambda: time.time() + skew[0])
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    before = snapshot(tmp_path)
    skew[0] = 3600.0  # from now on the server's clock runs an hour ahead of this machine's
    result = run_cli(env, "--quiet", "--no-models")
    assert_one_line_failure(result, "clock differs from the server's by 60 minutes",
                            hint("clock"))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["html_200", "empty_200", "reject_cursor", "expire_cursor_404",
                                  "expire_cursor_410", "expire_cursor_422", "truncated_body",
                                  "dropped_connection", "http_502_html"])
def test_one_off_faults_recover_exact(start_sandbox, tmp_path, kind):
    sandbox = small_sandbox(start_sandbox)
    sandbox.script(kind, count=2)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__BACKOFF_SECONDS="0.01")
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert sandbox.stats()["faults"].get(kind) == 2
    assert_matches_truth(tmp_path, sandbox.truth())


@pytest.mark.parametrize("refusals", [2, 3])
def test_a_survey_list_whose_cursor_is_refused_is_listed_again(start_sandbox, tmp_path,
                                                                refusals):
    # Read once: one refusal of its cursor (expired during a long list, a tenant of more
    # surveys than a page holds) failed the whole sync; windows were read again, twice at most.
    sandbox = start_sandbox(devices=5, surveys=8, responses=120, page_size=3, rate=1000.0,
                            burst=1000)
    sandbox.script("reject_cursor", count=refusals, endpoint="surveys")
    result = run_cli(sync_env(tmp_path, sandbox.url), "--quiet", "--no-models")
    assert sandbox.stats()["faults"] == {"reject_cursor": refusals}
    if refusals == 2:
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("the API refused a cursor of /surveys; listing it again") == 2
        assert_matches_truth(tmp_path, sandbox.truth())
    else:  # the third refusal of the same list gives up, as a window's would
        assert_one_line_failure(result, "HTTP 400", hint("cursor"))


@pytest.mark.parametrize("endpoint", ["survey_responses", "surveys", "devices"])
def test_a_server_paging_in_a_loop_fails_in_one_line_not_for_ever(start_sandbox, tmp_path,
                                                                  endpoint):
    """A Next-Cursor the chain followed already (the same page for ever): the sync ran until a
    scheduler's timeout killed it, printing nothing under --quiet, and a cursor kept in state
    took the next sync into the same loop."""
    sandbox = start_sandbox(devices=5, surveys=4, responses=120, page_size=3, rate=1000.0,
                            burst=1000)
    sandbox.script("repeat_cursor", count=1000, endpoint=endpoint)
    result = run_cli(sync_env(tmp_path, sandbox.url), "--quiet", "--no-models")
    assert_one_line_failure(result, "the API sent the paging cursor of a page this chain "
                                    "already read", hint("paging_loop"))
    # Each chain stops at its first repeat (the surveys' responses are read side by side).
    assert 1 <= sandbox.stats()["faults"]["repeat_cursor"] <= 4


def test_malformed_records_are_quarantined_not_dropped(start_sandbox, tmp_path):
    sandbox = small_sandbox(start_sandbox)
    survey = add_malformed_records(sandbox)
    env = sync_env(tmp_path, sandbox.url)
    first = run_cli(env, "--quiet", "--no-models")
    assert first.returncode == 0, first.stderr
    assert "records were quarantined in _rejected_records" in first.stdout
    assert_matches_truth(tmp_path, sandbox.truth())
    rejected = query(tmp_path, "SELECT stream, reason, record FROM micrometrics._rejected_records "
                               "ORDER BY stream, reason")
    assert [(stream, reason.split(" ")[0]) for stream, reason, _ in rejected] == [
        ("devices", "no"), (f"survey_responses[{survey}]", "no"),
        (f"survey_responses[{survey}]", "updated_at"),
    ]
    assert json.loads(rejected[0][2]) == {"id": "dev-no-time", "name": "Kiosk"}
    # A second sync meets them again (they sit in every window) but stores each once.
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert query(tmp_path, "SELECT COUNT(*) FROM micrometrics._rejected_records") == [(3,)]


def test_records_no_warehouse_takes_are_quarantined_and_later_syncs_go_on(start_sandbox,
                                                                           tmp_path):
    """A key of the wrong type, answers that are no list of objects, a NaN, a lone
    surrogate: each failed every sync after it came (a poisoned package, a page orjson
    refuses) or lost its scores silently. Each is kept aside; the rest loads exact, and so
    does every sync after."""
    sandbox = small_sandbox(start_sandbox)
    survey = sandbox.truth()["surveys"][0]["id"]
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")  # inside the next window
    odd = [
        ("survey_responses", {"id": "R-0", "updated_at": stamp, "answers": []}),
        ("survey_responses", {"id": 999002, "updated_at": stamp, "answers": {"1": 9}}),
        ("survey_responses", {"id": 999003, "updated_at": stamp, "answers": [7]}),
        ("survey_responses", {"id": 999004, "updated_at": stamp,
                              "answers": [{"question_id": 1, "value": float("nan")}]}),
        ("survey_responses", {"id": 999005, "updated_at": stamp, "comment": "a\ud800b"}),
        ("devices", {"id": "dev-inf", "updated_at": stamp, "location_id": float("inf")}),
        ("devices", {"id": {"hash": "x"}, "updated_at": stamp}),
        ("surveys", {"id": "S-1", "updated_at": stamp, "questions": []}),
        # Two keys for one column: dlt kept the last, silently (a phantom response 424242, an
        # answer's score replaced); a key named like dlt's own columns failed every sync.
        ("survey_responses", {"id": 999006, "ID": 424242, "updated_at": stamp, "answers": []}),
        ("survey_responses", {"id": 999007, "updated_at": stamp,
                              "answers": [{"question_id": 1, "value": 9, "Value": "x"}]}),
        ("survey_responses", {"id": 999008, "updated_at": stamp, "_dlt_parent_id": "p"}),
        ("devices", {"id": "dev-name", "updated_at": stamp, "name": "a", "Name": "b"}),
        ("surveys", {"id": 999009, "updated_at": stamp, "questions": [{"id": 1, "_dlt_id": 1}]}),
        # ... also from within an object (dlt spreads it over columns <key>__<its key>).
        ("devices", {"id": "dev-meta", "updated_at": stamp, "meta": {"ID": 1, "id": 2}}),
    ]
    for kind, record in odd:
        sandbox.add_malformed(kind, record, **({"survey_id": survey}
                                               if kind == "survey_responses" else {}))
    # A response's created_at with a space before its offset: a time dlt cannot read.
    response = sandbox.truth()["survey_responses"][1]["id"]
    sandbox.patch_records("survey_responses", [response],
                          {"created_at": "2026-03-15T19:04:56 +05:30"})

    for _ in range(2):  # and the sync after: nothing left pending, nothing stuck
        result = run_cli(env, "--quiet", "--no-models")
        assert result.returncode == 0, result.stderr
        assert "records were quarantined in _rejected_records" in result.stdout
        assert_matches_truth(tmp_path, sandbox.truth())
    # Python's json, as the records keep what JSON functions refuse (NaN, a lone surrogate).
    rejected = query(tmp_path, "SELECT record, reason FROM micrometrics._rejected_records")
    reasons = {str(json.loads(record)["id"]): reason for record, reason in rejected}
    assert reasons == {
        "R-0": "id 'R-0' is not an integer, as this stream's ids are",
        "999002": "answers is dict, not a list of objects",
        "999003": "answers holds int '7', not an object",
        "999004": "a number that is not finite (NaN or Infinity)",
        "999005": "text with a lone UTF-16 surrogate (no character)",
        "dev-inf": "a number that is not finite (NaN or Infinity)",
        "{'hash': 'x'}": "id \"{'hash': 'x'}\" is not a string",
        "S-1": "id 'S-1' is not an integer, as this stream's ids are",
        "999006": "keys 'id' and 'ID' both load into the column 'id'",
        "999007": "answers: keys 'value' and 'Value' both load into the column 'value'",
        "999008": "key '_dlt_parent_id' is named like dlt's own column _dlt_parent_id",
        "dev-name": "keys 'name' and 'Name' both load into the column 'name'",
        "999009": "questions: key '_dlt_id' is named like dlt's own column _dlt_id",
        "dev-meta": "keys 'meta.ID' and 'meta.id' both load into the column 'meta__id'",
    }
    # Kept as sent: the NaN and the surrogate's escape, not null or a dropped character.
    kept = {str(json.loads(record)["id"]): record for record, _ in rejected}
    assert '"value": NaN' in kept["999004"] and '"a\\ud800b"' in kept["999005"]
    assert query(tmp_path, "SELECT CAST(created_at AS VARCHAR) FROM micrometrics."
                           f"survey_responses WHERE id = {response}") == [
        ("2026-03-15 13:34:56+00",)]


def test_an_integer_past_a_signed_64_bit_one_is_quarantined_and_later_syncs_go_on(
        start_sandbox, tmp_path):
    """orjson keeps 2^63 + 5 exact (and makes a float of a larger one), and dlt's normalize
    failed on it ("int too large to convert", a float or digits as text too) on every sync
    after, even once the API had fixed the record."""
    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    devices = [d["id"] for d in sandbox.truth()["devices"][:2]]
    sandbox.patch_records("devices", devices[:1], {"location_id": 2**63 + 5})
    sandbox.patch_records("devices", devices[1:], {"location_id": 10**30})
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    rejected = query(tmp_path, "SELECT reason, record FROM micrometrics._rejected_records")
    assert sorted((reason, json.loads(record)["location_id"]) for reason, record in rejected) \
        == [("an integer beyond a signed 64-bit one", 2**63 + 5),
            ("an integer beyond a signed 64-bit one", 10**30)]
    sandbox.patch_records("devices", devices, {"location_id": 7})  # fixed upstream
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_time_that_is_none_once_in_utc_is_quarantined_and_later_syncs_go_on(
        start_sandbox, tmp_path):
    """A "zero date" written east of UTC (year 1 at +05:45), or the last instant of 9999 west
    of it, is no time once in UTC: dlt's normalize converts every time it reads to UTC
    ("date value out of range") and failed the sync on it, and every sync after, --drop-pending
    too (the record was read again), in created_at or in a new field dlt takes for a time."""
    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    response = sandbox.truth()["survey_responses"][0]["id"]
    device = sandbox.truth()["devices"][0]["id"]
    sandbox.patch_records("survey_responses", [response],
                          {"created_at": "0001-01-01T00:00:00+05:45"})
    sandbox.patch_records("devices", [device], {"last_seen_at": "9999-12-31T23:59:59-12:00"})
    for _ in range(2):  # and the sync after: nothing left pending
        result = run_cli(env, "--quiet", "--no-models")
        assert result.returncode == 0, result.stderr
        assert "2 records were quarantined in _rejected_records" in result.stdout
    rejected = query(tmp_path, "SELECT reason, record FROM micrometrics._rejected_records")
    assert sorted((reason, json.loads(record)["id"]) for reason, record in rejected) == [
        ("created_at '0001-01-01T00:00:00+05:45' is before year 1 or after 9999 once in UTC",
         response),
        ("last_seen_at '9999-12-31T23:59:59-12:00' is before year 1 or after 9999 once in UTC",
         device)]
    sandbox.patch_records("survey_responses", [response],
                          {"created_at": "2026-01-01T00:00:00+05:45"})  # fixed upstream
    sandbox.patch_records("devices", [device], {"last_seen_at": None})
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_schema_drift_new_fields_long_strings_deep_nesting(start_sandbox, tmp_path):
    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    devices = [d["id"] for d in sandbox.truth()["devices"]][:3]
    responses = [r["id"] for r in sandbox.truth()["survey_responses"]][:2]
    long_text = "ü" * 200_000
    sandbox.patch_records("devices", devices[:1], {"location_id": "LOC-9"})  # int -> text
    sandbox.patch_records("devices", devices[1:2], {"meta": {"a": {"b": {"c": {"d": 7}}}},
                                                    "tags": ["x", "y"]})
    sandbox.patch_records("survey_responses", responses[:1], {"comment": long_text})
    sandbox.patch_records("survey_responses", responses[1:2], {"channel": "kiosk"})

    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())
    columns = {row[0] for row in query(tmp_path, "DESCRIBE micrometrics.devices")}
    assert "location_id__v_text" in columns and "meta__a__b__c__d" in columns
    assert query(tmp_path, "SELECT location_id__v_text FROM micrometrics.devices "
                           f"WHERE id = '{devices[0]}'") == [("LOC-9",)]
    assert query(tmp_path, "SELECT value FROM micrometrics.devices__tags ORDER BY 1") == [
        ("x",), ("y",)]
    assert query(tmp_path, "SELECT comment FROM micrometrics.survey_responses "
                           f"WHERE id = {responses[0]}") == [(long_text,)]
    assert query(tmp_path, "SELECT channel FROM micrometrics.survey_responses "
                           f"WHERE id = {responses[1]}") == [("kiosk",)]


@pytest.mark.slow  # two real processes on one lock, the first made seconds long by latency
def test_second_concurrent_sync_refuses_and_first_finishes(start_sandbox, tmp_path):
    sandbox = small_sandbox(start_sandbox, latency=0.3)  # the first sync takes seconds
    env = sync_env(tmp_path, sandbox.url)
    first = start_sync(env, "--quiet", "--no-models")  # a real process holds the lock ...
    assert sandbox.wait_for_requests(1)  # ... and talks to the API
    second = run_cli(env, "--quiet", "--no-models")  # the second sync, from this process
    assert first.poll() is None, "the first sync ended before the second one tried"
    out, err = first.communicate(timeout=120)
    assert_one_line_failure(second, "another sync of pipeline 'micrometrics' is running",
                            code=3)
    assert first.returncode == 0, err
    assert_matches_truth(tmp_path, sandbox.truth())


def test_lock_is_refused_while_held_and_free_after(start_sandbox, tmp_path):
    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url)
    with sync_lock(str(tmp_path / "dlt" / "pipelines"), "micrometrics"):
        held = run_cli(env, "--quiet", "--no-models")
    assert_one_line_failure(held, f"(pid {os.getpid()},", code=3)
    assert sandbox.stats()["requests"] == 0
    assert run_cli(env, "--quiet", "--no-models").returncode == 0


def test_a_sync_holding_the_lock_for_days_is_shown_with_its_age(start_sandbox, tmp_path):
    # A sync that hangs (a stopped process, a network mount that stopped answering) keeps the
    # lock: every hourly sync after said only "another sync ... is running (pid N)", and status
    # said nothing of it, so nobody could tell it from a sync at work.
    from pipelines.status.cli import main as status_main

    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    three_days_ago = int(time.time()) - 3 * 86400
    with sync_lock(str(tmp_path / "dlt" / "pipelines"), "micrometrics") as path:
        os.utime(path, (three_days_ago, three_days_ago))  # as if it took the lock then
        held = run_cli(env, "--quiet", "--no-models")
        shown = run_in_process(status_main, ["status"], env, "--json")
        text = run_in_process(status_main, ["status"], env)
    started = format_timestamp(datetime.fromtimestamp(three_days_ago, UTC))
    assert_one_line_failure(
        held, f"(pid {os.getpid()}, started {started} (3.0 d ago), lock", code=3)
    assert "far longer than a sync takes may hang" in held.stderr
    assert json.loads(shown.stdout)["sync_running"] == {"pid": str(os.getpid()),
                                                        "started_at": started}
    assert f"sync running here: pid {os.getpid()}, started {started} (3.0 d ago)" in text.stdout
    let_go = run_in_process(status_main, ["status"], env, "--json")
    assert json.loads(let_go.stdout)["sync_running"] is None


def test_the_lock_sits_beside_the_pipeline_folder_the_options_name(tmp_path):
    # SyncOptions.pipelines_dir moved the pipeline, not the lock: two syncs of one folder ran
    # at once, and status, looking beside the folder, saw none running.
    folder = str(tmp_path / "elsewhere")
    with sync_lock(folder, "micrometrics"):
        assert sync_running(folder).pid == str(os.getpid())
        with pytest.raises(SyncLockedError, match="another sync of pipeline 'micrometrics'"):
            run_locked_sync(SyncOptions(pipelines_dir=folder), RunResult())
    assert sync_running(folder) is None


@pytest.mark.parametrize(("proxy", "words"), [
    ("http://proxyuser:Pw/Leak-7731@127.0.0.1:3128",  # "/" in its password, not encoded
     "not sent (InvalidURL): the proxy's URL (not shown) could not be read"),
    ("proxyuser:Pw-Leak-7731@127.0.0.1:3128",  # no scheme
     "not sent (InvalidProxyURL): the proxy's URL (not shown) could not be read"),
    ("http://proxyuser:Pw-Leak-7731@127.0.0.1:1", "through the proxy (ProxyError)"),  # refused
])
def test_a_proxy_that_cannot_be_used_is_blamed_not_base_url(start_sandbox, tmp_path, proxy,
                                                             words):
    # With the API fine, these said "check base_url and the API key for spaces, line breaks"
    # and "check base_url (host and port)": the proxy was never named.
    sandbox = small_sandbox(start_sandbox)
    env = sync_env(tmp_path, sandbox.url, HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NO_PROXY="",
                   no_proxy="", SOURCES__MICROMETRICS__MAX_ATTEMPTS="1")
    failed = run_cli(env, "--quiet", "--no-models")
    assert_one_line_failure(failed, words, hint("proxy"))
    assert "base_url" not in failed.stderr and "Leak" not in failed.stdout + failed.stderr
    assert sandbox.stats()["requests"] == 0
    # The same settings without the proxy sync.
    del env["HTTP_PROXY"], env["HTTPS_PROXY"]
    assert run_cli(env, "--quiet", "--no-models").returncode == 0


def test_secret_never_leaves_the_process(start_sandbox, tmp_path):
    # Real processes: their whole stdout and stderr, and every file they leave.
    secret = "Zq7-distinctive-s3cret-value"
    sandbox = small_sandbox(start_sandbox, api_secret=secret)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__API_SECRET=secret)
    result = run_sync(env, "--verbose")
    assert result.returncode == 0, result.stderr
    wrong = run_sync(dict(env, SOURCES__MICROMETRICS__API_KEY="nobody"), "--verbose")
    assert wrong.returncode == 1
    outputs = result.stdout + result.stderr + wrong.stdout + wrong.stderr
    assert secret not in outputs and "APIAuth " not in outputs
    scanned = 0
    for path in tmp_path.rglob("*"):  # pipeline dir, traces, logs, load packages, DuckDB file
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            assert secret.encode() not in data, path
            assert b"APIAuth " not in data, path
    assert scanned > 10 and (tmp_path / "warehouse.duckdb").exists()


def test_only_a_connection_never_made_is_blamed_on_base_url(start_sandbox):
    # A dead proxy and TLS to a plain-HTTP port are configuration (check base_url, the proxy),
    # as a refused connection is; they were reported as "the API kept failing".
    sandbox = start_sandbox()
    port = sandbox.url.rsplit(":", 1)[1]
    attempts = {
        "refused": lambda: requests.get(f"http://127.0.0.1:{int(port) ^ 1}/", timeout=5),
        "proxy": lambda: requests.get("http://api.example.com/", timeout=5,
                                      proxies={"http": f"http://127.0.0.1:{int(port) ^ 1}"}),
        "tls": lambda: requests.get(f"https://127.0.0.1:{port}/", timeout=5),
    }
    for name, attempt in attempts.items():
        with pytest.raises(requests.ConnectionError) as raised:
            attempt()
        assert could_not_connect(raised.value), name
    # (A connection the server dropped: test_failures_say_what_to_do..., connection_dropped.)


def test_dlt_lines_keep_the_error_a_traceback_ends_with():
    record = logging.LogRecord(
        "dlt", logging.WARNING, __file__, 1, "Job for survey_responses.x.parquet retried in "
        "load 1 with message Traceback (most recent call last):\n  File \"x.py\", line 1\n"
        "OSError: [Errno 28] No space left on device\n", None, None)
    assert OneLine().filter(record)
    assert record.getMessage() == ("Job for survey_responses.x.parquet retried in load 1 with "
                                   "message OSError: [Errno 28] No space left on device")


def test_a_sync_starting_while_status_looks_at_its_lock_still_starts(tmp_path, monkeypatch):
    # status takes the lock shared for an instant (is a sync running?): a sync starting just
    # then exited 3, naming the pid of a sync long finished.
    path = tmp_path / "micrometrics.sync.lock"
    path.write_text("4242")
    status_look = open(path)  # noqa: SIM115 - held across the sync's first try
    fcntl.flock(status_look, fcntl.LOCK_SH | fcntl.LOCK_NB)
    monkeypatch.setattr(sync_lock_module, "pause", lambda _s: status_look.close())
    with sync_lock(str(tmp_path), "micrometrics"):
        assert path.read_text() == str(os.getpid())
