"""Runs a sync as rounds of extract+load until every stream is up to its end bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo

from pipelines.destination import open_pipeline
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.rounds import SyncRun
from pipelines.micrometrics.settings import Settings
from pipelines.micrometrics.source import micrometrics_source

RESOURCES = ("devices", "surveys", "survey_responses")
# A window may run to this many times its page target before it is given up and split.
MAX_WINDOW_FACTOR = 4


@dataclass
class SyncOptions:
    """What the command line asked for."""

    destination: str = "duckdb"
    dataset: str = "micrometrics"
    resources: tuple[str, ...] = RESOURCES
    start_at: datetime | None = None
    end_at: datetime | None = None
    full_refresh: bool = False
    pipelines_dir: str | None = None

    @property
    def explicit_range(self) -> bool:
        """``--start-at``/``--end-at`` given: re-read that range, leave incremental state alone."""
        return self.start_at is not None or self.end_at is not None


@dataclass
class SyncReport:
    """What a sync did, for the summary."""

    rounds: int = 0
    elapsed: float = 0.0
    loaded_rows: dict[str, int] = field(default_factory=dict)
    client_stats: dict[str, Any] = field(default_factory=dict)
    rate: float = 1.0
    burst: float = 10.0
    rejected: int = 0
    load_infos: list[LoadInfo] = field(default_factory=list)


def run_sync(
    settings: Settings,
    options: SyncOptions,
    client: MicrometricsClient | None = None,
    pipeline: dlt.Pipeline | None = None,
    clock: Callable[[], float] = time.time,
) -> SyncReport:
    """Sync until every selected stream has reached the end bound.

    Each round is one ``pipeline.run``; its extract commits the windows it finished to dlt
    state, so a crash loses at most the round in flight and the next sync resumes.
    """
    started = time.monotonic()
    client = client or MicrometricsClient.from_settings(settings)
    pipeline = pipeline or make_pipeline(options)
    explicit = options.explicit_range
    run = SyncRun(
        run_end=options.end_at or datetime.fromtimestamp(clock(), UTC),
        round_pages=settings.window_pages,
        max_window_pages=MAX_WINDOW_FACTOR * settings.window_pages,
        start_at=options.start_at or (settings.start_at if explicit else None),
        explicit_range=explicit,
        now=datetime.fromtimestamp(clock(), UTC),
    )
    report = SyncReport()
    # Only the selected resources: --full-refresh --resources devices keeps the responses.
    refresh = "drop_resources" if options.full_refresh else None
    while True:
        run.new_round()
        source = micrometrics_source(settings=settings, client=client, run=run)
        source = source.with_resources(*options.resources)
        info = pipeline.run(source, loader_file_format=loader_format(options.destination),
                            refresh=refresh)
        refresh = None
        report.rounds += 1
        report.load_infos.append(info)
        counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
        for table, rows in counts.items():
            if not table.startswith("_dlt"):
                report.loaded_rows[table] = report.loaded_rows.get(table, 0) + rows
        if not run.more:
            break
    report.elapsed = time.monotonic() - started
    report.rejected = run.rejected
    report.client_stats = client.stats.as_dict()
    report.rate, report.burst = client.bucket.rate, client.bucket.burst
    return report


def loader_format(destination: str) -> str | None:
    """Parquet where the destination loads it fast (DuckDB: several times insert_values)."""
    return "parquet" if destination in ("duckdb", "motherduck", "filesystem") else None


def make_pipeline(options: SyncOptions) -> dlt.Pipeline:
    return open_pipeline(options.destination, options.dataset, options.pipelines_dir)
