"""A field that changes type reaches the marts: dlt's variant column is read by staging, and the
sync that created it says so, once. Over real HTTP against the sandbox, on the virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.models import build_models
from pipelines.sync.cli import TABLES
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
               "devices.location_id__v_text for its text values; staging reads both "
               "location_id and location_id__v_text")
    assert result.report.warnings == [warning]
    assert summary.splitlines()[-1] == warning and summary.count("changed type") == 1

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


def test_ids_and_times_that_drift_keep_the_models_building(start_sandbox, tmp_path, clock):
    ids_and_times_that_drift_keep_the_models_building(start_sandbox, pipeline_for(tmp_path),
                                                       clock)
