"""Deletions: surveys gone from the list are marked with their responses; --reconcile finds
erased responses and devices. Marked, never dropped; a record that comes back is unmarked."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

from pipelines.micrometrics import marks as marks_module
from pipelines.micrometrics import reconcile as reconcile_module
from pipelines.micrometrics.deletions import track_survey_list
from pipelines.micrometrics.reconcile import reconcile
from pipelines.sync.dryrun import describe_plan
from pipelines.sync.options import SyncOptions
from pipelines.sync.summary import deletion_lines
from tests.syncing import DATASET, pipeline_for, query, sync_into, sync_sandbox
from tests.truth import truth_streams, truth_versions

FAST = {"rate": 1000.0, "burst": 1000}
PAGE = 50


def marks(tmp_path, table: str) -> dict:
    return dict(query(tmp_path, f"SELECT id, deleted_at FROM {DATASET}.{table}"))


def live(tmp_path, table: str) -> list[tuple]:
    return sorted(query(tmp_path, f"SELECT id, updated_at FROM {DATASET}.{table} "
                                  "WHERE deleted_at IS NULL"))


def test_survey_gone_from_the_list_is_marked_with_its_responses_and_unmarked_on_return(
    start_sandbox, tmp_path, clock
):
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    doomed = sandbox.truth()["surveys"][1]["id"]
    clock.advance(600)
    gone = sandbox.remove_survey(doomed)
    seen_gone = datetime.fromtimestamp(clock.now, UTC)

    result = sync_sandbox(sandbox, tmp_path, clock, **FAST)

    survey_marks, response_marks = marks(tmp_path, "surveys"), marks(tmp_path, "survey_responses")
    assert survey_marks[doomed] == seen_gone
    assert {rid for rid, mark in response_marks.items() if mark is not None} == set(gone)
    assert all(response_marks[rid] == seen_gone for rid in gone)
    truth = sandbox.truth()  # the live rows are exactly what the API still serves
    assert live(tmp_path, "surveys") == truth_versions(truth["surveys"])
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert result.report.marks.marked == {"surveys": 1, "survey_responses": len(gone)}
    assert deletion_lines(result.report) == [
        f"deletions: marked deleted: {len(gone)} survey_responses, 1 surveys"]

    clock.advance(600)  # a later sync keeps the first time it was seen gone
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert marks(tmp_path, "surveys")[doomed] == seen_gone

    sandbox.restore_survey(doomed)  # undeleted in the vendor's app: same updated_at
    clock.advance(600)
    back = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert all(mark is None for mark in marks(tmp_path, "surveys").values())
    assert all(mark is None for mark in marks(tmp_path, "survey_responses").values())
    # Its responses came back by being read again (merged unmarked), not by an unmark; the
    # summary says so.
    assert back.report.loaded_rows["survey_responses"] >= len(gone)
    assert back.report.returned_surveys == [doomed]
    assert any(line.startswith(f"deletions: surveys back upstream: {doomed} ")
               for line in deletion_lines(back.report))


def test_a_survey_that_comes_back_brings_back_only_the_responses_the_api_serves(
        start_sandbox, tmp_path, clock):
    """Undeleted after some of its responses were erased, or a new survey given a deleted one's
    id: the responses it no longer has stay marked (an unmark by survey brought them back as
    live rows, in the marts)."""
    sandbox = start_sandbox(clock=clock, surveys=3, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    surveys = sorted(survey["id"] for survey in sandbox.truth()["surveys"])
    undeleted, reused = surveys[0], surveys[-1]
    clock.advance(600)
    gone = {survey: sandbox.remove_survey(survey) for survey in (undeleted, reused)}
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(600)
    sandbox.restore_survey(undeleted)
    erased = sandbox.erase_records("survey_responses", gone[undeleted][:5])
    assert sandbox.add_survey(survey_id=reused) == reused
    fresh = sandbox.add_responses(3, survey_id=reused)
    clock.advance(60)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)

    truth = sandbox.truth()
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(tmp_path, "surveys") == truth_versions(truth["surveys"])
    still_marked = {rid for rid, mark in marks(tmp_path, "survey_responses").items() if mark}
    assert still_marked == set(erased) | set(gone[reused])
    assert set(fresh) <= set(marks(tmp_path, "survey_responses"))


@pytest.mark.parametrize("resources, full_refresh", [
    (("surveys",), False), (("survey_responses",), False), (("surveys",), True)])
def test_a_return_seen_by_a_sync_of_some_resources_is_read_by_the_next_full_one(
        start_sandbox, tmp_path, clock, resources, full_refresh):
    """The sync that sees a survey back may read no responses (--resources surveys), or not
    track the list (--resources survey_responses): the next sync of everything reads them."""
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    doomed = sandbox.truth()["surveys"][1]["id"]
    clock.advance(600)
    gone = sandbox.remove_survey(doomed)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert {rid for rid, mark in marks(tmp_path, "survey_responses").items() if mark} == set(gone)
    sandbox.restore_survey(doomed)
    clock.advance(600)
    sync_sandbox(sandbox, tmp_path, clock,
                 SyncOptions(resources=resources, full_refresh=full_refresh), **FAST)
    clock.advance(600)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    truth = sandbox.truth()
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(tmp_path, "surveys") == truth_versions(truth["surveys"])


def test_a_full_refresh_of_surveys_keeps_tracking_their_deletions(start_sandbox, tmp_path, clock):
    """The refresh drops the surveys' table and state (where deletions are tracked), not the
    responses and their marks: a survey that stays gone keeps its responses marked, one that
    comes back has them unmarked."""
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    stays, returns = (survey["id"] for survey in sandbox.truth()["surveys"][1:3])
    clock.advance(600)
    gone = {survey: sandbox.remove_survey(survey) for survey in (stays, returns)}
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    marked = {rid: mark for rid, mark in marks(tmp_path, "survey_responses").items() if mark}
    assert set(marked) == set(gone[stays]) | set(gone[returns])
    clock.advance(600)
    sync_sandbox(sandbox, tmp_path, clock, SyncOptions(resources=("surveys",),
                                                       full_refresh=True), **FAST)
    sandbox.restore_survey(returns)
    clock.advance(600)
    back = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    response_marks = marks(tmp_path, "survey_responses")
    assert {rid: mark for rid, mark in response_marks.items() if mark} == {
        rid: marked[rid] for rid in gone[stays]}
    assert back.report.loaded_rows["survey_responses"] >= len(gone[returns])  # read again
    truth = sandbox.truth()
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(tmp_path, "surveys") == truth_versions(truth["surveys"])


def test_reconcile_marks_erased_responses_and_devices_at_the_cost_it_announced(
    start_sandbox, tmp_path, clock, monkeypatch
):
    sandbox = start_sandbox(clock=clock, responses=700, page_size=PAGE, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    truth = sandbox.truth()
    erased_responses = [r["id"] for r in truth["survey_responses"][::97]]
    erased_surveys = {r["survey_id"] for r in truth["survey_responses"][::97]}
    erased_devices = [d["id"] for d in truth["devices"][:2]]
    sandbox.erase_records("survey_responses", erased_responses)
    sandbox.erase_records("devices", erased_devices)
    clock.advance(600)

    plain = sync_sandbox(sandbox, tmp_path, clock, **FAST)  # incremental reads can't see it
    assert plain.report.marks.marked == {}
    assert all(mark is None for mark in marks(tmp_path, "survey_responses").values())

    truth = sandbox.truth()
    streams = truth_streams(truth)
    listing_pages = sum(max(1, math.ceil(len(stream) / PAGE)) for stream in streams)
    estimate = dry_run_estimate(tmp_path, sandbox, monkeypatch)
    # Announced from the rows before erasure: at most one page more per stream.
    assert listing_pages <= estimate <= listing_pages + len(streams)

    clock.advance(600)
    sandbox.reset_stats()
    # Marks go in batches (of 500): batches of 3 here, so that every batch's edges are crossed.
    monkeypatch.setattr(marks_module, "CHUNK", 3)
    result = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True), **FAST)
    now = datetime.fromtimestamp(clock.now, UTC)

    response_marks, device_marks = marks(tmp_path, "survey_responses"), marks(tmp_path, "devices")
    assert {i for i, m in response_marks.items() if m is not None} == set(erased_responses)
    assert {i for i, m in device_marks.items() if m is not None} == set(erased_devices)
    assert {response_marks[i] for i in erased_responses} == {now}
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(tmp_path, "devices") == truth_versions(truth["devices"])
    # And, where something seemed gone, what changed since the reconcile began: devices, and
    # each survey with an erased response.
    confirmations = 1 + len(erased_surveys)
    assert result.report.reconcile.requests == listing_pages + confirmations
    sync_requests = sandbox.stats()["requests"] - result.report.reconcile.requests
    assert sync_requests <= len(streams) + 1  # the incremental sync before it
    assert result.report.marks.marked == {"survey_responses": len(erased_responses),
                                          "devices": len(erased_devices)}

    again = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True), **FAST)
    assert again.report.marks.marked == {} and again.report.marks.unmarked == {}

    # Undeleted upstream as they were (old updated_at: no incremental read reaches them):
    # the next reconcile lists them again and clears their marks.
    sandbox.restore_records("survey_responses", erased_responses[:4])
    sandbox.restore_records("devices", erased_devices[:1])
    clock.advance(600)
    back = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True), **FAST)
    assert back.report.marks.unmarked == {"survey_responses": 4, "devices": 1}
    truth = sandbox.truth()
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(tmp_path, "devices") == truth_versions(truth["devices"])


def test_records_changed_past_the_syncs_start_are_listed_not_taken_for_deleted(
    start_sandbox, tmp_path, clock
):
    # The survey list and reconcile's lists reach past the sync's start: a record stamped by a
    # server clock a minute ahead of ours (the API allows 15), or changed 20 minutes into a
    # long sync before its stream is listed, is in them, so it is not marked deleted.
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(600)
    truth = sandbox.truth()
    survey = truth["surveys"][1]["id"]
    device = truth["devices"][0]["id"]
    response = truth["survey_responses"][0]["id"]

    def stamp(kind: str, ids: list, seconds_ahead: int) -> None:
        at = datetime.fromtimestamp(clock.now + seconds_ahead, UTC).isoformat()
        sandbox.stamp_records(kind, ids, at=at)

    stamp("surveys", [survey], 60)
    stamp("devices", [device], 20 * 60)
    stamp("survey_responses", [response], 20 * 60)
    result = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True), **FAST)

    assert result.report.marks.marked == {}
    assert result.report.reconcile.marks.marked == {}
    for table in ("surveys", "devices", "survey_responses"):
        assert all(mark is None for mark in marks(tmp_path, table).values()), table


def test_a_worker_with_stale_local_state_does_not_mark_a_survey_that_came_back(
    start_sandbox, tmp_path, clock
):
    # Two workers share the destination, each with its own pipeline folder. B saw the survey
    # gone; A saw it back, twice (its "restored" list is spent). B's local state still lists it
    # as deleted: the destination's newer state must win before any mark is applied.
    sandbox = start_sandbox(clock=clock, responses=300, **FAST)
    worker_a, worker_b = (pipeline_for(tmp_path, pipelines_dir=name) for name in ("a", "b"))
    sync_into(sandbox, worker_b, clock)
    survey = sandbox.truth()["surveys"][1]["id"]
    clock.advance(3600)
    gone = sandbox.remove_survey(survey)
    sync_into(sandbox, worker_b, clock)
    assert {i for i, m in marks(tmp_path, "survey_responses").items() if m} == set(gone)
    clock.advance(3600)
    sandbox.restore_survey(survey)
    for _ in range(2):
        sync_into(sandbox, worker_a, clock)
        clock.advance(3600)

    result = sync_into(sandbox, worker_b, clock)

    assert result.report.marks.marked == {}
    for table in ("surveys", "survey_responses"):
        assert all(mark is None for mark in marks(tmp_path, table).values()), table


def dry_run_estimate(tmp_path, sandbox, monkeypatch) -> int:
    """Requests ``--dry-run --reconcile`` announces for the reconcile alone."""
    from pipelines.micrometrics.settings import load_settings
    from tests.conftest import KEY, SECRET

    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "warehouse.duckdb"))
    settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET)
    plan = describe_plan(settings, SyncOptions(reconcile=True,
                                               pipelines_dir=str(tmp_path / "pipelines")))
    line = next(line for line in plan.splitlines() if "reconcile: about" in line)
    return int(line.split("about ")[1].split()[0])


def test_survey_ids_sent_as_text_in_one_list_mark_nothing_deleted(start_sandbox, tmp_path,
                                                                  clock):
    """A server that lists ``"237"`` where it listed ``237`` names the same surveys: compared as
    they were sent, every survey and every response was marked deleted, and stayed so."""
    sandbox = start_sandbox(clock=clock, surveys=3, responses=120, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    for wire in ("ids_as_text", None):  # "237", then 237 again
        if wire:
            sandbox.script(wire, endpoint="surveys")  # the sync's one survey list request
        clock.advance(600)
        result = sync_sandbox(sandbox, tmp_path, clock, **FAST)
        assert sandbox.scripted() == [] and sandbox.stats()["faults"] == {"ids_as_text": 1}
        assert result.report.marks.marked == {} and result.report.returned_surveys == []
        assert all(mark is None for mark in marks(tmp_path, "surveys").values())
        assert all(mark is None for mark in marks(tmp_path, "survey_responses").values())


def test_a_survey_listed_twice_is_read_once(start_sandbox, tmp_path, clock):
    """Two entries of one survey walked its responses twice at once over one state: every
    sync failed (KeyError 'pending'). It is read once, exact."""
    sandbox = start_sandbox(clock=clock, surveys=3, responses=300, page_size=20, **FAST)
    sandbox.script("repeat_record", endpoint="surveys")
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert sandbox.stats()["faults"] == {"repeat_record": 1}
    assert live(tmp_path, "surveys") == truth_versions(sandbox.truth()["surveys"])
    assert live(tmp_path, "survey_responses") == truth_versions(
        sandbox.truth()["survey_responses"])


def test_reconcile_takes_response_ids_sent_as_text_for_the_tables_ids(start_sandbox, tmp_path,
                                                                      clock):
    sandbox = start_sandbox(clock=clock, surveys=2, responses=120, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(600)
    sandbox.script("ids_as_text", count=100, endpoint="survey_responses")
    result = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(reconcile=True), **FAST)
    assert sandbox.stats()["faults"].get("ids_as_text", 0) > 0
    assert result.report.reconcile.marks.marked == {}
    assert all(mark is None for mark in marks(tmp_path, "survey_responses").values())


def test_surveys_deleted_long_ago_cost_no_statement_per_survey(start_sandbox, tmp_path, clock,
                                                                monkeypatch):
    """Every survey ever deleted stays in the state and the marks run twice a sync: one COUNT
    per survey and table, each time, grew an hourly sync on a warehouse by minutes after years
    of churn. Once all is marked, a sync counts once per table (and chunk of surveys)."""
    sandbox = start_sandbox(clock=clock, surveys=10, responses=200, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    gone = sorted(survey["id"] for survey in sandbox.truth()["surveys"])[:6]
    for survey in gone:  # one a sync: each seen gone at its own time
        sandbox.remove_survey(survey)
        clock.advance(3600)
        sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert {i for i, mark in marks(tmp_path, "surveys").items() if mark} == set(gone)

    statements: list[str] = []
    execute = DuckDbSqlClient.execute_sql

    def counted(self, sql, *args, **kwargs):
        statements.append(sql)
        return execute(self, sql, *args, **kwargs)

    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", counted)
    clock.advance(3600)
    result = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert result.report.marks.marked == {}
    on_marks = [sql for sql in statements if "deleted_at" in sql
                and sql.lstrip().startswith(("SELECT COUNT", "UPDATE"))]
    assert len(on_marks) <= 4, "\n".join(on_marks)  # a COUNT per table, before and after


def test_reconcile_lists_a_survey_again_when_the_api_refuses_its_cursor(
        start_sandbox, tmp_path, clock, virtual_client):
    """A cursor refused with 404 mid-listing was taken for the survey gone: the survey left the
    reconcile's scope and its erased responses stayed live."""
    sandbox = start_sandbox(clock=clock, surveys=2, responses=120, page_size=20, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    erased = [min(r["id"] for r in sandbox.truth()["survey_responses"] if r["survey_id"] == s)
              for s in sorted(s["id"] for s in sandbox.truth()["surveys"])]
    sandbox.erase_records("survey_responses", erased)
    clock.advance(600)
    sandbox.script("expire_cursor_404", endpoint="survey_responses")
    report = reconcile(virtual_client(sandbox, rate=1000.0, burst=1000), pipeline_for(tmp_path),
                       datetime.fromtimestamp(clock(), UTC))
    assert sandbox.stats()["faults"] == {"expire_cursor_404": 1}
    assert report.marks.marked == {"survey_responses": 2}
    assert {i for i, mark in marks(tmp_path, "survey_responses").items() if mark} == set(erased)


def test_a_survey_keeps_the_id_form_it_was_first_tracked_in():
    """237 tracked first, "237" listed since, then gone: its marks compare 237 with the tables
    (a text literal against an integer column fails on BigQuery)."""
    state: dict = {}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    track_survey_list(state, [237, 238], at)
    track_survey_list(state, ["237", "238"], at)
    track_survey_list(state, ["238"], at)
    assert state["known"] == [238] and [pair[0] for pair in state["deleted"]] == [237]
    # Back as "237" while it was gone, then gone again: still 237.
    track_survey_list(state, ["237", "238"], at)
    track_survey_list(state, ["238"], at)
    assert [pair[0] for pair in state["deleted"]] == [237]


def test_a_reconcile_marks_no_row_another_machine_loaded_while_it_listed(
        start_sandbox, tmp_path, clock, monkeypatch):
    # Machine 1 lists every response while machine 2's sync loads new ones into the same
    # dataset: those are in no listing, and were marked deleted (out of the marts) until a
    # later sync happened to re-read them.
    sandbox = start_sandbox(clock=clock, surveys=2, responses=120, **FAST)
    first = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    erased = [r["id"] for r in sandbox.truth()["survey_responses"][:3]]
    sandbox.erase_records("survey_responses", erased)
    clock.advance(600)
    listed_ids = reconcile_module.listed_ids
    new: list[int] = []

    def list_then_another_machine_syncs(client, path, window, *args):
        ids = listed_ids(client, path, window, *args)
        if path.endswith("/responses") and not new:
            survey = int(path.split("/")[-2])
            new.extend(sandbox.add_responses(2, survey_id=survey))
            clock.advance(60)
            sync_into(sandbox, pipeline_for(tmp_path, pipelines_dir="machine2"), clock, **FAST)
        return ids

    monkeypatch.setattr(reconcile_module, "listed_ids", list_then_another_machine_syncs)
    report = reconcile(first.client, first.pipeline, datetime.fromtimestamp(clock(), UTC))
    response_marks = marks(tmp_path, "survey_responses")
    assert new and all(response_marks[i] is None for i in new)
    assert {i for i, mark in response_marks.items() if mark} == set(erased)
    assert report.marks.marked == {"survey_responses": len(erased)}


def test_a_return_read_once_is_not_announced_again_by_a_later_refresh(
        start_sandbox, tmp_path, clock):
    # Kept in the surveys' state for ever, every later --full-refresh named it "back upstream".
    sandbox = start_sandbox(clock=clock, responses=200, **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    doomed = sandbox.truth()["surveys"][1]["id"]
    sandbox.remove_survey(doomed)
    clock.advance(600)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    sandbox.restore_survey(doomed)
    clock.advance(600)
    back = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert back.report.returned_surveys == [doomed]
    clock.advance(600)
    refresh = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(full_refresh=True), **FAST)
    assert refresh.report.returned_surveys == []
    truth = sandbox.truth()
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])


