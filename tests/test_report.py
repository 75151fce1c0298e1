"""``make report``: the numbers inside the charts equal independent SQL over the marts, the file
is self-contained, and headless chromium draws every chart without touching the network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.micrometrics.timeutil import format_timestamp, parse_timestamp
from pipelines.models import build_models
from pipelines.report import make_report, report_data
from pipelines.report.browser import RENDERED_CHARTS_JS, offline_page, open_report
from pipelines.report.cli import main
from pipelines.report.render import CHARTS, age_text, plot_text, write_report
from pipelines.sandbox import Sandbox
from tests.cli import run_cli, run_in_process, run_module, sync_env
from tests.conftest import KEY, SECRET
from tests.destinations import SMALL, pipeline_on
from tests.fakes import FakeClock
from tests.file_holder import hold_in_another_process
from tests.syncing import sync_into, sync_sandbox
from tests.test_report_render import card_of, empty_data
from tests.test_status import SMALL as STATUS_SMALL
from tests.test_status import status_json

FIGURE = re.compile(
    r'<script type="application/json" class="figure" data-chart="([^"]+)">(.*?)</script>',
    re.DOTALL)


@dataclass
class Built:
    """A synced sandbox with the models built, and the report written from it."""

    pipeline: dlt.Pipeline
    path: Path  # the report
    html: str
    now: datetime  # the report's time
    as_of: datetime  # the models'


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    clock = FakeClock()
    sandbox = Sandbox(api_key=KEY, api_secret=SECRET, clock=clock, responses=800).start()
    try:
        directory = tmp_path_factory.mktemp("report")
        result = sync_sandbox(sandbox, directory, clock)
    finally:
        sandbox.stop()
    as_of = datetime.fromtimestamp(clock(), UTC)
    build_models(result.pipeline, now=as_of)
    # The load's _dlt_loads time is the wall clock's (the sync's own clock is virtual).
    now = datetime.now(UTC) + timedelta(minutes=5)
    path = make_report(result.pipeline, directory / "report.html", now=now)
    return Built(result.pipeline, path, path.read_text(encoding="utf-8"), now, as_of)


def sql(built: Built, text: str) -> list[tuple]:
    with built.pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(text) or []]


def embedded_figures(html: str) -> dict[str, dict]:
    """The figures as the page hands them to Plotly.newPlot."""
    return {chart: json.loads(text) for chart, text in FIGURE.findall(html)}


def traces(figure: dict, series: str) -> list[dict]:
    return [trace for trace in figure["data"] if trace["meta"]["series"] == series]


# -- numbers ------------------------------------------------------------------------------------

def test_weekly_nps_and_counts_in_the_chart_equal_sql_over_the_facts(built):
    figure = embedded_figures(built.html)["nps_weekly"]
    nps, answers, responses, names = {}, {}, {}, {}
    for trace in traces(figure, "nps"):
        survey = trace["meta"]["survey_id"]
        names[survey] = trace["name"]
        for week, value, counts in zip(trace["x"], trace["y"], trace["customdata"], strict=True):
            nps[(survey, week)] = value
            answers[(survey, week)] = counts[0]
    for trace in traces(figure, "responses"):
        for week, count in zip(trace["x"], trace["y"], strict=True):
            responses[(trace["meta"]["survey_id"], week)] = count
    # Independent of the report's path (mart_nps_daily, weeks summed in Python): ISO weeks by
    # DuckDB's DATE_TRUNC over the fact table, NPS by the textbook formula.
    want = {
        (survey, str(week)): (count, nps_answers, None if value is None else float(value))
        for survey, week, count, nps_answers, value in sql(built, """
            SELECT survey_id, CAST(DATE_TRUNC('week', response_date) AS DATE) AS week,
                COUNT(*) AS responses, COUNT(nps_score) AS nps_answers,
                ROUND(CAST(100.0 * (COUNT(CASE WHEN nps_score >= 9 THEN 1 END)
                    - COUNT(CASE WHEN nps_score <= 6 THEN 1 END))
                    / NULLIF(COUNT(nps_score), 0) AS DECIMAL(18, 6)), 1) AS nps
            FROM micrometrics.fct_survey_responses
            GROUP BY ALL""")
    }
    got = {key: (responses[key], answers[key], nps[key]) for key in nps}
    assert got == want
    assert responses.keys() == nps.keys()
    # The data exercises it: several surveys, a year of weeks, weeks of mixed answers.
    assert len(names) == 5 and len(want) > 150
    assert any(value not in (-100.0, 0.0, 100.0, None) for value in nps.values())
    assert sum(responses.values()) == 800
    surveys = dict(sql(built, "SELECT id, name FROM micrometrics.surveys"))
    assert names == {survey: f"{plot_text(surveys[survey])} (#{survey})" for survey in names}


def test_responses_per_day_in_the_chart_equal_sql_over_the_facts(built):
    (trace,) = traces(embedded_figures(built.html)["responses_daily"], "responses_per_day")
    got = dict(zip(trace["x"], trace["y"], strict=True))
    want = {str(day): count for day, count in sql(built, """
        SELECT response_date, COUNT(*) FROM micrometrics.fct_survey_responses GROUP BY 1""")}
    assert got == want and len(want) > 100
    assert trace["x"] == sorted(trace["x"])


def test_devices_gone_quiet_equal_dim_devices(built):
    (trace,) = traces(embedded_figures(built.html)["silent_devices"], "days_silent")
    got = {custom[0]: days for days, custom in zip(trace["x"], trace["customdata"], strict=True)}
    exact = dict(sql(built, """
        SELECT device_id, date_diff('millisecond', last_response_at, as_of) / 86400000.0
        FROM micrometrics.dim_devices
        WHERE is_silent AND last_response_at IS NOT NULL"""))
    assert got.keys() == exact.keys() and got
    # Each bar is the exact silence rounded to a tenth of a day, longest first.
    assert all(abs(got[device] - exact[device]) <= 0.05 + 1e-9 for device in got)
    assert trace["x"] == sorted(trace["x"], reverse=True)
    # The table lists every silent device, those that never responded too.
    silent = {device for (device,) in sql(
        built, "SELECT device_id FROM micrometrics.dim_devices WHERE is_silent")}
    assert set(re.findall(r'<tr data-device="([^"]+)">', built.html)) == silent
    (active,) = sql(built, "SELECT COUNT(*) FROM micrometrics.dim_devices "
                           "WHERE status = 'active'")[0]
    assert 0 < len(silent) < active


def freshness_values(html: str) -> dict[str, datetime | None]:
    return {key: datetime.fromisoformat(value) if value else None
            for key, value in re.findall(r'data-freshness="(\w+)" data-value="([^"]*)"', html)}


def test_freshness_equals_the_loads_and_the_marts(built):
    got = freshness_values(built.html)
    (last_load, loads), = sql(built, "SELECT MAX(inserted_at), COUNT(*) "
                                     "FROM micrometrics._dlt_loads WHERE status = 0")
    (newest_response,), = sql(built, "SELECT MAX(responded_at) "
                                     "FROM micrometrics.fct_survey_responses")
    (newest_update,), = sql(built, "SELECT MAX(updated_at) FROM micrometrics.survey_responses")
    assert got == {
        "data_as_of": last_load.astimezone(UTC),  # a library sync records no sync status
        "newest_response_at": newest_response.astimezone(UTC),
        "newest_updated_at": newest_update.astimezone(UTC),
        "models_as_of": built.as_of,
    }
    age = built.now - last_load.astimezone(UTC)
    assert timedelta(minutes=5) <= age < timedelta(minutes=30)
    assert (f"{age_text(age)} before this report; {loads:,} loads in all; no sync status "
            f"recorded") in built.html
    assert 'data-source="dlt_loads"' in built.html
    data = report_data(built.pipeline, now=built.now)
    assert data.freshness.last_load_age == age and data.freshness.generated_at == built.now
    assert data.freshness.data_age == age and not data.freshness.recorded


def test_postgres_gives_the_same_numbers_as_duckdb(start_sandbox, clock, tmp_path,
                                                   postgres_credentials):
    """The report's queries are translated like the models: on PostgreSQL they read the same
    numbers from the same data (the loads themselves differ: each destination has its own)."""
    sandbox = start_sandbox(clock=clock, **SMALL)
    duck = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000).pipeline
    postgres = sync_into(sandbox, pipeline_on(dlt.destinations.postgres(
        credentials=postgres_credentials), tmp_path / "postgres_pipelines"), clock).pipeline
    as_of = datetime.fromtimestamp(clock(), UTC)
    now = datetime.now(UTC)
    got = {}
    for pipeline in (duck, postgres):
        build_models(pipeline, now=as_of)
        data = report_data(pipeline, now=now)
        assert data.freshness.loads >= 1 and data.freshness.last_load_at <= now
        got[data.destination] = replace(
            data, destination="", freshness=replace(data.freshness, last_load_at=None, loads=0))
    assert got["postgres"] == got["duckdb"]
    duckdb_data = got["duckdb"]
    assert duckdb_data.weeks and duckdb_data.days and duckdb_data.silent_devices
    assert duckdb_data.responses == 300 and duckdb_data.freshness.newest_response_at


# -- the file -----------------------------------------------------------------------------------

def test_the_file_is_self_contained(built):
    html = built.html
    scripts = re.findall(r"<script\b[^>]*>", html)
    # plotly.js, one JSON block per chart, the few lines that draw them: none from elsewhere.
    assert len(scripts) == len(CHARTS) + 2 and not any("src" in tag for tag in scripts)
    assert html.count("* plotly.js v") == 1  # one copy of the library for all charts
    outside_scripts = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL)
    for reference in ("src=", "href=", "url(", "@import", "http:", "https:", "<link", "<iframe"):
        assert reference not in outside_scripts
    assert [chart for chart, _ in FIGURE.findall(html)] == [chart for chart, _ in CHARTS]
    assert len(html.encode()) < 6_000_000  # plotly.js is about 4.8 MB of it


def test_command_line_writes_the_report_of_the_configured_destination(built, monkeypatch,
                                                                       tmp_path, capsys):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS",
                       str(built.pipeline.destination.config_params["credentials"]))
    output = tmp_path / "out" / "r.html"
    assert main(["--output", str(output), "--pipelines-dir", str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out == f"report: {output.resolve()}\n"
    assert embedded_figures(output.read_text()) == embedded_figures(built.html)


@pytest.mark.parametrize("output", ["", "  ", "folder"])
def test_an_output_that_names_no_file_is_refused_as_an_argument(built, monkeypatch, tmp_path,
                                                                capsys, output):
    # It failed only after every query, with exit 1 (IsADirectoryError: '.').
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS",
                       str(built.pipeline.destination.config_params["credentials"]))
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["--output", output, "--pipelines-dir", str(tmp_path / "cli")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument --output/-o: ")
    assert "name the HTML file to write" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder"]


def test_command_line_without_marts_fails_in_one_line(monkeypatch, tmp_path, capsys):
    database = tmp_path / "empty.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(database))
    args = ["--output", str(tmp_path / "r.html"), "--pipelines-dir", str(tmp_path / "cli")]
    # No file: refused before DuckDB would create an empty one.
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no DuckDB file" in err and "make sync" in err
    assert not database.exists()
    # A database without the marts.
    duckdb.connect(str(database)).close()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make sync" in err and "mart_nps_daily" in err
    assert not (tmp_path / "r.html").exists()


def test_help_lists_the_options(tmp_path):
    done = run_module("pipelines.report", sync_env(tmp_path, "http://127.0.0.1:9"), "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--output", "--destination", "--dataset", "--now"):
        assert option in done.stdout
    # How the other destinations are configured.
    text = " ".join(done.stdout.split())
    for words in ("DESTINATION__POSTGRES__CREDENTIALS=postgresql://",
                  "DESTINATION__<NAME>__CREDENTIALS", "[destination.<name>.credentials]",
                  "DESTINATION__DUCKDB__CREDENTIALS", "last successful sync"):
        assert words in text


def run_report(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The report command in this process, as ``tests.cli.run_cli`` runs the sync."""
    return run_in_process(main, ["report"], env, *args)


