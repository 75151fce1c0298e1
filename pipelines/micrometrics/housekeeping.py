"""Keep the pipeline folder from growing for ever on a machine that syncs unattended.

dlt keeps every load package it completed (``load/loaded/<load id>``: the data files, a copy of
the schema, the state): two per hourly sync (the data and the outcome record), tens of
thousands a year, gigabytes, and copies of responses a purge removed from the tables. Nothing of
ours reads them once loaded (a killed sync's leftovers are the packages *not* loaded). After a
sync, the completed ones older than ``KEEP_LOADED`` are deleted; the recent ones stay for
inspection (``dlt pipeline micrometrics load-package <id>``).
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

import dlt

log = logging.getLogger("micrometrics.sync")

KEEP_LOADED = timedelta(days=7)


def prune_loaded_packages(pipeline: dlt.Pipeline, keep: timedelta = KEEP_LOADED) -> list[str]:
    """Delete the completed load packages older than ``keep``; returns their load ids. A load
    id is the time its package was made (dlt's, on this machine's clock)."""
    loaded = Path(pipeline.working_dir) / "load" / "loaded"
    if not loaded.is_dir():
        return []
    oldest = time.time() - keep.total_seconds()
    pruned = []
    for package in sorted(loaded.iterdir()):
        try:
            made = float(package.name)
        except ValueError:
            continue  # not a package of dlt's
        if package.is_dir() and made < oldest:
            shutil.rmtree(package, ignore_errors=True)
            pruned.append(package.name)
    if pruned:
        log.debug("deleted %d load packages loaded more than %s ago", len(pruned), keep)
    return pruned
