"""The dlt settings a sync applies while it runs (``dlt_settings``): on DuckDB, the normalize on
two forked workers, one load thread and rounds that also end by time; anything the user
configured wins, and nothing stays in the environment afterwards."""

from __future__ import annotations

import gc
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipelines.micrometrics import dlt_settings
from pipelines.micrometrics.dlt_settings import defaults_for
from pipelines.micrometrics.rounds import (
    DUCKDB_ROUND_PAGES,
    ROUND_SECONDS,
    RoundBudget,
    round_pages_for,
    round_seconds_for,
)
from tests.syncing import sync_sandbox
from tests.truth import assert_matches_truth

# 30 pages of responses in one round; extract files of 300 records: 10 files for two workers.
DATA = dict(devices=10, surveys=2, responses=3000, page_size=100, rate=1000.0, burst=1000)
PARALLEL = ("NORMALIZE__WORKERS", "SOURCES__DATA_WRITER__FILE_MAX_ITEMS")
PIPELINE = "micrometrics"


@pytest.fixture
def small_extract_files(monkeypatch):
    """Extract files of 300 records, so that a small sandbox gives the workers several; and the
    sync's own choice of workers, which the other tests turn off (conftest)."""
    monkeypatch.delenv("NORMALIZE__WORKERS")
    monkeypatch.setitem(dlt_settings.PARALLEL_NORMALIZE, "sources.data_writer.file_max_items",
                        ("SOURCES__DATA_WRITER__FILE_MAX_ITEMS", "300"))
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)


def response_files_per_package(report) -> list[int]:
    """How many load files of ``survey_responses`` each loaded package held: one per normalize
    worker that got some of its extract files."""
    counts = []
    for info in report.load_infos:
        for package in info.load_packages:
            jobs = [job for job in package.jobs["completed_jobs"]
                    if job.job_file_info.table_name == "survey_responses"
                    and job.job_file_info.file_format == "parquet"]  # not the merge's SQL
            if jobs:
                counts.append(len(jobs))
    return counts


def test_duckdb_sync_normalizes_on_two_workers_and_stays_exact(
        start_sandbox, tmp_path, clock, small_extract_files, monkeypatch):
    frozen = []
    freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (frozen.append(1), freeze()))
    sandbox = start_sandbox(clock=clock, **DATA)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert response_files_per_package(result.report) == [2]  # one round, both workers
    assert_matches_truth(tmp_path, sandbox.truth())
    assert not [v for v in (*PARALLEL, "LOAD__WORKERS") if v in os.environ]
    # The workers were forked from a frozen heap, and the sync's own is unfrozen again.
    assert frozen and gc.get_freeze_count() == 0
    assert not dlt_settings._forks.active.is_set()  # later forks freeze nothing


def test_a_users_normalize_workers_are_kept(
        start_sandbox, tmp_path, clock, small_extract_files, monkeypatch):
    monkeypatch.setenv("NORMALIZE__WORKERS", "1")
    sandbox = start_sandbox(clock=clock, **DATA)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert response_files_per_package(result.report) == [1]
    assert_matches_truth(tmp_path, sandbox.truth())
    assert os.environ["NORMALIZE__WORKERS"] == "1"
    assert "SOURCES__DATA_WRITER__FILE_MAX_ITEMS" not in os.environ


def test_duckdb_defaults(monkeypatch):
    monkeypatch.delenv("NORMALIZE__WORKERS")
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)
    assert defaults_for("duckdb", PIPELINE) == {
        "DATA_WRITER__DISABLE_COMPRESSION": "true",
        "DATA_WRITER__BUFFER_MAX_ITEMS": "1000",
        "LOAD__WORKERS": "1",
        "NORMALIZE__WORKERS": "2",
        "SOURCES__DATA_WRITER__FILE_MAX_ITEMS": "4000",
    }


@pytest.mark.parametrize("destination", ["postgres", "snowflake", "bigquery"])
def test_other_destinations_get_the_writer_settings_only(destination, monkeypatch):
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)
    assert set(defaults_for(destination, PIPELINE)) == {
        "DATA_WRITER__DISABLE_COMPRESSION", "DATA_WRITER__BUFFER_MAX_ITEMS"}


def test_no_workers_where_dlt_would_spawn_them_or_on_one_core(monkeypatch):
    monkeypatch.delenv("NORMALIZE__WORKERS")
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "spawn")
    assert not set(PARALLEL) & set(defaults_for("duckdb", PIPELINE))
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "fork")
    monkeypatch.setattr(dlt_settings, "cores", lambda: 1)
    assert not set(PARALLEL) & set(defaults_for("duckdb", PIPELINE))
    assert defaults_for("duckdb", PIPELINE)["LOAD__WORKERS"] == "1"


def test_a_users_file_size_or_load_workers_are_theirs(monkeypatch):
    monkeypatch.delenv("NORMALIZE__WORKERS")
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)
    monkeypatch.setenv("SOURCES__DATA_WRITER__FILE_MAX_ITEMS", "100000")
    monkeypatch.setenv("LOAD__WORKERS", "4")
    chosen = defaults_for("duckdb", PIPELINE)
    assert "NORMALIZE__WORKERS" not in chosen  # their file size: no workers of ours either
    assert "SOURCES__DATA_WRITER__FILE_MAX_ITEMS" not in chosen
    assert "LOAD__WORKERS" not in chosen