def files_under(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path``: (mtime in ns, size)."""
    return {str(file.relative_to(path)): (file.stat().st_mtime_ns, file.stat().st_size)
            for file in sorted(path.rglob("*")) if file.is_file()}


def test_freshness_is_the_last_successful_sync_and_a_failed_one_is_flagged(start_sandbox,
                                                                          tmp_path):
    """Every run of the sync command adds a state-only load to _dlt_loads, failed ones too:
    the report's freshness is the recorded last success (as ``status`` has it), the failure
    is shown, and nothing is written to the sync's pipelines folder."""
    sandbox = start_sandbox(**STATUS_SMALL)
    # DuckDB at its default, relative path: the report must read the sync's file.
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__MAX_ATTEMPTS="1")
    del env["DESTINATION__DUCKDB__CREDENTIALS"]
    assert run_cli(env, "--quiet").returncode == 0  # models built too
    assert (tmp_path / "warehouse.duckdb").exists()
    wrong = run_cli(dict(env, SOURCES__MICROMETRICS__API_SECRET="not-the-secret"), "--quiet")
    assert wrong.returncode == 1
    status = status_json(env)
    success, failed = status["last_success"], status["last_sync"]
    assert failed["exit_cause"] == "failed" and "HTTP 401" in failed["error"]
    started = parse_timestamp(success["started_at"])
    database = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        (last_load,), = database.execute(
            "SELECT MAX(inserted_at) FROM micrometrics._dlt_loads WHERE status = 0").fetchall()
    finally:
        database.close()
    # The failed run's state-only load is the newest in _dlt_loads.
    assert last_load.astimezone(UTC) > parse_timestamp(failed["started_at"])

    pipelines = tmp_path / "dlt" / "pipelines"
    before = files_under(tmp_path / "dlt")
    assert before and any(name.startswith("pipelines/micrometrics/") for name in before)
    output = tmp_path / "report.html"
    now = started + timedelta(hours=1)
    # Beside a notebook reading the file (read_only=True): DuckDB lets readers share it, and
    # the report, opening it to write, could not read it.
    reader = hold_in_another_process(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        done = run_report(env, "--output", str(output), "--now", format_timestamp(now))
    finally:
        reader.communicate("\n", timeout=30)
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path / "dlt") == before  # nothing written, default pipelines dir
    html = output.read_text(encoding="utf-8")
    got = freshness_values(html)
    assert got["data_as_of"] == started != last_load.astimezone(UTC)
    assert 'data-source="sync_status"' in html and "Last successful sync (sync status)" in html
    assert "1 h 0 min before this report" in html and "stale" not in card_of(html)
    alert = re.search(r'<p class="alert" id="last_sync_failed" data-value="([^"]*)">'
                      r"<strong>(.*?)</strong>", html)
    assert alert and alert.group(1) == failed["finished_at"]
    assert "Last sync failed at" in alert.group(2) and "HTTP 401" in alert.group(2)
    assert "not-the-secret" not in html
    # The marts are those of the sync's file.
    assert int(re.search(r'data-total="responses"><dt>Responses</dt><dd>([\d,]+)',
                         html).group(1).replace(",", "")) == 300

    # 25 hours after the success: stale, although the newest load is the failed run's.
    later = run_report(env, "--output", str(output), "--quiet",
                       "--now", format_timestamp(started + timedelta(hours=25)))
    assert later.returncode == 0 and later.stdout == ""
    html = output.read_text(encoding="utf-8")
    assert 'class="card stale" data-freshness="data_as_of"' in html
    assert "The last successful sync is more than 24 hours old." in html
    assert files_under(tmp_path / "dlt") == before

    # The local folder gone: the status comes from the destination's state.
    shutil.rmtree(pipelines)
    assert run_report(env, "--output", str(output), "--quiet").returncode == 0
    assert freshness_values(output.read_text(encoding="utf-8"))["data_as_of"] == started
    assert not pipelines.exists()


