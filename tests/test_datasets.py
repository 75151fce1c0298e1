"""One machine syncing more than one target (``--dataset``, ``--destination``, another DuckDB
file): dlt keeps one local folder per pipeline name, so each target's sync must not inherit the
other's state or the packages a killed sync left for it."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import dlt
import pytest

from pipelines.destination import open_pipeline
from pipelines.micrometrics.rounds import RoundBudget, SyncBounds
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.source import micrometrics_source
from pipelines.micrometrics.target import claim_folder, marker_path, target_of
from pipelines.status.record import SyncOutcome, record_sync, status_of
from tests.conftest import KEY, SECRET
from tests.syncing import DATASET, sync_into
from tests.truth import assert_matches_truth

FAST = {"rate": 1000.0, "burst": 1000}


def target(tmp_path: Path, name: str, dataset: str = DATASET) -> dlt.Pipeline:
    """The pipeline into ``tmp_path/<name>/warehouse.duckdb``; every target shares one local
    folder, as the CLI's do."""
    (tmp_path / name).mkdir(exist_ok=True)
    return dlt.pipeline(
        pipeline_name="micrometrics",
        destination=dlt.destinations.duckdb(
            credentials=str(tmp_path / name / "warehouse.duckdb")),
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "machine"),
    )


def extract_and_die(sandbox, pipeline, clock, client) -> None:
    """A sync's first round extracted (package and local state committed), then killed."""
    settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
                             window_pages=2)
    now = datetime.fromtimestamp(clock(), UTC)
    budget = RoundBudget(pages=6)
    pipeline.extract(micrometrics_source(settings=settings, client=client,
                                         bounds=SyncBounds(now, now), budget=budget))
    assert pipeline.has_pending_data


def test_a_package_left_for_one_target_is_not_loaded_into_another(
        start_sandbox, tmp_path, clock, virtual_client):
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, **FAST)
    sync_into(sandbox, target(tmp_path, "prod"), clock)
    clock.advance(3600)
    sandbox.update_responses(200)
    sandbox.add_responses(50)
    extract_and_die(sandbox, target(tmp_path, "prod"), clock, virtual_client(sandbox, **FAST))
    clock.advance(3 * 3600)
    # Hours later, another target from this machine: its history read from the start, exact.
    sync_into(sandbox, target(tmp_path, "scratch"), clock)
    assert_matches_truth(tmp_path / "scratch", sandbox.truth())
    clock.advance(4 * 3600)
    # prod's next sync reads again what the dropped package held (prod's state never had it).
    sync_into(sandbox, target(tmp_path, "prod"), clock)
    assert_matches_truth(tmp_path / "prod", sandbox.truth())


def test_a_target_synced_in_between_does_not_lend_its_state(start_sandbox, tmp_path, clock):
    """The other target's local state, at a higher version after many rounds, would win dlt's
    restore over prod's own, and prod would go on from its high-water marks."""
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, **FAST)
    sync_into(sandbox, target(tmp_path, "prod"), clock)
    clock.advance(5 * 86400)  # beyond the deep pass: missed changes would stay missed
    sandbox.update_responses(100)
    sandbox.add_responses(40)
    clock.advance(5 * 86400)
    for _ in range(4):
        sync_into(sandbox, target(tmp_path, "scratch"), clock, window_pages=3)
        clock.advance(3600)
    sync_into(sandbox, target(tmp_path, "prod"), clock)
    assert_matches_truth(tmp_path / "prod", sandbox.truth())


def outcome(clock, exit_code: int) -> SyncOutcome:
    at = datetime.fromtimestamp(clock(), UTC)
    return SyncOutcome(started_at=at, finished_at=at, exit_code=exit_code,
                       exit_cause="ok" if exit_code == 0 else "settings")


