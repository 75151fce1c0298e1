"""The marts on the sandbox's data equal the same numbers computed in Python from its truth."""

from __future__ import annotations

from datetime import UTC

from pipelines.models import mart_preview, run_data_tests
from tests.models import expected
from tests.models.conftest import RESPONSES, rows
from tests.syncing import DATASET

FACT_COLUMNS = ("response_id", "survey_id", "device_id", "responded_at", "response_date",
                "nps_score", "rating", "comment_text")
DEVICE_COLUMNS = ("device_name", "status", "location_id", "timezone",
                  "first_response_at", "last_response_at", "responses_last_7d",
                  "responses_last_30d", "is_silent")


def utc(value):
    return value.astimezone(UTC) if value is not None else None


def test_build_reports_every_model_and_passing_tests(warehouse):
    built = dict(warehouse.report.built)
    assert built["stg_devices"] == "view"
    assert {built[name] for name in ("fct_survey_responses", "mart_nps_daily", "dim_devices")} \
        == {"table"}
    assert warehouse.report.tests and all(test.passed for test in warehouse.report.tests)
    assert all(result.passed for result in run_data_tests(warehouse.pipeline))


def test_fct_survey_responses_match_truth(warehouse):
    want = expected.responses(warehouse.truth)
    got = {}
    for row in rows(warehouse.pipeline,
                    f"SELECT {', '.join(FACT_COLUMNS)} FROM micrometrics.fct_survey_responses"):
        fact = dict(zip(FACT_COLUMNS, row, strict=True))
        fact["responded_at"] = utc(fact["responded_at"])
        got[fact["response_id"]] = fact
    assert len(got) == len(want) == RESPONSES
    assert got == want
    # The data exercises what the SQL must get right, else equality would prove little.
    assert any(f["response_date"] != f["responded_at"].date() for f in want.values())
    assert any(f["nps_score"] is None for f in want.values())
    assert any(f["rating"] is None for f in want.values())


def test_mart_nps_daily_matches_truth(warehouse):
    want = expected.nps_daily(expected.responses(warehouse.truth))
    got = {
        (survey, device, day): dict(zip(
            ("responses", "nps_responses", "promoters", "passives", "detractors", "nps"),
            rest, strict=True))
        for survey, device, day, *rest in rows(
            warehouse.pipeline,
            "SELECT survey_id, device_id, response_date, responses, nps_responses, promoters, "
            "passives, detractors, nps FROM micrometrics.mart_nps_daily")
    }
    assert got == want
    assert any(day["nps"] is None for day in want.values())  # days without an nps answer
    assert any(day["nps_responses"] > 1 for day in want.values())


def test_dim_devices_match_truth(warehouse):
    want = expected.devices(warehouse.truth, expected.responses(warehouse.truth),
                            warehouse.as_of)
    got = {}
    for device_id, *values, as_of in rows(
            warehouse.pipeline,
            f"SELECT device_id, {', '.join(DEVICE_COLUMNS)}, as_of FROM micrometrics.dim_devices"):
        device = dict(zip(DEVICE_COLUMNS, values, strict=True))
        for column in ("first_response_at", "last_response_at"):
            device[column] = utc(device[column])
        got[device_id] = device
        assert utc(as_of) == warehouse.as_of
    assert got == want
    silent = [device["is_silent"] for device in want.values()]
    assert any(silent) and not all(silent)
    assert any(0 < d["responses_last_7d"] < d["responses_last_30d"] for d in want.values())


def test_mart_preview_summarizes_the_marts(warehouse):
    facts = expected.responses(warehouse.truth)
    devices = expected.devices(warehouse.truth, facts, warehouse.as_of)
    lines = mart_preview(warehouse.pipeline)
    assert lines[0].startswith(f"responses: {RESPONSES} from ")
    assert sum(line.startswith("NPS ") for line in lines) == 3
    silent = sum(device["is_silent"] for device in devices.values())
    assert f"{silent} silent for 7+ days" in lines[-1]
    assert all("\n" not in line for line in lines)


def test_the_preview_prints_the_tenants_names_without_their_control_characters(warehouse_copy):
    # A survey or device name holding an escape sequence cleared the operator's screen, made
    # a link, or (a line break) forged an "error:" line in the log.
    pipeline = warehouse_copy()
    hostile = "Store \x1b[2J\x1b]8;;http://evil.example/\x07A\r\nerror: forged \u202e"
    rows(pipeline, f"UPDATE {DATASET}.surveys SET name = '{hostile}'")
    rows(pipeline, f"UPDATE {DATASET}.dim_devices SET device_name = '{hostile}' WHERE is_silent")
    lines = mart_preview(pipeline)
    shown = "Store \\x1b[2J\\x1b]8;;http://evil.example/\\x07A\\r\\nerror: forged \\u202e"
    assert any(line.startswith(f"NPS {shown} (#") for line in lines), lines
    assert f"e.g. {shown} (last response " in lines[-1]
    assert not any(char in line for line in lines for char in "\x1b\x07\r\n\u202e")
