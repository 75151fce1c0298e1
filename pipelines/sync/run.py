"""``run_sync()``: one sync as ``make sync`` runs it, shared by the command line
(``pipelines.sync.cli``) and the scheduler's task (``pipelines.schedules.scheduled_sync``).

The pipeline's sync lock held throughout, the pipeline built from the options
(``make_pipeline``), the settings validated (a bad one is recorded too), the library's
``sync()``, the rows per table, then the SQL models and their data tests; the outcome recorded
in the pipeline's state (what ``status`` reads) whether the run succeeds or raises. What it did
goes into a ``RunResult`` (``--json``'s summary); failures are raised as they are.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime

import dlt
from dlt.common.configuration.exceptions import ConfigProviderException
from dlt.common.destination.exceptions import DestinationTerminalException, SchemaUpdateError
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.storages.exceptions import LoadPackageNotFound
from dlt.load.exceptions import LoadClientJobException
from dlt.normalize.exceptions import NormalizeJobFailed

from pipelines.destination import PIPELINE_NAME
from pipelines.error_chain import CONFIG_ERRORS, causes, one_line
from pipelines.exit_codes import (
    EXIT_CONFIG,
    EXIT_DATA_TEST,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
)
from pipelines.micrometrics import RESOURCES, SyncReport, sync
from pipelines.micrometrics.duckdb_session import duckdb_credentials, file_held, held_duckdb
from pipelines.micrometrics.errors import ConfigurationError, MicrometricsError
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.quarantine import REJECTED_TABLE
from pipelines.micrometrics.settings import Settings, load_settings
from pipelines.models import DataTestFailed, ModelsError, build_models, mart_preview, run_data_tests
from pipelines.postgres_sessions import lock_wait_in
from pipelines.status.record import SyncOutcome, record_sync

from .dataset_lock import dataset_lock
from .json_summary import RunResult, exit_cause, redact
from .lock import SyncLockedError, sync_lock
from .options import SyncOptions, make_pipeline
from .summary import destination_counts, render
from .terminate import (
    INTERRUPTED,
    STOPPED,
    drop_waiting_stop,
    raise_if_terminated,
    was_interrupted,
    was_terminated,
)

# A full disk, a quota, a read-only filesystem, a file-size limit (``ulimit -f``, systemd's
# LimitFSIZE): the pipelines folder's, a temporary one's, or the DuckDB file's.
LOCAL_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
DISK_FULL = tuple(os.strerror(code) for code in LOCAL_DISK_ERRORS)  # "No space left on device"
TABLES = ["devices", "surveys", "surveys__questions", "survey_questions", "survey_responses",
          "survey_responses__answers", REJECTED_TABLE]


def _quiet(_text: str) -> None:
    return None


def run_sync(options: SyncOptions, result: RunResult, *, models: bool = True,
             say: Callable[[str], None] = _quiet,
             preview: Callable[[str], None] | None = None) -> None:
    """Sync as ``options`` say, then build the models and run their data tests (unless
    ``models`` is false); ``say`` gets the summaries, ``preview`` (if given) the marts' first
    lines. Fills ``result``.

    Raises:
        ConfigurationError: Bad or missing settings, before any request.
        SyncLockedError: Another sync of the pipeline is running.
        DataTestFailed: Loaded, but a data test failed.
        Exception: What the sync or dlt raised (``failure`` gives its exit status).
    """
    # Beside the pipeline's folder, wherever that is: status looks for it there.
    with sync_lock(options.pipelines_dir or get_dlt_pipelines_dir(), PIPELINE_NAME):
        pipeline = make_pipeline(options, set_aside=True)
        # Outside the record: a run locked out by another machine's writes nothing there.
        with dataset_lock(pipeline), recorded(pipeline, options, result):
            # A bad setting is recorded for status too.
            settings = load_settings(pipeline.pipeline_name)
            result.secrets.append(settings.api_secret)
            sync_and_build(options, settings, pipeline, result, models, say, preview)


def sync_and_build(options: SyncOptions, settings: Settings, pipeline: dlt.Pipeline,
                   result: RunResult, models: bool, say: Callable[[str], None],
                   preview: Callable[[str], None] | None) -> None:
    """The sync, its summary, then the models and their data tests (raises DataTestFailed)."""
    # Filled as the sync goes: a failed sync's summary and record keep what it did.
    report = result.report = SyncReport()
    sync(pipeline, settings=settings, after_step=raise_if_terminated, report=report,
         **options.sync_arguments())
    with held_duckdb(pipeline, bounded=False):  # as for the record (see ``recorded``)
        count_and_build(pipeline, result, models, say, preview, options.resources)


# Data tests a routine change fails until a sync reads the resource named: responses that a
# `--resources survey_responses` sync loads name a kiosk set up since the last sync that read
# the devices. Exit 4 ("do not retry") was wrong there: the next full sync passed.
WAITS_FOR = {"responses_have_known_device": "devices"}


def count_and_build(pipeline: dlt.Pipeline, result: RunResult, models: bool,
                    say: Callable[[str], None], preview: Callable[[str], None] | None,
                    read: tuple[str, ...] = RESOURCES) -> None:
    """Rows per table and the summary, then the models and their data tests; a test that
    waits for a resource this sync did not ``read`` (``WAITS_FOR``) fails as a warning."""
    report = result.report
    result.counts = destination_counts(pipeline, TABLES)
    say(render(report, result.counts, report.rate, report.burst))
    if not models:
        return
    started = time.monotonic()
    built = result.models = build_models(pipeline, run_tests=False)
    if not built.waiting_for:  # else no model was built (a new tenant's first syncs)
        built.tests = run_data_tests(pipeline)
    built.seconds = time.monotonic() - started
    failures = [test for test in built.tests if not test.passed]
    for test in [test for test in failures
                 if test.name in WAITS_FOR and WAITS_FOR[test.name] not in read]:
        failures.remove(test)
        line = (f"warning: data test {test.describe()[:500]}; this sync did not read "
                f"{WAITS_FOR[test.name]} (--resources): the next sync that does loads them, "
                f"and its build says whether the test passes")
        result.report.warnings.append(line)
        say(line)
    if failures:
        raise DataTestFailed(failures)
    say(built.summary())
    if preview is not None and not built.waiting_for:
        preview("\n".join(mart_preview(pipeline)))


@contextmanager
def recorded(pipeline: dlt.Pipeline, options: SyncOptions, result: RunResult) -> Iterator[None]:
    """Record how the sync went (``status`` reads it), whether it succeeds or raises."""
    try:
        yield
    except BaseException as exc:  # a scheduler's timeout (Airflow's is no Exception) too
        drop_waiting_stop()  # raised while this failure is recorded, it would lose the record
        # Failed on a holder of the DuckDB file: not waited for again to record it. Stopped: the
        # record stays here, where it is written at once (the destination may be what hangs).
        save_held(pipeline, options, result, *failure(exc), hold=file_held(exc) is None,
                  here_only=stopped(exc))
        raise
    save_held(pipeline, options, result, EXIT_OK, None)


def stopped(exc: BaseException) -> bool:
    """Whether the run was stopped (SIGTERM, Ctrl-C, a scheduler's timeout), not failed."""
    return was_terminated(exc) or was_interrupted(exc) or timed_out(exc)


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is Airflow's ``execution_timeout`` (by name: Airflow is not ours to
    import)."""
    return type(exc).__name__ == "AirflowTaskTimeout"


def save_held(pipeline: dlt.Pipeline, options: SyncOptions, result: RunResult, code: int,
              message: str | None, hold: bool = True, here_only: bool = False) -> None:
    """``save_outcome`` with an existing DuckDB file held (waiting for a status or notebook
    that has it open) rather than opened by each of dlt's queries, which failed on such a
    holder (the record then stayed local, unsaid); not held, it is recorded all the same if
    it can be. Stopped while it waits (SIGTERM, a scheduler's timeout), the stop is recorded."""
    try:
        with ExitStack() as holding:
            with suppress(Exception):
                credentials = duckdb_credentials(pipeline)
                if hold and credentials is not None and os.path.exists(credentials.database):
                    holding.enter_context(held_duckdb(pipeline, bounded=False))
            save_outcome(pipeline, options, result, code, message, here_only)
    except BaseException as stop:
        if code != EXIT_OK:
            raise  # the failure is raised anyway; a stop on top of it too
        save_outcome(pipeline, options, result, *failure(stop), here_only=True)
        raise


def save_outcome(pipeline: dlt.Pipeline, options: SyncOptions, result: RunResult, code: int,
                 message: str | None, here_only: bool = False) -> None:
    outcome = SyncOutcome(
        started_at=result.started_at or datetime.now(UTC), finished_at=datetime.now(UTC),
        exit_code=code, exit_cause=exit_cause(code),
        error=redact(" ".join(message.split()), result.secrets) if message else None,
        resources=tuple(options.resources), explicit_range=options.explicit_range,
        full_refresh=options.full_refresh, report=result.report)
    try:
        record_sync(pipeline, outcome, here_only)
    except Exception as exc:  # noqa: BLE001 - the sync's own result stands
        print(f"warning: the sync's outcome could not be recorded for status: "
              f"{one_line(first_cause(exc))}", file=sys.stderr)


def first_cause(exc: BaseException) -> BaseException:
    """Our own error inside dlt's wrappers, if there is one; else, for a load job the
    destination refused, the destination's own error, named with the table (dlt's message
    holds a traceback's first 500 characters, not the cause)."""
    chain = list(causes(exc))
    # First: a model's build cancelled by it says "model ... failed", not what to do.
    lock_wait = lock_wait_in(exc)
    if lock_wait is not None:
        return LockWaitFailed(lock_wait)
    ours = next((link for link in chain if isinstance(link, MicrometricsError | ModelsError)),
                None)
    if ours is not None:
        return ours
    if disk := local_disk_failure(chain):  # dlt's wrapper names neither the disk nor what to do
        return LocalDiskFailed(f"this machine's disk: {disk}; {hint('disk')}")
    job = next((link for link in chain if isinstance(link, LoadClientJobException)), None)
    if job is not None and getattr(job, "client_exception", None) is not None:
        table = str(getattr(job, "job_id", "")).split(".", 1)[0] or "a table"
        # A job the destination refused keeps its package failing every sync; one dlt took
        # for transient may have been too (dlt's Snowflake client calls most errors transient).
        stuck = (f"; {hint('stuck_package')}" if isinstance(job, DestinationTerminalException)
                 else f"; if this repeats on every sync: {hint('stuck_package')}")
        return LoadJobFailed(f"the load of {table} failed: "
                             f"{one_line(job.client_exception, 200)}{stuck}")
    unreadable = next((link for link in chain if isinstance(link, LoadPackageNotFound)), None)
    if unreadable is not None:  # a package's own files emptied or cut short (a power loss)
        return LoadJobFailed(f"a load package on this machine could not be read "
                             f"({one_line(unreadable, 200)}); {hint('stuck_package')}")
    schema = next((link for link in chain if isinstance(link, SchemaUpdateError)), None)
    if schema is not None:  # dlt's text: a conflict of pipelines, cut before the cause's end
        where = "staging dataset" if schema.staging_dataset else "dataset"
        change = (f"update the tables {', '.join(schema.table_names)} in the {where}"
                  if schema.table_names else f"create the {where}")
        return LoadJobFailed(f"the destination refused to {change} of schema "
                             f"{schema.schema_name}: {one_line(schema.cause, 200)}; "
                             f"{hint('schema_update')}")
    refused = next((link for link in chain if isinstance(link, NormalizeJobFailed)), None)
    if refused is not None:  # dlt's normalize fails the same way on every attempt
        # No table named: a value refused as dlt writes its files out names the last file read.
        return LoadJobFailed(f"dlt's normalize failed (package {refused.load_id}): "
                             f"{one_line(Exception(refused.failed_message), 200)}; "
                             f"{hint('stuck_package')}")
    return exc


def local_disk_failure(chain: list[BaseException]) -> str | None:
    """This machine's disk full, read-only or over a quota or file-size limit, in one line,
    where ``chain`` says so: an ``OSError``, or only its text where that is all that travels
    (dlt's normalize passes a worker's error on as text; DuckDB's IO errors are its own). Not a
    server's disk: a PostgreSQL ``DiskFull`` is the server's to free, said as it is."""
    for link in chain:
        if isinstance(link, OSError) and link.errno in LOCAL_DISK_ERRORS:
            return one_line(link, 200)
    for link in reversed(chain):  # the innermost says it most plainly
        said = [link.failed_message] if isinstance(link, NormalizeJobFailed) else []
        said += [getattr(link, name, None) for name in ("client_exception", "cause")]
        said.append(link)
        for what in said:
            local = isinstance(what, str) or type(what).__module__.startswith(("duckdb",
                                                                               "_duckdb"))
            if what is not None and local and any(text in str(what) for text in DISK_FULL):
                return one_line(what if isinstance(what, BaseException) else Exception(what),
                                200)
    return None


class LoadJobFailed(Exception):
    """A load job the destination refused, or a normalize job dlt failed, its cause in one
    line (``first_cause``)."""


class LocalDiskFailed(Exception):
    """This machine's disk full or read-only, said in one line (``first_cause``)."""


class LockWaitFailed(Exception):
    """A PostgreSQL statement cancelled by ``lock_timeout``, said in one line (``first_cause``)."""


def failure(exc: BaseException) -> tuple[int, str]:
    """The exit status of a failed run, and its one-line message (after ``error: ``)."""
    if isinstance(exc, SyncLockedError):
        return EXIT_LOCKED, str(exc)
    if was_terminated(exc):
        return EXIT_FAILED, f"sync failed: {STOPPED}"
    if timed_out(exc):
        return EXIT_FAILED, f"sync failed: timed out (the scheduler's limit): {one_line(exc)}"
    if was_interrupted(exc):
        return EXIT_FAILED, f"sync failed: {INTERRUPTED}"
    if isinstance(exc, DataTestFailed):  # only the models raise it: the load itself succeeded
        return EXIT_DATA_TEST, f"sync failed: {one_line(exc)}; {hint('data_test')}"
    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIG, str(exc)
    misconfigured = next((link for link in causes(exc, implicit=False)
                          if isinstance(link, CONFIG_ERRORS)), None)
    if isinstance(misconfigured, ConfigProviderException):  # names the file, line and column
        return EXIT_CONFIG, one_line(misconfigured)
    if misconfigured is not None:
        return EXIT_CONFIG, f"destination configuration: {one_line(misconfigured)}"
    return EXIT_FAILED, f"sync failed: {one_line(first_cause(exc))}"
