"""Survey owners drop, add and re-create questions: answers keep the type their question had
when they were answered, the marts count historic NPS answers, and neither a data test nor the
sync fails. Over real HTTP against the sandbox, on the virtual clock unless a test says why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipelines.micrometrics.messages import hint
from pipelines.models import DataTestFailed, build_models
from pipelines.sync.cli import main
from pipelines.sync.options import SyncOptions
from tests.conftest import KEY, SECRET
from tests.models import expected
from tests.models.conftest import rows
from tests.syncing import DATASET, query, sync_sandbox
from tests.truth import assert_matches_truth

SMALL = {"devices": 10, "surveys": 3, "responses": 300, "rate": 1000.0, "burst": 1000}
NUMERIC = ("nps", "rating")


def sync(sandbox, tmp_path, clock):
    return sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)


def question_types(truth: dict[str, list[dict[str, Any]]]) -> dict[int, dict[int, str]]:
    return {s["id"]: {q["id"]: q["type"] for q in s["questions"]} for s in truth["surveys"]}


def edit_surveys(sandbox) -> dict[str, Any]:
    """The routine edit: in the survey with most responses that has nps and rating questions,
    drop the nps question for a new one and re-create the rating question as a choice (new
    ids); in another survey drop a question and add a rating one."""
    truth = sandbox.truth()
    types = question_types(truth)
    counts = {sid: sum(r["survey_id"] == sid for r in truth["survey_responses"]) for sid in types}
    edited = max((sid for sid in types if {"nps", "rating"} <= set(types[sid].values())),
                 key=counts.__getitem__)
    other = next(sid for sid in sorted(types) if sid != edited)
    old_nps = next(q for q, kind in types[edited].items() if kind == "nps")
    old_rating = next(q for q, kind in types[edited].items() if kind == "rating")
    new_nps, new_choice = sandbox.edit_questions(edited, drop=[old_nps, old_rating],
                                                 add=["nps", "choice"])
    other_dropped = max(types[other])
    (other_added,) = sandbox.edit_questions(other, drop=[other_dropped], add=["rating"])
    return {"before": types, "edited": edited, "other": other, "old_nps": old_nps,
            "old_rating": old_rating, "new_nps": new_nps, "new_choice": new_choice,
            "dropped": {old_nps, old_rating, other_dropped}, "other_added": other_added}


@pytest.mark.parametrize("resources", [None, ("survey_responses",)])
def test_edited_surveys_keep_every_answer_typed_and_the_marts_count_historic_nps(
        start_sandbox, tmp_path, clock, resources):
    # A sync of the responses alone (hourly, say, with the rest daily) loads the surveys they
    # were indexed from too: else answers to a new survey or question had no type, fell out of
    # the marts, and the data tests failed until a sync that included surveys.
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    clock.advance(3600)
    edit = edit_surveys(sandbox)
    new_survey = sandbox.add_survey()
    edited_at = datetime.fromtimestamp(clock(), UTC)
    clock.advance(60)
    sandbox.add_responses(40, survey_id=edit["edited"])  # they answer the new questions
    sandbox.add_responses(15, survey_id=edit["other"])
    sandbox.add_responses(15, survey_id=new_survey)
    clock.advance(60)
    result = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(resources=resources),
                          rate=1000.0, burst=1000)
    as_of = datetime.fromtimestamp(clock(), UTC)
    report = build_models(result.pipeline, now=as_of)  # raises DataTestFailed on a failure
    assert report.tests and all(test.passed for test in report.tests)
    assert result.report.warnings == []

    truth = sandbox.truth()
    after = question_types(truth)
    assert edit["new_nps"] in after[edit["edited"]] and edit["old_nps"] not in after[edit["edited"]]

    def types_when(record: dict[str, Any]) -> dict[int, str]:
        """The survey's questions when the response was created (the edit timeline)."""
        created = expected.parse_ts(record["created_at"])
        return (edit["before"] if created < edited_at else after)[record["survey_id"]]

    # Staging: every answer typed as its question was when answered, ground truth row for row.
    want = set()
    for record in truth["survey_responses"]:
        types = types_when(record)
        for position, item in enumerate(record["answers"]):
            kind, value = types[item["question_id"]], item["value"]
            want.add((record["id"], position, item["question_id"], kind,
                      item["question_id"] in after[record["survey_id"]],
                      float(value) if kind in NUMERIC and value is not None else None,
                      value if kind not in NUMERIC else None))
    got = set(rows(result.pipeline,
                   f"SELECT response_id, answer_position, question_id, question_type, "
                   f"question_is_current, numeric_value, text_value "
                   f"FROM {DATASET}.stg_survey_answers"))
    assert got == want
    # The data holds what matters: answers to dropped questions, typed as they were.
    historic = {row[2]: row[3] for row in want if not row[4]}
    assert set(historic) == edit["dropped"]
    assert historic[edit["old_nps"]] == "nps" and historic[edit["old_rating"]] == "rating"
    assert any(row[2] == edit["new_choice"] and row[6] is not None for row in want)

    # Marts: NPS and rating of each response, historic answers included.
    facts = expected.responses(truth)
    for record in truth["survey_responses"]:
        types = types_when(record)
        facts[record["id"]]["nps_score"] = expected.answer(record, types, "nps")
        facts[record["id"]]["rating"] = expected.answer(record, types, "rating")
    fct = {response: (nps, rating) for response, nps, rating in rows(
        result.pipeline,
        f"SELECT response_id, nps_score, rating FROM {DATASET}.fct_survey_responses")}
    assert fct == {rid: (f["nps_score"], f["rating"]) for rid, f in facts.items()}
    daily = {
        (survey, device, day): dict(zip(
            ("responses", "nps_responses", "promoters", "passives", "detractors", "nps"),
            rest, strict=True))
        for survey, device, day, *rest in rows(
            result.pipeline,
            f"SELECT survey_id, device_id, response_date, responses, nps_responses, promoters, "
            f"passives, detractors, nps FROM {DATASET}.mart_nps_daily")
    }
    assert daily == expected.nps_daily(facts)
    # The edited survey's NPS counts the answers to its dropped nps question as well.
    old_nps_answers = sum(
        1 for r in truth["survey_responses"] for a in r["answers"]
        if a["question_id"] == edit["old_nps"] and a["value"] is not None)
    new_nps_answers = sum(
        1 for r in truth["survey_responses"] for a in r["answers"]
        if a["question_id"] == edit["new_nps"] and a["value"] is not None)
    assert old_nps_answers > 0 and new_nps_answers > 0
    assert sum(day["nps_responses"] for (survey, _, _), day in daily.items()
               if survey == edit["edited"]) == old_nps_answers + new_nps_answers


