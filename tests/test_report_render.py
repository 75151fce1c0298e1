"""The report's page from hand-made numbers: escaping, empty marts, weeks, rounding, ages."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from html import escape

import pytest

from pipelines.report import DayCount, Freshness, ReportData, SilentDevice, render_html
from pipelines.report.data import nps_value, weekly
from pipelines.report.render import CHARTS, age_text, plot_text, relative, write_report

NOW = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
FIGURE = re.compile(r'<script type="application/json" class="figure" data-chart="([^"]+)">'
                    r"(.*?)</script>", re.DOTALL)


def empty_data(**changes) -> ReportData:
    """Marts built on a dataset without a response or a device."""
    fields = {
        "dataset": "micrometrics", "destination": "duckdb", "responses": 0, "weeks": [],
        "days": [], "devices": 0, "active_devices": 0, "silent_devices": [],
        "freshness": Freshness(generated_at=NOW, last_load_at=None, loads=0,
                               newest_response_at=None, newest_updated_at=None,
                               models_as_of=NOW),
    }
    return ReportData(**{**fields, **changes})


def hostile_data() -> ReportData:
    """Names that would break out of the page if anything were not escaped."""
    weeks = weekly([(237, HOSTILE, date(2026, 3, 9), 3, 2, 1, 0, 1)])
    device = SilentDevice(HOSTILE, HOSTILE, HOSTILE, NOW - timedelta(days=9), 9.0, 0)
    return empty_data(
        dataset=HOSTILE, responses=3, weeks=weeks, days=[DayCount(date(2026, 3, 9), 3)],
        devices=1, active_devices=1, silent_devices=[device],
        freshness=Freshness(generated_at=NOW, last_load_at=NOW - timedelta(hours=2), loads=1,
                            newest_response_at=NOW - timedelta(days=7),
                            newest_updated_at=NOW - timedelta(days=7), models_as_of=NOW))


def test_names_are_escaped_in_the_page_and_intact_in_the_charts():
    html = render_html(hostile_data())
    assert HOSTILE not in html  # nowhere raw, the JSON blocks included
    outside_scripts = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL)
    assert escape(HOSTILE) in outside_scripts and "<img" not in outside_scripts
    assert html.count("<script") == len(CHARTS) + 2  # no script smuggled in
    figures = {chart: json.loads(text) for chart, text in FIGURE.findall(html)}
    assert list(figures) == [chart for chart, _ in CHARTS]
    # plotly.js reads tags and entities in names: escaped, it shows them as written.
    assert figures["nps_weekly"]["data"][0]["name"] == f"{plot_text(HOSTILE)} (#237)"
    assert "<" not in figures["silent_devices"]["data"][0]["y"][0]
    assert figures["silent_devices"]["data"][0]["customdata"][0][0] == HOSTILE


def test_empty_marts_still_give_every_chart_with_a_note():
    html = render_html(empty_data())
    figures = {chart: json.loads(text) for chart, text in FIGURE.findall(html)}
    assert list(figures) == [chart for chart, _ in CHARTS]
    for figure in figures.values():
        assert figure["layout"]["annotations"][0]["text"].startswith("No ")
    assert "<table>" not in html  # no device: no table either
    assert "No last load found." in html  # no load at all
    assert 'class="card stale" data-freshness="data_as_of"' in html


def test_last_load_older_than_a_day_is_flagged():
    fresh = hostile_data().freshness
    for age, flagged in ((timedelta(hours=2), False), (timedelta(hours=25), True)):
        data = empty_data(freshness=Freshness(
            generated_at=NOW, last_load_at=NOW - age, loads=3, newest_response_at=None,
            newest_updated_at=None, models_as_of=fresh.models_as_of))
        html = render_html(data)
        assert ('class="card stale" data-freshness="data_as_of"' in html) is flagged
        assert ("The last load is more than 24 hours old." in html) is flagged
        assert (f"{age_text(age)} before this report; 3 loads in all; no sync status "
                f"recorded") in html
        assert 'data-source="dlt_loads"' in html and "_dlt_loads</code> (no sync status" in html


SUCCESS = {"started_at": "2026-03-16T06:00:00Z", "finished_at": "2026-03-16T06:01:00Z",
           "exit_code": 0, "exit_cause": "ok", "error": None}
FAILED = {"started_at": "2026-03-16T08:00:00Z", "finished_at": "2026-03-16T08:00:05Z",
          "exit_code": 1, "exit_cause": "failed",
          "error": "HTTP 401 from /surveys: <unauthorized> & co"}


def recorded(status: dict, generated_at: datetime = NOW, loads_at: datetime = NOW) -> Freshness:
    return Freshness(generated_at=generated_at, last_load_at=loads_at, loads=9,
                     newest_response_at=None, newest_updated_at=None, models_as_of=NOW,
                     status=status)


def card_of(html: str) -> str:
    return re.search(r'<div class="card[^"]*" data-freshness="data_as_of"[^>]*>', html).group(0)


def test_recorded_sync_status_is_the_freshness_not_the_loads():
    """A failed run adds a state-only load to _dlt_loads: the recorded last success counts."""
    fresh = recorded({"last_sync": FAILED, "last_success": SUCCESS})
    assert fresh.data_as_of == datetime(2026, 3, 16, 6, tzinfo=UTC) and fresh.recorded
    assert fresh.source == "sync status" and fresh.failed_sync == FAILED
    html = render_html(empty_data(freshness=fresh))
    assert card_of(html) == ('<div class="card " data-freshness="data_as_of" '
                             'data-value="2026-03-16T06:00:00+00:00" data-source="sync_status">')
    assert "Last successful sync (sync status)" in html and "3 h 0 min before this report" in html
    alert = re.search(r'<p class="alert" id="last_sync_failed"[^>]*><strong>(.*?)</strong>',
                      html).group(1)
    assert alert == escape("Last sync failed at 2026-03-16 08:00 UTC (exit 1, failed): "
                           "HTTP 401 from /surveys: <unauthorized> & co")
    # 25 hours on: stale, though the loads (the failed run's) are recent.
    html = render_html(empty_data(freshness=recorded(
        {"last_sync": FAILED, "last_success": SUCCESS},
        generated_at=NOW + timedelta(hours=22), loads_at=NOW + timedelta(hours=21))))
    assert 'class="card stale"' in card_of(html)
    assert "The last successful sync is more than 24 hours old." in html
    # A good last sync: no alert.
    html = render_html(empty_data(freshness=recorded({"last_sync": SUCCESS,
                                                      "last_success": SUCCESS})))
    assert "last_sync_failed" not in html and "stale" not in card_of(html)


def test_recorded_status_without_a_success_is_stale_whatever_the_loads():
    html = render_html(empty_data(freshness=recorded({"last_sync": FAILED})))
    assert 'class="card stale"' in card_of(html) and 'data-value=""' in card_of(html)
    assert "no successful sync recorded" in html and "No last successful sync found." in html
    assert 'id="last_sync_failed"' in html


def test_days_sum_into_iso_weeks_per_survey():
    rows = [  # survey, name, day, responses, nps answers, promoters, passives, detractors
        (1, "A", date(2026, 3, 1), 2, 2, 1, 0, 1),  # Sunday: the week of Monday 2026-02-23
        (1, "A", date(2026, 3, 2), 3, 2, 2, 0, 0),  # Monday: a new week
        (1, "A", "2026-03-08", 1, 0, 0, 0, 0),  # Sunday, as a string (some drivers)
        (2, None, datetime(2026, 3, 3, tzinfo=UTC), 4, 4, 0, 1, 3),
        (2, None, None, 1, 1, 1, 0, 0),  # no day (no created_at; a data test flags it): no week
    ]
    got = {(week.survey_id, week.week_start): (week.responses, week.nps_responses, week.nps)
           for week in weekly(rows)}
    assert got == {
        (1, date(2026, 2, 23)): (2, 2, 0.0),
        (1, date(2026, 3, 2)): (4, 2, 100.0),
        (2, date(2026, 3, 2)): (4, 4, -75.0),
    }
    assert {week.survey_name for week in weekly(rows)} == {"A", "survey 2"}


def test_nps_rounds_half_away_from_zero_like_the_mart():
    assert nps_value(49, 0, 400) == 12.3  # 12.25
    assert nps_value(0, 49, 400) == -12.3
    assert nps_value(1, 0, 3) == 33.3 and nps_value(2, 0, 3) == 66.7
    assert nps_value(0, 0, 0) is None


def test_ages_read_as_whole_units():
    assert age_text(timedelta(seconds=42)) == "42 s"
    assert age_text(timedelta(minutes=3, seconds=5)) == "3 min 5 s"
    assert age_text(timedelta(hours=2, minutes=7, seconds=59)) == "2 h 7 min"
    assert age_text(timedelta(days=3, hours=4, minutes=1)) == "3 d 4 h"
    assert relative(timedelta(minutes=-3)) == "3 min 0 s after this report"
    assert relative(None) == "never"


def test_a_report_that_cannot_be_written_leaves_no_hidden_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def refused(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("pipelines.report.render.os.replace", refused)
    with pytest.raises(OSError, match="disk full"):
        write_report(empty_data(), target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_report(empty_data(), tmp_path)  # --output a directory: named, nothing written
    assert list(tmp_path.iterdir()) == []


def test_a_failed_full_refresh_leaves_no_success_to_vouch_for_the_data():
    """As status says: the refresh dropped the tables, so the success before it no longer
    tells how current they are."""
    status = {"last_sync": FAILED, "last_success": SUCCESS,
              "full_refresh_failed_at": "2026-03-16T08:00:00.000+00:00"}
    freshness = recorded(status)
    assert freshness.data_as_of is None
    html = render_html(empty_data(freshness=freshness))
    assert 'class="card stale"' in card_of(html) and 'data-value=""' in card_of(html)
