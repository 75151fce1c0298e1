"""Command line of the status: ``python -m pipelines.status``, ``make status``."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pipelines.destination import add_destination_arguments
from pipelines.error_chain import CONFIG_ERRORS, causes
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.stdout import write_out
from pipelines.sync.json_summary import JsonAwareParser, dumps
from pipelines.sync.logs import command_logging

from .render import render
from .report import build_report
from .snapshot import take_snapshot

EXIT_OK, EXIT_STALE, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

DESCRIPTION = """\
Where the Micrometrics pipeline stands, read from its dlt state and the destination (nothing is
written, no API request is made): per stream the high-water mark (every change up to it is
loaded), the newest record, the last deep pass and any open backfill (a range a stopped sync
has not read to its end; the next sync continues it); the last sync's result and the last
successful one, the last reconcile, quiet surveys the last sync skipped and how stale they are,
rows per table in the destination and the rejected records (_rejected_records).

The state is the newer of the local pipeline folder's and the destination's copy (dlt's
_dlt_pipeline_state table), so status works where the local folder is gone: on another machine,
a fresh container. The sync command records each run's result in that state.
"""

EPILOG = """\
freshness (--max-age): the data is as of the start of the last successful complete sync
(exit 0 or 4, every resource, not a --start-at/--end-at re-read), or of the oldest high-water
mark of the streams the last sync was to read when that is newer (syncs run from code record
no result); quiet surveys skipped on purpose and surveys gone upstream do not count.
exit status: 0 shown (with --max-age: the data is fresh), 1 with --max-age: the data is older
than AGE or its age is unknown (nothing synced yet), 2 bad arguments or configuration, 3 status
unavailable: no state could be read at all (the destination unreachable and no local state),
with or without --max-age.
examples:
  python -m pipelines.status
  python -m pipelines.status --max-age 6h          # for a monitor: exit 1 when stale
  python -m pipelines.status --destination postgres --json
"""


def age_arg(value: str) -> timedelta:
    """``90s``, ``45m``, ``6h``, ``1.5d``: a number and a unit (s, m, h, d)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value.lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an age: a number and a unit s, m, h or d, e.g. 6h or 90m")
    try:
        return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
    except OverflowError:  # beyond timedelta's 999999999 days
        raise argparse.ArgumentTypeError(
            f"{value!r} is too long an age: at most {timedelta.max.days} days") from None


def now_arg(value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = JsonAwareParser(prog="python -m pipelines.status", description=DESCRIPTION,
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_destination_arguments(parser)
    parser.add_argument("--max-age", type=age_arg, metavar="AGE",
                        help="exit 1 when the data is older than AGE (a number and a unit s, "
                             "m, h or d: 90m, 6h, 2d); see freshness below")
    parser.add_argument("--json", action="store_true",
                        help="print the status as one JSON object on one line")
    parser.add_argument("--now", type=now_arg, metavar="TIMESTAMP",
                        help="judge ages as of this ISO 8601 time instead of the clock (for "
                             "checks and tests)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(logging.WARNING, "micrometrics"):
        return report_status(args)


def report_status(args: argparse.Namespace) -> int:
    now = args.now or datetime.now(UTC)
    from pipelines.sync.cli import TABLES

    try:
        snapshot = take_snapshot(args.destination, args.dataset, TABLES)
    except ConfigurationError as exc:
        return fail(args, EXIT_CONFIG, str(exc))
    except Exception as exc:  # a config file dlt cannot read: exit 2, not "stale" (1)
        misconfigured = next((link for link in causes(exc) if isinstance(link, CONFIG_ERRORS)),
                             None)
        if misconfigured is None:
            raise
        return fail(args, EXIT_CONFIG, str(misconfigured))
    if snapshot.state is None and snapshot.unreachable:
        return fail(args, EXIT_UNAVAILABLE, "status unavailable: " + "; ".join(snapshot.problems))
    report = build_report(snapshot, now, args.max_age, args.destination, args.dataset)
    code = EXIT_STALE if report["fresh"] is False else EXIT_OK
    report["exit_code"] = code
    write_out(dumps(report) if args.json else render(report, now), "the status")
    return code



def fail(args: argparse.Namespace, code: int, message: str) -> int:
    message = " ".join(message.split())
    print(f"error: {message}", file=sys.stderr)
    if args.json:
        write_out(dumps({"exit_code": code, "error": message, "destination": args.destination,
                         "dataset": args.dataset}), "the status")
    return code
