"""``scheduled_sync()``: what ``make sync`` does, as one call for a scheduler's task.

The same steps as the command line (``pipelines.sync.cli.main``): settings validated before
anything else, the pipeline's sync lock held throughout, the pipeline built from the same
options (``make_pipeline``), the library's ``sync()``, then the SQL models and their data tests.
Failures are raised as they are (``ConfigurationError``, ``SyncLockedError``, ``DataTestFailed``,
dlt's ``PipelineStepFailed`` around an ``ApiError``...) so the caller can ``classify`` them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dlt.common.pipeline import get_dlt_pipelines_dir

from pipelines.destination import DEFAULT_DATASET, PIPELINE_NAME
from pipelines.micrometrics import RESOURCES, sync
from pipelines.micrometrics.settings import load_settings
from pipelines.models import build_models
from pipelines.sync.cli import recorded
from pipelines.sync.json_summary import RunResult
from pipelines.sync.lock import sync_lock
from pipelines.sync.options import SyncOptions, make_pipeline


def scheduled_sync(
    destination: str = "duckdb",
    dataset: str = DEFAULT_DATASET,
    *,
    resources: Sequence[str] = RESOURCES,
    models: bool = True,
) -> dict[str, Any]:
    """Sync into ``destination``/``dataset`` and build the models, as ``make sync`` does.

    Configuration comes from dlt as for the command line (``SOURCES__MICROMETRICS__*``,
    ``DESTINATION__*``, ``.dlt/`` of the working directory, any registered provider).

    Returns:
        A JSON-able summary (an Airflow task's return value goes to XCom): destination,
        dataset, rounds, rows loaded per table, requests, retries, elapsed seconds, models
        built and data tests passed.

    Raises:
        ConfigurationError: Bad or missing settings, before any request.
        SyncLockedError: Another sync of the pipeline is running.
        DataTestFailed: Loaded, but a data test failed.
        Exception: What the sync or dlt raised (see ``classify``).
    """
    settings = load_settings()
    options = SyncOptions(destination=destination, dataset=dataset, resources=tuple(resources))
    result = RunResult(destination=destination, dataset=dataset, started_at=datetime.now(UTC),
                       secrets=[settings.api_secret])
    with sync_lock(get_dlt_pipelines_dir(), PIPELINE_NAME):
        pipeline = make_pipeline(options)
        # Recorded as the command records its runs, so that `make status` sees this one too.
        with recorded(pipeline, options, result):
            report = result.report = sync(pipeline, settings=settings,
                                          **options.sync_arguments())
            built = build_models(pipeline) if models else None
    stats = report.client_stats
    return {
        "destination": destination,
        "dataset": dataset,
        "rounds": report.rounds,
        "loaded_rows": dict(report.loaded_rows),
        "requests": stats.get("requests", 0),
        "retries": stats.get("retries", 0),
        "throttled": stats.get("throttled", 0),
        "elapsed_seconds": round(report.elapsed, 3),
        "warnings": list(report.warnings),
        "models_built": len(built.built) if built else 0,
        "data_tests_passed": sum(1 for test in built.tests if test.passed) if built else 0,
    }
