"""One sandbox history, four destinations: DuckDB, PostgreSQL (a real server), Snowflake
(fakesnow) and BigQuery (bqemulator). The same syncs at the same virtual instants load each of
them exact; the models build with every data test passing; and the marts hold the same figures
on all four. The history covers what changes after a first sync: updates, new records, late
uploads found by the deep pass, a survey edit (question history), a survey removed (deletion
marks) and a field that changes type (variant column).

Runs in ``make test-warehouses`` (the emulators' venvs)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import pytest

from pipelines.models import build_models
from tests.destinations import all_passed, pipeline_on
from tests.syncing import DATASET, pipeline_for, sync_into
from tests.test_postgres import postgres_pipeline
from tests.test_survey_edits import edit_surveys
from tests.truth import assert_matches_truth, query, select, truth_versions

pytestmark = pytest.mark.warehouses

HOUR = 3600
FAST = {"rate": 1000.0, "burst": 1000}  # no wait: the clock stands still during a sync
# Page size 10: the backfill spans about 40 pages, several rounds of WINDOW_PAGES 5.
SANDBOX = {"devices": 12, "surveys": 3, "responses": 360, "page_size": 10, **FAST}
SETTINGS = {"window_pages": 5}
# DuckDB and PostgreSQL in rounds of one window (multi-round merges); the warehouses by default.
LOCAL = {"round_pages": 5}
MARTS = ("fct_survey_responses", "mart_nps_daily", "dim_devices")


def mart_figures(pipeline: dlt.Pipeline, mart: str) -> tuple[list[str], list[tuple]]:
    """The mart's column names and rows, sorted, each value in one representation: drivers
    return a count as int, Decimal or float and a timestamp naive (UTC) or aware, which is
    representation, not figure."""
    columns, rows = select(pipeline, f"SELECT * FROM {DATASET}.{mart}")
    return ([column.lower() for column in columns],
            sorted((tuple(figure(value) for value in row) for row in rows), key=repr))


def figure(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return int(number) if number.is_integer() else round(number, 6)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return value
    raise TypeError(f"unexpected value in a mart: {value!r}")


@pytest.fixture
def destinations(tmp_path: Path, postgres_credentials, snowflake_destination,
                 bigquery_destination) -> dict[str, dlt.Pipeline]:
    return {
        "duckdb": pipeline_for(tmp_path / "duckdb"),
        "postgres": postgres_pipeline(tmp_path, postgres_credentials),
        "snowflake": pipeline_on(snowflake_destination, tmp_path / "snowflake"),
        "bigquery": pipeline_on(bigquery_destination, tmp_path / "bigquery"),
    }


def test_marts_hold_the_same_figures_on_all_four_destinations(start_sandbox, clock,
                                                               destinations):
    sandbox = start_sandbox(clock=clock, **SANDBOX)

    def sync_all() -> dict[str, Any]:
        reports = {}
        for name, pipeline in destinations.items():
            local = LOCAL if name in ("duckdb", "postgres") else {"round_pages": None}
            reports[name] = sync_into(sandbox, pipeline, clock, **SETTINGS, **local).report
        return reports

    backfill = sync_all()
    for pipeline in destinations.values():
        assert_matches_truth(pipeline, sandbox.truth())
    requests = backfill["duckdb"].client_stats["requests"]
    assert requests > 30
    for name in ("duckdb", "postgres"):  # a window's pages a round: cheap merges
        assert backfill[name].rounds >= math.ceil(requests / (2 * LOCAL["round_pages"]))
    for name in ("snowflake", "bigquery"):  # billed per statement: one round, one merge
        assert backfill[name].rounds == 1, name

    clock.advance(HOUR)
    sandbox.update_responses(25)
    sandbox.add_responses(30)
    sandbox.update_devices(2)
    sandbox.add_devices(1)
    sandbox.add_late_responses(4, delay_seconds=10 * HOUR)  # older than the lookback
    edit_surveys(sandbox)
    gone = sandbox.truth()["surveys"][-1]["id"]
    sandbox.remove_survey(gone)
    device = sorted(d["id"] for d in sandbox.truth()["devices"])[0]
    sandbox.patch_records("devices", [device], {"location_id": "Lobby 3"})  # type drift
    clock.advance(60)
    sync_all()
    clock.advance(23 * HOUR)  # a deep pass is due: it finds the late uploads
    deep = sync_all()
    assert {name: report.deep_found for name, report in deep.items()} == dict.fromkeys(
        destinations, 4)

    truth = sandbox.truth()
    as_of = datetime.fromtimestamp(clock(), UTC)
    for name, pipeline in destinations.items():
        for table in ("devices", "surveys", "survey_responses"):  # the removed survey: marked
            live = query(pipeline, f"SELECT id, updated_at FROM {DATASET}.{table} "
                                   "WHERE deleted_at IS NULL")
            assert sorted(live) == truth_versions(truth[table]), (name, table)
        assert all_passed(build_models(pipeline, now=as_of)), name
    for mart in MARTS:
        columns, on_duckdb = mart_figures(destinations["duckdb"], mart)
        assert on_duckdb, mart
        for name in ("postgres", "snowflake", "bigquery"):
            assert mart_figures(destinations[name], mart) == (columns, on_duckdb), (mart, name)
