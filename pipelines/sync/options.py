"""What the command line asked for, and the pipeline it addresses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dlt

from pipelines.destination import open_pipeline
from pipelines.micrometrics import RESOURCES


@dataclass
class SyncOptions:
    """The sync's command-line options (destination and dataset pick the pipeline; the rest
    are ``sync()``'s arguments)."""

    destination: str = "duckdb"
    dataset: str = "micrometrics"
    resources: tuple[str, ...] = RESOURCES
    start_at: datetime | None = None
    end_at: datetime | None = None
    full_refresh: bool = False
    reconcile: bool = False
    drop_pending: bool = False
    pipelines_dir: str | None = None  # dlt's pipelines folder; None: dlt's own (DLT_DATA_DIR)

    @property
    def explicit_range(self) -> bool:
        """``--start-at``/``--end-at`` given: re-read that range, leave incremental state alone."""
        return self.start_at is not None or self.end_at is not None

    def sync_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``pipelines.micrometrics.sync``."""
        return {"resources": self.resources, "start_at": self.start_at, "end_at": self.end_at,
                "full_refresh": self.full_refresh, "reconcile": self.reconcile,
                "drop_pending": self.drop_pending}


def make_pipeline(options: SyncOptions, set_aside: bool = False) -> dlt.Pipeline:
    """The pipeline; ``set_aside``: an unreadable folder is moved aside (under the sync lock
    only: another command doing so could move a running sync's fresh folder)."""
    return open_pipeline(options.destination, options.dataset, options.pipelines_dir,
                         set_aside=set_aside)
