"""mart_nps_daily's arithmetic on crafted days: the sandbox's days are too small to round."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from pipelines.models.compiler import compile_model, dataset_qualifier
from pipelines.models.project import load_project
from tests.models import expected

DAYS = {
    "thirds": [9, 7, 7],
    "negative_thirds": [10, 0, 0],
    "eighth": [9, 7, 7, 7, 7, 7, 7, 7],
    "half_up": [9] + [7] * 15,  # 6.25 -> 6.3
    "half_away_from_zero": [0] + [7] * 15,  # -6.25 -> -6.3
    "no_nps_answer": [None, None],
    "partly_answered": [9, None, 3],
}


@pytest.fixture(scope="module")
def daily() -> dict[str, tuple]:
    """The compiled model run over a crafted fct_survey_responses in a throwaway database."""
    model = next(m for m in load_project().models if m.name == "mart_nps_daily")
    with duckdb.connect() as connection:
        connection.execute("CREATE SCHEMA crafted")
        connection.execute(
            "CREATE TABLE crafted.fct_survey_responses (survey_id BIGINT, device_id VARCHAR, "
            "response_date DATE, nps_score INTEGER)"
        )
        for device, scores in DAYS.items():
            connection.executemany(
                "INSERT INTO crafted.fct_survey_responses VALUES (1, ?, DATE '2027-01-01', ?)",
                [(device, score) for score in scores],
            )
        sql = compile_model(model, "duckdb", dataset_qualifier("crafted"))
        return {row[1]: row for row in connection.sql(sql).fetchall()}


@pytest.mark.parametrize("device", DAYS)
def test_nps_rounds_like_python(daily, device):
    scores = DAYS[device]
    given = [s for s in scores if s is not None]
    promoters = sum(s >= 9 for s in given)
    detractors = sum(s <= 6 for s in given)
    _, _, day, responses, answered, promoters_sql, passives, detractors_sql, nps = daily[device]
    assert day == date(2027, 1, 1)
    assert (responses, answered) == (len(scores), len(given))
    assert (promoters_sql, passives, detractors_sql) == (
        promoters, len(given) - promoters - detractors, detractors)
    assert nps == expected.nps(promoters, detractors, len(given))


def test_crafted_values_cover_rounding(daily):
    assert str(daily["half_up"][-1]) == "6.3"
    assert str(daily["half_away_from_zero"][-1]) == "-6.3"
    assert daily["no_nps_answer"][-1] is None
