"""Finish what a killed sync left on disk before the next sync extracts anything.

A sync killed (SIGKILL, OOM, power) part-way leaves load packages in the pipeline's working
directory. dlt's ``pipeline.run`` would load them and return *without extracting the data it
was given*: the sync would report success having fetched nothing, and its flags
(``--full-refresh``, ``--resources``, ``--start-at``) would be ignored. So the sync calls
:func:`finish_pending` first; the rounds that follow then do exactly what their flags ask.

What is left, by the phase the kill landed in:

- **extract**: an uncommitted package in an extract folder of its own. dlt never commits or
  reads it again, and the state of that extract was never saved: its windows are read again.
  The folder is removed.
- **after extract, normalize**: a committed, extracted package. Its state (the windows it
  finished) is already the local state, so it must be loaded, whatever the next sync selects:
  it is normalized and loaded. Killed between the package's commit and the save of the local
  state, the package carries a newer state than the local one: once it is loaded, the sync
  finds the destination's state newer and restores it (``sync_destination``, before it applies
  any survey marks). A normalize
  cut before its commit left a half-written copy in ``load/new``, which dlt's normalize
  replaces.
- **between normalize's commit and its cleanup**: the package both normalized and still
  extracted. Normalizing it again would fail for ever (its normalized folder exists); the
  extracted copy is removed and the normalized one loaded.
- **load**: a normalized package with some jobs done. dlt resumes it: the jobs it recorded as
  done are not run again, the others run, then the merges (each one transaction). A job the
  destination committed in the instant before dlt recorded it would run twice, and dlt's merge
  copies a table's root rows by row key, so both copies would land: every table with such a
  job starts over in the staging dataset (emptied, all its files loaded again).

One exception: packages older than a load another run made since (another worker of the same
schedule, on its own disk, took over after this one was killed) are dropped with this
machine's local state. Loaded now, their older versions of records would replace newer ones;
and that run read their windows again, from the destination's state, which is restored.
"""

from __future__ import annotations

import logging
import os
import shutil

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.pipeline import LoadInfo
from dlt.common.storages.load_package import ParsedLoadJobFileName
from dlt.common.versioned_state import decompress_state
from dlt.destinations.job_client_impl import SqlJobClientWithStagingDataset

from .rounds import reread_slots
from .source_state import resource_states
from .warehouse import sql_literal

log = logging.getLogger("micrometrics.sync")

EXTRACTED, NEW, NORMALIZED, LOADED = "extracted", "new", "normalized", "loaded"


def _folders(path: str) -> list[str]:
    if not os.path.isdir(path):
        return []
    return sorted(name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name)))


def abandoned_extracts(pipeline: dlt.Pipeline) -> list[str]:
    """Extract folders of extracts that never committed (each extract works in its own)."""
    root = os.path.join(pipeline.working_dir, "normalize")
    return [os.path.join(root, name) for name in _folders(root) if name != EXTRACTED]


def package_states(pipeline: dlt.Pipeline) -> dict[str, list[str]]:
    """Load ids on disk by where they are: ``extracting`` (an extract in flight or killed),
    ``extracted``, ``normalizing`` (normalize in flight or killed before its commit),
    ``normalized`` (not loaded yet), ``loading`` (some jobs started or done), ``loaded``."""
    return {"extracting": [load_id for folder in abandoned_extracts(pipeline)
                           for load_id in _folders(folder)],
            **committed_package_states(pipeline.working_dir)}


def committed_package_states(working_dir: str) -> dict[str, list[str]]:
    """``package_states`` but ``extracting``, read from a pipeline's folder alone (status reads
    it without opening the pipeline)."""
    load_root = os.path.join(working_dir, "load")
    states: dict[str, list[str]] = {
        "extracted": _folders(os.path.join(working_dir, "normalize", EXTRACTED)),
        "normalizing": _folders(os.path.join(load_root, NEW)),
        "normalized": [],
        "loading": [],
        "loaded": _folders(os.path.join(load_root, LOADED)),
    }
    for load_id in _folders(os.path.join(load_root, NORMALIZED)):
        package = os.path.join(load_root, NORMALIZED, load_id)
        touched = any(os.listdir(os.path.join(package, folder))
                      for folder in ("started_jobs", "completed_jobs", "failed_jobs")
                      if os.path.isdir(os.path.join(package, folder)))
        states["loading" if touched else "normalized"].append(load_id)
    return states


