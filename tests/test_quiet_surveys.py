"""Quiet surveys are read less often, at scale only, with a bounded staleness; syncs over real
HTTP against the sandbox on the virtual clock, hourly."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from pipelines.status.cli import main as status_main
from tests.cli import run_cli, run_in_process, sync_env
from tests.destinations import FAST
from tests.syncing import query, sync_sandbox
from tests.truth import assert_matches_truth

HOUR = 3600


def read_at(result) -> dict[str, datetime]:
    """When each survey's responses were last read (its high-water mark)."""
    surveys = (result.pipeline.state["sources"]["micrometrics"]["resources"]
               ["survey_responses"]["surveys"])
    return {sid: datetime.fromisoformat(state["high_water"].replace("Z", "+00:00"))
            for sid, state in surveys.items()}


@pytest.mark.slow  # eighteen hourly syncs
def test_quiet_surveys_cost_what_changed_and_each_is_read_within_the_bound(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=5, surveys=60, responses=1200, **FAST)
    clock.advance(48 * HOUR)  # two quiet days: no survey active at the first sync
    quiet_hours = 6
    settings = {"quiet_survey_hours": quiet_hours, **FAST}
    sync_sandbox(sandbox, tmp_path, clock, **settings)
    surveys = sorted(s["id"] for s in sandbox.truth()["surveys"])
    active = surveys[:2]
    late, arrived = None, None
    for hour in range(1, 3 * quiet_hours + 1):
        clock.advance(HOUR)
        for survey in active:
            sandbox.add_responses(2, survey_id=survey)
        if hour == 2:  # a response in a survey that had been quiet
            quiet = [s for s in surveys if s not in active]
            late = sandbox.add_responses(1, survey_id=quiet[-1])[0]
        sandbox.reset_stats()
        result = sync_sandbox(sandbox, tmp_path, clock, **settings)
        now = datetime.fromtimestamp(clock(), UTC)
        requests = sandbox.stats()["requests"]
        # The list, the devices, the active surveys, and the quiet ones spread over the period
        # (plus one that just turned active): not one request per survey.
        assert requests <= 2 + len(active) + math.ceil(len(surveys) / quiet_hours) + 1, hour
        # Staleness bound: every survey read within the quiet period.
        stalest = max(now - at for at in read_at(result).values())
        assert stalest.total_seconds() <= quiet_hours * HOUR, hour
        skipped = result.report.skipped_surveys
        assert skipped and not {s.survey_id for s in skipped} & {str(s) for s in active}
        assert all(s.stale.total_seconds() < quiet_hours * HOUR for s in skipped)
        if late is not None and arrived is None and query(
                tmp_path, f"SELECT 1 FROM micrometrics.survey_responses WHERE id = {late}"):
            arrived = hour
    assert arrived is not None and arrived - 2 <= quiet_hours  # late by the bound at most
    assert_matches_truth(tmp_path, sandbox.truth())  # every change arrived, none lost


