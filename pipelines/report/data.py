"""Every number the report shows, read from the marts in one call: :func:`report_data`.

The queries are written in DuckDB's dialect like the models and translated to the destination's
the same way (``pipelines.models``), so the report reads any destination the models build on.
They only read what the models built (``mart_nps_daily``, ``fct_survey_responses``,
``dim_devices``, the staging views ``stg_surveys``, ``stg_survey_responses`` and
``stg_run_context``) and dlt's own ``_dlt_loads``; nothing in ``sql/`` changes for the report.
How fresh the data is comes from the sync status the sync command records in the pipeline
state (``pipelines.status.record``): the start of the last successful complete sync, as
``status`` reports it. ``_dlt_loads`` stands in only where no status was recorded (syncs run
through the library): every run of the command, a failed one too, adds a row there.
Weeks are put together here from the daily mart (ISO weeks, Monday to Sunday, of the
response's local day): ``DATE_TRUNC('week')`` does not mean the same week on every warehouse.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import dlt

from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.models.compiler import compile_model
from pipelines.models.project import Model, ModelsError
from pipelines.models.runner import client_qualifier, dialect_of, execute
from pipelines.postgres_sessions import lock_wait_in
from pipelines.status.record import REFRESH_FAILED

# Per survey and local day; summed into weeks in Python (see the module's docstring).
NPS_DAILY = """
SELECT n.survey_id, MAX(s.survey_name) AS survey_name, n.response_date,
    SUM(n.responses) AS responses, SUM(n.nps_responses) AS nps_responses,
    SUM(n.promoters) AS promoters, SUM(n.passives) AS passives, SUM(n.detractors) AS detractors
FROM mart_nps_daily AS n
LEFT JOIN stg_surveys AS s
    ON s.survey_id = n.survey_id
GROUP BY n.survey_id, n.response_date
"""
RESPONSES_PER_DAY = """
SELECT response_date, SUM(responses) AS responses
FROM mart_nps_daily
GROUP BY response_date
ORDER BY response_date
"""
DEVICE_COUNTS = """
SELECT COUNT(*) AS devices, COUNT(CASE WHEN status = 'active' THEN 1 END) AS active,
    COUNT(CASE WHEN is_silent THEN 1 END) AS silent
FROM dim_devices
"""
SILENT_DEVICES = """
SELECT device_id, device_name, location_id, last_response_at, responses_last_30d
FROM dim_devices
WHERE is_silent
ORDER BY last_response_at NULLS FIRST, device_id
"""
NEWEST_RESPONSE = """
SELECT MAX(responded_at) AS newest_response_at, COUNT(*) AS responses
FROM fct_survey_responses
"""
# Every loaded row, marked ones too: how far the loads have got, not what the marts count.
NEWEST_UPDATE = "SELECT MAX(updated_at) AS newest_updated_at FROM stg_survey_responses"
MODELS_AS_OF = "SELECT MAX(as_of) AS as_of FROM stg_run_context"
# dlt writes a row per load package it completed (status 0).
LAST_LOAD = """
SELECT MAX(inserted_at) AS last_load_at, COUNT(*) AS loads
FROM _dlt_loads
WHERE status = 0
"""


class ReportError(Exception):
    """The report cannot be made, e.g. the marts are not built."""


@dataclass(frozen=True)
class SurveyWeek:
    """One survey's responses in one ISO week (``week_start`` is its Monday)."""

    survey_id: int
    survey_name: str
    week_start: date
    responses: int
    nps_responses: int
    promoters: int
    passives: int
    detractors: int
    # 100 * (promoters - detractors) / nps_responses, 1 decimal; None without an NPS answer
    nps: float | None


@dataclass(frozen=True)
class DayCount:
    """Responses on one local day (``fct_survey_responses.response_date``)."""

    day: date
    responses: int