def finish_pending(pipeline: dlt.Pipeline, tables_gone: list[str] | tuple = ()) -> list[LoadInfo]:
    """Normalize and load every package a killed sync left; returns the load infos (empty
    when there was nothing to finish). Raises what dlt raises when a package cannot load.
    ``tables_gone``: tables of the target dropped by hand since (``lost_tables``)."""
    if stale := overtaken(pipeline):
        # Named: an explicit re-read (--start-at) or --full-refresh among them must be repeated.
        return _drop_with_local_state(pipeline, f"packages a killed sync left here "
                                      f"({', '.join(stale)}) are older than a load made since "
                                      f"from another machine")
    if tables_gone:
        # Loaded, they would create the tables again with their own rows only, their state
        # saying the history was read; or, started before the drop, fail on the missing tables
        # every sync (dlt creates a package's tables once). Their windows are read again, from
        # the destination's state (or from the start, the dataset gone with it).
        left = pipeline.list_extracted_load_packages() + pipeline.list_normalized_load_packages()
        return _drop_with_local_state(pipeline, f"table(s) {', '.join(tables_gone)} were "
                                      f"dropped since a killed sync left packages here "
                                      f"({', '.join(left)})")
    for folder in abandoned_extracts(pipeline):
        log.debug("removing the uncommitted extract %s", folder)
        shutil.rmtree(folder, ignore_errors=True)
    states = package_states(pipeline)
    committed = set(states["normalized"] + states["loading"] + states["loaded"])
    for load_id in states["extracted"]:
        if load_id in committed:
            # normalize committed this package and was killed before deleting its input
            log.debug("package %s was normalized already; dropping its extracted copy", load_id)
            shutil.rmtree(os.path.join(pipeline.working_dir, "normalize", EXTRACTED, load_id))
    for load_id in states["loading"]:
        restart_unrecorded_jobs(pipeline, load_id)
    extracted = pipeline.list_extracted_load_packages()
    left = set(extracted) | set(pipeline.list_normalized_load_packages())
    if not left:
        return []
    log.info("loading %d package(s) left by an interrupted sync first", len(left))
    if extracted:
        pipeline.normalize()
    infos: list[LoadInfo] = []
    if pipeline.list_normalized_load_packages():  # abort-flagged ones too: dlt cleans them up
        infos.append(pipeline.load())
    if pipeline.has_pending_data:
        # pipeline.run would load these and extract nothing: better fail than skip the sync
        raise RuntimeError("packages left by an interrupted sync could not be loaded: "
                           + ", ".join(pipeline.list_normalized_load_packages()))
    return infos


def drop_on_request(pipeline: dlt.Pipeline) -> list[str]:
    """``--drop-pending``: the packages left here (also half-extracted or half-loaded ones),
    dropped with the local state, before anything else; their load ids (empty when none).

    The escape hatch for a package that fails in normalize or load on every sync for a cause
    the quarantine does not know (a value dlt cannot store): once the cause is gone upstream or
    from the connector, dropping it is what lets the syncs go on. Nothing it held is lost but a
    question-history version only it had: its windows are read again, from the destination's
    state (the state of the last completed load), which the sync restores next."""
    for folder in abandoned_extracts(pipeline):  # never committed: nothing in them counts
        shutil.rmtree(folder, ignore_errors=True)
    left = pending_load_ids(pipeline)
    if left:
        again = "".join(f"; run the explicit re-read among them again: `{command}`"
                        for command in unfinished_rereads(pipeline))
        _drop_with_local_state(pipeline, f"--drop-pending: package(s) {', '.join(left)} "
                               f"not loaded; their windows are read again{again}")
    return left


def pending_load_ids(pipeline: dlt.Pipeline) -> list[str]:
    """The committed packages left here, not loaded (what ``--drop-pending`` drops)."""
    return pending_load_ids_in(pipeline.working_dir)


def pending_load_ids_in(working_dir: str) -> list[str]:
    """``pending_load_ids`` of a pipeline's folder. One package can sit in two stages at once
    (a kill between normalize's commit and its clean-up): counted once."""
    states = committed_package_states(working_dir)
    return sorted({load_id for stage in ("extracted", "normalizing", "normalized", "loading")
                   for load_id in states[stage]})


def carried_states(pipeline: dlt.Pipeline) -> list[dict]:
    """The pipeline states the packages left here carry (each package's, as its extract
    committed it); a package whose own state cannot be read gives none."""
    extracted = pipeline._get_normalize_storage().extracted_packages  # noqa: SLF001 - no API
    found = []
    for load_id in pending_load_ids(pipeline):
        try:
            package = (extracted.get_load_package_state(load_id)
                       if load_id in pipeline.list_extracted_load_packages()
                       else pipeline.get_load_package_state(load_id))
            doc = package.get("pipeline_state")
            if doc:
                found.append(decompress_state(doc["state"]))
        except Exception:  # noqa: BLE001 - a damaged package: its state is not read
            continue
    return found


