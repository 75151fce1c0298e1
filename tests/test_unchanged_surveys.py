"""The survey list is read every sync, but a survey the destination holds as listed is not
loaded again, nor its questions: on a wide tenant every hourly sync merged every survey and
every question into three tables (2,000 surveys: 22,000 rows an hour for a handful changed).
Over real HTTP against the sandbox, on the virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from pipelines.models import build_models
from tests.syncing import DATASET, query, sync_sandbox
from tests.truth import assert_matches_truth

HOUR = 3600
WIDE = {"devices": 10, "surveys": 30, "responses": 300, "rate": 1000.0, "burst": 1000}


def sync(sandbox, tmp_path, clock, **settings):
    # Every survey's responses read every sync: the truth is compared whole.
    return sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000,
                        quiet_survey_hours=0, **settings)


def execute(tmp_path, sql: str) -> None:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute(sql)


def loaded(report) -> dict[str, int]:
    return {table: report.loaded_rows.get(table, 0)
            for table in ("surveys", "surveys__questions", "survey_questions")}


def open_versions(tmp_path) -> list[tuple]:
    return sorted(query(tmp_path, f"SELECT survey_id, id, type, text FROM {DATASET}."
                                  f"survey_questions WHERE valid_to IS NULL"))


def truth_questions(sandbox) -> list[tuple]:
    return sorted((s["id"], q["id"], q["type"], q["text"])
                  for s in sandbox.truth()["surveys"] for q in s["questions"])


def test_only_surveys_changed_since_their_load_are_loaded_again(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **WIDE)
    surveys = sorted(s["id"] for s in sandbox.truth()["surveys"])
    questions = {s["id"]: len(s["questions"]) for s in sandbox.truth()["surveys"]}
    first = sync(sandbox, tmp_path, clock)
    every = sum(questions.values())
    assert loaded(first.report) == {"surveys": 30, "surveys__questions": every,
                                    "survey_questions": every}

    clock.advance(HOUR)
    sandbox.add_responses(5)
    quiet = sync(sandbox, tmp_path, clock)
    assert loaded(quiet.report) == {"surveys": 0, "surveys__questions": 0, "survey_questions": 0}
    assert_matches_truth(tmp_path, sandbox.truth())  # the new responses are in

    # One renamed, one whose questions changed: those two, with their questions.
    clock.advance(HOUR)
    sandbox.patch_records("surveys", [surveys[3]], {"name": "Lobby survey, renamed"})
    (added,) = sandbox.edit_questions(surveys[7], drop=[], add=["rating"])
    edited = sync(sandbox, tmp_path, clock)
    changed = questions[surveys[3]] + questions[surveys[7]] + 1
    assert loaded(edited.report) == {"surveys": 2, "surveys__questions": changed,
                                     "survey_questions": changed}
    assert_matches_truth(tmp_path, sandbox.truth())  # surveys__questions row for row too
    assert open_versions(tmp_path) == truth_questions(sandbox)
    assert (surveys[7], added) in {(row[0], row[1]) for row in open_versions(tmp_path)}
    # No version of an unchanged survey was closed or opened again.
    assert query(tmp_path, f"SELECT count(*) FROM {DATASET}.survey_questions "
                           f"WHERE valid_to IS NOT NULL") == [(0,)]
    assert query(tmp_path, f"SELECT count(DISTINCT valid_from) FROM {DATASET}.survey_questions "
                           f"WHERE survey_id NOT IN ({surveys[3]}, {surveys[7]})") == [(1,)]
    build_models(edited.pipeline, now=datetime.fromtimestamp(clock(), UTC))  # data tests pass


def test_a_survey_row_lost_from_the_destination_is_loaded_again(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **WIDE)
    sync(sandbox, tmp_path, clock)
    lost = sorted(s["id"] for s in sandbox.truth()["surveys"])[5]
    execute(tmp_path, f"DELETE FROM {DATASET}.surveys WHERE id = {lost}")
    clock.advance(HOUR)
    result = sync(sandbox, tmp_path, clock)
    assert result.report.loaded_rows.get("surveys") == 1
    assert_matches_truth(tmp_path, sandbox.truth())


def test_the_whole_list_is_loaded_again_once_a_deep_pass_interval(start_sandbox, tmp_path,
                                                                 clock):
    """A change the vendor made without moving updated_at, or a child table emptied by hand,
    is loaded again within DEEP_EVERY_HOURS; 0 loads the whole list every sync, as before."""
    sandbox = start_sandbox(clock=clock, **WIDE)
    sync(sandbox, tmp_path, clock, deep_every_hours=3)
    execute(tmp_path, f"DELETE FROM {DATASET}.surveys__questions")
    counts = []
    for _ in range(4):
        clock.advance(HOUR)
        result = sync(sandbox, tmp_path, clock, deep_every_hours=3)
        counts.append(result.report.loaded_rows.get("surveys", 0))
    assert counts == [0, 0, 30, 0]  # 3 h after the first sync's full load
    assert_matches_truth(tmp_path, sandbox.truth())

    for _ in range(2):
        clock.advance(HOUR)
        result = sync(sandbox, tmp_path, clock, deep_every_hours=0)
        assert result.report.loaded_rows.get("surveys") == 30


def test_a_survey_merged_by_a_package_that_never_completed_is_loaded_again(
        start_sandbox, tmp_path, clock):
    """dlt merges each table in a transaction of its own: a package lost after its surveys
    merged (a kill, then a fresh runner or --drop-pending) left the survey as listed and its
    new question out of the history, for good."""
    sandbox = start_sandbox(clock=clock, **WIDE)
    sync(sandbox, tmp_path, clock)
    survey = sorted(s["id"] for s in sandbox.truth()["surveys"])[4]
    clock.advance(HOUR)
    (added,) = sandbox.edit_questions(survey, drop=[], add=["nps"])
    edited_at = next(s["updated_at"] for s in sandbox.truth()["surveys"] if s["id"] == survey)
    # What the lost package's surveys merge left: the new version, under its load id.
    execute(tmp_path, f"UPDATE {DATASET}.surveys SET updated_at = '{edited_at}', "
                      f"_dlt_load_id = '1796000000.000001' WHERE id = {survey}")
    clock.advance(60)
    result = sync(sandbox, tmp_path, clock)
    assert result.report.loaded_rows["surveys"] == 1
    assert (survey, added) in {(row[0], row[1]) for row in open_versions(tmp_path)}
    assert open_versions(tmp_path) == truth_questions(sandbox)
