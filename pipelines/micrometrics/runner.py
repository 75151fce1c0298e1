"""``sync(pipeline)``: the checkpointed sync, as one library call.

A sync is a sequence of rounds of extract+load until every selected stream has reached the end
bound (see ``rounds``): packages a killed sync left are loaded first, deletion marks are applied
before and after, then an optional reconcile. The command line (``python -m pipelines.sync``),
``make sync``, an Airflow task or a plain script all call this and get the same result.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo

from pipelines.error_chain import causes

from .client import MicrometricsClient
from .deletions import TrackedSurveys, forget_handled_returns
from .dlt_settings import sync_defaults
from .drift import (
    local_schema,
    new_spread_warnings,
    new_variant_warnings,
    spread_fields,
    variant_columns,
)
from .duckdb_session import (
    HeldDatabase,
    duckdb_credentials,
    held_duckdb,
    refuse_a_file_named_like_the_dataset,
)
from .errors import ApiError, ConfigurationError
from .housekeeping import prune_loaded_packages, prune_schema_versions
from .lost_tables import (
    forget_lost_tables,
    gone_before_pending,
    note_loaded,
    note_restored,
)
from .marks import MarkCounts, apply_survey_marks, surveys_state
from .orphans import record_erased_devices
from .pending import drop_on_request, finish_pending
from .questions import RESOURCE as QUESTION_HISTORY
from .questions import emptied, retire_emptied, with_question_history
from .quiet import Skipped, skipped_surveys
from .reconcile import ReconcileReport
from .reconcile import reconcile as reconcile_deletions
from .refresh_start import load_refresh_start
from .refresh_views import views_kept, views_not_restored
from .relist import catch_up_resources
from .rolled_back import destination_rolled_back, forget_rolled_back, note_loaded_state
from .rounds import (
    RESUME_WITHIN,
    ExtractTally,
    RoundBudget,
    SurveyIndex,
    SyncBounds,
    plan_windows,
    reread_range,
    round_pages_for,
    round_seconds_for,
)
from .settings import Settings, env_name, load_settings, refuse_future_start
from .source import micrometrics_source, prefetch_survey_list
from .source_state import loaded_at_once, resource_states
from .status_keys import refresh_done, refresh_under_way
from .target import claim_folder
from .throttle import DEFAULT_BURST, DEFAULT_RATE
from .timeutil import format_timestamp, out_of_range, parse_timestamp
from .warehouse import destination_kind, loaded_times, loaded_versions

RESOURCES = ("devices", "surveys", "survey_responses")
# Destinations that load parquet files fast (DuckDB: several times insert_values). Snowflake and
# BigQuery read parquet natively, typed and compressed: dlt's default JSONL would reach Snowflake
# through a VARIANT-matching COPY and BigQuery as untyped text.
PARQUET_DESTINATIONS = ("duckdb", "motherduck", "filesystem", "snowflake", "bigquery")


@dataclass
class SyncReport:
    """What a sync did, for the summary and for callers."""

    rounds: int = 0
    elapsed: float = 0.0
    loaded_rows: dict[str, int] = field(default_factory=dict)
    client_stats: dict[str, Any] = field(default_factory=dict)
    rate: float = DEFAULT_RATE
    burst: float = DEFAULT_BURST
    rejected: int = 0
    load_infos: list[LoadInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # lines as printed: "warning: ..."
    skipped_surveys: list[Skipped] = field(default_factory=list)  # quiet, not read this sync
    deep_streams: int = 0  # streams that re-read the deep lookback in this sync
    deep_found: int = 0  # records only the deep pass found (late uploads)
    # Surveys back upstream whose responses this sync read again from their start.
    returned_surveys: list[Any] = field(default_factory=list)
    deep_lookback_hours: float = 0.0
    lookback_minutes: float = 0.0
    marks: MarkCounts = field(default_factory=MarkCounts)  # deleted_at set and cleared
    reconcile: ReconcileReport | None = None


def with_sync_defaults(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func(pipeline, ...)`` run with the dlt settings a sync applies (``dlt_settings``)."""
    @functools.wraps(func)
    def wrapper(pipeline: dlt.Pipeline, *args: Any, **kwargs: Any) -> Any:
        with sync_defaults(destination_kind(pipeline), pipeline.pipeline_name):
            return func(pipeline, *args, **kwargs)

    return wrapper


