"""What ``status`` reads: the pipeline state (local, and the destination's copy) and the
destination's tables. Nothing here writes anything.

The local state is read from ``<pipelines dir>/micrometrics/state.json`` as a file: opening the
pipeline itself would save its state (and could race a sync in flight). The destination's state
is restored by dlt (``sync_destination``, from ``_dlt_pipeline_state``) into a throwaway
pipeline in a temporary folder, whose SQL client then counts the rows. Of the two states the
newer (higher ``_state_version``) is reported, the local one on a tie; so status works with the
local pipeline folder gone, and also when the destination cannot be reached.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.versioned_state import json_decode_state
from dlt.pipeline.state_sync import migrate_state_to_current

from pipelines.destination import PIPELINE_NAME, missing_duckdb_file, open_pipeline
from pipelines.error_chain import CONFIG_ERRORS, causes, one_line
from pipelines.micrometrics.duckdb_session import HOLDER_PID, file_held, held_by_another
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.pending import pending_load_ids_in
from pipelines.micrometrics.quarantine import REJECTED_TABLE
from pipelines.micrometrics.target import folder_target, older_marker, same_target
from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.postgres_sessions import lock_wait_in
from pipelines.sync.lock import Holder, lock_holder

from .record import STATUS_KEY


@dataclass
class Snapshot:
    """The state chosen for the report and what the destination holds.

    Attributes:
        state: The newer of the local and the destination's pipeline state (None: neither).
        source: Where ``state`` came from: ``local``, ``destination`` or ``none``.
        versions: ``_state_version`` of each copy found (``local``, ``destination``).
        counts: Rows per table in the destination (None per table it lacks; None: unread).
        rejected: ``(stream, reason, rows)`` in the quarantine table (None: unread).
        problems: Why a part could not be read (the destination unreachable, ...).
        unreachable: The destination could not be read (not merely empty or absent).
        running: The sync running on this machine (holding its sync lock), if one is.
    """

    state: dict[str, Any] | None = None
    source: str = "none"
    versions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int | None] | None = None
    rejected: list[tuple[str, str, int]] | None = None
    problems: list[str] = field(default_factory=list)
    unreachable: bool = False
    running: Holder | None = None


def local_state(pipelines_dir: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The local pipeline state, read from its file without opening the pipeline; and why it
    could not be read, if it exists but could not."""
    path = Path(pipelines_dir or get_dlt_pipelines_dir()) / PIPELINE_NAME / "state.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"local state {path} unreadable: {exc}"
    try:
        return dict(migrate_state_to_current(PIPELINE_NAME, json_decode_state(text))), None
    except Exception as exc:  # noqa: BLE001 - half-written by a sync at this instant, or damaged
        return None, f"local state {path} unreadable: {one_line(exc)}"


def synced_to(state: dict[str, Any], destination: str, dataset: str) -> bool:
    """Whether a local state is that of ``destination``'s ``dataset`` (one pipeline folder
    serves every dataset and destination synced from this machine, the last one's state)."""
    return (state.get("dataset_name") == dataset
            and state.get("destination_name") in (None, destination))


def local_is_elsewhere(destination: str, dataset: str, pipelines_dir: str | None) -> str | None:
    """Why this machine's folder is marked as another target's (``target``), when it is: the
    same destination kind and dataset name, but another DuckDB file or database (or a marker
    of a version that named no database); None when it is not."""
    marked = folder_target(pipelines_dir or get_dlt_pipelines_dir(), PIPELINE_NAME)
    if marked is None:
        return None
    with tempfile.TemporaryDirectory(prefix="micrometrics-status-",
                                     ignore_cleanup_errors=True) as scratch:
        pipeline = open_pipeline(destination, dataset, scratch)
        try:
            if same_target(marked, pipeline):
                return None
            return ("marked by an earlier version, which named no database: perhaps another; "
                    "the next sync takes it for another and restores its own"
                    if older_marker(marked, pipeline) else "another location")
        except Exception:  # noqa: BLE001 - its configuration is reported by the destination read
            return None
        finally:
            pipeline.deactivate()


def last_target(local: dict[str, Any], pipelines_dir: str | None) -> str:
    """The destination kind the folder last synced into: its marker's (dlt's state leaves
    ``destination_name`` null), else the state's, else unknown."""
    marked = folder_target(pipelines_dir or get_dlt_pipelines_dir(), PIPELINE_NAME) or {}
    return str(marked.get("destination") or local.get("destination_name") or "unknown")


