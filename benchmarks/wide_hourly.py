"""A wide tenant's hourly syncs: what each loads and costs, before and after a change.

    .venv/bin/python -m benchmarks.wide_hourly --repo /tmp/before [--surveys 2000] [--syncs 6]

A sandbox of ``--surveys`` surveys (the sandbox's questions, about 3 each; 10 responses
each), a first sync, then ``--syncs`` "hourly" syncs, each after 5 new responses and one survey
renamed, each sync a ``python -m pipelines.sync --json`` process of each runner (``before``:
the connector at ``--repo``, e.g. ``git archive <rev> | tar -x -C /tmp/before``; ``after``:
this tree) against the same sandbox (both runners start from the same first sync's data: the
sandbox is built once per runner with the same seed). Per hourly sync: rows loaded into the
survey tables (the sync's JSON), requests (the sandbox's counter), wall and CPU seconds of the
process, and bytes the pipelines folder grew (kept load packages). Means over the hourly syncs,
after / before side by side from one run. ``--write`` replaces the ``wide_hourly`` section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks._results import machine, write_section
from benchmarks.scale import KEY, ROOT, SECRET, SHIM, UNLIMITED, base_env, child
from pipelines.sandbox import Sandbox

SURVEY_TABLES = ("surveys", "surveys__questions", "survey_questions")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_runner(repo: Path, surveys: int, syncs: int, timeout: float) -> list[dict]:
    """The first sync, then ``syncs`` hourly ones; a dict of figures per hourly sync."""
    sandbox = Sandbox(KEY, SECRET, surveys=surveys, responses=surveys * 10, devices=100,
                      page_size=100, **UNLIMITED).start()
    figures = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-wide-") as name:
            tmp = Path(name)
            work = tmp / "cwd"
            work.mkdir()
            env = base_env(repo, tmp, 0.0)
            env.update({"SOURCES__MICROMETRICS__BASE_URL": sandbox.url,
                        "SOURCES__MICROMETRICS__API_KEY": KEY,
                        "SOURCES__MICROMETRICS__API_SECRET": SECRET,
                        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp / "warehouse.duckdb")})
            argv = [sys.executable, "-c", SHIM, "pipelines.sync", "--quiet", "--no-models",
                    "--json"]
            first = child(argv, env, work, timeout)
            if first["code"] != 0:
                raise SystemExit(f"{repo}: first sync failed: {first['stderr'][-2000:]}")
            listed = sorted(s["id"] for s in sandbox.truth()["surveys"])
            for hour in range(syncs):
                sandbox.add_responses(5)
                sandbox.patch_records("surveys", [listed[hour % len(listed)]],
                                      {"name": f"renamed {hour}"})
                sandbox.reset_stats()
                before = folder_bytes(tmp / "dlt")
                result = child(argv, env, work, timeout)
                if result["code"] != 0:
                    raise SystemExit(f"{repo}: hourly sync failed: {result['stderr'][-2000:]}")
                tables = json.loads(result["stdout"])["tables"]
                figures.append({
                    **{table: tables.get(table, {}).get("loaded", 0) for table in SURVEY_TABLES},
                    "requests": sandbox.stats()["requests"], "wall": result["wall"],
                    "cpu": result["cpu"], "grew": folder_bytes(tmp / "dlt") - before})
    finally:
        sandbox.stop()
    return figures


def mean(figures: list[dict], key: str) -> float:
    return statistics.mean(f[key] for f in figures)


def table(runs: dict[str, list[dict]], command: str, surveys: int, syncs: int) -> str:
    lines = [
        "## A wide tenant's hourly syncs: what each loads and costs",
        "",
        f"`{command}`; {machine()}.",
        "",
        f"{surveys:,} surveys (the sandbox's questions), {surveys * 10:,} responses, 100 "
        f"devices, unlimited rate, page size 100; a first sync, then {syncs} hourly syncs "
        f"(seconds apart), each after 5 new responses and one survey renamed. Means per "
        f"hourly sync.",
        "",
        "| runner | surveys rows | surveys__questions rows | survey_questions rows | requests "
        "| wall s | CPU s | pipelines folder grew, KB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, figures in runs.items():
        lines.append(
            f"| {label} | {mean(figures, 'surveys'):.0f} | "
            f"{mean(figures, 'surveys__questions'):.0f} | "
            f"{mean(figures, 'survey_questions'):.0f} | {mean(figures, 'requests'):.1f} | "
            f"{mean(figures, 'wall'):.2f} | {mean(figures, 'cpu'):.2f} | "
            f"{mean(figures, 'grew') / 1024:.0f} |")
    if len(runs) == 2:
        after, before = runs["after"], runs["before"]
        lines += ["", "| after / before | surveys rows | wall | CPU | folder growth |",
                  "|---|---:|---:|---:|---:|",
                  "| ratio | " + " | ".join(
                      f"{mean(after, key) / mean(before, key):.2f}" if mean(before, key) else "-"
                      for key in ("surveys", "wall", "cpu", "grew")) + " |"]
    lines += ["", "What an hourly sync merges into the survey tables follows the surveys that "
              "changed, not the width of the tenant; a table with nothing to merge also gets no "
              "load job and no MERGE statement, which Snowflake and BigQuery bill per statement "
              "(the summary's `load jobs per table:` line). The wall time on DuckDB hardly "
              "moves here: every survey was answered within the quiet period, so each hourly "
              "sync still reads every survey's responses, and those requests dominate."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wide_hourly",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="the connector to compare with (a tree; PYTHONPATH)")
    parser.add_argument("--surveys", type=int, default=2000)
    parser.add_argument("--syncs", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--write", action="store_true", help="write RESULTS.md's section")
    args = parser.parse_args()
    runners = ([("before", Path(args.repo).resolve())] if args.repo else []) + [("after", ROOT)]
    runs = {}
    for label, repo in runners:
        runs[label] = run_runner(repo, args.surveys, args.syncs, args.timeout)
        print(f"{label}: {runs[label]}", flush=True)
    command = ".venv/bin/python -m benchmarks.wide_hourly " + " ".join(sys.argv[1:])
    text = table(runs, command.replace(" --write", ""), args.surveys, args.syncs)
    print(text)
    if args.write:
        write_section("wide_hourly", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
