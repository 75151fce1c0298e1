"""A field that changes type reaches the marts: dlt's variant column is read by staging, and the
sync that created it says so, once. Over real HTTP against the sandbox, on the virtual clock."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from pipelines.micrometrics.messages import hint
from pipelines.models import build_models
from pipelines.models.runner import DataTestFailed
from pipelines.sync.cli import TABLES
from pipelines.sync.json_summary import report_json
from pipelines.sync.summary import destination_counts, render
from tests.destination_scenarios import ids_and_times_that_drift_keep_the_models_building
from tests.models.conftest import rows
from tests.syncing import DATASET, pipeline_for, sync_sandbox
from tests.truth import assert_matches_truth

TEXT_IDS = ["L-12", "L-7", "Lobby 3"]


def sync(sandbox, tmp_path, clock):
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    report = result.report
    summary = render(report, destination_counts(result.pipeline, TABLES), report.rate,
                     report.burst)
    return result, summary


def test_location_id_turning_text_reaches_staging_and_marts_and_warns_once(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=300, rate=1000.0,
                            burst=1000)
    _, summary = sync(sandbox, tmp_path, clock)
    assert "changed type" not in summary
    clock.advance(600)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    for device, location in zip(devices, TEXT_IDS, strict=False):
        sandbox.patch_records("devices", [device], {"location_id": location})
    clock.advance(60)

    result, summary = sync(sandbox, tmp_path, clock)
    warning = ("warning: devices.location_id changed type: dlt added the variant column "
               f"devices.location_id__v_text for its text values; {hint('type_drift')}")
    assert result.report.warnings == [warning]
    assert summary.splitlines()[-1] == warning and summary.count("changed type") == 1
    # --json lists it as it lists the others: without the "warning: " the summary puts first.
    assert report_json(result.report, None)["warnings"] == [warning.removeprefix("warning: ")]

    build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))
    truth = {device["id"]: str(device["location_id"]) for device in sandbox.truth()["devices"]}
    assert sorted(truth[device] for device in devices[:len(TEXT_IDS)]) == sorted(TEXT_IDS)
    for model in ("stg_devices", "dim_devices"):
        got = dict(rows(result.pipeline,
                        f"SELECT device_id, location_id FROM {DATASET}.{model}"))
        assert got == truth, model  # text values, and the numeric ones as before (as text)

    clock.advance(60)
    result, summary = sync(sandbox, tmp_path, clock)
    assert result.report.warnings == [] and "changed type" not in summary

    # A fresh runner (no local pipeline folder: GitHub Actions, a container) restores the
    # schema from the destination: the variant is not new there either.
    shutil.rmtree(tmp_path / "pipelines")
    clock.advance(60)
    result, summary = sync(sandbox, tmp_path, clock)
    assert result.report.warnings == [] and "changed type" not in summary


def test_a_field_that_turns_into_an_object_or_a_list_is_announced_once(
        start_sandbox, tmp_path, clock):
    """dlt spreads it over new columns or a child table, and the column the models read is
    NULL for those records (a device's days moved to UTC in the marts): nothing said so."""
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=100, rate=1000.0,
                            burst=1000)
    sync(sandbox, tmp_path, clock)
    clock.advance(600)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    sandbox.patch_records("devices", devices[:1],
                          {"timezone": {"name": "Asia/Tokyo", "offset": "+09:00"}})
    sandbox.patch_records("devices", devices[1:2], {"status": ["active", "paused"]})
    sandbox.patch_records("devices", devices[2:3], {"meta": {"a": 1}})  # new: nothing to say
    clock.advance(60)

    result, summary = sync(sandbox, tmp_path, clock)
    assert result.report.warnings == [
        f"warning: devices.{field} arrived as an object or a list: dlt spread it over new "
        f"columns (devices.{field}__*) or a child table; the column devices.{field} the models "
        f"read is NULL for those records" for field in ("status", "timezone")]
    assert summary.count("arrived as an object") == 2
    assert rows(result.pipeline, f"SELECT timezone, timezone__name FROM {DATASET}.devices "
                                 f"WHERE id = '{devices[0]}'") == [(None, "Asia/Tokyo")]

    clock.advance(60)
    result, _ = sync(sandbox, tmp_path, clock)
    assert result.report.warnings == []


def test_ids_and_times_that_drift_keep_the_models_building(start_sandbox, tmp_path, clock):
    ids_and_times_that_drift_keep_the_models_building(start_sandbox, pipeline_for(tmp_path),
                                                       clock)


