"""The scenarios every destination's tests run (PostgreSQL, Snowflake, BigQuery): the same
syncs, marks, edits and checks, on the pipeline the test gives; over real HTTP against the
sandbox, on the virtual clock."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from pipelines.micrometrics.messages import hint
from pipelines.models import DataTestFailed, ModelsReport, build_models
from pipelines.models.project import SQL_DIR
from pipelines.sync.options import SyncOptions
from tests.cli import run_cli, sync_env
from tests.destinations import (
    FAST,
    HOUR,
    MARTS,
    SMALL,
    TEXT_IDS,
    all_passed,
    live,
    marks,
    mart_rows,
)
from tests.syncing import DATASET, sync_into, sync_sandbox
from tests.test_survey_edits import edit_surveys, question_types
from tests.truth import assert_matches_truth, query, truth_versions

Marts = dict[str, tuple[list[str], list[tuple], list[tuple]]]


def loads_merges_finds_late_uploads_and_marts_equal_duckdbs(
        start_sandbox, pipeline: dlt.Pipeline, tmp_path, clock, dialect: str
) -> tuple[ModelsReport, Marts]:
    """Full sync exact, incremental merges exact, the deep pass finds late uploads, the models
    build with every data test passing, and the marts equal DuckDB's on the same data. Returns
    the models report and each mart's (columns, rows here, rows on DuckDB)."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    assert_matches_truth(pipeline, sandbox.truth())

    clock.advance(HOUR)  # incremental changes: updates, new records of every kind
    sandbox.update_responses(25)
    sandbox.add_responses(40)
    sandbox.update_devices(2)
    sandbox.add_devices(1)
    late = sandbox.add_late_responses(5, delay_seconds=10 * HOUR)  # older than the lookback
    clock.advance(60)
    second = sync_into(sandbox, pipeline, clock)
    assert second.report.deep_streams == 0
    # No survey changed: none is loaded again (their updated_at read back from this warehouse).
    assert second.report.loaded_rows.get("surveys", 0) == 0
    truth = sandbox.truth()
    without_late = {k: [r for r in v if k != "survey_responses" or r["id"] not in late]
                    for k, v in truth.items()}
    assert_matches_truth(pipeline, without_late)  # merged exact; the plain lookback missed these

    clock.advance(23 * HOUR)  # a day after the first sync's full read: a deep pass is due
    third = sync_into(sandbox, pipeline, clock)
    assert third.report.deep_found == len(late)
    assert third.report.loaded_rows["surveys"] == SMALL["surveys"]  # the whole list, daily
    assert_matches_truth(pipeline, sandbox.truth())

    as_of = datetime.fromtimestamp(clock(), UTC)
    report = build_models(pipeline, now=as_of)
    assert report.dialect == dialect and all_passed(report)

    # The same sandbox data into DuckDB, the same models as of the same instant.
    duck = sync_sandbox(sandbox, tmp_path / "duckdb", clock, **FAST)
    assert_matches_truth(tmp_path / "duckdb", sandbox.truth())
    assert all_passed(build_models(duck.pipeline, now=as_of))
    marts = {}
    for mart in MARTS:
        columns, on_destination = mart_rows(pipeline, mart)
        duck_columns, on_duckdb = mart_rows(duck.pipeline, mart)
        assert columns == duck_columns, mart
        assert on_destination and on_destination == on_duckdb, mart
        marts[mart] = (columns, on_destination, on_duckdb)
    return report, marts


