"""One sandbox sync and one model build, shared by every test in this package."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from pipelines.models import ModelsReport, build_models
from pipelines.sandbox import Sandbox
from tests.conftest import KEY, SECRET
from tests.fakes import FakeClock
from tests.syncing import DATASET, sync_sandbox

RESPONSES = 800


@dataclass
class Warehouse:
    """A synced DuckDB with the models built as of ``as_of``, and the sandbox's truth."""

    path: Path
    pipeline: dlt.Pipeline
    truth: dict[str, list[dict[str, Any]]]
    as_of: datetime
    report: ModelsReport


def rows(pipeline: dlt.Pipeline, sql: str) -> list[tuple]:
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


@pytest.fixture(scope="package")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    clock = FakeClock()
    sandbox = Sandbox(api_key=KEY, api_secret=SECRET, clock=clock, responses=RESPONSES).start()
    try:
        path = tmp_path_factory.mktemp("models")
        result = sync_sandbox(sandbox, path, clock)
        truth = sandbox.truth()
    finally:
        sandbox.stop()
    as_of = datetime.fromtimestamp(clock(), UTC)
    report = build_models(result.pipeline, now=as_of)
    return Warehouse(path, result.pipeline, truth, as_of, report)


@pytest.fixture
def warehouse_copy(warehouse: Warehouse, tmp_path: Path) -> Callable[[], dlt.Pipeline]:
    """A pipeline on a private copy of the built warehouse, for tests that break the data."""

    def copy() -> dlt.Pipeline:
        for suffix in ("", ".wal"):
            source = warehouse.path / f"warehouse.duckdb{suffix}"
            if source.exists():
                shutil.copy(source, tmp_path / source.name)
        return dlt.pipeline(
            pipeline_name="micrometrics_copy",
            destination=dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb")),
            dataset_name=DATASET,
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    return copy