def test_a_survey_edited_while_the_list_is_paged_is_not_taken_for_deleted(
        start_sandbox, tmp_path, clock):
    """Newest first, a survey edited once the list's first page was sent moves onto that page,
    and is in no page the sync reads after: it was marked deleted with all its responses
    (and its responses read again from their start the sync after)."""
    sandbox = start_sandbox(clock=clock, order="desc", surveys=10, responses=150, page_size=7,
                            **FAST)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    clock.advance(600)
    oldest = min(sandbox.truth()["surveys"], key=lambda s: s["updated_at"])["id"]
    sandbox.after_page("surveys", 1, lambda: sandbox.patch_records(
        "surveys", [oldest], {"name": "renamed while listed"}))

    result = sync_sandbox(sandbox, tmp_path, clock, **FAST)

    assert result.report.marks.marked == {}
    assert all(mark is None for mark in marks(tmp_path, "surveys").values())
    assert all(mark is None for mark in marks(tmp_path, "survey_responses").values())
    truth = sandbox.truth()
    assert live(tmp_path, "surveys") == truth_versions(truth["surveys"])  # the edit loaded
    assert query(tmp_path, f"SELECT name FROM {DATASET}.surveys WHERE id = {oldest}") == [
        ("renamed while listed",)]
    assert live(tmp_path, "survey_responses") == truth_versions(truth["survey_responses"])


