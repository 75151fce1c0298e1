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

