"""Question history: every version of every question a survey has had, kept by dlt's scd2.

``surveys__questions`` is a child table of ``surveys`` (merged with delete-insert), so it only
knows a survey's current questions: when an owner drops or re-creates a question, answers to
the old one would lose their type. The ``survey_questions`` resource keeps them all instead:
one row per question per survey, merged with dlt's ``scd2`` strategy. A row whose content
(survey, id, type, text, any other field) is new gets ``valid_from`` = the sync's "now"; a row
its survey no longer lists gets ``valid_to`` = that same "now". ``merge_key="survey_id"``
limits retiring to the surveys present in the load, so a survey missing from a listing (deleted
upstream, say) keeps its questions. A listed survey whose questions were all removed gives no
row, so dlt retires none of its versions: the sync closes them itself (``retire_emptied``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.sources import DltResource

from .lenient_json import UnloadableRecord, unloadable
from .quarantine import id_problem
from .rounds import SurveyIndex
from .timeutil import format_timestamp
from .warehouse import sql_literal

RESOURCE = "survey_questions"
VALIDITY_COLUMNS = ["valid_from", "valid_to"]


def question_rows(surveys: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per question: the question's own fields plus ``survey_id``.

    Surveys without an id or without a list of questions, and questions that are not objects
    with an id, give no row (an answer can only name a question by its id). Nor do surveys
    quarantined for their id (not the integer ``survey_id``, the merge key, must be: dlt would
    leave it NULL and fail the load on every sync), nor questions holding a value no warehouse
    stores (``lenient_json``): the other questions of a survey quarantined for one do (its
    responses are read, and their answers need their type).
    """
    rows: list[dict[str, Any]] = []
    for survey in surveys:
        if (not isinstance(survey, dict) or survey.get("id") is None
                or id_problem(survey["id"], integer=True) is not None):
            continue
        questions = survey.get("questions")
        if not isinstance(questions, list):
            continue
        checked = isinstance(survey, UnloadableRecord)
        for question in questions:
            if (isinstance(question, dict) and question.get("id") is not None
                    and not (checked and unloadable(question) is not None)):
                rows.append({**question, "survey_id": survey["id"]})
    return rows


def question_history(
    list_surveys: Callable[[], list[Any]], index: SurveyIndex, now: datetime | None,
    to_load: Callable[[list[Any]], list[Any]] = list,
) -> DltResource:
    """The ``survey_questions`` resource of one sync.

    Args:
        list_surveys: Returns the sync's survey list (quarantined surveys that have an id
            included: their questions still type their answers).
        index: The sync's survey index: the questions are emitted in its first round only
            (like the surveys).
        now: The boundary of the versions, the sync's start (dlt's load time when None).
        to_load: The listed surveys whose questions to load (default all), asked in the
            round that emits them only.
    """
    disposition: dict[str, Any] = {
        "disposition": "merge",
        "strategy": "scd2",
        "validity_column_names": VALIDITY_COLUMNS,
    }
    if now is not None:
        disposition["boundary_timestamp"] = now

    @dlt.resource(name=RESOURCE, write_disposition=disposition, merge_key="survey_id")
    def survey_questions() -> Iterator[list[dict[str, Any]]]:
        surveys = list_surveys()
        if not index.first_emit(RESOURCE):
            return
        rows = question_rows(to_load(surveys))
        if rows:
            yield rows

    return survey_questions


def with_question_history(resources: Sequence[str]) -> tuple[str, ...]:
    """The resources to select: ``survey_questions`` goes with ``surveys``."""
    chosen = tuple(resources)
    if "surveys" in chosen and RESOURCE not in chosen:
        chosen += (RESOURCE,)
    return chosen


def emptied(surveys: Iterable[Any]) -> list[Any]:
    """The ids of the listed surveys that have no question at all (an empty list)."""
    return [survey["id"] for survey in surveys
            if isinstance(survey, dict) and survey.get("id") is not None
            and survey.get("questions") == []]


def retire_emptied(pipeline: dlt.Pipeline, survey_ids: Sequence[Any], boundary: datetime) -> int:
    """Close (``valid_to`` = ``boundary``, the sync's scd2 boundary) the open question versions
    of surveys listed with no question; returns the rows closed. dlt's scd2 retires a survey's
    versions only when its load names the survey, and an empty list names none."""
    if not survey_ids:
        return 0
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(RESOURCE)
        ids = ", ".join(sql_literal(survey_id) for survey_id in survey_ids)
        where = f"survey_id IN ({ids}) AND {VALIDITY_COLUMNS[1]} IS NULL"
        try:
            rows = client.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE {where}")
        except DestinationUndefinedEntity:
            return 0  # no question history loaded yet
        count = int(rows[0][0]) if rows else 0
        if count:
            client.execute_sql(f"UPDATE {table} SET {VALIDITY_COLUMNS[1]} = "
                               f"{sql_literal(format_timestamp(boundary))} WHERE {where}")
    return count