def test_a_reconcile_takes_no_record_changed_while_it_lists_for_deleted(
        start_sandbox, tmp_path, clock):
    """Newest first, a device and a response edited once their listing's first page was sent
    are in none of its pages: they were marked deleted, out of the marts until re-read."""
    sandbox = start_sandbox(clock=clock, order="desc", surveys=2, responses=80, page_size=7,
                            **FAST)
    first = sync_sandbox(sandbox, tmp_path, clock, **FAST)
    truth = sandbox.truth()
    survey = sorted((s["id"] for s in truth["surveys"]), key=repr)[0]  # listed first
    responses = sorted((r for r in truth["survey_responses"] if r["survey_id"] == survey),
                       key=lambda r: r["updated_at"])
    edited, erased = responses[0]["id"], responses[1]["id"]  # the oldest: on its last page
    device = min(truth["devices"], key=lambda d: d["updated_at"])["id"]
    sandbox.erase_records("survey_responses", [erased])
    clock.advance(600)
    pages = sum(max(1, math.ceil(len(stream) / 7)) for stream in truth_streams(sandbox.truth()))
    sandbox.after_page("devices", 1, lambda: sandbox.patch_records(
        "devices", [device], {"name": "moved while listed"}))
    sandbox.after_page("survey_responses", 1, lambda: sandbox.patch_records(
        "survey_responses", [edited], {"comment": "edited while listed"}))

    report = reconcile(first.client, first.pipeline, datetime.fromtimestamp(clock(), UTC))

    assert {i for i, mark in marks(tmp_path, "survey_responses").items() if mark} == {erased}
    assert all(mark is None for mark in marks(tmp_path, "devices").values())
    assert report.marks.marked == {"survey_responses": 1}
    # Every page, then what changed since it began in the two streams where something
    # seemed gone (devices, that survey's responses).
    assert report.requests == pages + 2