@pytest.mark.parametrize("destination", ["postgres", "snowflake", "bigquery"])
def test_missing_credentials_exit_2_naming_the_variable(destination, tmp_path):
    env = sync_env(tmp_path, "http://127.0.0.1:9")
    done = run_report(env, "--destination", destination, "--output", str(tmp_path / "r.html"))
    variable = f"DESTINATION__{destination.upper()}__CREDENTIALS"
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert f"set {variable}, or its fields {variable}__<FIELD>" in done.stderr
    assert done.stderr.rstrip().endswith("see --help")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "dlt").exists()


def test_bad_destination_and_arguments_exit_2_in_one_line(tmp_path):
    env = sync_env(tmp_path, "http://127.0.0.1:9")
    done = run_report(env, "--destination", "foo", "--output", str(tmp_path / "r.html"))
    assert done.returncode == 2
    assert done.stderr == ("error: unknown destination 'foo': use one of duckdb, postgres, "
                           "snowflake, bigquery (see --help)\n")
    for args in (["--now", "yesterday"], ["--no-such-option"]):
        bad = run_report(env, *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert bad.stderr.startswith("error: ") and bad.stderr.rstrip().endswith("(see --help)")
    assert not (tmp_path / "dlt").exists()


# -- the browser --------------------------------------------------------------------------------

CANARY = """<!DOCTYPE html><html><head><script src="http://127.0.0.1:9/lib.js"></script></head>
<body><img src="https://127.0.0.1:9/pixel.png"></body></html>"""


@pytest.mark.slow  # a real browser (chromium through Playwright): ~5-9 s
def test_headless_chromium_draws_every_chart_offline_without_errors(built, tmp_path):
    """Fails (never skips) without chromium: `make test-slow` installs it (`make chromium`)."""
    canary = tmp_path / "canary.html"
    canary.write_text(CANARY)
    with offline_page() as (page, log):
        # The guard works: a page that reaches out is caught.
        page.goto(canary.as_uri())
        assert sorted(log.blocked) == ["http://127.0.0.1:9/lib.js",
                                       "https://127.0.0.1:9/pixel.png"]
        log.clear()

        assert open_report(page, built.path, len(CHARTS)) == len(CHARTS)
        assert page.evaluate(RENDERED_CHARTS_JS) == len(CHARTS)
        assert log.blocked == []
        assert log.requests == [built.path.as_uri()]
        assert log.errors == [] and log.console_errors == [] and log.dialogs == []
        drawn = page.evaluate("""() => Array.from(document.querySelectorAll('div.js-plotly-plot'))
            .map(div => [div.id, div.data.length, div.querySelectorAll('.point').length])""")
        # Empty marts: every chart still drawn, with its note (names that try to break out
        # of the page are checked in the HTML, tests/test_report_render.py).
        log.clear()
        empty = write_report(empty_data(), tmp_path / "empty.html")
        assert open_report(page, empty, len(CHARTS)) == len(CHARTS)
        assert log.blocked == [] and log.requests == [empty.as_uri()]
        assert log.errors == log.console_errors == log.dialogs == []
    figures = embedded_figures(built.html)
    assert [chart for chart, _, _ in drawn] == [chart for chart, _ in CHARTS]
    for chart, trace_count, points in drawn:
        assert trace_count == len(figures[chart]["data"])
        assert points > 0  # bars and markers are on the page, not only axes


def test_a_response_without_a_date_is_left_out_not_a_crash(start_sandbox, clock, tmp_path):
    # created_at is not required to load (only id and updated_at are): such a response has no
    # local day in the marts (a data test flags it), and the report leaves it out of the days
    # and weeks instead of failing.
    sandbox = start_sandbox(clock=clock, **SMALL)
    dateless = sandbox.truth()["survey_responses"][0]["id"]
    sandbox.patch_records("survey_responses", [dateless], {"created_at": None})
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    now = datetime.fromtimestamp(clock(), UTC)
    build_models(result.pipeline, now=now, run_tests=False)

    data = report_data(result.pipeline, now=now)
    responses = len(sandbox.truth()["survey_responses"])
    assert sum(day.responses for day in data.days) == responses - 1
    assert sum(week.responses for week in data.weeks) == responses - 1