def test_question_history_versions_follow_the_syncs(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    first = datetime.fromtimestamp(clock(), UTC)
    sync(sandbox, tmp_path, clock)
    clock.advance(3600)
    edit = edit_surveys(sandbox)
    removed = next(sid for sid in sorted(edit["before"])
                   if sid not in (edit["edited"], edit["other"]))
    sandbox.remove_survey(removed)  # deleted upstream: no longer listed
    clock.advance(60)
    second = datetime.fromtimestamp(clock(), UTC)
    sync(sandbox, tmp_path, clock)

    after = question_types(sandbox.truth())
    want = set()
    for survey, questions in edit["before"].items():
        for question, kind in questions.items():
            gone = survey != removed and question not in after[survey]
            want.add((survey, question, kind, first, second if gone else None))
    for survey, questions in after.items():
        for question, kind in questions.items():
            if question not in edit["before"][survey]:
                want.add((survey, question, kind, second, None))
    history = f"SELECT survey_id, id, type, valid_from, valid_to FROM {DATASET}.survey_questions"

    def loaded() -> set[tuple]:
        return {(s, q, kind, start.astimezone(UTC), end and end.astimezone(UTC))
                for s, q, kind, start, end in query(tmp_path, history)}

    assert loaded() == want
    # A survey missing from the list keeps its questions open; nothing changed, nothing moves.
    assert any(row[0] == removed and row[4] is None for row in want)
    clock.advance(60)
    sync(sandbox, tmp_path, clock)
    assert loaded() == want


def test_a_quarantined_survey_still_records_its_questions(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    questions = [{"id": 9901, "type": "nps", "text": "Recommend us?"},
                 {"id": 9902, "type": "text", "text": "Why?"}]
    sandbox.add_malformed("surveys", {"id": 990, "name": "No date", "questions": questions,
                                      "updated_at": "yesterday"})
    result = sync(sandbox, tmp_path, clock)
    assert result.report.rejected == 1
    assert query(tmp_path, f"SELECT id, type, text FROM {DATASET}.survey_questions "
                           f"WHERE survey_id = 990 ORDER BY id") == [
        (9901, "nps", "Recommend us?"), (9902, "text", "Why?")]


def test_sync_command_exits_0_after_an_edit_and_4_when_a_data_test_fails(
        start_sandbox, tmp_path, monkeypatch, capsys):
    # The command reads the wall clock, so this sandbox does too; its rate limit is high
    # enough that nothing ever waits.
    sandbox = start_sandbox(**SMALL)
    for name, value in {
        "SOURCES__MICROMETRICS__BASE_URL": sandbox.url,
        "SOURCES__MICROMETRICS__API_KEY": KEY,
        "SOURCES__MICROMETRICS__API_SECRET": SECRET,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "warehouse.duckdb"),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["--quiet"]) == 0
    edit = edit_surveys(sandbox)
    new = sandbox.add_responses(20, survey_id=edit["edited"])
    assert main(["--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "data tests passed" in out and "error" not in err

    # Loaded, but a data test fails: a score out of range, as an API could deliver it.
    sandbox.patch_records("survey_responses", [new[0]],
                          {"answers": [{"question_id": edit["new_nps"], "value": 11}]})
    assert main(["--quiet"]) == 4
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith("error: sync failed: data test failed: ")
    assert "scores_in_range: 1 offending row" in err and "nps_score=11" in err
    assert err.rstrip().endswith(hint("data_test"))  # the README's advice ends the line
    assert "table" in out  # the load's summary was printed: the load itself succeeded
    assert query(tmp_path, f"SELECT a.value FROM {DATASET}.survey_responses__answers a "
                           f"JOIN {DATASET}.survey_responses r ON a._dlt_parent_id = r._dlt_id "
                           f"WHERE r.id = {new[0]}") == [("11",)]


def test_a_full_refresh_keeps_the_question_history_the_api_cannot_serve_again(
        start_sandbox, tmp_path, clock):
    # The API lists only a survey's current questions: dropped with the other tables, the
    # versions of dropped questions would be gone for good, their answers untyped (historic
    # NPS lost) and answers_have_known_question failing on every build.
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    clock.advance(3600)
    edit = edit_surveys(sandbox)
    clock.advance(60)
    before = sync(sandbox, tmp_path, clock)
    as_of = datetime.fromtimestamp(clock(), UTC)
    assert all(test.passed for test in build_models(before.pipeline, now=as_of).tests)
    history = (f"SELECT survey_id, id, type, valid_from, valid_to "
               f"FROM {DATASET}.survey_questions")
    versions = sorted(query(tmp_path, history))
    nps = f"SELECT count(nps_score) FROM {DATASET}.fct_survey_responses"
    scores = query(tmp_path, nps)
    assert edit["old_nps"] in {version[1] for version in versions}

    clock.advance(60)
    refreshed = sync_sandbox(sandbox, tmp_path, clock, SyncOptions(full_refresh=True),
                             rate=1000.0, burst=1000)
    assert all(test.passed for test in build_models(refreshed.pipeline, now=as_of).tests)
    assert sorted(query(tmp_path, history)) == versions
    assert query(tmp_path, nps) == scores


def test_a_survey_whose_questions_were_all_removed_closes_their_versions(
        start_sandbox, tmp_path, clock):
    """dlt's scd2 retires a survey's versions only when a load names the survey; an empty
    question list names none, and its questions stayed 'current' in the history."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    emptied = sandbox.truth()["surveys"][0]
    kept = {row[0] for row in query(tmp_path, f"SELECT id FROM {DATASET}.survey_questions "
                                              f"WHERE survey_id = {emptied['id']}")}
    assert kept
    clock.advance(3600)
    sandbox.patch_records("surveys", [emptied["id"]], {"questions": []})
    clock.advance(60)
    second = datetime.fromtimestamp(clock(), UTC)
    sync(sandbox, tmp_path, clock)
    closed = query(tmp_path, f"SELECT id, valid_to FROM {DATASET}.survey_questions "
                             f"WHERE survey_id = {emptied['id']}")
    assert {qid for qid, _ in closed} == kept
    assert {end and end.astimezone(UTC) for _, end in closed} == {second}
    # Other surveys' questions stay open.
    assert query(tmp_path, f"SELECT count(*) FROM {DATASET}.survey_questions "
                           f"WHERE survey_id <> {emptied['id']} AND valid_to IS NOT NULL") == [(0,)]


def test_answers_to_questions_dropped_before_the_first_sync_fail_no_data_test(
        start_sandbox, tmp_path, clock):
    # The API lists only current questions: a question dropped before the first sync is named
    # nowhere, and answers_have_known_question failed every build from the first sync of any
    # tenant whose surveys had ever been edited (exit 4, for good).
    sandbox = start_sandbox(clock=clock, **SMALL)
    edit = edit_surveys(sandbox)
    clock.advance(60)
    result = sync(sandbox, tmp_path, clock)
    as_of = datetime.fromtimestamp(clock(), UTC)
    assert all(test.passed for test in build_models(result.pipeline, now=as_of).tests)
    untyped = query(tmp_path, f"SELECT count(*) FROM {DATASET}.stg_survey_answers "
                              f"WHERE question_type IS NULL")
    assert untyped[0][0] > 0  # the answers to the dropped questions are there, untyped

    # The test still catches breakage: a question the survey lists, missing from the history;
    # an answer given since the history began, to a question never listed.
    clock.advance(3600)
    (late,) = sandbox.add_responses(1, survey_id=edit["other"])
    sync(sandbox, tmp_path, clock)
    rows(result.pipeline, f"DELETE FROM {DATASET}.survey_questions "
                          f"WHERE id = {edit['other_added']}")
    rows(result.pipeline,
         f"UPDATE {DATASET}.survey_responses__answers SET question_id = 999999 "
         f"WHERE _dlt_list_idx = 0 AND _dlt_parent_id = "
         f"(SELECT _dlt_id FROM {DATASET}.survey_responses WHERE id = {late})")
    with pytest.raises(DataTestFailed) as failed:
        build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))
    (known,) = [f for f in failed.value.failures if f.name == "answers_have_known_question"]
    offending = str(failed.value)
    assert f"question_id={edit['other_added']}" in offending and "question_id=999999" in offending


def test_questions_added_while_a_backfill_runs_fail_no_data_test(start_sandbox, tmp_path, clock):
    """The list is read as a sync begins, its responses for hours: a question added meanwhile,
    and answered by responses a later round reads, was in no question table, and that sync's
    build failed answers_have_known_question (exit 4) on a routine edit."""
    sandbox = start_sandbox(clock=clock, surveys=3, responses=400, page_size=7, rate=1000.0,
                            burst=1000)
    survey = sandbox.truth()["surveys"][0]["id"]
    added: dict[str, list[int]] = {}

    def edit_and_answer():
        added["questions"] = sandbox.edit_questions(survey, add=["nps"])
        added["responses"] = sandbox.add_responses(20, survey_id=survey)

    sandbox.after_page("survey_responses", 1, edit_and_answer)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, window_pages=3)

    assert result.report.rounds > 2 and added
    (new_question,) = added["questions"]
    truth = sandbox.truth()
    answering = sum(a["question_id"] == new_question
                    for r in truth["survey_responses"] for a in r["answers"])
    assert answering and query(tmp_path, f"SELECT COUNT(*) FROM {DATASET}."
                               f"survey_responses__answers WHERE question_id = {new_question}"
                               ) == [(answering,)]  # read in this sync
    build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))  # raises if not
    assert sorted(query(tmp_path, f"SELECT id, updated_at FROM {DATASET}.surveys")) == sorted(
        (s["id"], datetime.fromisoformat(s["updated_at"])) for s in truth["surveys"])
    assert (survey, new_question) in set(query(
        tmp_path, f"SELECT survey_id, id FROM {DATASET}.survey_questions WHERE valid_to IS NULL"))


def test_a_failing_closing_round_leaves_a_loaded_sync_standing(start_sandbox, tmp_path, clock):
    """Every round loaded; the survey list read again at the end (relist) meets an API that
    keeps failing: a warning, not a failed sync (the models would not have been built)."""
    sandbox = start_sandbox(clock=clock, surveys=3, responses=300, page_size=7, rate=1000.0,
                            burst=1000)
    sandbox.after_page("surveys", 1, lambda: sandbox.script("http_503", count=50,
                                                            endpoint="surveys"))
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, window_pages=3)
    assert result.report.rounds > 2
    assert [w for w in result.report.warnings if "closing round" in w] == [
        w for w in result.report.warnings if "HTTP 503" in w and "/surveys" in w]
    assert any("closing round" in w for w in result.report.warnings)
    assert_matches_truth(tmp_path, sandbox.truth())
