"""Data tests fail, naming themselves and showing rows, on deliberately broken copies."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo, available_timezones

import pytest

from pipelines.models import DataTestFailed, build_models, run_data_tests
from tests.models.conftest import rows

NPS_ANSWER = """
    SELECT a._dlt_id FROM micrometrics.survey_responses__answers AS a
    JOIN micrometrics.survey_responses AS r ON a._dlt_parent_id = r._dlt_id
    JOIN micrometrics.surveys AS s ON s.id = r.survey_id
    JOIN micrometrics.surveys__questions AS q
        ON q._dlt_parent_id = s._dlt_id AND q.id = a.question_id
    WHERE q.type = '{kind}' AND a.value IS NOT NULL
    ORDER BY a._dlt_id LIMIT 1
"""
BREAKAGES = {
    "nps_out_of_range": (
        "UPDATE micrometrics.survey_responses__answers SET value = '11' "
        f"WHERE _dlt_id = ({NPS_ANSWER.format(kind='nps')})",
        "scores_in_range", "nps_score=11",
    ),
    "rating_not_a_number": (
        "UPDATE micrometrics.survey_responses__answers SET value = 'five' "
        f"WHERE _dlt_id = ({NPS_ANSWER.format(kind='rating')})",
        "scores_are_numbers", "raw_value='five'",
    ),
    "duplicate_response": (
        "INSERT INTO micrometrics.survey_responses SELECT * REPLACE ('dup' || _dlt_id AS _dlt_id) "
        "FROM micrometrics.survey_responses ORDER BY id LIMIT 1",
        "fct_survey_responses_key", "rows_with_key=2",
    ),
    "nps_beyond_integer": (  # would overflow INTEGER on DuckDB and PostgreSQL: no build
        "UPDATE micrometrics.survey_responses__answers SET value = '3000000000' "
        f"WHERE _dlt_id = ({NPS_ANSWER.format(kind='nps')})",
        "scores_are_numbers", "raw_value='3000000000'",
    ),
    "unknown_device": (
        "UPDATE micrometrics.survey_responses SET device_id = 'no-such-device' "
        "WHERE id = (SELECT MIN(id) FROM micrometrics.survey_responses)",
        "responses_have_known_device", "device_id='no-such-device'",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_broken_data_fails_the_right_test(warehouse_copy, warehouse, breakage):
    statement, test_name, evidence = BREAKAGES[breakage]
    pipeline = warehouse_copy()
    rows(pipeline, statement)
    with pytest.raises(DataTestFailed) as failed:
        build_models(pipeline, now=warehouse.as_of)
    message = str(failed.value)
    assert test_name in [failure.name for failure in failed.value.failures]
    assert test_name in message and evidence in message
    assert "\n" not in message


# Built tables broken after the build: what no raw row can make the models produce (their SQL
# groups and joins it away), as a model changed wrongly one day would.
BUILT_BREAKAGES = {
    "duplicate_device": (
        "INSERT INTO micrometrics.dim_devices SELECT * FROM micrometrics.dim_devices "
        "ORDER BY device_id LIMIT 1", "dim_devices_key", "rows_with_key=2"),
    "duplicate_daily_row": (
        "INSERT INTO micrometrics.mart_nps_daily SELECT * FROM micrometrics.mart_nps_daily "
        "ORDER BY survey_id, device_id, response_date LIMIT 1", "mart_nps_daily_key",
        "rows_with_key=2"),
    "unknown_survey": (
        "UPDATE micrometrics.fct_survey_responses SET survey_id = 99999 WHERE response_id = "
        "(SELECT MIN(response_id) FROM micrometrics.fct_survey_responses)",
        "responses_have_known_survey", "survey_id=99999"),
}


@pytest.mark.parametrize("breakage", BUILT_BREAKAGES)
def test_broken_built_tables_fail_the_right_test(warehouse_copy, breakage):
    statement, test_name, evidence = BUILT_BREAKAGES[breakage]
    pipeline = warehouse_copy()
    rows(pipeline, statement)
    results = {result.name: result for result in run_data_tests(pipeline)}
    assert not results[test_name].passed
    assert evidence in " ".join(f"{column}={value}" for sample in results[test_name].sample
                                for column, value in zip(results[test_name].columns, sample,
                                                         strict=True))


def test_every_data_test_is_shown_failing_by_a_breakage():
    """So that a data test that can never fail (a WHERE that finds nothing) shows up here."""
    from pipelines.models.project import load_project

    broken = {name for _, name, _ in (*BREAKAGES.values(), *BUILT_BREAKAGES.values())}
    elsewhere = {"mart_totals_match_staging",  # test_a_mart_that_lost_rows_fails_the_totals_test
                 "answers_have_known_question"}  # test_survey_edits, test_quarantine
    assert {test.name for test in load_project().tests} == broken | elsewhere


def test_a_mart_that_lost_rows_fails_the_totals_test(warehouse_copy):
    pipeline = warehouse_copy()
    rows(pipeline, "DELETE FROM micrometrics.dim_devices WHERE device_id = "
                   "(SELECT MIN(device_id) FROM micrometrics.dim_devices)")
    results = {result.name: result for result in run_data_tests(pipeline)}
    totals = results["mart_totals_match_staging"]
    assert not totals.passed and totals.offending == 1
    assert totals.columns == ("check_name", "expected", "actual")
    (check, staged, built), = totals.sample
    assert check == "dim_devices rows" and built == staged - 1
    assert all(result.passed for name, result in results.items() if name != totals.name)


def test_sample_is_capped_at_five_rows(warehouse_copy):
    pipeline = warehouse_copy()
    rows(pipeline, "UPDATE micrometrics.survey_responses SET device_id = 'gone-' || id")
    with pytest.raises(DataTestFailed) as failed:
        build_models(pipeline, now=None)
    known_device = next(f for f in failed.value.failures if f.name == "responses_have_known_device")
    assert known_device.offending > 5 and len(known_device.sample) == 5


def test_marked_rows_leave_the_marts_and_fail_no_data_test(warehouse_copy, warehouse):
    """deleted_at set by hand as the sync would: a survey (its responses not marked yet, as
    between a load and its marks), a response of another survey, and the busiest device."""
    pipeline = warehouse_copy()
    ((survey,),) = rows(pipeline, "SELECT MIN(id) FROM micrometrics.surveys")
    ((device,),) = rows(pipeline, "SELECT device_id FROM micrometrics.survey_responses "
                                  "GROUP BY device_id ORDER BY COUNT(*) DESC, device_id LIMIT 1")
    ((response,),) = rows(pipeline, f"SELECT MIN(id) FROM micrometrics.survey_responses "
                                    f"WHERE survey_id <> {survey}")
    before = dict(rows(pipeline, "SELECT id, survey_id FROM micrometrics.survey_responses"))
    when = "'2027-01-01 00:00:00+00'"
    rows(pipeline, f"UPDATE micrometrics.surveys SET deleted_at = {when} WHERE id = {survey}")
    rows(pipeline, f"UPDATE micrometrics.survey_responses SET deleted_at = {when} "
                   f"WHERE id = {response}")
    rows(pipeline, f"UPDATE micrometrics.devices SET deleted_at = {when} WHERE id = '{device}'")
    report = build_models(pipeline, now=warehouse.as_of)  # raises if a data test fails
    assert report.tests and all(test.passed for test in report.tests)

    facts = dict(rows(pipeline, "SELECT response_id, device_id FROM "
                                "micrometrics.fct_survey_responses"))
    assert set(facts) == {rid for rid, sid in before.items() if sid != survey} - {response}
    assert device in facts.values()  # an erased device's responses stay
    assert device not in {d for (d,) in rows(pipeline, "SELECT device_id FROM "
                                                       "micrometrics.dim_devices")}
    assert survey not in {s for (s,) in rows(pipeline, "SELECT survey_id FROM "
                                                       "micrometrics.mart_nps_daily")}
    ((daily,),) = rows(pipeline, "SELECT SUM(responses) FROM micrometrics.mart_nps_daily")
    assert daily == len(facts)


def test_a_response_naming_no_device_fails_no_data_test(warehouse_copy, warehouse):
    """device_id is an assumed field: a response without one (taken off a kiosk) is kept in the
    facts and counted in its own row of mart_nps_daily, and no data test lists it, while a
    device id the devices never held still fails (``unknown_device`` above)."""
    pipeline = warehouse_copy()
    ((response, survey),) = rows(pipeline, "SELECT id, survey_id FROM micrometrics.survey_responses"
                                           " ORDER BY id LIMIT 1")
    rows(pipeline, f"UPDATE micrometrics.survey_responses SET device_id = NULL "
                   f"WHERE id = {response}")
    report = build_models(pipeline, now=warehouse.as_of)  # raises if a data test fails
    assert report.tests and all(test.passed for test in report.tests)
    assert rows(pipeline, f"SELECT device_id FROM micrometrics.fct_survey_responses "
                          f"WHERE response_id = {response}") == [(None,)]
    assert rows(pipeline, f"SELECT responses FROM micrometrics.mart_nps_daily "
                          f"WHERE survey_id = {survey} AND device_id IS NULL") == [(1,)]


def test_a_device_zone_that_is_no_zone_name_gives_utc_days(warehouse_copy, warehouse):
    """Blank, an offset, a POSIX-style name, a name of the right shape that is no zone (made
    up, misspelt): each would fail the build on DuckDB (and PostgreSQL reads '+05:30' as west
    of UTC); their responses get the UTC day, and the devices with a zone the destination
    knows keep theirs (links such as W-SU included). What only DuckDB reads (another case,
    ICU's IST, PST and CST, a retired name) gets the UTC day too, as on Snowflake and BigQuery:
    DuckDB gave those devices local days, the other warehouses UTC ones."""
    pipeline = warehouse_copy()
    odd = {"": None, "+05:30": None, "GMT+5": None, " Asia/Kolkata ": "Asia/Kolkata",
           "Etc/GMT-14": "Etc/GMT-14", "Mars/Olympus": None, "Europe/Londn": None,
           "W-SU": "W-SU", "NZ-CHAT": "NZ-CHAT", "asia/tokyo": None, "America/New_york": None,
           "IST": None, "PST": None, "CST": None, "US/Pacific-New": None, "localtime": None,
           "EST": "EST"}
    devices = [d for (d,) in rows(pipeline, "SELECT id FROM micrometrics.devices ORDER BY id")]
    assert len(devices) >= len(odd)
    for device, zone in zip(devices, odd, strict=False):
        rows(pipeline, f"UPDATE micrometrics.devices SET timezone = '{zone}' "
                       f"WHERE id = '{device}'")
    build_models(pipeline, now=warehouse.as_of)
    zones = dict(rows(pipeline, "SELECT device_id, local_zone FROM micrometrics.stg_devices"))
    for device, zone in zip(devices, odd.values(), strict=False):
        assert zones[device] == zone
    days = rows(pipeline, """
        SELECT f.device_id, f.response_date, f.responded_at FROM micrometrics.fct_survey_responses f
    """)
    canonical = {name.lower(): name for name in available_timezones()}  # Python's: in its case
    checked = 0
    for device, day, at in days:
        if device in devices[:len(odd)]:
            zone = zones[device]
            local = at.astimezone(ZoneInfo(canonical[zone.lower()]) if zone else UTC)
            assert day == local.date(), (device, zone, at)
            checked += 1
    assert checked
