"""The outcome of every sync the command runs, kept where ``status`` finds it.

At the end of each run of ``python -m pipelines.sync`` (success or failure, inside its lock), a
small record goes into the dlt pipeline state under :data:`STATUS_KEY`: the last sync's result,
the last successful complete sync and the last reconcile. The pipeline state is saved to the
local working directory and, in a state-only load package, to the destination's
``_dlt_pipeline_state`` table; so the record survives the loss of the local pipeline folder
(``status`` restores it from the destination, as dlt restores any pipeline's state).

The record is a top-level key of the state, beside ``sources``: it says how syncs went and is
no part of what a sync reads next (the windows and checkpoints in ``sources``), which a failed
sync leaves exactly as it was.

When the pipeline still has packages a failed load left (or never loaded anything, so has no
schema to carry the state), the record is saved locally only: it reaches the destination with
the next sync's first load, after ``finish_pending`` has loaded those packages safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dlt

from pipelines.exit_codes import EXIT_FAILED, LOADED
from pipelines.micrometrics import RESOURCES, SyncReport
from pipelines.micrometrics.status_keys import REFRESH_FAILED, STATUS_KEY
from pipelines.micrometrics.target import claim_folder
from pipelines.micrometrics.timeutil import format_timestamp

FAILED = EXIT_FAILED  # a sync that failed on its way (not before: 2 settings, 3 locked)


@dataclass
class SyncOutcome:
    """One run of the sync command, as recorded."""

    started_at: datetime
    finished_at: datetime
    exit_code: int
    exit_cause: str
    error: str | None = None
    resources: tuple[str, ...] = RESOURCES
    explicit_range: bool = False
    full_refresh: bool = False
    report: SyncReport | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """Loaded every resource up to now: what makes the destination's data fresh."""
        return (self.exit_code in LOADED and set(self.resources) == set(RESOURCES)
                and not self.explicit_range)

    def as_record(self) -> dict[str, Any]:
        report = self.report
        return {
            "started_at": format_timestamp(self.started_at),
            "finished_at": format_timestamp(self.finished_at),
            "exit_code": self.exit_code,
            "exit_cause": self.exit_cause,
            "error": self.error,
            "resources": list(self.resources),
            "explicit_range": self.explicit_range,
            "full_refresh": self.full_refresh,
            "rows_loaded": dict(report.loaded_rows) if report else None,
            "requests": int(report.client_stats.get("requests", 0)) if report else None,
            "rounds": report.rounds if report else None,
        }


def updated_status(previous: dict[str, Any], outcome: SyncOutcome) -> dict[str, Any]:
    """The status record after ``outcome``: the previous one's last success and last reconcile
    are kept unless this sync replaces them."""
    status = dict(previous)
    record = outcome.as_record()
    status["last_sync"] = record
    if outcome.complete:
        status["last_success"] = record
        status.pop(REFRESH_FAILED, None)
    elif outcome.full_refresh and outcome.exit_code == FAILED:
        # A full refresh drops the tables as its first round loads: what the last success
        # loaded may be gone, so it no longer vouches for the data until a sync completes (the
        # streams' high-water marks, reset with the tables, still do).
        status[REFRESH_FAILED] = record["started_at"]
    reconciled = outcome.report.reconcile if outcome.report else None
    if reconciled is not None:
        status["last_reconcile"] = {
            "at": record["started_at"],
            "requests": reconciled.requests,
            "listed": dict(reconciled.listed),
            "marked": dict(reconciled.marks.marked),
            "unmarked": dict(reconciled.marks.unmarked),
        }
    return status


def record_sync(pipeline: dlt.Pipeline, outcome: SyncOutcome, here_only: bool = False) -> str:
    """Save ``outcome`` in the pipeline state, locally and (when it safely can, and not
    ``here_only``) in the destination. Returns where: ``destination`` or ``local``. Raises what
    dlt raises when the state-only load fails (the record is saved locally by then).
    ``here_only``: a stopped sync's, which must end now; reaching the destination can take
    minutes (BigQuery's client retries an unreachable Google for 10), and cron's KILL, when it
    came meanwhile, left no record at all."""
    try:
        claim_folder(pipeline)
    except Exception:  # noqa: BLE001 - a destination not configured: the record stays local
        pass
    # Before the record goes on top, the destination's state (when this machine may lack its
    # newest): the folder held another dataset's (a run refused before sync() claimed it); a
    # fresh runner (GitHub Actions) refused before sync() has none yet (kept here only, the
    # record went with the runner, and status everywhere showed the success before as the
    # last sync); another worker may have synced since this machine's was written (loaded over
    # the destination's, a stale state would become its newest). Packages left here hold a
    # newer state of their own: the record stays local until they load.
    to_destination = not here_only and not pipeline.has_pending_data
    if to_destination and pipeline.config.restore_from_destination:
        try:
            pipeline.sync_destination()
        except Exception:  # noqa: BLE001 - the destination is not reachable: recorded here only
            to_destination = False
    to_destination = to_destination and bool(pipeline.default_schema_name)
    with pipeline.managed_state(extract_state=to_destination) as state:
        state[STATUS_KEY] = updated_status(state.get(STATUS_KEY) or {}, outcome)  # type: ignore[literal-required]
    if not to_destination:
        return "local"
    pipeline.normalize()
    pipeline.load()
    return "destination"


def status_of(state: dict[str, Any]) -> dict[str, Any]:
    """The status record in a pipeline state (empty when no sync command recorded one)."""
    return dict(state.get(STATUS_KEY) or {})
