"""DuckDB load time of the same data with ``parquet`` versus ``insert_values`` files.

The data is the sandbox ground truth (devices, surveys, survey responses with nested
questions and answers), emitted by resources carrying the connector's real hints (merge on
``id`` with ``dedup_sort``, timestamp columns, ``answers.value`` as text). Each trial runs in a
fresh temporary directory, so every trial is a first load; extract is timed apart from
normalize+load, the part the file format changes. Formats alternate (ABAB...) so machine
noise hits both alike.

Run from the repository root::

    .venv/bin/python -m benchmarks.load_formats [--responses 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt

from benchmarks._results import machine, median, write_section
from pipelines.micrometrics.source import MERGE, TIMESTAMP_HINTS
from pipelines.sandbox import Sandbox

FORMATS = ("insert_values", "parquet")
PAGE = 100
TABLES = ("devices", "surveys", "surveys__questions", "survey_responses",
          "survey_responses__answers")


def pages(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(records), PAGE):
        yield records[i:i + PAGE]


def bench_source(truth: dict[str, list[dict]]) -> Any:
    """The connector's three resources and hints, fed from ``truth`` in pages of 100."""

    @dlt.source(name="micrometrics")
    def source() -> list[Any]:
        devices = dlt.resource(
            pages(truth["devices"]), name="devices", primary_key="id",
            write_disposition=MERGE, columns=TIMESTAMP_HINTS,
        )
        surveys = dlt.resource(
            pages(truth["surveys"]), name="surveys", primary_key="id",
            write_disposition=MERGE, columns=TIMESTAMP_HINTS,
        )
        responses = dlt.resource(
            pages(truth["survey_responses"]), name="survey_responses", primary_key="id",
            write_disposition=MERGE, columns=TIMESTAMP_HINTS,
            nested_hints={"answers": dlt.mark.make_nested_hints(
                columns=[{"name": "value", "data_type": "text"}]
            )},
        )
        return [devices, surveys, responses]

    return source()


def trial(truth: dict[str, list[dict]], fmt: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{fmt}-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{fmt}",
            pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.duckdb(str(Path(tmp) / "bench.duckdb")),
            dataset_name="micrometrics",
        )
        t0 = time.perf_counter()
        # dlt 1.x takes the file format at extract; normalize then writes files in it.
        pipeline.extract(bench_source(truth), loader_file_format=fmt)
        t1 = time.perf_counter()
        pipeline.normalize()
        t2 = time.perf_counter()
        info = pipeline.load()
        t3 = time.perf_counter()
        info.raise_on_failed_jobs()
        with pipeline.sql_client() as client:
            rows = {t: client.execute_sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}
        jobs = [j for package in info.load_packages for j in package.jobs["completed_jobs"]]
        files = sorted({j.job_file_info.file_format for j in jobs})
    return {"extract": t1 - t0, "normalize": t2 - t1, "load": t3 - t2,
            "normalize_load": t3 - t1, "total": t3 - t0, "rows": rows, "files": files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=20000, help="sandbox responses")
    parser.add_argument("--rounds", type=int, default=3, help="trials per format")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    truth = Sandbox(api_key="k", api_secret="s", responses=args.responses).truth()
    print({k: len(v) for k, v in truth.items()})
    results: dict[str, list[dict[str, Any]]] = {f: [] for f in FORMATS}
    for r in range(args.rounds):
        for fmt in FORMATS:  # ABAB: each round runs both formats back to back
            res = trial(truth, fmt)
            results[fmt].append(res)
            print(f"round {r + 1} {fmt:13} extract {res['extract']:6.2f}s  "
                  f"normalize {res['normalize']:6.2f}s  load {res['load']:6.2f}s  "
                  f"normalize+load {res['normalize_load']:6.2f}s  files {res['files']}")

    rows = {f: results[f][0]["rows"] for f in FORMATS}
    if rows["parquet"] != rows["insert_values"]:
        raise SystemExit(f"row counts differ between formats: {rows}")

    def med(fmt: str, key: str) -> float:
        return median([r[key] for r in results[fmt]])

    keys = (("extract", "extract"), ("normalize", "normalize"), ("load", "load"),
            ("normalize_load", "**normalize+load**"), ("total", "total"))
    lines = [
        "| median seconds | insert_values | parquet | parquet / insert_values |",
        "|---|---:|---:|---:|",
    ]
    for key, label in keys:
        a, b = med("insert_values", key), med("parquet", key)
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    table = "\n".join(lines)
    ratio = med("parquet", "normalize_load") / med("insert_values", "normalize_load")
    row_text = ", ".join(f"{t} {n}" for t, n in rows["parquet"].items())
    body = (
        "## Load formats: parquet vs insert_values (DuckDB, first load)\n\n"
        f"`.venv/bin/python -m benchmarks.load_formats --responses {args.responses} "
        f"--rounds {args.rounds}`; {machine()}.\n\n"
        f"{args.rounds} rounds, formats alternated; medians. Rows loaded (identical for both "
        f"formats): {row_text}.\n\n"
        f"{table}\n\n"
        f"normalize+load with parquet takes **{ratio:.2f}x** the time of insert_values.\n"
    )
    print()
    print(table)
    print(f"\nparquet / insert_values (normalize+load): {ratio:.2f}")
    if not args.no_write:
        write_section("load_formats", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
