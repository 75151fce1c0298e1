"""Runs a sync as rounds of extract+load until every stream is up to its end bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo

from pipelines.destination import loaded_versions, open_pipeline
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.questions import with_question_history
from pipelines.micrometrics.rounds import SyncRun
from pipelines.micrometrics.settings import Settings
from pipelines.micrometrics.source import micrometrics_source

from .drift import local_schema, new_variant_warnings, variant_columns
from .marks import MarkCounts, apply_survey_marks
from .pending import finish_pending
from .reconcile import ReconcileReport, reconcile

RESOURCES = ("devices", "surveys", "survey_responses")


@dataclass
class SyncOptions:
    """What the command line asked for."""

    destination: str = "duckdb"
    dataset: str = "micrometrics"
    resources: tuple[str, ...] = RESOURCES
    start_at: datetime | None = None
    end_at: datetime | None = None
    full_refresh: bool = False
    reconcile: bool = False
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
    warnings: list[str] = field(default_factory=list)  # e.g. new variant columns
    deep_streams: int = 0  # streams that re-read the deep lookback in this sync
    deep_found: int = 0  # records only the deep pass found (late uploads)
    deep_lookback_hours: float = 0.0
    lookback_minutes: float = 0.0
    marks: MarkCounts = field(default_factory=MarkCounts)  # deleted_at set and cleared
    reconcile: ReconcileReport | None = None


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
    variants_before = variant_columns(local_schema(pipeline))
    run = SyncRun(
        run_end=options.end_at or datetime.fromtimestamp(clock(), UTC),
        round_pages=settings.window_pages,
        start_at=options.start_at or (settings.start_at if explicit else None),
        explicit_range=explicit,
        now=datetime.fromtimestamp(clock(), UTC),
        known_versions=partial(loaded_versions, pipeline),
    )
    # What a killed sync left is loaded first, whatever this sync's flags select.
    report = SyncReport(load_infos=finish_pending(pipeline))
    # Marks a killed sync committed to state but never applied (idempotent otherwise).
    report.marks.add(apply_survey_marks(pipeline))
    # Only the selected resources: --full-refresh --resources devices keeps the responses.
    refresh = "drop_resources" if options.full_refresh else None
    while True:
        run.new_round()
        source = micrometrics_source(settings=settings, client=client, run=run)
        source = source.with_resources(*with_question_history(options.resources))
        info = pipeline.run(source, loader_file_format=loader_format(options.destination),
                            refresh=refresh)
        refresh = None
        report.rounds += 1
        report.load_infos.append(info)
        normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
        counts = normalized.row_counts if normalized else {}
        for table, rows in counts.items():
            if not table.startswith("_dlt"):
                report.loaded_rows[table] = report.loaded_rows.get(table, 0) + rows
        if not run.more:
            break
    report.marks.add(apply_survey_marks(pipeline))
    if options.reconcile:
        report.reconcile = reconcile(client, pipeline, run.now or run.run_end,
                                     options.resources)
        report.marks.add(report.reconcile.marks)
    report.warnings = new_variant_warnings(variants_before,
                                           variant_columns(local_schema(pipeline)))
    report.elapsed = time.monotonic() - started
    report.rejected = run.rejected
    report.deep_streams, report.deep_found = len(run.deep_streams), run.deep_found
    report.deep_lookback_hours = settings.deep_lookback.total_seconds() / 3600
    report.lookback_minutes = settings.lookback.total_seconds() / 60
    report.client_stats = client.stats.as_dict()
    report.rate, report.burst = client.bucket.rate, client.bucket.burst
    return report


def loader_format(destination: str) -> str | None:
    """Parquet where the destination loads it fast (DuckDB: several times insert_values)."""
    return "parquet" if destination in ("duckdb", "motherduck", "filesystem") else None


def make_pipeline(options: SyncOptions) -> dlt.Pipeline:
    return open_pipeline(options.destination, options.dataset, options.pipelines_dir)
