"""The marts recomputed in plain Python from the sandbox's truth, independently of the SQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo


def parse_ts(value: str) -> datetime:
    """The sandbox's ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def answer(record: dict[str, Any], question_types: dict[int, str], wanted: str) -> int | None:
    """The response's non-null answer to its survey's ``wanted`` question, as a number."""
    for item in record["answers"]:
        if question_types.get(item["question_id"]) == wanted and item["value"] is not None:
            return int(item["value"])
    return None


def responses(truth: dict[str, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """fct_survey_responses by response_id."""
    zones = {device["id"]: device.get("timezone") for device in truth["devices"]}
    types = {
        survey["id"]: {question["id"]: question["type"] for question in survey["questions"]}
        for survey in truth["surveys"]
    }
    out = {}
    for record in truth["survey_responses"]:
        responded = parse_ts(record["created_at"])
        zone = zones.get(record["device_id"])
        out[record["id"]] = {
            "response_id": record["id"],
            "survey_id": record["survey_id"],
            "device_id": record["device_id"],
            "responded_at": responded,
            "response_date": responded.astimezone(ZoneInfo(zone) if zone else UTC).date(),
            "nps_score": answer(record, types[record["survey_id"]], "nps"),
            "rating": answer(record, types[record["survey_id"]], "rating"),
            "comment_text": record.get("comment"),
        }
    return out


def nps(promoters: int, detractors: int, answered: int) -> Decimal | None:
    """100 * (promoters - detractors) / answered, one decimal, halves away from zero."""
    if not answered:
        return None
    exact = Decimal(100 * (promoters - detractors)) / Decimal(answered)
    return exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def nps_daily(facts: dict[int, dict[str, Any]]) -> dict[tuple[int, str, date], dict[str, Any]]:
    """mart_nps_daily by (survey_id, device_id, response_date)."""
    groups: dict[tuple[int, str, date], list[int | None]] = defaultdict(list)
    for fact in facts.values():
        key = (fact["survey_id"], fact["device_id"], fact["response_date"])
        groups[key].append(fact["nps_score"])
    out = {}
    for key, scores in groups.items():
        given = [score for score in scores if score is not None]
        promoters = sum(1 for score in given if score >= 9)
        passives = sum(1 for score in given if 7 <= score <= 8)
        detractors = sum(1 for score in given if score <= 6)
        out[key] = {
            "responses": len(scores),
            "nps_responses": len(given),
            "promoters": promoters,
            "passives": passives,
            "detractors": detractors,
            "nps": nps(promoters, detractors, len(given)),
        }
    return out


def devices(
    truth: dict[str, list[dict[str, Any]]], facts: dict[int, dict[str, Any]], as_of: datetime
) -> dict[str, dict[str, Any]]:
    """dim_devices by device_id, windows (as_of - N days, as_of]."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for fact in facts.values():
        times[fact["device_id"]].append(fact["responded_at"])

    def within(device: str, days: int) -> int:
        return sum(1 for t in times[device] if as_of - timedelta(days=days) < t <= as_of)

    out = {}
    for device in truth["devices"]:
        seen = times[device["id"]]
        last_7d = within(device["id"], 7)
        out[device["id"]] = {
            "device_name": device["name"],
            "status": device["status"],
            "location_id": device["location_id"],
            "timezone": device.get("timezone"),
            "first_response_at": min(seen) if seen else None,
            "last_response_at": max(seen) if seen else None,
            "responses_last_7d": last_7d,
            "responses_last_30d": within(device["id"], 30),
            "is_silent": device["status"] == "active" and last_7d == 0,
        }
    return out