def deletion_marks_and_reconcile(start_sandbox, pipeline: dlt.Pipeline, clock) -> None:
    """A survey gone from the list is marked with its responses and unmarked when it is back;
    records erased upstream are marked by a reconcile, exactly those."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    # A device erased before the first sync: known from its responses, recorded as deleted.
    early = sandbox.truth()["devices"][-1]["id"]
    sandbox.erase_records("devices", [early])
    first = sync_into(sandbox, pipeline, clock)
    assert marks(pipeline, "devices")[early] == datetime.fromtimestamp(clock.now, UTC)
    assert first.report.marks.marked == {"devices": 1}

    # A survey gone from the list: marked with its responses, then unmarked when it is back.
    doomed = sandbox.truth()["surveys"][1]["id"]
    clock.advance(600)
    gone = sandbox.remove_survey(doomed)
    seen_gone = datetime.fromtimestamp(clock.now, UTC)
    result = sync_into(sandbox, pipeline, clock)
    response_marks = marks(pipeline, "survey_responses")
    assert marks(pipeline, "surveys")[doomed] == seen_gone
    assert {rid for rid, mark in response_marks.items() if mark is not None} == set(gone)
    assert all(response_marks[rid] == seen_gone for rid in gone)
    truth = sandbox.truth()
    assert live(pipeline, "surveys") == truth_versions(truth["surveys"])
    assert live(pipeline, "survey_responses") == truth_versions(truth["survey_responses"])
    assert result.report.marks.marked == {"surveys": 1, "survey_responses": len(gone)}

    sandbox.restore_survey(doomed)
    clock.advance(600)
    back = sync_into(sandbox, pipeline, clock)
    assert all(mark is None for mark in marks(pipeline, "surveys").values())
    assert all(mark is None for mark in marks(pipeline, "survey_responses").values())
    assert back.report.loaded_rows["survey_responses"] >= len(gone)  # read again, merged live

    # Erased upstream: only a reconcile sees it, and marks exactly those.
    truth = sandbox.truth()
    erased_responses = [r["id"] for r in truth["survey_responses"][::37]]
    erased_devices = [d["id"] for d in truth["devices"][:2]]
    sandbox.erase_records("survey_responses", erased_responses)
    sandbox.erase_records("devices", erased_devices)
    clock.advance(600)
    result = sync_into(sandbox, pipeline, clock, SyncOptions(reconcile=True))
    now = datetime.fromtimestamp(clock.now, UTC)
    response_marks, device_marks = marks(pipeline, "survey_responses"), marks(pipeline, "devices")
    assert {i for i, m in response_marks.items() if m is not None} == set(erased_responses)
    assert {i for i, m in device_marks.items() if m is not None} == {*erased_devices, early}
    assert {response_marks[i] for i in erased_responses} == {now}
    truth = sandbox.truth()
    assert live(pipeline, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(pipeline, "devices") == truth_versions(truth["devices"])
    assert result.report.marks.marked == {"survey_responses": len(erased_responses),
                                          "devices": len(erased_devices)}
    assert all_passed(build_models(pipeline, now=now))  # marked rows leave the marts consistent


def survey_edit_history_and_type_drift(start_sandbox, pipeline: dlt.Pipeline, clock) -> None:
    """A survey edit keeps every question version and types each answer by the version in
    force; a field that turns text reaches staging and the marts through its variant column."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    first = datetime.fromtimestamp(clock(), UTC)
    sync_into(sandbox, pipeline, clock)
    clock.advance(HOUR)
    edit = edit_surveys(sandbox)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    for device, location in zip(devices, TEXT_IDS, strict=False):  # location_id turns text
        sandbox.patch_records("devices", [device], {"location_id": location})
    edited_at = datetime.fromtimestamp(clock(), UTC)
    clock.advance(60)
    sandbox.add_responses(40, survey_id=edit["edited"])
    sandbox.add_responses(15, survey_id=edit["other"])
    clock.advance(60)
    second = datetime.fromtimestamp(clock(), UTC)
    result = sync_into(sandbox, pipeline, clock)
    # Only the two edited surveys are loaded again (read back from this warehouse, their
    # updated_at compared): the third is loaded as listed.
    assert result.report.loaded_rows["surveys"] == 2
    assert result.report.warnings == [
        "warning: devices.location_id changed type: dlt added the variant column "
        f"devices.location_id__v_text for its text values; {hint('type_drift')}"]
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))

    truth = sandbox.truth()
    after = question_types(truth)
    # Question history: every version, closed by the sync that saw it gone.
    want_history = set()
    for survey, questions in edit["before"].items():
        for question, kind in questions.items():
            want_history.add((survey, question, kind, first,
                              None if question in after[survey] else second))
    for survey, questions in after.items():
        for question, kind in questions.items():
            if question not in edit["before"][survey]:
                want_history.add((survey, question, kind, second, None))
    history = {(s, q, kind, start.astimezone(UTC), end and end.astimezone(UTC))
               for s, q, kind, start, end in query(
                   pipeline, f"SELECT survey_id, id, type, valid_from, valid_to "
                             f"FROM {DATASET}.survey_questions")}
    assert history == want_history

    # Typing: every answer typed as its question was when answered, ground truth row for row.
    def types_when(record: dict[str, Any]) -> dict[int, str]:
        created = datetime.strptime(record["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        return (edit["before"] if created.replace(tzinfo=UTC) < edited_at
                else after)[record["survey_id"]]

    want = set()
    for record in truth["survey_responses"]:
        types = types_when(record)
        for item in record["answers"]:
            kind, value = types[item["question_id"]], item["value"]
            numeric = kind in ("nps", "rating")
            want.add((record["id"], item["question_id"], kind,
                      float(value) if numeric and value is not None else None,
                      None if numeric else value))
    got = set(query(pipeline, f"SELECT response_id, question_id, question_type, numeric_value, "
                              f"text_value FROM {DATASET}.stg_survey_answers"))
    assert got == want
    historic = {row[1]: row[2] for row in want if row[1] in edit["dropped"]}
    assert historic[edit["old_nps"]] == "nps" and historic[edit["old_rating"]] == "rating"

    # Type drift: the text location ids reach staging and the marts, the numeric ones as text.
    locations = {device["id"]: str(device["location_id"]) for device in truth["devices"]}
    assert sorted(locations[device] for device in devices[:len(TEXT_IDS)]) == sorted(TEXT_IDS)
    for model in ("stg_devices", "dim_devices"):
        got = dict(query(pipeline, f"SELECT device_id, location_id FROM {DATASET}.{model}"))
        assert got == locations, model


def command_loads_exact(start_sandbox, tmp_path, destination: str, env: dict[str, str],
                        pipeline: dlt.Pipeline) -> None:
    """``python -m pipelines.sync --destination <destination>`` (in-process, configured by
    ``env``) loads exact and builds the models there, and so does a ``--full-refresh`` after
    it, from a fresh runner (its reset state loaded on its own, then dlt's drop, then the
    reload: never run on a warehouse before); ``pipeline`` reads what they loaded."""
    # The command reads the wall clock, so this sandbox does too; nothing ever waits.
    sandbox = start_sandbox(**SMALL)
    done = run_cli(sync_env(tmp_path, sandbox.url, **env), "--destination", destination,
                   "--quiet")
    assert done.returncode == 0, done.stderr
    assert "data tests passed" in done.stdout  # it built the models there too
    assert not (tmp_path / "warehouse.duckdb").exists()
    assert_matches_truth(pipeline, sandbox.truth())
    sandbox.add_responses(3)
    (tmp_path / "fresh_runner").mkdir()
    fresh_runner = sync_env(tmp_path / "fresh_runner", sandbox.url, **env)
    refreshed = run_cli(fresh_runner, "--destination", destination, "--quiet", "--full-refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "data tests passed" in refreshed.stdout
    assert_matches_truth(pipeline, sandbox.truth())


def ids_and_times_that_drift_keep_the_models_building(start_sandbox, pipeline: dlt.Pipeline,
                                                       clock) -> None:
    """A question id the API sends as a string, and a response's created_at that is no time,
    put dlt's variant columns beside a bigint and a timestamp the models join and compute on.
    The build goes on: the string id matches as text, the bad time reads as NULL and a data
    test names that response; once upstream fixes it the build passes again."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    now = lambda: datetime.fromtimestamp(clock(), UTC)  # noqa: E731
    assert all_passed(build_models(pipeline, now=now()))

    clock.advance(HOUR)
    survey = min(sandbox.truth()["surveys"], key=lambda s: s["id"])
    questions = [*survey["questions"], {"id": "q-extra", "type": "text", "text": "Else?"}]
    sandbox.patch_records("surveys", [survey["id"]], {"questions": questions})
    clock.advance(60)
    sync_into(sandbox, pipeline, clock)  # the questions' ids drift, not yet the answers'
    assert all_passed(build_models(pipeline, now=now()))

    clock.advance(HOUR)
    (added, leap) = sandbox.add_responses(2, survey_id=survey["id"])
    sandbox.patch_records("survey_responses", [added], {
        "answers": [{"question_id": "q-extra", "value": "all good"}],
        "created_at": "2024-13-45T99:00:00Z"})
    # Of the shape of a time, yet none (2023 has no 29 February): PostgreSQL's guard must
    # still keep it from its cast.
    sandbox.patch_records("survey_responses", [leap], {"created_at": "2023-02-29T10:00:00Z"})
    clock.advance(60)
    sync_into(sandbox, pipeline, clock)
    with pytest.raises(DataTestFailed) as failed:
        build_models(pipeline, now=now())
    assert {test.name for test in failed.value.failures} == {"mart_nps_daily_key"}
    answers = query(pipeline, f"SELECT question_id, question_type, text_value FROM "
                              f"{DATASET}.stg_survey_answers WHERE response_id = {added}")
    assert answers == [("q-extra", "text", "all good")]

    clock.advance(HOUR)
    sandbox.patch_records("survey_responses", [added, leap],
                          {"created_at": "2024-06-01T10:00:00Z"})
    clock.advance(60)
    sync_into(sandbox, pipeline, clock)
    assert all_passed(build_models(pipeline, now=now()))


# A staging view moved to marts/ (built as a table) and a mart moved to staging/ (a view).
MOVED = {"stg_surveys": ("staging", "marts"), "dim_devices": ("marts", "staging")}


def models_that_change_kind_build(start_sandbox, pipeline: dlt.Pipeline, tmp_path: Path,
                                  clock) -> None:
    """A model moved between staging/ and marts/ is built as its new kind, and back, with the
    same rows: the other kind under its name is dropped first (nothing replaces a view with a
    table), which failed every build before."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    as_of = datetime.fromtimestamp(clock(), UTC)
    assert all_passed(build_models(pipeline, now=as_of))
    rows = {model: mart_rows(pipeline, model) for model in MOVED}
    moved = tmp_path / "moved_sql"
    shutil.copytree(SQL_DIR, moved)
    for model, (was, now) in MOVED.items():
        (moved / was / f"{model}.sql").rename(moved / now / f"{model}.sql")
    for sql_dir in (moved, SQL_DIR):  # moved, then back
        report = build_models(pipeline, now=as_of, sql_dir=sql_dir)
        assert all_passed(report)
        assert {model: mart_rows(pipeline, model) for model in MOVED} == rows