@pytest.mark.parametrize("variable, value", [
    ("DATA_WRITER__FILE_MAX_ITEMS", "100000"),  # global: it reaches the extract too
    ("EXTRACT__DATA_WRITER__FILE_MAX_ITEMS", "100000"),
    ("MICROMETRICS__NORMALIZE__WORKERS", "1"),  # the pipeline's own section wins in dlt
    ("NORMALIZE__START_METHOD", "spawn"),
    ("MICROMETRICS__NORMALIZE__START_METHOD", "spawn"),
])
def test_no_workers_of_ours_when_the_user_configured_them_anywhere(variable, value, monkeypatch):
    monkeypatch.delenv("NORMALIZE__WORKERS")
    monkeypatch.setattr(dlt_settings, "cores", lambda: 2)
    monkeypatch.setenv(variable, value)
    assert not set(PARALLEL) & set(defaults_for("duckdb", PIPELINE))


@pytest.mark.parametrize("variable", [
    "DATA_WRITER__DISABLE_COMPRESSION",
    "NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION",  # a step's own writer
    "EXTRACT__DATA_WRITER__DISABLE_COMPRESSION",
    "MICROMETRICS__NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION",
])
def test_a_writer_setting_in_any_section_is_the_users(variable, monkeypatch):
    monkeypatch.setenv(variable, "false")
    chosen = defaults_for("duckdb", PIPELINE)
    assert "DATA_WRITER__DISABLE_COMPRESSION" not in chosen
    assert "DATA_WRITER__BUFFER_MAX_ITEMS" in chosen  # the other one is still ours


def test_a_pipeline_scoped_setting_is_the_users(monkeypatch):
    monkeypatch.setenv("MICROMETRICS__LOAD__WORKERS", "8")
    assert "LOAD__WORKERS" not in defaults_for("duckdb", PIPELINE)
    assert "LOAD__WORKERS" in defaults_for("duckdb", "another_pipeline")


def test_the_process_start_method_is_left_unset():
    # In a fresh interpreter: deciding must not fix multiprocessing's start method, which a host
    # application may still want to set (set_start_method refuses once it is fixed).
    script = ("import multiprocessing, os\n"
              "os.environ.pop('NORMALIZE__WORKERS', None)\n"
              "from pipelines.micrometrics.dlt_settings import defaults_for\n"
              "defaults_for('duckdb', 'micrometrics')\n"
              "print(multiprocessing.get_start_method(allow_none=True))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == "None"


def test_only_a_main_thread_fork_during_a_sync_counts_as_a_worker(monkeypatch):
    forks = dlt_settings._WorkerForks()
    forks.before()  # no sync with workers running
    assert not forks.worker and gc.get_freeze_count() == 0
    forks.active.set()
    seen = []
    thread = threading.Thread(target=lambda: (forks.before(), seen.append(forks.worker)))
    thread.start()
    thread.join()
    assert seen == [False] and gc.get_freeze_count() == 0  # dlt never forks from a thread
    forks.before()
    try:
        assert forks.worker and gc.get_freeze_count() > 0
    finally:
        forks.in_parent()
    assert gc.get_freeze_count() == 0
    gc.freeze()  # an application's own freeze is left as it was
    try:
        forks.before()
        forks.in_parent()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_workers_across_rounds_stay_exact(start_sandbox, tmp_path, clock, small_extract_files):
    sandbox = start_sandbox(clock=clock, **DATA)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, round_pages=8)
    # Several rounds, normalized in parallel (the first may give one worker all the responses'
    # files: dlt deals files in chunks of sorted names, and that round has every table's).
    files = response_files_per_package(result.report)
    assert len(files) >= 3 and files.count(2) >= len(files) - 1
    clock.advance(600)
    sandbox.update_responses(400)
    sandbox.add_responses(300)
    sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, round_pages=8)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_duckdb_rounds_end_by_pages_or_by_time():
    assert round_pages_for("duckdb", None, 2) == DUCKDB_ROUND_PAGES
    assert round_seconds_for("duckdb", None) == ROUND_SECONDS
    # A configured size, and a warehouse's (its merge count), are by pages only.
    assert round_seconds_for("duckdb", 50) is None
    assert round_seconds_for("snowflake", None) is None
    assert round_seconds_for("postgres", None) is None


def test_a_round_budget_runs_out_of_time():
    now = [0.0]
    budget = RoundBudget(pages=900, seconds=300.0, clock=lambda: now[0])
    budget.new_round()
    assert all(budget.take() for _ in range(10))
    now[0] = 299.9
    assert budget.take() and not budget.more
    now[0] = 300.0
    assert not budget.take() and budget.more
    budget.new_round()  # the next round has its own time
    assert budget.take() and not budget.more
    assert budget.spent == 1