@dataclass(frozen=True)
class SilentDevice:
    """An active device without a response in the 7 days before the marts' ``as_of``."""

    device_id: str
    device_name: str | None
    location_id: str | None
    last_response_at: datetime | None  # None: never a response
    days_silent: float | None  # as_of - last_response_at, in days, 1 decimal
    responses_last_30d: int


@dataclass(frozen=True)
class Freshness:
    """How current the data is, as of ``generated_at`` (all times UTC)."""

    generated_at: datetime
    last_load_at: datetime | None  # newest completed load in _dlt_loads
    loads: int  # completed loads in _dlt_loads
    newest_response_at: datetime | None  # newest responded_at the marts count
    newest_updated_at: datetime | None  # newest updated_at of a loaded response
    models_as_of: datetime | None  # the marts' reference time (stg_run_context.as_of)
    # The sync status recorded by the sync command (pipelines.status.record.status_of); empty
    # when none was recorded, and then _dlt_loads says how fresh the data is.
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        """Whether the sync command recorded its outcomes (else: ``_dlt_loads`` is used)."""
        return bool(self.status)

    @property
    def source(self) -> str:
        """Where :attr:`data_as_of` comes from: ``sync status`` or ``_dlt_loads``."""
        return "sync status" if self.recorded else "_dlt_loads"

    @property
    def last_success_at(self) -> datetime | None:
        """Start of the last successful complete sync recorded (``status``'s freshness); None
        after a failed full refresh (it dropped the tables: that success no longer vouches for
        what they hold, as ``status`` says too)."""
        success = self.status.get("last_success")
        if not success or self.status.get(REFRESH_FAILED):
            return None
        return parse_timestamp(success["started_at"])

    @property
    def data_as_of(self) -> datetime | None:
        """How current the data is: the last successful sync, or, with no sync status
        recorded, the newest completed load."""
        return self.last_success_at if self.recorded else self.last_load_at

    @property
    def data_age(self) -> timedelta | None:
        as_of = self.data_as_of
        return None if as_of is None else self.generated_at - as_of

    @property
    def failed_sync(self) -> dict[str, Any] | None:
        """The last recorded sync, when it did not end well (exit status other than 0)."""
        last = self.status.get("last_sync")
        return last if last and last.get("exit_code") != 0 else None

    @property
    def last_load_age(self) -> timedelta | None:
        return None if self.last_load_at is None else self.generated_at - self.last_load_at

    @property
    def newest_response_age(self) -> timedelta | None:
        if self.newest_response_at is None:
            return None
        return self.generated_at - self.newest_response_at


@dataclass(frozen=True)
class ReportData:
    """Everything the report draws, as plain values; the charts are made from this only."""

    dataset: str
    destination: str
    responses: int  # in fct_survey_responses
    weeks: list[SurveyWeek]  # by survey_id, then week
    days: list[DayCount]  # by day, days without responses left out
    devices: int
    active_devices: int
    silent_devices: list[SilentDevice]  # longest silent first, never-responded first of all
    freshness: Freshness

    @property
    def surveys(self) -> dict[int, str]:
        """survey_id -> name, in survey_id order."""
        return {week.survey_id: week.survey_name for week in self.weeks}


