"""Shapes of the generated data: what the connector must cope with is really there."""

from __future__ import annotations

import re
from collections import Counter

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_shapes_and_variety(make_sandbox):
    truth = make_sandbox(responses=6000).truth()
    devices, surveys, responses = truth["devices"], truth["surveys"], truth["survey_responses"]
    assert len(devices) == 40 and len(surveys) == 5 and len(responses) == 6000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", d["id"]) for d in devices)
    assert any("timezone" not in d for d in devices)
    assert any(d.get("timezone", "") is None for d in devices)
    assert 0 < sum("firmware_version" in d for d in devices) < len(devices)
    assert any(not d["name"].isascii() for d in devices)
    assert surveys[0]["id"] == 237
    assert all(any(q["type"] == "nps" for q in s["questions"]) for s in surveys)
    for record in devices + surveys + responses:
        assert TS.match(record["created_at"]) and TS.match(record["updated_at"])
        assert record["created_at"] <= record["updated_at"]
    assert len({r["id"] for r in responses}) == len(responses)
    per_survey = Counter(r["survey_id"] for r in responses)
    assert max(per_survey.values()) > 2 * min(per_survey.values())  # uneven spread
    values = [a["value"] for r in responses for a in r["answers"]]
    assert None in values and any(isinstance(v, str) and "\n" in v for v in values)
    assert any("comment" not in r for r in responses)
    assert any("comment" in r and r["comment"] is None for r in responses)
    # Clusters of responses sharing one exact updated_at stress window boundaries.
    assert max(Counter(r["updated_at"] for r in responses).values()) >= 3
