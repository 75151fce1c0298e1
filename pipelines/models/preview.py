"""A few printable lines from the marts, for ``make demo`` and the end of ``make models``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import dlt

from pipelines.terminal_text import shown

from .compiler import compile_model
from .project import Model
from .runner import client_qualifier, dialect_of, execute

# Written in DuckDB's dialect like the models, and translated the same way.
RESPONSES = """
SELECT COUNT(*) AS responses, MIN(response_date) AS first_day, MAX(response_date) AS last_day,
    AVG(rating) AS avg_rating
FROM fct_survey_responses
"""
NPS_BY_SURVEY = """
SELECT s.survey_name, n.survey_id, SUM(n.nps_responses) AS nps_responses,
    SUM(n.promoters) AS promoters, SUM(n.detractors) AS detractors
FROM mart_nps_daily AS n
JOIN stg_surveys AS s
    ON s.survey_id = n.survey_id
GROUP BY s.survey_name, n.survey_id
ORDER BY nps_responses DESC, n.survey_id
LIMIT 3
"""
DEVICES = """
SELECT COUNT(*) AS devices, SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS active,
    SUM(CASE WHEN is_silent THEN 1 ELSE 0 END) AS silent, MAX(as_of) AS as_of
FROM dim_devices
"""
SILENT = """
SELECT device_name, last_response_at
FROM dim_devices
WHERE is_silent
ORDER BY last_response_at NULLS FIRST, device_id
LIMIT 3
"""


def mart_preview(pipeline: dlt.Pipeline) -> list[str]:
    """Lines such as ``NPS Store Experience (#237): +12.3 from 310 answers``.

    Raises:
        ModelsError: The marts are not built (run ``build_models`` first).
    """
    with pipeline.sql_client() as client:
        dialect, qualify = dialect_of(client), client_qualifier(client)

        def rows(name: str, sql: str) -> list[tuple[Any, ...]]:
            model = Model(name, "preview", sql, frozenset())
            text = compile_model(model, dialect, qualify)
            return list(execute(client, text, f"preview {name}") or [])

        responses, first_day, last_day, avg_rating = rows("responses", RESPONSES)[0]
        surveys = rows("nps_by_survey", NPS_BY_SURVEY)
        devices, active, silent, as_of = rows("devices", DEVICES)[0]
        quiet = rows("silent", SILENT)
    if isinstance(as_of, datetime) and as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC)
    when = f"{as_of:%Y-%m-%d %H:%M} UTC" if isinstance(as_of, datetime) else "now"
    rating = f", average rating {float(avg_rating):.2f}" if avg_rating is not None else ""
    lines = [f"responses: {responses} from {first_day} to {last_day}{rating}"]
    for name, survey_id, answers, promoters, detractors in surveys:
        lines.append(f"NPS {shown(name)} (#{shown(survey_id)}): "
                     f"{nps_text(promoters, detractors, answers)} "
                     f"from {answers} answers")
    examples = ", ".join(
        f"{shown(name)} (last response {last.date() if last else 'never'})"
        for name, last in quiet
    )
    lines.append(f"devices: {devices} ({active or 0} active), {silent or 0} silent for 7+ days "
                 f"as of {when}" + (f", e.g. {examples}" if examples else ""))
    return lines


def nps_text(promoters: Any, detractors: Any, answers: Any) -> str:
    """``+12.3``, or ``n/a`` without nps answers."""
    if not answers:
        return "n/a"
    exact = Decimal(100 * (int(promoters) - int(detractors))) / Decimal(int(answers))
    # Half away from zero, as ROUND does on the decimal nps in mart_nps_daily.
    return f"{exact.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):+}"