def was_synced(state: dict[str, Any]) -> bool:
    """Whether a state holds anything a sync wrote (a new pipeline's default state does not)."""
    return bool(state.get("sources")) or STATUS_KEY in state


def read_destination(destination: str, dataset: str, tables: list[str],
                     snapshot: Snapshot) -> dict[str, Any] | None:
    """The destination's pipeline state (None: none there); its row counts and rejected
    records into ``snapshot``. Raises what dlt raises when the destination cannot be read."""
    from pipelines.sync.summary import destination_counts

    with tempfile.TemporaryDirectory(prefix="micrometrics-status-",
                                     ignore_cleanup_errors=True) as scratch:
        pipeline = open_pipeline(destination, dataset, scratch, read_only=True)
        try:
            pipeline.sync_destination()
            state = dict(pipeline.state)
            snapshot.counts = destination_counts(pipeline, tables)
            if snapshot.counts.get(REJECTED_TABLE) is None:
                snapshot.rejected = []
            else:
                snapshot.rejected = rejected_rows(pipeline)
        finally:
            pipeline.deactivate()
    return state if was_synced(state) else None


def rejected_rows(pipeline: dlt.Pipeline) -> list[tuple[str, str, int]]:
    """Quarantined records by stream and reason."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(REJECTED_TABLE)
        rows = client.execute_sql(
            f"SELECT stream, reason, COUNT(*) FROM {table} GROUP BY stream, reason") or []
    return sorted((str(stream), str(reason), int(count)) for stream, reason, count in rows)


def take_snapshot(destination: str, dataset: str, tables: list[str],
                  pipelines_dir: str | None = None) -> Snapshot:
    """Local and destination state, the newer chosen; the destination's tables."""
    snapshot = Snapshot(running=sync_running(pipelines_dir))
    local, problem = local_state(pipelines_dir)
    if problem:
        snapshot.problems.append(problem)
    if unusable := folder_unusable(pipelines_dir):
        snapshot.problems.append(unusable)
    remote = None
    missing = missing_duckdb_file(destination)
    if missing:
        snapshot.problems.append(f"no DuckDB file at {missing} (nothing loaded there yet)")
    else:
        try:
            remote = read_destination(destination, dataset, tables, snapshot)
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - report what the local state says anyway
            cause = root_cause(exc)
            if isinstance(cause, ConfigurationError):  # ours, raised in dlt's resolution
                raise cause from exc
            if isinstance(cause, CONFIG_ERRORS):
                raise ConfigurationError(f"destination {destination}: {one_line(cause)}") from exc
            snapshot.unreachable = True
            snapshot.problems.append(unreadable(destination, exc, snapshot.running))
    if local is not None and not was_synced(local):
        local = None  # a pipeline folder nothing was synced with
    if local is not None and missing:
        local = None  # its file is gone: nothing it says was loaded is there
    elif local is not None and (
            not synced_to(local, destination, dataset)
            or (elsewhere := local_is_elsewhere(destination, dataset, pipelines_dir))):
        why = f", {elsewhere}" if synced_to(local, destination, dataset) else ""
        snapshot.problems.append(
            f"the local pipeline folder holds another target's state (last synced: "
            f"{last_target(local, pipelines_dir)} dataset {local.get('dataset_name')!r}{why}): "
            f"not used")
        local = None
    if local is not None:
        snapshot.versions["local"] = int(local.get("_state_version", 0))
    if remote is not None:
        snapshot.versions["destination"] = int(remote.get("_state_version", 0))
    left = pending_packages(pipelines_dir) if local is not None else 0
    # Another machine synced since this one's sync failed with packages left: its next sync
    # drops them (``pending.overtaken``), and its record is older news than the destination's.
    overtaken = bool(left) and newer_record(remote, local)
    if left:
        running = snapshot.running
        snapshot.problems.append(
            (f"a sync is running here ({running.describe()}): {left} load package(s) on their "
             f"way"
             if running else
             f"{left} load package(s) extracted on this machine are older than a sync made "
             f"since from another machine: the next sync here drops them" if overtaken else
             f"{left} load package(s) extracted on this machine are not loaded yet (a sync "
             f"failed at load): the next sync loads them first") + (
                "; until then the streams are shown as the destination has them"
                if remote is not None else
                "; the destination is not readable, so no stream is shown (the local windows "
                "are ahead of what was loaded)" if snapshot.unreachable else
                "; the destination holds no state yet (its first load did not finish), so no "
                "stream is shown (the local windows are ahead of what was loaded)"))
    if remote is not None and (local is None or left or snapshot.versions["destination"]
                               > snapshot.versions["local"]):
        # With packages left, the local windows are ahead of what was loaded: the
        # destination's say what it holds (the local record still says how the syncs went).
        snapshot.state, snapshot.source = remote, "destination"
        if left and local is not None and STATUS_KEY in local and not overtaken:
            snapshot.state = {**remote, STATUS_KEY: local[STATUS_KEY]}
    elif local is not None:
        # Packages left and no destination to read: the local windows came with them, ahead
        # of what was loaded; the record (its last success) still says how fresh the data is.
        snapshot.state = ({key: value for key, value in local.items() if key != "sources"}
                          if left else local)
        snapshot.source = "local"
    return snapshot


