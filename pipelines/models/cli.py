"""Command line: ``python -m pipelines.models``, ``make models``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigurationException

from pipelines.micrometrics.errors import ConfigurationError
from pipelines.sync.runner import PIPELINE_NAME, duckdb_destination

from .preview import mart_preview
from .project import ModelsError
from .runner import build_models, one_line

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DESCRIPTION = """\
Build the SQL models (sql/staging as views, sql/marts as tables) in the dataset the sync loads,
then run the data tests in sql/tests. Models are written once in DuckDB's dialect and translated
to the destination's (duckdb, postgres, snowflake, bigquery).

Destination credentials come from the same configuration as the sync (environment or
.dlt/secrets.toml); DuckDB uses warehouse.duckdb or DESTINATION__DUCKDB__CREDENTIALS.
"""

EPILOG = """\
exit status: 0 built and all data tests passed, 1 a model or data test failed (cause on
stderr), 2 bad configuration or arguments.
examples:
  python -m pipelines.models
  python -m pipelines.models --as-of 2027-01-15T00:00:00Z
"""


def timestamp_arg(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.models",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--destination", default="duckdb",
                        help="dlt destination: duckdb (default), postgres, snowflake, bigquery")
    parser.add_argument("--dataset", default="micrometrics",
                        help="dataset (schema) holding the loaded tables (default: micrometrics)")
    parser.add_argument("--as-of", type=timestamp_arg,
                        help="reference time for dim_devices' last-7/30-day counts and "
                             "is_silent (default: now; without offset means UTC)")
    parser.add_argument("--pipelines-dir", help="dlt pipelines directory (default: dlt's)")
    parser.add_argument("--quiet", action="store_true", help="no summary or preview lines")
    return parser


def make_pipeline(destination: str, dataset: str, pipelines_dir: str | None) -> dlt.Pipeline:
    """The sync's pipeline (same name, destination and dataset)."""
    target: Any = duckdb_destination(dataset) if destination == "duckdb" else destination
    kwargs = {"pipelines_dir": pipelines_dir} if pipelines_dir else {}
    return dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=target, dataset_name=dataset,
                        **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pipeline = make_pipeline(args.destination, args.dataset, args.pipelines_dir)
        report = build_models(pipeline, now=args.as_of)
        lines = [report.summary(), *mart_preview(pipeline)]
    except (ConfigurationError, ConfigurationException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except ModelsError as exc:  # includes DataTestFailed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # e.g. the destination refused the connection
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        print("\n".join(lines))
    return EXIT_OK

