"""Command line: ``python -m pipelines.report``, ``make report``.

Nothing is written to the pipeline's working folder: the report reads the destination through
a throwaway pipeline in a temporary folder (as ``status`` does), and the sync status from the
newer of the local and the destination's pipeline state (``pipelines.status.snapshot``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from dlt.common.configuration.exceptions import ConfigFieldMissingException, ConfigurationException
from dlt.common.destination.exceptions import UnknownDestinationModule

from pipelines.destination import add_destination_arguments, missing_duckdb_file, open_pipeline
from pipelines.error_chain import one_line
from pipelines.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.status.cli import now_arg
from pipelines.status.record import status_of
from pipelines.status.snapshot import root_cause, take_snapshot
from pipelines.stdout import write_out

from . import make_report
from .data import ReportError

DESTINATIONS = ("duckdb", "postgres", "snowflake", "bigquery")

DESCRIPTION = """\
Write one self-contained HTML report (plotly.js embedded: no server, no network) from the marts
the sync builds: weekly NPS per survey with response counts, responses per day, devices gone
quiet, and how fresh the data is: the last successful sync the sync command recorded (as make
status reports it; the last sync's failure is shown too), or, where no sync status was recorded
(syncs run through the library), the newest load in dlt's _dlt_loads. Flagged when older than
24 hours. Nothing is written to the pipeline's folder.

Reads the same destination and dataset as the sync and the models, configured the same way:
DuckDB uses warehouse.duckdb or DESTINATION__DUCKDB__CREDENTIALS; postgres, snowflake and
bigquery take their credentials from DESTINATION__<NAME>__CREDENTIALS (e.g.
DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/database), its fields
(DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID, ...) or [destination.<name>.credentials] in
.dlt/secrets.toml.
"""

EPILOG = """\
exit status: 0 written, 1 the marts could not be read (not built yet: run make sync or make
models; the destination unreachable), 2 bad configuration or arguments.
examples:
  python -m pipelines.report
  python -m pipelines.report --output /tmp/micrometrics.html --destination postgres
"""


class ReportParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit 2 (argparse's usage lines left out)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {' '.join(message.split())} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def output_arg(value: str) -> str:
    """The HTML file to write: named, not a folder (writing failed only after every query)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must name the HTML file to write, e.g. report.html")
    if Path(value).is_dir():
        raise argparse.ArgumentTypeError(
            f"{value!r} is a folder: name the HTML file to write, e.g. {value.rstrip('/')}/"
            "report.html")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ReportParser(
        prog="python -m pipelines.report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", "-o", default="report.html", type=output_arg,
                        help="the HTML file to write (default: report.html)")
    add_destination_arguments(parser)  # configured as the description says
    parser.add_argument("--pipelines-dir",
                        help="dlt pipelines directory whose local state is read (default: "
                             "dlt's); only read, never written")
    parser.add_argument("--now", type=now_arg, metavar="TIMESTAMP",
                        help="judge ages as of this ISO 8601 time instead of the clock (for "
                             "checks and tests)")
    parser.add_argument("--quiet", action="store_true", help="do not print the path written")
    return parser


def config_message(destination: str, exc: BaseException) -> str:
    """Bad configuration in one line that says what to set."""
    cause = root_cause(exc)
    if isinstance(cause, UnknownDestinationModule):
        return (f"unknown destination {destination!r}: use one of {', '.join(DESTINATIONS)} "
                f"(see --help)")
    if isinstance(cause, ConfigFieldMissingException):  # which fields, and their variables
        return f"destination {destination}: {one_line(cause)}; see --help"
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    now = args.now or datetime.now(UTC)
    from pipelines.sync.cli import TABLES

    try:
        missing = missing_duckdb_file(args.destination)
        if missing:
            raise ReportError(f"no DuckDB file {missing!r} here: run make sync first, or point "
                              f"DESTINATION__DUCKDB__CREDENTIALS at the file (make demo's is "
                              f"demo.duckdb)")
        snapshot = take_snapshot(args.destination, args.dataset, TABLES, args.pipelines_dir)
        if snapshot.unreachable:
            raise ReportError("; ".join(snapshot.problems))
        status = status_of(snapshot.state or {})
        with tempfile.TemporaryDirectory(prefix="micrometrics-report-",
                                         ignore_cleanup_errors=True) as scratch:
            pipeline = open_pipeline(args.destination, args.dataset, scratch, read_only=True)
            try:
                pipeline.sync_destination()
                path = make_report(pipeline, args.output, now=now, status=status)
            finally:
                pipeline.deactivate()
    except (ConfigurationError, ConfigurationException) as exc:
        print(f"error: {config_message(args.destination, exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except ReportError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # e.g. the destination refused the connection
        cause = root_cause(exc)
        if isinstance(cause, (ConfigFieldMissingException, UnknownDestinationModule)):
            print(f"error: {config_message(args.destination, cause)}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"error: {type(cause).__name__}: {one_line(cause)}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        write_out(f"report: {path}", "the report's path")
    return EXIT_OK