def newer_record(remote: dict[str, Any] | None, local: dict[str, Any] | None) -> bool:
    """Whether the destination's state records a sync started after the last one ``local``
    records (neither recording one: not known, so no)."""
    def started(state: dict[str, Any] | None) -> datetime | None:
        last = ((state or {}).get(STATUS_KEY) or {}).get("last_sync") or {}
        try:
            return parse_timestamp(last["started_at"])
        except (KeyError, TypeError, ValueError):
            return None

    theirs, ours = started(remote), started(local)
    return theirs is not None and ours is not None and theirs > ours


def unreadable(destination: str, exc: BaseException, running: Holder | None) -> str:
    """Why the destination could not be read, in words for this case: DuckDB's file held by a
    sync running here (dlt's own message talks of credentials and the internet connection)."""
    held = file_held(exc)
    holder = HOLDER_PID.search(str(held)) if held is not None else None
    # Not when DuckDB names another process: a notebook's, a sync waiting for it behind.
    if held is not None and running and (holder is None or holder.group(1) == running.pid):
        return (f"a sync is running here ({running.describe()}) and holds the DuckDB file: the "
                f"streams are shown as this machine's state has them")
    if held is not None:
        return f"destination {destination} not readable: {held_by_another(held)}"
    if lock_wait := lock_wait_in(exc):  # a sync's ALTER TABLE, a --full-refresh's DROP
        return f"destination {destination} not readable: {lock_wait}"
    return f"destination {destination} not readable: {one_line(root_cause(exc))}"


def sync_running(pipelines_dir: str | None) -> Holder | None:
    """The sync holding this machine's sync lock, or None."""
    return lock_holder(pipelines_dir or get_dlt_pipelines_dir(), PIPELINE_NAME)


# Less than this free where the pipelines folder is, and a sync cannot write its packages.
LOW_DISK_BYTES = 1024 * 1024


def folder_unusable(pipelines_dir: str | None) -> str | None:
    """Why syncs on this machine fail before they can record it (the pipelines folder's disk
    read-only or full: status showed the last success as the last sync), else None."""
    root = Path(pipelines_dir or get_dlt_pipelines_dir())
    probe = next((path for path in (root, *root.parents) if path.exists()), None)
    if probe is None:
        return None
    if not os.access(probe, os.W_OK):
        return (f"this machine's pipelines folder {root} is not writable (read-only?): syncs "
                f"here fail before they start, and cannot record it")
    disk = os.statvfs(probe)
    free = disk.f_bavail * disk.f_frsize
    if free < LOW_DISK_BYTES or disk.f_favail == 0 and disk.f_files:
        return (f"the disk of this machine's pipelines folder {root} is full ({free // 1024} "
                f"KB free{', no inode' if disk.f_files and disk.f_favail == 0 else ''}): syncs "
                f"here fail, and may not record it")
    return None


def pending_packages(pipelines_dir: str | None) -> int:
    """Load packages in this machine's pipeline folder that were extracted but not loaded
    (what the sync's dry run and ``--drop-pending`` count), read without opening the pipeline."""
    return len(pending_load_ids_in(str(Path(pipelines_dir or get_dlt_pipelines_dir())
                                       / PIPELINE_NAME)))


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception dlt wrapped (following ``__cause__`` only)."""
    return list(causes(exc, implicit=False))[-1]
