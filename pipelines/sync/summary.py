"""The table printed at the end of a sync."""

from __future__ import annotations

from typing import Any

import dlt

from pipelines.micrometrics import SyncReport
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.quarantine import REJECTED_TABLE
from pipelines.micrometrics.quiet import describe_skipped


def destination_counts(pipeline: dlt.Pipeline, tables: list[str]) -> dict[str, int | None]:
    """Rows per table in the destination now (None where the table does not exist yet)."""
    counts: dict[str, int | None] = {}
    with pipeline.sql_client() as client:
        for table in tables:
            try:
                name = client.make_qualified_table_name(table)
                rows = client.execute_sql(f"SELECT COUNT(*) FROM {name}")
                counts[table] = int(rows[0][0])
            except Exception:  # noqa: BLE001 - a missing table is simply reported as such
                counts[table] = None
    return counts


def floor_seconds(requests: int, rate: float, burst: float) -> float:
    """Least time ``requests`` can take under a leaky bucket starting empty."""
    return max(0.0, (requests - burst) / rate)


def render(report: SyncReport, counts: dict[str, int | None], rate: float, burst: float) -> str:
    stats: dict[str, Any] = report.client_stats
    width = max([len(t) for t in counts] + [24])
    lines = [f"{'table':<{width}} {'loaded now':>10} {'in destination':>15}"]
    for table, total in counts.items():
        shown = "-" if total is None else str(total)
        lines.append(f"{table:<{width}} {report.loaded_rows.get(table, 0):>10} {shown:>15}")
    floor = floor_seconds(stats.get("requests", 0), rate, burst)
    ratio = f" ({report.elapsed / floor:.2f}x)" if floor > 0 else ""
    lines += [
        "",
        f"requests {stats.get('requests', 0)}, pages {stats.get('pages', 0)} "
        f"({stats.get('pages_with_data', 0)} with data), "
        f"429s received {stats.get('throttled', 0)}, retries {stats.get('retries', 0)}, "
        f"rounds {report.rounds}",
        f"elapsed {report.elapsed:.1f}s; rate-limit floor {floor:.1f}s{ratio}",
    ]
    lines.append(load_jobs_line(report))
    if report.skipped_surveys:
        lines.append(describe_skipped(report.skipped_surveys))
    lines.append(deep_pass_line(report))
    lines += deletion_lines(report)
    if report.rejected:
        lines.append(f"warning: {report.rejected} records were quarantined in "
                     f"{REJECTED_TABLE}: {hint('rejected_records')}")
    lines += report.warnings
    return "\n".join(lines)


def deep_pass_line(report: SyncReport) -> str:
    """Whether a deep pass ran, and what it found that the plain lookback had missed."""
    if not report.deep_streams:
        return "deep pass: not due in this sync"
    return (f"deep pass: {report.deep_streams} streams re-read from "
            f"{report.deep_lookback_hours:g} h before their previous one; {report.deep_found} "
            f"records found that the "
            f"{report.lookback_minutes:g}-minute lookback had missed")


def deletion_lines(report: SyncReport) -> list[str]:
    """Rows marked deleted (or back) in this sync, and what a reconcile listed and cost."""
    lines = []
    if report.reconcile is not None:
        listed = ", ".join(f"{n} {table}" for table, n in report.reconcile.listed.items())
        lines.append(f"reconcile: listed {listed or 'nothing'} in "
                     f"{report.reconcile.requests} requests")
    for verb, counts in (("marked deleted", report.marks.marked),
                         ("unmarked (back upstream)", report.marks.unmarked)):
        if counts:
            rows = ", ".join(f"{n} {table}" for table, n in sorted(counts.items()))
            lines.append(f"deletions: {verb}: {rows}")
    if report.returned_surveys:
        ids = ", ".join(str(survey) for survey in report.returned_surveys)
        lines.append(f"deletions: surveys back upstream: {ids} (their responses read again "
                     f"from the start: those served again are live, the others stay marked)")
    return lines


def load_jobs_per_table(report: SyncReport) -> dict[str, int]:
    """Completed load jobs per table (data files and merge statements): what a warehouse that
    bills per statement or per load job charges for."""
    jobs: dict[str, int] = {}
    for info in report.load_infos:
        for package in info.load_packages:
            for job in package.jobs.get("completed_jobs", []):
                table = job.job_file_info.table_name
                if not table.startswith("_dlt"):
                    jobs[table] = jobs.get(table, 0) + 1
    return jobs


def load_jobs_line(report: SyncReport) -> str:
    jobs = load_jobs_per_table(report)
    shown = ", ".join(f"{table} {count}" for table, count in sorted(jobs.items()))
    return f"load jobs per table: {shown or 'none'}"