def test_a_survey_removed_while_its_responses_are_read_is_said_gone_once(
        start_sandbox, tmp_path, clock, caplog):
    """Its cursor answered 404: that was announced as a refused cursor first."""
    sandbox = start_sandbox(clock=clock, surveys=1, responses=200, page_size=7, **FAST)
    (victim,) = [s["id"] for s in sandbox.truth()["surveys"]]
    sandbox.after_page("survey_responses", 1, lambda: sandbox.remove_survey(victim))

    sync_sandbox(sandbox, tmp_path, clock, window_pages=3, **FAST)

    gone = f"survey_responses[{victim}]: the survey no longer exists (404); skipped"
    assert caplog.text.count(gone) == 1
    assert "refused a cursor" not in caplog.text
    # What it had loaded stays; the next sync's list marks it.
    clock.advance(600)
    sync_sandbox(sandbox, tmp_path, clock, **FAST)
    assert marks(tmp_path, "surveys")[victim] is not None
    assert live(tmp_path, "survey_responses") == truth_versions(
        sandbox.truth()["survey_responses"])


def test_a_survey_found_gone_is_not_asked_for_again_by_later_rounds(
        start_sandbox, tmp_path, clock, caplog):
    sandbox = start_sandbox(clock=clock, surveys=3, responses=400, page_size=7, **FAST)
    truth = sandbox.truth()
    victim = max((s["id"] for s in truth["surveys"]),
                 key=lambda sid: sum(r["survey_id"] == sid for r in truth["survey_responses"]))
    sandbox.after_page("survey_responses", 4, lambda: sandbox.remove_survey(victim))

    result = sync_sandbox(sandbox, tmp_path, clock, window_pages=3, **FAST)

    assert result.report.rounds > 2  # each round asked for it again, and warned again
    assert caplog.text.count(
        f"survey_responses[{victim}]: the survey no longer exists (404); skipped") == 1
