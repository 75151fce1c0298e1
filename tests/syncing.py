"""Run real syncs in tests: a sandbox on loopback, a DuckDB file under tmp_path, virtual time."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import dlt
import duckdb

from pipelines.micrometrics import SyncReport, sync
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.retry import RetryPolicy
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.sandbox import Sandbox
from pipelines.sync.options import SyncOptions
from tests.conftest import KEY, SECRET
from tests.fakes import FakeClock

DATASET = "micrometrics"


@dataclass
class SyncResult:
    report: SyncReport
    client: MicrometricsClient
    pipeline: dlt.Pipeline


def pipeline_for(tmp_path: Path, name: str = "micrometrics",
                 pipelines_dir: str = "pipelines") -> dlt.Pipeline:
    """The pipeline into ``tmp_path/warehouse.duckdb``; another ``pipelines_dir`` is another
    machine's local state (a second worker of one schedule)."""
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(credentials=str(tmp_path / "warehouse.duckdb")),
        dataset_name=DATASET,
        pipelines_dir=str(tmp_path / pipelines_dir),
    )


def sync_sandbox(
    sandbox: Sandbox,
    tmp_path: Path,
    clock: FakeClock,
    options: SyncOptions | None = None,
    rate: float = 1.0,
    burst: int = 10,
    max_requests: int | None = None,
    **settings,
) -> SyncResult:
    """One sync of ``sandbox`` into ``tmp_path/warehouse.duckdb``; waits advance ``clock``.
    With ``max_requests``, a sync that would make more requests fails instead of running on
    (a test of termination must fail, not hang)."""
    return sync_into(sandbox, pipeline_for(tmp_path), clock, options, rate=rate, burst=burst,
                     max_requests=max_requests, **settings)


def sync_into(
    sandbox: Sandbox,
    pipeline: dlt.Pipeline,
    clock: FakeClock,
    options: SyncOptions | None = None,
    rate: float = 1000.0,
    burst: int = 1000,
    max_requests: int | None = None,
    **settings,
) -> SyncResult:
    """One sync of ``sandbox`` into ``pipeline`` (any destination), over real HTTP, waits
    advancing ``clock``; by default at a rate that never waits, so the clock stands still."""
    bucket_type = LeakyBucket if max_requests is None else capped_bucket(max_requests)
    client = MicrometricsClient(
        sandbox.url,
        KEY,
        SECRET,
        bucket=bucket_type(rate=rate, burst=burst, clock=clock, sleep=clock.sleep),
        retry=RetryPolicy(rng=random.Random(3)),
        sleep=clock.sleep,
        auth_clock=clock,
    )
    if isinstance(clock, FakeClock) and rate < 1000:
        # A binding rate limit on a virtual clock: one thread's sleep moves time for all, so a
        # thread descheduled for a millisecond between booking its token and sending can reach
        # the server seconds of virtual time late, beyond any real departure skew, and find its
        # bucket full. Such syncs keep one request in flight unless a test says otherwise;
        # overlap under a binding limit is tested in real time (test_concurrency, the demo).
        settings.setdefault("max_in_flight", 1)
    if "window_pages" in settings:
        # Tests that size windows small mean small rounds too (checkpoints, kills between
        # rounds): a round of one window's pages, as before ROUND_PAGES, unless they say.
        settings.setdefault("round_pages", settings["window_pages"])
    resolved = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET, **settings)
    report = sync(pipeline, settings=resolved, client=client, clock=clock,
                  **(options or SyncOptions()).sync_arguments())
    return SyncResult(report, client, pipeline)


class RequestCapExceeded(AssertionError):
    """The sync made more requests than a test allows: it would not have terminated."""


def capped_bucket(max_requests: int) -> type[LeakyBucket]:
    class CappedBucket(LeakyBucket):
        taken = 0

        def acquire(self) -> float:
            CappedBucket.taken += 1
            if CappedBucket.taken > max_requests:
                raise RequestCapExceeded(f"more than {max_requests} requests")
            return super().acquire()

    return CappedBucket


def query(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        return connection.sql(sql).fetchall()


def loaded(tmp_path: Path, table: str, columns: str = "id, updated_at") -> list[tuple]:
    return query(tmp_path, f"SELECT {columns} FROM {DATASET}.{table} ORDER BY 1")


def add_malformed_records(sandbox: Sandbox) -> int:
    """Three records no sync can merge: two responses of the first survey (no id; an
    updated_at that is no timestamp) and a device without updated_at. Returns that survey."""
    survey = sandbox.truth()["surveys"][0]["id"]
    sandbox.add_malformed("survey_responses", {"survey_id": survey, "answers": []},
                          survey_id=survey)
    sandbox.add_malformed("survey_responses", {"id": 999001, "updated_at": "yesterday"},
                          survey_id=survey)
    sandbox.add_malformed("devices", {"id": "dev-no-time", "name": "Kiosk"})
    return survey