def report_data(pipeline: dlt.Pipeline, now: datetime | None = None,
                status: dict[str, Any] | None = None) -> ReportData:
    """Reads the report's numbers from the marts in ``pipeline``'s dataset.

    Args:
        pipeline: The pipeline whose destination holds the built marts.
        now: The report's time, for the age of the data (naive means UTC; default: now).
        status: The sync status recorded in the pipeline state
            (``pipelines.status.record.status_of``); default: ``pipeline``'s own state's.

    Raises:
        ReportError: The marts are not built there (run ``make sync`` or ``make models``), or
            the destination refused a query.
    """
    generated_at = utc(now) if now is not None else datetime.now(UTC)
    if status is None:
        from pipelines.status.record import status_of

        status = status_of(pipeline.state)
    with pipeline.sql_client() as client:
        dialect, qualify = dialect_of(client), client_qualifier(client)

        def rows(name: str, sql: str) -> list[tuple[Any, ...]]:
            text = compile_model(Model(name, "report", sql, frozenset()), dialect, qualify)
            try:
                return [tuple(row) for row in execute(client, text, f"report query {name}") or []]
            except ModelsError as exc:
                if lock_wait := lock_wait_in(exc):  # built, but a build or a reader holds it
                    raise ReportError(f"report query {name} failed: {lock_wait}") from exc
                raise ReportError(
                    f"{exc}; are the models built in dataset {pipeline.dataset_name!r}? "
                    f"(make sync, or make models)") from exc

        daily = rows("nps_daily", NPS_DAILY)
        per_day = rows("responses_per_day", RESPONSES_PER_DAY)
        devices, active, _ = rows("device_counts", DEVICE_COUNTS)[0]
        silent = rows("silent_devices", SILENT_DEVICES)
        newest_response_at, responses = rows("newest_response", NEWEST_RESPONSE)[0]
        (newest_updated_at,) = rows("newest_update", NEWEST_UPDATE)[0]
        (models_as_of,) = rows("models_as_of", MODELS_AS_OF)[0]
        last_load_at, loads = rows("last_load", LAST_LOAD)[0]
    as_of = utc(models_as_of) if models_as_of is not None else None
    return ReportData(
        dataset=pipeline.dataset_name,
        destination=pipeline.destination.destination_name,
        responses=int(responses or 0),
        weeks=weekly(daily),
        days=[DayCount(to_date(day), int(count)) for day, count in per_day if day is not None],
        devices=int(devices or 0),
        active_devices=int(active or 0),
        silent_devices=[silent_device(row, as_of) for row in silent],
        freshness=Freshness(
            generated_at=generated_at,
            last_load_at=utc(last_load_at),
            loads=int(loads or 0),
            newest_response_at=utc(newest_response_at),
            newest_updated_at=utc(newest_updated_at),
            models_as_of=as_of,
            status=dict(status),
        ),
    )


def weekly(daily: list[tuple[Any, ...]]) -> list[SurveyWeek]:
    """Survey-day rows summed into ISO weeks (Monday start). A row without a day (a response
    without ``created_at``, which a data test flags) has no week: left out."""
    sums: dict[tuple[int, date], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    names: dict[int, str] = {}
    for survey_id, name, day, *counts in daily:
        if day is None:
            continue
        survey = int(survey_id)
        names[survey] = name if name is not None else f"survey {survey}"
        local_day = to_date(day)
        key = (survey, local_day - timedelta(days=local_day.weekday()))
        sums[key] = [total + int(count or 0) for total, count in zip(sums[key], counts,
                                                                     strict=True)]
    return [
        SurveyWeek(survey, names[survey], week, responses, answers, promoters, passives,
                   detractors, nps_value(promoters, detractors, answers))
        for (survey, week), (responses, answers, promoters, passives, detractors)
        in sorted(sums.items())
    ]


def nps_value(promoters: int, detractors: int, answers: int) -> float | None:
    """NPS to one decimal, rounded half away from zero like ``mart_nps_daily.nps``."""
    if not answers:
        return None
    exact = Decimal(100 * (promoters - detractors)) / Decimal(answers)
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def silent_device(row: tuple[Any, ...], as_of: datetime | None) -> SilentDevice:
    device_id, name, location_id, last_response_at, last_30d = row
    last = utc(last_response_at)
    days = None
    if last is not None and as_of is not None:
        days = round((as_of - last).total_seconds() / 86_400, 1)
    return SilentDevice(
        device_id=str(device_id),
        device_name=name,
        location_id=None if location_id is None else str(location_id),
        last_response_at=last,
        days_silent=days,
        responses_last_30d=int(last_30d or 0),
    )


def utc(value: Any) -> datetime | None:
    """A timestamp from any destination as an aware UTC datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value
