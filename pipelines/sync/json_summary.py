"""``--json``: the sync's summary as one JSON object on one line, for log shippers.

The object always has the same keys: what a failed sync never got to (rows, requests, the
models) is ``null``. ``exit_code`` is the process's exit status and ``exit_cause`` its word:
``ok`` 0, ``failed`` 1, ``config`` 2, ``locked`` 3, ``data_test`` 4; ``error`` is the
one-line message of a failure (the same as on stderr, with any secret replaced by ``***``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipelines.exit_codes import EXIT_CAUSES, EXIT_CONFIG
from pipelines.micrometrics import SyncReport
from pipelines.micrometrics.quarantine import REJECTED_TABLE
from pipelines.micrometrics.timeutil import format_timestamp
from pipelines.models import ModelsReport
from pipelines.stdout import Stdout
from pipelines.text_lists import SHOWN_LINES

from .summary import floor_seconds, load_jobs_per_table

WARNING = "warning: "  # how each of the report's warnings starts, as the summary prints them
REDACTED = "***"
# Secrets shorter than this are not replaced: replacing a short string (a one-letter secret
# such as "s") would garble every word holding it and, by where the *** land, show what the
# secret is. The messages carry no secret by design; this is the safety net for real ones.
MIN_REDACTED_LENGTH = 8


def exit_cause(code: int) -> str:
    return EXIT_CAUSES.get(code, "failed")


def redact(text: str | None, secrets: Iterable[str | None]) -> str | None:
    """``text`` with every secret in ``secrets`` of at least ``MIN_REDACTED_LENGTH``
    characters replaced by ``***`` (shorter ones are left: see ``MIN_REDACTED_LENGTH``)."""
    if text is None:
        return None
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_REDACTED_LENGTH},
                         key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def dumps(payload: dict[str, Any]) -> str:
    """One line of JSON (``ensure_ascii``: no character of the payload can break the line)."""
    return json.dumps(payload, default=str, separators=(",", ":"))


def models_json(models: ModelsReport | None) -> dict[str, Any] | None:
    """What the models build did: built views and tables, data tests passed and failed."""
    if models is None:
        return None
    tests = models.tests
    views = sum(1 for _, kind in models.built if kind == "view")
    failed = [test for test in tests if not test.passed]
    return {
        "dialect": models.dialect,
        "as_of": models.as_of,
        "built": len(models.built),
        "views": views,
        "tables": len(models.built) - views,
        "tests_passed": len(tests) - len(failed),
        "tests_failed": len(failed),
        "failed_tests": [test.name for test in failed],
        # Source tables the destination does not have yet: nothing was built (a new tenant).
        "waiting_for": list(models.waiting_for),
        "seconds": round(models.seconds, 3),
    }


def quiet_surveys_json(skipped: Iterable[Any]) -> list[dict[str, Any]]:
    """Quiet surveys a sync skipped on purpose: when each was last read, how stale, and by when
    it will be read again (the same in the sync's ``--json`` and in ``status``)."""
    return [{"survey_id": s.survey_id, "last_read": format_timestamp(s.last_read),
             "stale_hours": round(s.stale.total_seconds() / 3600, 3),
             "read_by": format_timestamp(s.read_by)} for s in skipped]


def report_json(report: SyncReport | None, counts: dict[str, int | None] | None
                ) -> dict[str, Any]:
    """The summary's figures (every value ``null`` when the sync produced no report)."""
    if report is None:
        return {key: None for key in (
            "tables", "requests", "pages", "pages_with_data", "throttled", "retries", "rounds",
            "elapsed_seconds", "floor_seconds", "deep_pass", "reconcile", "marks",
            "quiet_surveys_skipped", "quiet_surveys_skipped_total", "rejected", "load_jobs")} | {
            "warnings": []}
    stats = report.client_stats
    tables = {}
    for table in sorted(set(counts or {}) | set(report.loaded_rows)):
        tables[table] = {"loaded": report.loaded_rows.get(table, 0),
                         "in_destination": (counts or {}).get(table)}
    reconcile = report.reconcile
    warnings = []
    if report.rejected:
        warnings.append(f"{report.rejected} records were quarantined in {REJECTED_TABLE}")
    warnings += [line.removeprefix(WARNING) for line in report.warnings]
    return {
        "tables": tables,
        "requests": int(stats.get("requests", 0)),
        "pages": int(stats.get("pages", 0)),
        "pages_with_data": int(stats.get("pages_with_data", 0)),
        "throttled": int(stats.get("throttled", 0)),  # 429 answers received
        "retries": int(stats.get("retries", 0)),
        "rounds": report.rounds,
        "elapsed_seconds": round(report.elapsed, 3),
        "floor_seconds": round(floor_seconds(int(stats.get("requests", 0)), report.rate,
                                             report.burst), 3),
        "deep_pass": {
            "ran": bool(report.deep_streams),
            "streams": report.deep_streams,
            "found": report.deep_found,
            "lookback_hours": report.deep_lookback_hours,
        },
        "reconcile": {
            "ran": reconcile is not None,
            "requests": reconcile.requests if reconcile else 0,
            "listed": dict(reconcile.listed) if reconcile else {},
        },
        "marks": {"marked": dict(report.marks.marked), "unmarked": dict(report.marks.unmarked),
                  "surveys_back": list(report.returned_surveys)},
        # The stalest, their number: one line, bounded (``text_lists``); status lists all.
        "quiet_surveys_skipped": quiet_surveys_json(
            sorted(report.skipped_surveys, key=lambda s: s.last_read)[:SHOWN_LINES]),
        "quiet_surveys_skipped_total": len(report.skipped_surveys),
        "rejected": report.rejected,
        "warnings": warnings,
        "load_jobs": load_jobs_per_table(report),
    }


@dataclass
class RunResult:
    """What one run of the command did, gathered as it goes, for ``--json`` and the record."""

    destination: str = ""
    dataset: str = ""
    started_at: datetime | None = None
    report: SyncReport | None = None
    counts: dict[str, int | None] | None = None
    models: ModelsReport | None = None
    error: str | None = None
    secrets: list[str] = field(default_factory=list, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self, code: int, finished_at: datetime) -> str:
        """The summary as one JSON line (what ``--json`` prints)."""
        return dumps(self.as_dict(code, finished_at))

    def as_dict(self, code: int, finished_at: datetime) -> dict[str, Any]:
        """The summary, JSON-able (``datetime``s as ISO 8601 text): what ``as_json`` prints."""
        payload: dict[str, Any] = {
            "exit_code": code,
            "exit_cause": exit_cause(code),
            "error": redact(self.error, self.secrets),
            "destination": self.destination,
            "dataset": self.dataset,
            "started_at": format_timestamp(self.started_at) if self.started_at else None,
            "finished_at": format_timestamp(finished_at),
            **report_json(self.report, self.counts),
            "models": models_json(self.models),
            **self.extra,
        }
        return json.loads(dumps(payload))


class JsonAwareParser(argparse.ArgumentParser):
    """An argument parser that, when ``--json`` is among the arguments, also prints a bad
    command line as one JSON line on stdout (exit 2, ``config``) before argparse's usage
    message on stderr."""

    _json_argv = False

    def error(self, message: str) -> Any:
        if self._json_argv:
            Stdout()(dumps({"exit_code": EXIT_CONFIG, "exit_cause": EXIT_CAUSES[EXIT_CONFIG],
                            "error": f"{self.prog}: {message}"}))
        super().error(message)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._json_argv = "--json" in (sys.argv[1:] if args is None else list(args))
        return super().parse_args(args, namespace)