def test_a_couple_of_dozen_surveys_are_all_read_every_sync(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=5, surveys=20, responses=400, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(HOUR)
    sandbox.reset_stats()
    result = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert sandbox.stats()["requests"] == 2 + 20
    assert result.report.skipped_surveys == []


def test_a_survey_launched_since_is_read_every_sync_while_new(start_sandbox, tmp_path, clock):
    """A survey read once before its first response had no change to make it active: quiet at
    once, and the freshest read, so the last in line. Its first responses, on the day its
    dashboards are watched most, waited 17 hourly syncs (the hunt's 40-survey tenant). The
    list's created_at and updated_at make it new for the quiet period."""
    sandbox = start_sandbox(clock=clock, devices=5, surveys=40, responses=400, **FAST)
    clock.advance(48 * HOUR)  # a settled tenant: no survey active, none created lately
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(HOUR)
    launched = sandbox.add_survey()
    first = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert str(launched) in read_at(first)  # read once, no response yet
    for hour in range(1, 4):
        clock.advance(HOUR)
        answered = sandbox.add_responses(1, survey_id=launched)
        result = sync_sandbox(sandbox, tmp_path, clock, **FAST)
        assert result.report.skipped_surveys, hour  # quiet surveys are skipped all the while
        assert str(launched) not in {s.survey_id for s in result.report.skipped_surveys}, hour
        assert query(tmp_path, "SELECT id FROM micrometrics.survey_responses "
                               f"WHERE id = {answered[0]}") == [(answered[0],)], hour


def test_dry_run_plans_a_survey_launched_since_as_the_sync_reads_it(start_sandbox, tmp_path):
    """--dry-run has no survey list: it listed a new survey as skipped, which the sync read."""
    sandbox = start_sandbox(devices=5, surveys=40, responses=400, **FAST)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--no-models").returncode == 0
    launched = sandbox.add_survey()
    assert run_cli(env, "--no-models").returncode == 0  # reads it once: no response yet
    plan = run_cli(env, "--dry-run", "--verbose").stdout
    [line] = [line for line in plan.splitlines() if f"survey_responses[{launched}]" in line]
    assert "skipped" not in line, line
    planned = sum("skipped: quiet" in line for line in plan.splitlines())
    done = json.loads(run_cli(env, "--no-models", "--json").stdout)
    assert planned == done["quiet_surveys_skipped_total"] > 0
    assert str(launched) not in {str(s["survey_id"]) for s in done["quiet_surveys_skipped"]}


def test_zero_reads_every_survey_every_sync(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=5, surveys=40, responses=400, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, quiet_survey_hours=0, **FAST)
    clock.advance(HOUR)
    sandbox.reset_stats()
    result = sync_sandbox(sandbox, tmp_path, clock, quiet_survey_hours=0, **FAST)
    assert sandbox.stats()["requests"] == 2 + 40
    assert result.report.skipped_surveys == []


def test_dry_run_and_summary_name_the_skipped_surveys(start_sandbox, tmp_path):
    # The command reads the wall clock: so does this sandbox; nothing waits.
    sandbox = start_sandbox(devices=5, surveys=40, responses=400, page_size=15, **FAST)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--no-models").returncode == 0
    plan = run_cli(env, "--dry-run", "--verbose")
    assert plan.returncode == 0, plan.stderr
    skipped = [line for line in plan.stdout.splitlines() if "skipped: quiet, last read" in line]
    assert len(skipped) >= 20  # the quiet ones but the stalest few
    assert len([line for line in plan.stdout.splitlines() if "survey_responses[" in line]) == 40
    # The survey list: 3 pages of 15, and its re-list of what changed while it was paged.
    assert "full list (every sync; it indexes the responses): 4 request(s)" in plan.stdout
    # Without --verbose: the surveys to read first, 20 lines, and how many more.
    short = run_cli(env, "--dry-run").stdout.splitlines()
    assert len([line for line in short if "survey_responses[" in line]) == 20
    read_later = max(0, 40 - len(skipped) - 20)
    assert (f"  ... and 20 more surveys: {read_later} to read, {20 - read_later} skipped as "
            f"quiet (--dry-run --verbose lists every one)") in short

    sandbox.reset_stats()
    second = run_cli(env, "--no-models", "--json")
    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["by_endpoint"]["surveys"] == 4  # as planned
    summary = json.loads(second.stdout)
    assert summary["quiet_surveys_skipped_total"] == len(skipped)
    shown = summary["quiet_surveys_skipped"]
    assert len(shown) == 20 and shown == sorted(shown, key=lambda s: s["last_read"])
    text = run_cli(env, "--no-models").stdout  # what a person reads: the 10 stalest
    line = next(line for line in text.splitlines() if line.startswith("quiet surveys: "))
    not_read = int(line.split()[2])
    assert line.count(" h; ") == 10, line
    assert line.endswith(f"; ... and {not_read - 10} more (status --json lists them all)")

    # status: 20 stream lines (devices first, then the least recently synced) and how many more.
    status = run_in_process(status_main, ["pipelines.status"], env).stdout.splitlines()
    streams = status[status.index("streams:") + 1:]
    assert streams[0].lstrip().startswith("devices ")
    assert sum(line.lstrip().startswith("survey_responses[") for line in streams[:21]) == 19
    assert streams[20].startswith("  ... and 21 more streams, synced through "), streams[20]
    assert streams[20].endswith(" (--json lists them all)")
    assert len(json.loads(run_in_process(status_main, ["pipelines.status"], env,
                                         "--json").stdout)["streams"]) == 41


def test_dry_run_plans_the_surveys_the_last_list_named(start_sandbox, tmp_path):
    """A deleted survey's stream state stays behind: counted, 25 surveys made the plan skip
    quiet ones, while the sync, listing 24, reads them all."""
    sandbox = start_sandbox(devices=5, surveys=25, responses=400, **FAST)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--no-models").returncode == 0
    sandbox.remove_survey(sandbox.truth()["surveys"][-1]["id"])
    assert run_cli(env, "--no-models").returncode == 0
    plan = run_cli(env, "--dry-run", "--verbose")
    assert plan.returncode == 0, plan.stderr
    assert "skipped: quiet" not in plan.stdout
    assert "1 survey(s) gone upstream: not read" in plan.stdout
    reads = [line for line in plan.stdout.splitlines() if "survey_responses[" in line]
    assert len(reads) == 24
    third = run_cli(env, "--no-models", "--json")
    assert json.loads(third.stdout)["quiet_surveys_skipped"] == []


def test_a_streams_last_change_is_the_newest_it_ever_returned():
    # Windows are read newest first: kept from the last page read, a survey answered just now
    # whose history took several windows was recorded as changed long ago (quiet: skipped).
    from pipelines.micrometrics.quiet import record_last_change

    state: dict = {}
    record_last_change(state, [{"updated_at": "2026-03-17T12:00:00.000Z"},
                               {"updated_at": "2026-03-17T12:34:56.000Z"}])
    record_last_change(state, [{"updated_at": "2026-03-09T08:08:18.000Z"}])
    record_last_change(state, [])
    assert datetime.fromisoformat(state["last_change"]) == datetime(
        2026, 3, 17, 12, 34, 56, tzinfo=UTC)
