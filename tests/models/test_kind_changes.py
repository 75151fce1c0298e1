"""A model that changes kind (moved between staging/ and marts/) builds on DuckDB; the same
scenario runs on PostgreSQL, Snowflake and BigQuery in their own test files."""

from __future__ import annotations

import dlt

from tests.destination_scenarios import models_that_change_kind_build
from tests.destinations import pipeline_on


def test_models_that_change_kind_build(start_sandbox, tmp_path, clock):
    pipeline = pipeline_on(dlt.destinations.duckdb(str(tmp_path / "kinds.duckdb")),
                           tmp_path / "pipelines")
    models_that_change_kind_build(start_sandbox, pipeline, tmp_path, clock)
