"""Which destination and dataset this machine's pipeline folder last synced into.

dlt keeps one working folder per pipeline name, whatever the destination and dataset, and the
sync always runs under one name (its state in the destination is found by it). So after a sync
of one dataset, a sync of another (``--dataset scratch``, another ``--destination``) found the
first one's local state and packages: a package a killed sync left was loaded into the other
dataset, whose state then carried the first one's windows as done (its history never read);
and dlt's restore keeps a local state with a higher version than the destination's, so, back
on the first dataset, the sync went on from the other's high-water marks.

The folder is marked with the target of its last sync (beside the sync's lock file, outside
the working folder, which dlt resets when it drops the local state). A sync or a recorded
outcome for another target first drops the local state and the packages left (with a warning
naming them): the target's own state is restored from its destination, and the windows those
packages held are read again for the target they were extracted for (its state never recorded
them). One machine still syncs one target at a time: the lock is the same for all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import dlt

from .warehouse import destination_kind

log = logging.getLogger("micrometrics.sync")


# What names the database beyond dlt's data_location, which is only the account host on
# Snowflake and the region on BigQuery (two databases, two projects would look alike).
LOCATION_FIELDS = ("database", "project_id")


def target_of(pipeline: dlt.Pipeline, *, with_fields: bool = True) -> dict[str, str]:
    """The pipeline's destination kind, where it keeps its data (a digest of dlt's
    ``data_location`` (host and port, or the DuckDB file) with the credentials' database or
    project) and its dataset. ``with_fields=False``: the digest without database or project,
    as markers written before ``LOCATION_FIELDS`` hold it."""
    config: Any = pipeline.destination_client().config
    try:
        location = str(config.data_location())
    except Exception:  # noqa: BLE001 - dlt raises when a configuration names no location
        location = ""
    if location and destination_kind(pipeline) == "duckdb":
        location = os.path.abspath(location)  # relative to where the sync runs
    credentials = getattr(config, "credentials", None)
    for field in LOCATION_FIELDS if with_fields else ():
        location += f"|{getattr(credentials, field, None) or ''}"
    return {
        "destination": str(config.destination_type),
        "location": hashlib.sha256(location.encode()).hexdigest()[:16],
        "dataset": str(pipeline.dataset_name),
    }


def same_target(marked: dict[str, Any], pipeline: dlt.Pipeline) -> bool:
    """Whether a folder's marker names ``pipeline``'s target: in today's form or, for a DuckDB
    file, in the form a version before ``LOCATION_FIELDS`` wrote (an upgrade took its own
    folder for another location's, dropped its state and blamed the configuration). Elsewhere
    an old marker names only a server, not which database: taken as another target (safe)."""
    return marked == target_of(pipeline) or (
        destination_kind(pipeline) == "duckdb" and marked == target_of(pipeline, with_fields=False))


def older_marker(marked: dict[str, Any], pipeline: dlt.Pipeline) -> bool:
    """Whether ``marked`` is an earlier version's marker of this server (see ``same_target``)."""
    return marked == target_of(pipeline, with_fields=False)


def marker_path(pipelines_dir: str | Path, pipeline_name: str) -> Path:
    """Beside the sync's lock file, outside the working folder dlt resets when it drops."""
    return Path(pipelines_dir) / f"{pipeline_name}.target.json"


def folder_target(pipelines_dir: str | Path, pipeline_name: str) -> dict[str, str] | None:
    """The target a folder's last sync was into (None: unmarked or unreadable)."""
    try:
        marked = json.loads(marker_path(pipelines_dir, pipeline_name).read_text())
    except (OSError, ValueError):
        return None
    return marked if isinstance(marked, dict) else None


def earlier_duckdb_file(pipeline: dlt.Pipeline) -> tuple[str, str] | None:
    from pipelines.destination import earlier_duckdb_file  # it imports this package

    return earlier_duckdb_file(pipeline) if destination_kind(pipeline) == "duckdb" else None


def claim_folder(pipeline: dlt.Pipeline) -> bool:
    """Mark the pipeline's folder as this target's; if it held another target's state, drop
    that state and its packages first. True when something was dropped. An unmarked folder
    (the first sync, or one made before the mark existed) is taken as this target's."""
    path = marker_path(pipeline.pipelines_dir, pipeline.pipeline_name)
    target = target_of(pipeline)
    previous = folder_target(pipeline.pipelines_dir, pipeline.pipeline_name)
    dropped = False
    if previous is not None and not same_target(previous, pipeline):
        left = pipeline.list_extracted_load_packages() + pipeline.list_normalized_load_packages()
        log.warning(
            "warning: this machine's pipeline folder last synced %s dataset %r%s; its local "
            "state %s dropped, and this one's is restored from %s",
            previous.get("destination", "?"), previous.get("dataset", "?"),
            " (marked by an earlier version, which named no database: perhaps another)"
            if older_marker(previous, pipeline) else
            " (another location)" if previous.get("dataset") == target["dataset"] else "",
            f"and the packages a killed sync left for it ({', '.join(sorted(left))}) are"
            if left else "is", target["destination"])
        if files := earlier_duckdb_file(pipeline):
            log.warning(
                "warning: a relative DuckDB path is read from the working directory: this sync "
                "loads into %s, not %s, where this folder's first sync ran (and versions before "
                "2026-12-01 went on loading, wherever they ran); to go on with that file, run "
                "from its directory or set DESTINATION__DUCKDB__CREDENTIALS to its path",
                files[1], files[0])
        pipeline.drop()
        dropped = True
    if previous != target:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(target))
    return dropped
