"""Command line of the sync: ``python -m pipelines.sync``, ``micrometrics-sync``, ``make sync``."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dlt

from pipelines.destination import PIPELINE_NAME, add_destination_arguments
from pipelines.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from pipelines.micrometrics import RESOURCES
from pipelines.micrometrics.settings import load_settings, refuse_future_start
from pipelines.micrometrics.timeutil import out_of_range, parse_timestamp
from pipelines.stdout import Stdout

from .dryrun import describe_plan
from .json_summary import JsonAwareParser, RunResult
from .logs import command_logging, dlt_lines_folded
from .options import SyncOptions
from .run import TABLES, failure, run_sync  # noqa: F401 - TABLES is imported from here too
from .terminate import Terminated, terminated_as_failure, unraised_stop

DESCRIPTION = """\
Sync Micrometrics devices, surveys and survey responses into the destination.

The first sync loads the whole history (from start_at, default 2000-01-01) in adaptive windows,
checkpointed as it goes; later syncs read from the last high-water mark minus a lookback
(default 120 minutes, for late uploads) up to now, and once a day a deep pass re-reads from 72
hours before the previous one (kiosks that were offline). Every table is merged on id. Surveys
gone from the survey list are marked deleted (deleted_at), with their responses; --reconcile
also finds responses and devices erased upstream.

Configuration (environment or .dlt/secrets.toml under [sources.micrometrics]):
  SOURCES__MICROMETRICS__BASE_URL, SOURCES__MICROMETRICS__API_KEY,
  SOURCES__MICROMETRICS__API_SECRET, optional SOURCES__MICROMETRICS__START_AT,
  SOURCES__MICROMETRICS__LOOKBACK_MINUTES, SOURCES__MICROMETRICS__WINDOW_PAGES,
  SOURCES__MICROMETRICS__ROUND_PAGES (pages per load+merge round; default 900 on DuckDB, where
  a round also ends after 5 minutes, 300 on PostgreSQL, 600 on Snowflake, BigQuery and other
  per-statement-billed warehouses),
  SOURCES__MICROMETRICS__DEEP_LOOKBACK_HOURS (72), SOURCES__MICROMETRICS__DEEP_EVERY_HOURS (24;
  0 runs the deep pass every sync), SOURCES__MICROMETRICS__MAX_IN_FLIGHT (requests in flight at
  once, streams read side by side; default 4, at most 32),
  SOURCES__MICROMETRICS__QUIET_SURVEY_HOURS (24: above 24 surveys, one unchanged this long is
  read at least this often instead of every sync; 0 reads every survey every sync),
  SOURCES__MICROMETRICS__INITIAL_WINDOW_DAYS (a first read's first window; default the whole
  range), SOURCES__MICROMETRICS__MAX_ATTEMPTS (6) and SOURCES__MICROMETRICS__BACKOFF_SECONDS
  (0.5) for retried requests, SOURCES__MICROMETRICS__ALLOW_INSECURE_HTTP (false: plain http only
  to a loopback host). README.md "Configure and run" explains each; a key that is none of these
  is ignored with a warning.
