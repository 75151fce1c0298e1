"""Command line: ``python -m pipelines.models``, ``make models``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

import dlt
from dlt.common.configuration.exceptions import ConfigurationException

from pipelines.destination import add_destination_arguments, missing_duckdb_file, open_pipeline
from pipelines.error_chain import CONFIG_ERRORS, causes, one_line
from pipelines.exit_codes import EXIT_CONFIG, EXIT_DATA_TEST, EXIT_FAILED, EXIT_OK
from pipelines.micrometrics.duckdb_session import file_held, held_by_another, held_duckdb
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.status_keys import REFRESH_FAILED, STATUS_KEY
from pipelines.postgres_sessions import lock_wait_in
from pipelines.stdout import write_out

from .preview import mart_preview
from .project import ModelsError
from .runner import DataTestFailed, build_models

DESCRIPTION = """\
Build the SQL models (sql/staging as views, sql/marts as tables) in the dataset the sync loads,
then run the data tests in sql/tests. Models are written once in DuckDB's dialect and translated
to the destination's (duckdb, postgres, snowflake, bigquery).

Destination credentials come from the same configuration as the sync (environment or
.dlt/secrets.toml); DuckDB uses warehouse.duckdb or DESTINATION__DUCKDB__CREDENTIALS.
"""

EPILOG = """\
exit status: 0 built and all data tests passed, or not built yet because the destination
lacks a table they read (a new tenant: the summary says so; the sync that loads it builds
them), 1 a model failed to build (cause on stderr), 2 bad configuration or arguments, 4 built,
but a data test failed or returned no count (the test and its offending rows on stderr; the
models stay built for inspection).
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
    add_destination_arguments(parser)
    parser.add_argument("--as-of", type=timestamp_arg,
                        help="reference time for dim_devices' last-7/30-day counts and "
                             "is_silent (default: now; without offset means UTC)")
    parser.add_argument("--pipelines-dir", help="dlt pipelines directory (default: dlt's)")
    parser.add_argument("--quiet", action="store_true", help="no summary or preview lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pipeline = open_pipeline(args.destination, args.dataset, args.pipelines_dir)
        # Reading a DuckDB file that is not there would create an empty one and fail on it.
        if missing := missing_duckdb_file(args.destination):
            print(f"error: no DuckDB file {missing!r} here: run make sync first, or point "
                  f"DESTINATION__DUCKDB__CREDENTIALS at the file", file=sys.stderr)
            return EXIT_CONFIG
        # DuckDB: held for the build (a sync between two rounds waits for it), not opened by
        # each query; waiting up to a minute for a process that holds it.
        with held_duckdb(pipeline, bounded=False):
            report = build_models(pipeline, now=args.as_of)
            lines = [report.summary(), *([] if report.waiting_for else mart_preview(pipeline))]
        for warning in partial_load_warnings(pipeline):
            print(f"warning: {warning}", file=sys.stderr)
    except (ConfigurationError, ConfigurationException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except DataTestFailed as exc:
        print(f"error: {one_line(exc)}; {hint('data_test')}", file=sys.stderr)
        return EXIT_DATA_TEST
    except ModelsError as exc:
        # A build cancelled waiting for a reader's lock says what to do, as the sync does.
        print(f"error: {lock_wait_in(exc) or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # e.g. the destination refused the connection
        misconfigured = next((link for link in causes(exc) if isinstance(link, CONFIG_ERRORS)),
                             None)
        if misconfigured is not None:  # an unknown --destination, missing credentials
            print(f"error: destination configuration: {one_line(misconfigured)}",
                  file=sys.stderr)
            return EXIT_CONFIG
        if held := file_held(exc):  # dlt's wrapper blamed the credentials
            print(f"error: {held_by_another(held)}", file=sys.stderr)
            return EXIT_FAILED
        if lock_wait := lock_wait_in(exc):  # a query of the models' own, outside a build
            print(f"error: {lock_wait}", file=sys.stderr)
            return EXIT_FAILED
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        write_out("\n".join(lines), "the summary")
    return EXIT_OK


def partial_load_warnings(pipeline: dlt.Pipeline) -> list[str]:
    """What this machine's pipeline folder says the destination lacks, for a build by hand:
    the marts were built from it all the same (exit 0), and read as complete."""
    if pipeline.state.get("dataset_name") != pipeline.dataset_name:
        return []  # the folder's last sync was of another dataset: it says nothing of this one
    warnings = []
    left = pipeline.list_extracted_load_packages() + pipeline.list_normalized_load_packages()
    if left:
        warnings.append(f"{len(left)} load package(s) a sync extracted are not loaded yet (it "
                        f"failed at load): the marts lack their rows until make sync loads them")
    refresh = (pipeline.state.get(STATUS_KEY) or {}).get(REFRESH_FAILED)
    if refresh:
        warnings.append(f"a --full-refresh started at {refresh} has not completed: the marts "
                        f"hold only what it reloaded so far")
    return warnings