@with_sync_defaults
def sync(
    pipeline: dlt.Pipeline,
    *,
    resources: Sequence[str] | None = None,
    start_at: datetime | str | None = None,
    end_at: datetime | str | None = None,
    full_refresh: bool = False,
    reconcile: bool = False,
    drop_pending: bool = False,
    settings: Settings | None = None,
    client: MicrometricsClient | None = None,
    clock: Callable[[], float] = time.time,
    after_step: Callable[[], None] = lambda: None,
    report: SyncReport | None = None,
) -> SyncReport:
    """Sync the Micrometrics source into ``pipeline`` until every selected stream is up to now.

    Each round is one ``pipeline.run``; its extract commits the windows it finished (and the
    cursor of a window cut part-way) to dlt state, so a crash loses at most the round in flight
    and the next call resumes.

    Args:
        pipeline: Any dlt pipeline (destination and dataset are the caller's).
        resources: A subset of ``devices``, ``surveys``, ``survey_responses`` (default: all);
            ``survey_responses`` loads ``surveys`` too (the list they are read from).
        start_at: With ``end_at``, an explicit range to re-read (merged) without moving the
            incremental state; ISO 8601 with an offset, or an aware datetime.
        end_at: Upper bound of an explicit re-read (default: now).
        full_refresh: Drop the selected resources' tables and state, then reload them.
        reconcile: Afterwards, list every id and mark rows erased upstream (``deleted_at``).
        drop_pending: Drop the packages a failed or killed sync left, with the local state,
            instead of loading them first: their windows are read again (``drop_on_request``).
        settings: Validated settings (default: dlt configuration, ``sources.micrometrics``).
        client: The API client (default: built from the settings).
        clock: UNIX time source (tests pin it).
        after_step: Called after each of dlt's runs (the packages left, each round); what it
            raises stops the sync (the command raises a SIGTERM dlt caught and let go).
        report: Filled as the sync goes (default: a new one), so that a caller also has what a
            sync that fails did: rows loaded by its finished rounds, requests, 429s.

    Returns:
        Rows loaded per table, requests, rounds, deep pass, marks, reconcile, warnings.

    Raises:
        ConfigurationError: Bad or missing settings, or ``full_refresh`` with an explicit
            range, before any request.
        ValueError: Unknown resources or a bad time range.
        Exception: Whatever dlt raises when a step fails (the cause is our ``ApiError``...).
    """
    started = time.monotonic()
    selected = tuple(resources or RESOURCES)
    unknown = sorted(set(selected) - set(RESOURCES))
    if unknown:
        raise ValueError(f"unknown resources {unknown}; choose from {', '.join(RESOURCES)}")
    if "survey_responses" in selected and "surveys" not in selected:
        # The responses go with the survey list they are read from (no extra request): without
        # it, answers to a new survey or question had no type, fell out of the NPS marts, and
        # the data tests failed (exit 4) until a sync that included surveys.
        selected += ("surveys",)
    if full_refresh and (start_at is not None or end_at is not None):
        # The refresh drops the tables and state: only the range would be loaded back.
        raise ConfigurationError("full_refresh reloads the whole history: it cannot be combined "
                                 "with start_at or end_at")
    settings = settings or load_settings(pipeline.pipeline_name)
    duckdb_file = duckdb_credentials(pipeline)
    if duckdb_file is not None:  # a library caller's pipeline, as the command's would be
        refuse_a_file_named_like_the_dataset(duckdb_file.database, pipeline.dataset_name)
    client = client or MicrometricsClient.from_settings(settings)
    now = datetime.fromtimestamp(clock(), UTC)
    lower = parse_timestamp(start_at) if start_at is not None else None
    upper = parse_timestamp(end_at) if end_at is not None else None
    # Against this sync's clock: a future start read nothing (or failed after the requests),
    # one before 1970 overflowed.
    refuse_future_start(settings.start_at, now, "the sync's clock")
    for name, moment in (("start_at", lower), ("end_at", upper)):
        if moment is not None and (reason := out_of_range(moment, now, "the sync's clock")):
            raise ConfigurationError(f"{name} {reason}")
    explicit = lower is not None or upper is not None
    if lower and upper and lower >= upper:
        raise ValueError("start_at must be before end_at")
    if explicit and (lower or settings.start_at) >= (upper or now):
        # Either bound alone may be in range and still leave nothing between them: a start_at
        # within the clock skew ahead, an end_at before START_AT. The API answered 400.
        start = (f"start_at {format_timestamp(lower)}" if lower
                 else f"{env_name('start_at')} {format_timestamp(settings.start_at)}")
        end = f"end_at {format_timestamp(upper)}" if upper else "now"
        raise ConfigurationError(f"nothing to read: {start} is not before {end}")
    bounds = SyncBounds(run_end=upper or now, now=now,
                        start_at=lower or (settings.start_at if explicit else None),
                        explicit_range=explicit)
    destination = destination_kind(pipeline)
    budget = RoundBudget(round_pages_for(destination, settings.round_pages, settings.window_pages),
                         seconds=round_seconds_for(destination, settings.round_pages))
    index, tally = SurveyIndex(), ExtractTally()
    # This machine's folder may hold another dataset's (or destination's) state and packages.
    claim_folder(pipeline)

    report = report if report is not None else SyncReport()
    # DuckDB: opened once a round instead of once a load job, its memory bounded.
    try:
        with held_duckdb(pipeline) as held:
            # What a killed sync left is loaded first, whatever this sync selects, and the marks it
            # committed to state but never applied are applied (idempotent otherwise).
            # On PostgreSQL, a pending package of a refresh drops tables the views read.
            # Tables dropped since the packages were made: those go with the local state
            # (loaded, they would create the tables again with their rows only).
            # A destination put back behind this folder's state first: the packages go with it.
            if destination_rolled_back(pipeline):
                report.warnings.append(forget_rolled_back(pipeline))
            if drop_pending:
                drop_on_request(pipeline)
            gone_before = gone_before_pending(pipeline)
            with views_kept(pipeline, destination, RESOURCES, report.warnings,
                            pending_only=True):
                report.load_infos.extend(finish_pending(pipeline, gone_before))
            if report.load_infos:
                note_loaded(pipeline)
                note_loaded_state(pipeline)
            after_step()
            # The marks come from state: the destination's, when it is newer than this machine's
            # (another worker synced since). Stale local state would mark a survey that came back.
            # (dlt's run restores it too, but only once the marks are applied.)
            if pipeline.config.restore_from_destination:
                pipeline.sync_destination()
                note_restored(pipeline)
            # Also before a refresh: --resources devices keeps the responses' state, and one
            # stopped before its first round drops nothing.
            report.warnings += [f"warning: tables gone from the destination, read again from the "
                                f"start: {', '.join(gone)}"
                                for gone in [forget_lost_tables(pipeline)] if gone]
            # Before the rounds, whose packages carry the state to the destination (a library
            # caller's sync has no later load of it).
            prune_schema_versions(pipeline, now)
            if surveys_state(pipeline).get("returns"):
                with pipeline.managed_state() as state:
                    forget_handled_returns(state)
            # After the restore: a fresh runner (GitHub Actions, a container) has no local
            # schema, and took every variant column for new, warning on every sync.
            variants_before = variant_columns(local_schema(pipeline))
            spread_before = spread_fields(local_schema(pipeline))
            report.marks.add(apply_survey_marks(pipeline))
            # Only the selected resources: --full-refresh --resources devices keeps the responses.
            refresh = "drop_resources" if full_refresh else None
            every_resource = set(selected) == set(RESOURCES) and not explicit
            marked_refresh = (refresh_under_way(pipeline, now, every_resource)
                              if full_refresh else None)
            # Surveys gone or seen back as the sync begins: one listed has its responses read
            # again; and a refresh drops the surveys' state, where they are tracked, not the marks.
            deletions_before = (TrackedSurveys.of(surveys_state(pipeline))
                                if "surveys" in selected else None)
            list_read = (prefetch_survey_list(client, bounds, index, tally)
                         if {"surveys", "survey_responses"} & set(selected) else None)
            chosen = with_question_history(selected)
            # From the state as restored: an explicit range goes on where the same range,
            # asked before, stopped (see WindowStates).
            states = plan_windows(resource_states(pipeline.state),
                                  reread_range(bounds.start_at, upper) if explicit else None,
                                  now, chosen)
            if states.resumed:
                report.warnings.append(
                    f"warning: this re-read goes on with the one of the same range begun "
                    f"{states.begun}, "
                    f"stopped part-way: what that one read is not read again (a re-read begun "
                    f"over {RESUME_WITHIN.days} days ago starts anew)")
            try:
                if refresh:  # before its first round drops the tables (see refresh_start)
                    load_refresh_start(pipeline, [r for r in chosen if r != QUESTION_HISTORY])
                # Every round's source, but for its bounds, survey list and resources.
                round_source = partial(
                    micrometrics_source, settings=settings, client=client, budget=budget,
                    window_states=states, tally=tally,
                    known_versions=partial(loaded_versions, pipeline),
                    # A refresh drops the tables after its extract; a re-read loads all.
                    loaded_surveys=(None if refresh or explicit
                                    else partial(loaded_times, pipeline, "surveys")))

                def loaded(info: LoadInfo) -> None:
                    note_loaded(pipeline)
                    note_loaded_state(pipeline)
                    after_step()
                    report.rounds += 1
                    report.load_infos.append(info)
                    count_rows(pipeline, report)

                while True:
                    budget.new_round()
                    # A full refresh keeps the question history: the API serves only the current
                    # questions, so the versions it drops could never be loaded again (and the
                    # answers to them would lose their type). It is merged from the next round.
                    this_round = [r for r in chosen if not (refresh and r == QUESTION_HISTORY)]
                    source = round_source(
                        bounds=bounds, survey_index=index, deletions_before=deletions_before,
                    ).with_resources(*this_round)
                    # PostgreSQL will not drop a table a view reads (the models' views do).
                    with views_kept(pipeline, destination, this_round if refresh else (),
                                    report.warnings):
                        info = pipeline.run(source, loader_file_format=loader_format(pipeline),
                                            refresh=refresh)
                    refresh = None
                    loaded(info)
                    if not budget.more and len(this_round) == len(chosen):
                        break
                    release_memory(held)
            finally:
                if list_read is not None:  # done by now, unless the sync failed first
                    list_read.cancel()
            if report.rounds > 1:
                # What a long sync's responses may name and its first round did not load: the
                # devices and the surveys' questions changed since it began (see relist).
                try:
                    catch_up = catch_up_resources(client, bounds, chosen, index, tally)
                    if catch_up.resources:
                        release_memory(held)  # as between any two rounds
                        budget.new_round()
                        source = round_source(
                            bounds=catch_up.bounds, survey_index=catch_up.index or index,
                        ).with_resources(*catch_up.resources)
                        loaded(pipeline.run(source, loader_file_format=loader_format(pipeline)))
                        index = catch_up.index or index
                except Exception as exc:  # noqa: BLE001 - the API's trouble only, below
                    api = next((c for c in causes(exc) if isinstance(c, ApiError)), None)
                    if api is None:
                        raise
                    # Every round loaded: this one only catches up, and the next sync will.
                    report.warnings.append(
                        f"warning: the closing round (devices and surveys changed while the "
                        f"sync ran) could not read the API, the next sync does: {api}")
            if states.explicit:  # every round loaded: the same range again reads it anew
                # Loaded now, not with the next sync: a worker that restored the state from the
                # destination (another one, a fresh runner) would go on and read nothing.
                with loaded_at_once(pipeline) as state:
                    states.finish(resource_states(state))
            if every_resource or marked_refresh:
                refresh_done(pipeline, None if every_resource else marked_refresh)
            # Each round tried them again: what reads a table or column no round brought back.
            report.warnings += views_not_restored(pipeline, destination)
            report.marks.add(apply_survey_marks(pipeline))
            if QUESTION_HISTORY in chosen and index.read:
                retire_emptied(pipeline, emptied(index.indexed), bounds.now)
            rows = report.loaded_rows
            if "devices" in selected and (full_refresh or rows.get("devices")
                                          or rows.get("survey_responses")):
                # A device erased before any sync saw it: else its responses fail a data test
                # on every build. (A sync that loaded neither changes nothing there.)
                if erased := record_erased_devices(client, pipeline, bounds.now):
                    report.marks.marked["devices"] = (
                        report.marks.marked.get("devices", 0) + erased)
            if reconcile:
                report.reconcile = reconcile_deletions(client, pipeline, now, selected)
                report.marks.add(report.reconcile.marks)
            if "survey_responses" in selected and not explicit:
                report.skipped_surveys = skipped_surveys(responses_state(pipeline), now, bounds.now)
            report.warnings += new_variant_warnings(variants_before,
                                                    variant_columns(local_schema(pipeline)))
            report.warnings += new_spread_warnings(spread_before,
                                                   spread_fields(local_schema(pipeline)))
        prune_loaded_packages(pipeline)
    finally:
        # Also when the sync fails: what it did so far, for the summary and the status.
        report.elapsed = time.monotonic() - started
        report.rejected = tally.rejected
        report.deep_streams, report.deep_found = len(tally.deep_streams), tally.deep_found
        report.returned_surveys = sorted(tally.returned, key=repr)
        report.deep_lookback_hours = settings.deep_lookback.total_seconds() / 3600
        report.lookback_minutes = settings.lookback.total_seconds() / 60
        report.client_stats = client.stats.as_dict()
        report.rate, report.burst = client.bucket.rate, client.bucket.burst
    return report


def release_memory(held: HeldDatabase | None) -> None:
    """Between rounds: DuckDB checkpoints and frees what the round's load took, pyarrow's
    pool (the normalize step's parquet) returns what it keeps cached."""
    if held is not None:
        held.checkpoint()
    if pyarrow := sys.modules.get("pyarrow"):  # only if a step used it (parquet)
        pyarrow.default_memory_pool().release_unused()


def responses_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The survey_responses resource's committed plan of reads (see quiet)."""
    return resource_states(pipeline.state).get("survey_responses", {}).get("reads", {})


def count_rows(pipeline: dlt.Pipeline, report: SyncReport) -> None:
    """Add the rows the last round normalized (none when it only loaded) to the report."""
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    for table, rows in (normalized.row_counts if normalized else {}).items():
        if not table.startswith("_dlt"):
            report.loaded_rows[table] = report.loaded_rows.get(table, 0) + rows


def loader_format(pipeline: dlt.Pipeline) -> str | None:
    """Parquet where the destination loads it fast (DuckDB: several times insert_values)."""
    return "parquet" if destination_kind(pipeline) in PARQUET_DESTINATIONS else None