DuckDB file: warehouse.duckdb, or DESTINATION__DUCKDB__CREDENTIALS (not named like the dataset:
DuckDB names the file's catalog after it and micrometrics.<table> would be ambiguous).
"""

EPILOG = """\
exit status: 0 synced, 1 the sync failed (cause on stderr), 2 bad configuration or arguments,
3 another sync of the same pipeline is running, 4 loaded, but a data test failed (do not retry:
the load is good; inspect the offending rows shown on stderr). With --json the same status is
the JSON's exit_code, with exit_cause ok, failed, config, locked or data_test.
examples:
  python -m pipelines.sync
  python -m pipelines.sync --dry-run
  python -m pipelines.sync --dry-run --reconcile    # what a reconcile would cost, no request
  python -m pipelines.sync --reconcile
  python -m pipelines.sync --drop-pending           # a package fails on every sync: drop it
  python -m pipelines.sync --json --quiet          # one JSON line on stdout, for log shippers
  python -m pipelines.sync --resources survey_responses --start-at 2026-01-01T00:00:00Z
"""


def timestamp_arg(value: str):
    """A ``--start-at``: ISO 8601 with an offset, from 1970 and not in the future."""
    moment = parsed_arg(value)
    if reason := out_of_range(moment):
        raise argparse.ArgumentTypeError(reason)
    return moment


def end_arg(value: str):
    """An ``--end-at``: as ``--start-at`` (a future one would only read up to now). A date
    alone is the whole of that day: ``--start-at 2026-03-01 --end-at 2026-03-31`` reads March
    31 too, where its midnight left the month's last day out."""
    moment = parsed_arg(value)
    if reason := out_of_range(moment):
        future = moment > datetime.now(UTC)
        raise argparse.ArgumentTypeError(
            reason + (" (leave --end-at out to read up to now)" if future else ""))
    # Today's end is in the future: ``run`` reads it up to now.
    return moment + timedelta(days=1) if a_date_alone(value) else moment


# ISO 8601 forms that name one day: a calendar date, an ordinal date (2026-090), a week's day
# (2026-W13-2), extended or basic.
ONE_DAY = re.compile(r"\d{4}(-?\d{2}-?\d{2}|-?\d{3}|-?W\d{2}-?[1-7])")


def a_date_alone(value: str) -> bool:
    return ONE_DAY.fullmatch(value.strip()) is not None


def parsed_arg(value: str) -> datetime:
    """A time with an offset, or a date alone (its midnight UTC). A year, a month or a week
    (2026, 2026-03, 2026-W13), which ISO 8601 also writes as dates, is refused: read as its
    first day's midnight, ``--end-at 2026-03`` left March out."""
    try:
        moment = parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not a_date_alone(value) and not any(c in value for c in ":Tt "):
        raise argparse.ArgumentTypeError(
            f"{value.strip()!r} is a year, a month or a week, not one day: give a date "
            f"(2026-03-31) or a time with an offset (2026-03-31T12:00:00Z)")
    return moment


def resources_arg(value: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(RESOURCES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown resource {', '.join(unknown) or '(none)'}; choose from {', '.join(RESOURCES)}"
        )
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = JsonAwareParser(
        prog="python -m pipelines.sync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_destination_arguments(parser)
    parser.add_argument("--resources", type=resources_arg, default=RESOURCES,
                        help="comma-separated subset of: " + ", ".join(RESOURCES)
                        + " (survey_responses loads surveys too: the list it is read from)")
    parser.add_argument("--start-at", type=timestamp_arg,
                        help="re-read changes from this ISO 8601 time (with offset; a date "
                             "alone is its midnight, UTC) without moving the incremental state")
    parser.add_argument("--end-at", type=end_arg,
                        help="upper bound of an explicit re-read (default: now); a date alone "
                             "(2026-03-31) includes that whole day, in UTC (a month, year or "
                             "week alone is refused)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="drop this source's tables and state, then load the whole history "
                             "(the question history survey_questions is kept: the API serves "
                             "only current questions); not with --start-at/--end-at")
    parser.add_argument("--reconcile", action="store_true",
                        help="after the sync, list every id of devices and survey responses "
                             "and mark rows erased upstream (deleted_at); one request per page "
                             "of history: see its cost first with --dry-run --reconcile")
    parser.add_argument("--drop-pending", action="store_true",
                        help="drop the load packages a failed or killed sync left here, with "
                             "this machine's local state, instead of loading them first: their "
                             "windows are read again from the API (from the destination's "
                             "state). The way out when one fails in normalize or load on every "
                             "sync; see README, Troubleshooting")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (streams, windows, estimated requests, minimum "
                             "time) and make no data request")
    parser.add_argument("--no-models", action="store_true",
                        help="do not build the SQL models (sql/) after the load")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object on one line on stdout, and "
                             "nothing else there (progress and errors stay on stderr); also "
                             "when the sync fails: exit_code, exit_cause (ok, failed, config, "
                             "locked, data_test) and error. For log shippers")
    parser.add_argument("--preview", action="store_true",
                        help="after building the models, print a few lines from the marts")
    parser.add_argument("--verbose", action="store_true",
                        help="the connector's debug lines and full tracebacks on failure "
                             "(dlt's own: RUNTIME__LOG_LEVEL=DEBUG); with --dry-run, a line for "
                             "every survey")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.DEBUG if args.verbose else logging.WARNING if args.quiet
             else logging.INFO)
    result = RunResult(destination=args.destination, dataset=args.dataset,
                       started_at=datetime.now(UTC), secrets=[configured_secret()])
    # dlt logs as RUNTIME__LOG_LEVEL says; a SIGTERM fails the run as any error does.
    out = Stdout()
    with command_logging(level, "micrometrics"), dlt_lines_folded(args.verbose), \
            terminated_as_failure():
        code = run(args, result, out)
    if args.json:
        out(result.as_json(code, datetime.now(UTC)))
    out.warn_if_unwritten("the JSON summary" if args.json else "the summary")
    return code


def run(args: argparse.Namespace, result: RunResult, out: Stdout) -> int:
    """The sync the arguments ask for; its exit status. What it did goes into ``result``,
    what it says to ``out``."""
    say = (lambda _text: None) if args.json else out  # --json: stdout holds the JSON only
    if args.start_at and args.end_at and args.start_at >= args.end_at:
        result.error = "--start-at must be before --end-at"
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.full_refresh and (args.start_at or args.end_at):
        # The refresh drops the tables and state; the range alone would then be all there is.
        result.error = ("--full-refresh reloads the whole history: it cannot be combined with "
                        "--start-at/--end-at (run them one after the other)")
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        start_at, end_at = args.start_at, args.end_at
        if end_at is not None and end_at > datetime.now(UTC):  # today's date alone: up to now
            # As if left out: the range keeps its name from run to run, so a re-read stopped
            # part-way goes on when run again (alone, it reads from START_AT, as a re-read).
            start_at = start_at or load_settings(PIPELINE_NAME).start_at
            end_at = None
        options = SyncOptions(
            destination=args.destination,
            dataset=args.dataset,
            resources=args.resources,
            start_at=start_at,
            end_at=end_at,
            full_refresh=args.full_refresh,
            reconcile=args.reconcile,
            drop_pending=args.drop_pending,
        )
        if args.dry_run:
            settings = load_settings(PIPELINE_NAME)
            result.secrets.append(settings.api_secret)
            refuse_future_start(settings.start_at, datetime.now(UTC), "this machine's clock")
            plan = describe_plan(settings, options, verbose=args.verbose)
            say(plan)
            result.extra["plan"] = plan.splitlines()
            return EXIT_OK
        preview = None
        if args.preview:
            preview = Stdout(sys.stderr) if args.json else out
        run_sync(options, result, models=not args.no_models, say=say, preview=preview)
        late = unraised_stop()
        if late:  # it waited while dlt wrote the outcome: the sync was done, and recorded so
            print(f"warning: {late} came as the sync finished; nothing was left to stop",
                  file=sys.stderr)
        return EXIT_OK
    except (Exception, Terminated, KeyboardInterrupt) as exc:  # noqa: BLE001 - one line,
        # the trace with --verbose; Ctrl-C too, as a failure (exit 1, the JSON line)
        code, message = failure(exc)
        if args.verbose and code == EXIT_FAILED:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        result.error = " ".join(message.split())
        return code


def configured_secret() -> str | None:
    """The API secret as configured, to keep it out of every message (best effort: the
    messages carry none by design)."""
    try:
        value = dlt.secrets.get("sources.micrometrics.api_secret")
    except Exception:  # noqa: BLE001 - no secret configured, or no provider answers
        return None
    return str(value) if value else None
