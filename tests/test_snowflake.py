"""Snowflake on its emulator: fakesnow in server mode (tests/snowflake_emulator.py), patched for
the gaps listed in tests/emulator_workarounds.py, one database per test; syncs over
real HTTP against the sandbox, on the virtual clock. The same exactness, merges, models, data
tests and issue-8 scenarios as on PostgreSQL (tests/test_postgres.py, whose helpers these
reuse), and the same mart figures as DuckDB on the same sandbox data. `make test-warehouses`
builds the emulator's venv and runs these."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.models import DataTestFailed, ModelsError, build_models, run_data_tests
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
    pipeline_on,
)
from tests.syncing import DATASET, sync_into, sync_sandbox
from tests.test_survey_edits import edit_surveys, question_types
from tests.truth import assert_matches_truth, query, truth_versions

pytestmark = pytest.mark.warehouses


ROOT = Path(__file__).resolve().parents[1]


def column_types(columns: list[str], rows: list[tuple]) -> dict[str, set[str]]:
    """The Python types each column's non-NULL values have."""
    return {column: {type(row[index]).__name__ for row in rows if row[index] is not None}
            for index, column in enumerate(columns)}


def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, snowflake_destination):
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
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
    truth = sandbox.truth()
    without_late = {k: [r for r in v if k != "survey_responses" or r["id"] not in late]
                    for k, v in truth.items()}
    assert_matches_truth(pipeline, without_late)  # merged exact; the plain lookback missed these

    clock.advance(23 * HOUR)  # a day after the first sync's full read: a deep pass is due
    third = sync_into(sandbox, pipeline, clock)
    assert third.report.deep_found == len(late)
    assert_matches_truth(pipeline, sandbox.truth())

    as_of = datetime.fromtimestamp(clock(), UTC)
    report = build_models(pipeline, now=as_of)
    assert report.dialect == "snowflake" and all_passed(report)

    # The same sandbox data into DuckDB, the same models as of the same instant.
    duck = sync_sandbox(sandbox, tmp_path / "duckdb", clock, **FAST)
    assert_matches_truth(tmp_path / "duckdb", sandbox.truth())
    assert all_passed(build_models(duck.pipeline, now=as_of))
    for mart in MARTS:
        columns, on_snowflake = mart_rows(pipeline, mart)
        duck_columns, on_duckdb = mart_rows(duck.pipeline, mart)
        assert columns == duck_columns, mart
        assert on_snowflake and on_snowflake == on_duckdb, mart
        # equal values of the same Python types, column by column: a count is an int on both
        # (2266 == 2266.0 would pass the comparison above)
        assert column_types(columns, on_snowflake) == column_types(columns, on_duckdb), mart


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, snowflake_destination):
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    sync_into(sandbox, pipeline, clock)

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
    assert back.report.marks.unmarked.get("survey_responses") == len(gone)

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
    assert {i for i, m in device_marks.items() if m is not None} == set(erased_devices)
    assert {response_marks[i] for i in erased_responses} == {now}
    truth = sandbox.truth()
    assert live(pipeline, "survey_responses") == truth_versions(truth["survey_responses"])
    assert live(pipeline, "devices") == truth_versions(truth["devices"])
    assert result.report.marks.marked == {"survey_responses": len(erased_responses),
                                          "devices": len(erased_devices)}
    assert all_passed(build_models(pipeline, now=now))  # marked rows leave the marts consistent


def test_a_survey_edit_keeps_question_history_and_typing_and_type_drift_reaches_staging(
        start_sandbox, tmp_path, clock, snowflake_destination):
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
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
    assert result.report.warnings == [
        "warning: devices.location_id changed type: dlt added the variant column "
        "devices.location_id__v_text for its text values; staging reads both "
        "location_id and location_id__v_text"]
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


def test_the_command_loads_snowflake_exact(start_sandbox, tmp_path, snowflake_env,
                                           snowflake_destination):
    # The command reads the wall clock, so this sandbox does too; nothing ever waits.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, **snowflake_env)
    done = run_cli(env, "--destination", "snowflake", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "data tests passed" in done.stdout  # it built the models there too

    assert not (tmp_path / "warehouse.duckdb").exists()
    # Reads what the command loaded.
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    assert_matches_truth(pipeline, sandbox.truth())


def test_data_tests_fail_on_offending_rows_and_on_sql_the_emulator_cannot_run(
        start_sandbox, tmp_path, clock, snowflake_destination):
    """A data test passes only on a count of 0 that the emulator really returned: offending
    rows are counted, and a query it refuses fails the build (never "no row, so passed")."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    pipeline = pipeline_on(snowflake_destination, tmp_path / "snowflake_pipelines")
    sync_into(sandbox, pipeline, clock)
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql_dir)
    (sql_dir / "tests" / "every_response_offends.sql").write_text(
        "SELECT response_id FROM fct_survey_responses\n")
    with pytest.raises(DataTestFailed) as failed:
        build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC), sql_dir=sql_dir)
    (offends,) = failed.value.failures
    assert offends.name == "every_response_offends"
    assert offends.offending == len(sandbox.truth()["survey_responses"]) and offends.sample

    (sql_dir / "tests" / "reads_a_missing_column.sql").write_text(
        "SELECT response_id FROM fct_survey_responses WHERE no_such_column IS NULL\n")
    with pytest.raises(ModelsError, match="data test reads_a_missing_column failed") as refused:
        run_data_tests(pipeline, sql_dir)
    assert not isinstance(refused.value, DataTestFailed)