def test_an_outcome_recorded_for_another_dataset_leaves_both_states_their_own(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, responses=40, **FAST)
    prod = target(tmp_path, "one")
    sync_into(sandbox, prod, clock)
    assert record_sync(prod, outcome(clock, 0)) == "destination"
    assert claim_folder(prod) is False  # the same target: nothing dropped
    # Another dataset in the same file, a run refused before it synced: its outcome goes on a
    # state of its own (it has none yet), not on prod's windows.
    other = target(tmp_path, "one", dataset="other")
    record_sync(other, outcome(clock, 2))
    assert "sources" not in other.state
    assert status_of(other.state)["last_sync"]["exit_code"] == 2
    # Back on prod: the other's local state is dropped, prod's restored with its own record.
    back = target(tmp_path, "one")
    assert claim_folder(back) is True
    back.sync_destination()
    assert back.state["sources"]["micrometrics"]["resources"]
    assert status_of(back.state)["last_sync"]["exit_code"] == 0


@pytest.mark.warehouses  # their clients (the `warehouses` extra), not their emulators
def test_databases_and_projects_of_one_account_are_told_apart(tmp_path, monkeypatch):
    """dlt's data_location is the account host on Snowflake and the region on BigQuery."""
    for key in [key for key in os.environ if key.startswith("DESTINATION__")]:
        monkeypatch.delenv(key)
    seen = set()
    for database in ("PROD", "DEV"):
        monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS",
                           f"snowflake://user:pass@account/{database}?warehouse=w&role=r")
        seen.add(repr(target_of(open_pipeline("snowflake", DATASET, str(tmp_path)))))
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL",
                       "x@y.iam.gserviceaccount.com")
    monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS__PRIVATE_KEY",
                       "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    for project in ("acme-prod", "acme-dev"):
        monkeypatch.setenv("DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID", project)
        seen.add(repr(target_of(open_pipeline("bigquery", DATASET, str(tmp_path)))))
    assert len(seen) == 4


def test_a_run_refused_for_its_destination_configuration_is_still_recorded(tmp_path, monkeypatch):
    for key in [key for key in os.environ if key.startswith("DESTINATION__")]:
        monkeypatch.delenv(key)
    pipeline = open_pipeline("postgres", DATASET, str(tmp_path))  # no credentials anywhere
    assert record_sync(pipeline, outcome(time.time, 2)) == "local"
    assert status_of(pipeline.state)["last_sync"]["exit_code"] == 2


@pytest.mark.parametrize("destination, dataset", [("duckdb", ""), ("duckdb", "   "),
                                                  ("postgres", ""), ("", "micrometrics")])
def test_an_empty_name_from_a_scheduler_is_refused_as_configuration(destination, dataset):
    """An Airflow parameter or a library caller bypasses the command line's check: dlt took an
    empty dataset for the one it used last (a postgres sync went into another tenant's), and
    a blank one failed as a bare ValueError, which classify() does not call a bad setting."""
    from pipelines.micrometrics.errors import ConfigurationError
    from pipelines.schedules import classify

    with pytest.raises(ConfigurationError, match="must not be empty or blank") as refused:
        open_pipeline(destination, dataset)
    assert classify(refused.value).retry is False


def test_an_earlier_versions_marker_of_the_same_duckdb_file_keeps_the_local_state(
        start_sandbox, tmp_path, clock, caplog):
    # Markers written before the database and project were part of the location digest: an
    # upgrade took its own folder for another location's, dropped its state (and any package a
    # killed sync left) and blamed the configuration.
    sandbox = start_sandbox(clock=clock, responses=100, **FAST)
    prod = target(tmp_path, "prod")
    sync_into(sandbox, prod, clock)
    marker = marker_path(prod.pipelines_dir, prod.pipeline_name)
    marker.write_text(json.dumps(target_of(prod, with_fields=False)))
    again = target(tmp_path, "prod")
    with caplog.at_level(logging.WARNING, logger="micrometrics.sync"):
        assert claim_folder(again) is False
    assert not caplog.records
    assert again.state["sources"]["micrometrics"]["resources"]
    assert json.loads(marker.read_text()) == target_of(again)  # rewritten in today's form
    # Another file's old-form marker is still another target's.
    marker.write_text(json.dumps(target_of(target(tmp_path, "other"), with_fields=False)))
    assert claim_folder(target(tmp_path, "prod")) is True
