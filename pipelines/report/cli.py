"""Command line: ``python -m pipelines.report``, ``make report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import dlt
from dlt.common.configuration.exceptions import ConfigurationException

from pipelines.destination import add_destination_arguments, open_pipeline
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.models.runner import one_line

from . import make_report
from .data import ReportError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DESCRIPTION = """\
Write one self-contained HTML report (plotly.js embedded: no server, no network) from the marts
the sync builds: weekly NPS per survey with response counts, responses per day, devices gone
quiet, and how fresh the data is (newest response, last load in dlt's _dlt_loads).

Reads the same destination and dataset as the sync and the models; DuckDB uses
warehouse.duckdb or DESTINATION__DUCKDB__CREDENTIALS.
"""

EPILOG = """\
exit status: 0 written, 1 the marts could not be read (not built yet: run make sync or make
models), 2 bad configuration or arguments.
examples:
  python -m pipelines.report
  python -m pipelines.report --output /tmp/micrometrics.html --destination postgres
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", "-o", default="report.html",
                        help="the HTML file to write (default: report.html)")
    add_destination_arguments(parser)
    parser.add_argument("--pipelines-dir", help="dlt pipelines directory (default: dlt's)")
    parser.add_argument("--quiet", action="store_true", help="do not print the path written")
    return parser


def refuse_missing_duckdb_file(pipeline: dlt.Pipeline) -> None:
    """Reading a DuckDB file that is not there would create an empty one: say so instead.

    Raises:
        ReportError: The destination is a DuckDB file that does not exist.
    """
    credentials = pipeline.destination.config_params.get("credentials")
    if pipeline.destination.destination_name == "duckdb" and isinstance(credentials, str) \
            and credentials != ":memory:" and not Path(credentials).exists():
        raise ReportError(f"no DuckDB file {credentials!r} here: run make sync first, or point "
                          f"DESTINATION__DUCKDB__CREDENTIALS at the file (make demo's is "
                          f"demo.duckdb)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pipeline = open_pipeline(args.destination, args.dataset, args.pipelines_dir)
        refuse_missing_duckdb_file(pipeline)
        path = make_report(pipeline, args.output)
    except (ConfigurationError, ConfigurationException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # e.g. the destination refused the connection
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        print(f"report: {path}")
    return EXIT_OK
