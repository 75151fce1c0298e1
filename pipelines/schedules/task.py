"""``scheduled_sync()``: what ``make sync`` does, as one call for a scheduler's task.

The very steps of the command line: both call ``pipelines.sync.run.run_sync`` (settings
validated before anything else, the pipeline's sync lock held throughout, the library's
``sync()``, then the SQL models and their data tests, the outcome recorded for ``status``).
Failures are raised as they are (``ConfigurationError``, ``SyncLockedError``, ``DataTestFailed``,
dlt's ``PipelineStepFailed`` around an ``ApiError``...) so the caller can ``classify`` them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pipelines.destination import DEFAULT_DATASET
from pipelines.exit_codes import EXIT_OK
from pipelines.micrometrics import RESOURCES
from pipelines.sync.json_summary import RunResult
from pipelines.sync.options import SyncOptions
from pipelines.sync.run import run_sync


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
        The summary ``make sync ARGS=--json`` prints, as a dict (an Airflow task's return value
        goes to XCom): exit_code, exit_cause, destination, dataset, tables (rows loaded and in
        the destination), requests, retries, rounds, deep_pass, models (built, tests passed)...

    Raises:
        ConfigurationError: Bad or missing settings, before any request.
        SyncLockedError: Another sync of the pipeline is running.
        DataTestFailed: Loaded, but a data test failed.
        Exception: What the sync or dlt raised (see ``classify``).
    """
    options = SyncOptions(destination=destination, dataset=dataset, resources=tuple(resources))
    result = RunResult(destination=destination, dataset=dataset, started_at=datetime.now(UTC))
    run_sync(options, result, models=models)
    return result.as_dict(EXIT_OK, datetime.now(UTC))