def unfinished_rereads(pipeline: dlt.Pipeline) -> list[str]:
    """The options of each explicit re-read not finished in the local state or the packages
    left here: what dropping them loses, as only the same command reads it again. (A re-read's
    slot lives in the local state, or only in a package killed before the state's local save,
    until a round of it loads.)"""
    states = [pipeline.state, *carried_states(pipeline)]
    return [reread_command(reread) for reread in sorted(
        {str(slot["range"]) for state in states for slot in reread_slots(resource_states(state))
         if not slot.get("done")})]


def reread_command(reread: str) -> str:
    """The options of the re-read named ``start|end`` (``rounds.reread_range``)."""
    start, _, end = reread.partition("|")
    return f"--start-at {start}" + ("" if end == "now" else f" --end-at {end}")


def _drop_with_local_state(pipeline: dlt.Pipeline, why: str) -> list[LoadInfo]:
    """Drops the packages left here with the local state, which the destination's replaces
    (the sync restores it next), saying ``why``; nothing was loaded."""
    log.warning("warning: %s: dropped with the local state, which the destination's replaces",
                why)
    pipeline.drop()
    return []


def overtaken(pipeline: dlt.Pipeline) -> list[str]:
    """The packages left here, when the destination's newest completed load of a state was
    made after the newest of them (load ids are the times packages were made, on each
    machine's clock: the workers' clocks must agree, as dlt's own restore assumes); else []."""
    left = pipeline.list_extracted_load_packages() + pipeline.list_normalized_load_packages()
    if not left or not pipeline.config.restore_from_destination:
        return []
    try:
        with pipeline.destination_client() as client:
            stored = client.get_stored_state(pipeline.pipeline_name)  # dlt's naming and quoting
    except DestinationUndefinedEntity:  # no dataset or no state there yet
        return []
    newest = getattr(stored, "_dlt_load_id", None) if stored is not None else None
    if newest is None or float(newest) <= max(float(load_id) for load_id in left):
        return []
    return sorted(left)


def restart_unrecorded_jobs(pipeline: dlt.Pipeline, load_id: str) -> list[str]:
    """Make the resumed load of ``load_id`` idempotent; returns the tables started over.

    A job left in ``started_jobs`` without dlt's record of its outcome may or may not have been
    committed by the destination. For a table loaded through the staging dataset (every merged
    table), nothing of this package has reached the final table yet (its merge runs once all of
    its chain is loaded), so the staging table is emptied and all of its files queued again.
    A table loaded straight into the dataset (dlt's ``_dlt_pipeline_state``, the only one:
    every other table is merged) loses the rows this package wrote there, by their load id,
    instead: run again, the state's row broke PostgreSQL's unique key on every later sync (a
    full pipelines disk hits this every time: dlt cannot record the job the destination
    committed).
    """
    packages = pipeline._get_load_storage().normalized_packages
    unrecorded = set()
    for path in packages.list_started_jobs(load_id):
        job = ParsedLoadJobFileName.parse(path)
        if job.file_format != "sql" and packages.load_pending_transition(
                load_id, os.path.basename(path)) is None:
            unrecorded.add(job.table_name)
    if not unrecorded:
        return []
    with pipeline.destination_client() as client:
        if not isinstance(client, SqlJobClientWithStagingDataset):
            return []
        staged = sorted(t for t in unrecorded if client.should_load_data_to_staging_dataset(t))
        direct = sorted(unrecorded - set(staged))
        if staged:
            with client.with_staging_dataset():
                client.sql_client.truncate_tables(*staged)
        for table in direct:
            name = client.sql_client.make_qualified_table_name(table)
            try:
                client.sql_client.execute_sql(
                    f"DELETE FROM {name} WHERE _dlt_load_id = {sql_literal(load_id)}")
            except DestinationUndefinedEntity:
                pass  # not created yet: nothing written
    tables = staged + direct
    for table in tables:
        for folder, job in packages.list_job_with_states_for_table(load_id, table):
            if folder in ("started_jobs", "completed_jobs"):
                name = job.file_name()
                packages.clear_pending_transition(load_id, name)
                packages.storage.atomic_rename(
                    packages.get_job_file_path(load_id, folder, name),
                    packages.get_job_file_path(load_id, "new_jobs", name))
    log.debug("package %s: tables %s loaded again", load_id, ", ".join(tables))
    return tables