def test_an_answer_sent_as_an_object_or_a_list_is_kept_whole_and_named_by_a_data_test(
        start_sandbox, tmp_path, clock):
    """dlt spreads an object over ``value__<key>`` columns and a list over a child table, leaving
    ``value`` NULL: the answer fell out of every mart and no test noticed. It is loaded as its
    JSON text instead; a score that is no number fails ``scores_are_numbers``, which names it."""
    sandbox = start_sandbox(clock=clock, devices=3, surveys=1, responses=20, rate=1000.0,
                            burst=1000)
    result, _ = sync(sandbox, tmp_path, clock)
    clock.advance(600)
    (survey,) = sandbox.truth()["surveys"]
    by_type = {question["type"]: question["id"] for question in survey["questions"]}
    (added, listed) = sandbox.add_responses(2, survey_id=survey["id"])
    sandbox.patch_records("survey_responses", [added], {"answers": [
        {"question_id": by_type["nps"], "value": {"score": 7}},
        {"question_id": by_type["text"], "value": ["très", "bien"]}],
        "comment": {"text": "Jane Doe, room 12", "lang": "en"}})
    sandbox.patch_records("survey_responses", [listed], {"comment": ["Call me", "Jane"]})
    clock.advance(60)
    result, _ = sync(sandbox, tmp_path, clock)

    loaded = rows(result.pipeline, f"SELECT value FROM {DATASET}.survey_responses__answers a "
                                   f"JOIN {DATASET}.survey_responses r ON a._dlt_parent_id = "
                                   f"r._dlt_id WHERE r.id = {added}")
    assert sorted(value for (value,) in loaded) == ['["très","bien"]', '{"score":7}']
    tables = result.pipeline.default_schema.tables
    assert "survey_responses__answers__value" not in tables
    # A comment too (spread, it was NULL in staging, its text where no purge looked).
    assert "survey_responses__comment" not in tables
    assert not [c for c in tables["survey_responses"]["columns"] if c.startswith("comment__")]
    assert not [c for c in tables["survey_responses__answers"]["columns"]
                if c.startswith("value__")]
    with pytest.raises(DataTestFailed) as failed:
        build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))
    assert {test.name for test in failed.value.failures} == {"scores_are_numbers"}
    named = rows(result.pipeline, f"SELECT response_id, raw_value FROM {DATASET}.stg_survey_answers"
                                  f" WHERE question_type = 'nps' AND response_id = {added}")
    assert named == [(added, '{"score":7}')]
    comments = rows(result.pipeline, f"SELECT response_id, comment_text FROM "
                                     f"{DATASET}.stg_survey_responses WHERE response_id IN "
                                     f"({added}, {listed}) ORDER BY response_id")
    assert comments == sorted([(added, '{"text":"Jane Doe, room 12","lang":"en"}'),
                               (listed, '["Call me","Jane"]')])



def test_values_dlt_would_change_to_fit_their_column_load_as_sent_into_variants(
        start_sandbox, tmp_path, clock):
    """dlt converts whatever text it can parse into its column's type: "0042" and "0x2A" into
    a bigint column loaded as 42 (two devices at one location in the marts), "yes" and 2 into
    a bool column as true, "NaN" and "1e400" into a double column as NaN and infinity (and
    failed PostgreSQL's load: test_postgres); 1e30 into a bigint one, and 10**17 (seconds since
    1970 beyond year 9999) into a time one, failed the normalize, on every sync after. Each is
    loaded as sent, in a variant column."""
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=100, rate=1000.0,
                            burst=1000)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    sandbox.patch_records("devices", devices, {"battery": 3.5, "online": True})
    sync(sandbox, tmp_path, clock)
    clock.advance(600)
    sent = {devices[0]: {"location_id": "0042", "battery": "NaN", "online": "yes"},
            devices[1]: {"location_id": "0x2A", "battery": "1e400", "online": 2},
            devices[2]: {"location_id": "42", "battery": "7.5", "online": False},
            devices[3]: {"location_id": 1e30, "created_at": 10**17}}
    for device, fields in sent.items():
        sandbox.patch_records("devices", [device], fields)
    clock.advance(60)
    result, _summary = sync(sandbox, tmp_path, clock)
    assert sorted(line.split(" changed type")[0] for line in result.report.warnings) == [
        "warning: devices.battery", "warning: devices.created_at", "warning: devices.location_id",
        "warning: devices.location_id", "warning: devices.online", "warning: devices.online"]
    loaded = rows(result.pipeline, f"""
        SELECT id, location_id, location_id__v_text, location_id__v_double, battery,
               battery__v_text, online, online__v_text, online__v_bigint
        FROM {DATASET}.devices WHERE id IN ('{"', '".join(sent)}') ORDER BY id""")
    assert loaded == sorted([
        (devices[0], None, "0042", None, None, "NaN", None, "yes", None),
        (devices[1], None, "0x2A", None, None, "1e400", None, None, 2),
        (devices[2], 42, None, None, 7.5, None, False, None, None),
        (devices[3], None, None, 1e30, 3.5, None, True, None, None)])
    assert rows(result.pipeline, f"SELECT created_at, created_at__v_bigint FROM "
                                 f"{DATASET}.devices WHERE id = '{devices[3]}'") == [
        (None, 10**17)]
    build_models(result.pipeline, now=datetime.fromtimestamp(clock(), UTC))
    locations = dict(rows(result.pipeline, f"SELECT device_id, location_id FROM "
                                           f"{DATASET}.dim_devices"))
    assert [locations[device] for device in sent][:3] == ["0042", "0x2A", "42"]
    clock.advance(60)
    result, _summary = sync(sandbox, tmp_path, clock)
    assert result.report.warnings == []


def test_an_answer_sent_as_true_or_false_loads_as_json_spells_it(start_sandbox, tmp_path,
                                                                   clock):
    """dlt's text of a bool is Python's: a text answer sent as true loaded as 'True'."""
    sandbox = start_sandbox(clock=clock, devices=3, surveys=1, responses=20, rate=1000.0,
                            burst=1000)
    response = sandbox.truth()["survey_responses"][0]
    answers = [{**answer, "value": index % 2 == 0}
               for index, answer in enumerate(response["answers"])]
    assert len(answers) >= 2
    sandbox.patch_records("survey_responses", [response["id"]], {"answers": answers})
    result, _summary = sync(sandbox, tmp_path, clock)
    assert_matches_truth(tmp_path, sandbox.truth())
    loaded = rows(result.pipeline, f"""
        SELECT a.value FROM {DATASET}.survey_responses__answers a
        JOIN {DATASET}.survey_responses r ON a._dlt_parent_id = r._dlt_id
        WHERE r.id = {response["id"]}""")
    assert sorted(loaded) == sorted(("true" if i % 2 == 0 else "false",)
                                    for i in range(len(answers)))
