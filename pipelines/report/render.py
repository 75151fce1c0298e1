"""The report as one self-contained HTML file: plotly.js inline once, each chart's figure as
JSON in the page, nothing fetched from anywhere.

Every chart is made from a :class:`~pipelines.report.data.ReportData` only. Each figure's JSON
sits in a ``<script type="application/json" class="figure" data-chart="...">`` block that a
few lines of inline script hand to ``Plotly.newPlot``, so what the page draws is exactly what
:func:`figures` returned (and what tests read back out of the file).
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots

from pipelines.micrometrics.timeutil import parse_timestamp

from .data import ReportData, SilentDevice

# The charts, in page order: (id, heading).
CHARTS = (
    ("nps_weekly", "NPS per survey, weekly"),
    ("responses_daily", "Responses per day"),
    ("silent_devices", "Devices gone quiet"),
)
PALETTE = qualitative.Plotly
SILENT_CHART_MAX = 30  # the chart shows the longest silent; the table lists every one
STALE_AFTER = timedelta(hours=24)  # data older than this (Freshness.data_age) is flagged
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def figures(data: ReportData) -> dict[str, go.Figure]:
    """The report's charts by id (see ``CHARTS``)."""
    return {
        "nps_weekly": nps_figure(data),
        "responses_daily": daily_figure(data),
        "silent_devices": silent_figure(data),
    }


def base_layout(fig: go.Figure, height: int) -> None:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 20, "b": 40},
        font={"family": FONT, "size": 13},
        hoverlabel={"font": {"family": FONT}},
    )


def nps_figure(data: ReportData) -> go.Figure:
    """A line per survey of weekly NPS over stacked bars of that week's responses."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        row_heights=[0.68, 0.32])
    for index, (survey_id, name) in enumerate(data.surveys.items()):
        weeks = [week for week in data.weeks if week.survey_id == survey_id]
        color = PALETTE[index % len(PALETTE)]
        label = f"{plot_text(name)} (#{survey_id})"
        x = [week.week_start.isoformat() for week in weeks]
        counts = [[week.nps_responses, week.responses, week.promoters, week.detractors]
                  for week in weeks]
        fig.add_trace(go.Scatter(
            x=x, y=[week.nps for week in weeks], name=label, mode="lines+markers",
            line={"color": color, "width": 2}, marker={"size": 5}, connectgaps=False,
            legendgroup=str(survey_id), meta={"survey_id": survey_id, "series": "nps"},
            customdata=counts,
            hovertemplate=("<b>%{fullData.name}</b><br>week of %{x|%Y-%m-%d}<br>"
                           "NPS %{y:+.1f}<br>%{customdata[0]} NPS answers "
                           "(%{customdata[2]} promoters, %{customdata[3]} detractors)<br>"
                           "%{customdata[1]} responses<extra></extra>"),
        ), row=1, col=1)
        fig.add_trace(go.Bar(
            x=x, y=[week.responses for week in weeks], name=label, marker={"color": color},
            opacity=0.75, showlegend=False, legendgroup=str(survey_id),
            meta={"survey_id": survey_id, "series": "responses"},
            customdata=[[week.nps_responses] for week in weeks],
            hovertemplate=("<b>%{fullData.name}</b><br>week of %{x|%Y-%m-%d}<br>"
                           "%{y} responses, %{customdata[0]} with an NPS answer<extra></extra>"),
        ), row=2, col=1)
    base_layout(fig, 560)
    fig.update_layout(barmode="stack", hovermode="closest",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    fig.update_yaxes(title_text="NPS", range=[-105, 105], zeroline=True, zerolinewidth=2,
                     row=1, col=1)
    fig.update_yaxes(title_text="responses", row=2, col=1)
    fig.update_xaxes(type="date", row=2, col=1)
    if not data.weeks:
        no_data(fig, "No responses in the marts yet")
    return fig


def daily_figure(data: ReportData) -> go.Figure:
    """Responses per local day, all surveys."""
    fig = go.Figure(go.Bar(
        x=[day.day.isoformat() for day in data.days], y=[day.responses for day in data.days],
        name="responses", marker={"color": PALETTE[0]}, meta={"series": "responses_per_day"},
        hovertemplate="%{x|%a %Y-%m-%d}: %{y} responses<extra></extra>",
    ))
    base_layout(fig, 320)
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text="responses")
    if not data.days:
        no_data(fig, "No responses in the marts yet")
    return fig


def silent_figure(data: ReportData) -> go.Figure:
    """Days since the last response of each silent device that ever responded, longest first
    (at most ``SILENT_CHART_MAX``)."""
    shown = [device for device in data.silent_devices
             if device.days_silent is not None][:SILENT_CHART_MAX]
    fig = go.Figure(go.Bar(
        x=[device.days_silent for device in shown],
        y=[device_label(device) for device in shown],
        orientation="h", name="days silent", marker={"color": "#d97706"},
        meta={"series": "days_silent"},
        customdata=[[device.device_id, iso(device.last_response_at),
                     device.responses_last_30d] for device in shown],
        hovertemplate=("<b>%{y}</b><br>%{x:.1f} days since the last response "
                       "(%{customdata[1]})<br>%{customdata[2]} responses in 30 days"
                       "<extra></extra>"),
    ))
    base_layout(fig, max(220, 70 + 26 * len(shown)))
    fig.update_layout(margin={"l": 20})
    fig.update_xaxes(title_text="days since the last response", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", automargin=True)
    if not shown:
        no_data(fig, "No active device has gone quiet")
    return fig


def device_label(device: SilentDevice) -> str:
    """Names repeat across devices; the id keeps each bar its own."""
    return plot_text(f"{device.device_name or 'unnamed'} · {device.device_id}")


def plot_text(text: str) -> str:
    """Text shown literally by plotly.js, which reads a few HTML tags (``<b>``, ``<a href>``)
    and entities in names and labels."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def no_data(fig: go.Figure, text: str) -> None:
    """An empty chart: the note instead of empty axes (still a chart, so the page's layout and
    its count of charts do not depend on the data)."""
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 16, "color": "#6b7280"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=160, showlegend=False)


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON safe inside a ``<script>`` block (every ``<`` escaped)."""
    text = pio.to_json(fig, validate=True, pretty=False, remove_uids=True)
    return text.replace("<", "\\u003c")


# -- the page -----------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; }
body { font-family: FONT_STACK; margin: 0; background: #f6f7f9; color: #111827; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 0 0 6px; }
.sub, .note { color: #4b5563; font-size: 0.9rem; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 16px 18px;
          margin: 16px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
         margin: 0; }
.card { border: 1px solid #e5e7eb; border-radius: 6px; padding: 10px 12px; background: #fafafa; }
.card dt { color: #4b5563; font-size: 0.8rem; }
.card dd { margin: 2px 0 0; font-size: 1.15rem; font-weight: 600; }
.card dd small { display: block; font-size: 0.8rem; font-weight: 400; color: #4b5563; }
.card.stale { border-color: #d97706; background: #fffbeb; }
.alert { border: 1px solid #dc2626; background: #fef2f2; color: #991b1b; padding: .5em .75em;
  border-radius: 6px; }
.chart { width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; margin-top: 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
th { color: #4b5563; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; }
footer { color: #6b7280; font-size: 0.8rem; }
""".replace("FONT_STACK", FONT)

RENDER = """
(function () {
  var config = PLOT_CONFIG;
  document.querySelectorAll('script.figure').forEach(function (node) {
    var figure = JSON.parse(node.textContent);
    Plotly.newPlot(node.getAttribute('data-chart'), figure.data, figure.layout, config);
  });
})();
"""


def render_html(data: ReportData) -> str:
    """The whole page."""
    charts = figures(data)
    blocks = "\n".join(
        f'<script type="application/json" class="figure" data-chart="{chart}">'
        f"{figure_json(charts[chart])}</script>"
        for chart, _ in CHARTS
    )
    freshness = data.freshness
    title = f"Micrometrics report: {data.dataset} ({data.destination})"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<main>
<header>
<h1>Micrometrics survey report</h1>
<p class="sub">Dataset <code>{esc(data.dataset)}</code> on {esc(data.destination)}, made
{esc(stamp(freshness.generated_at))} from the marts (<code>mart_nps_daily</code>,
<code>fct_survey_responses</code>, <code>dim_devices</code>) and the sync status in dlt's
pipeline state (or dlt's <code>_dlt_loads</code> where none was recorded).</p>
</header>
{freshness_section(data)}
<section id="nps_weekly_section">
<h2>NPS per survey, weekly</h2>
<p class="note">NPS = 100 &times; (promoters &minus; detractors) / NPS answers, per ISO week
(Monday to Sunday, local day of the device). Bars: the week's responses per survey. A gap in a
line is a week without an NPS answer. Click a survey in the legend to hide it.</p>
<div class="chart" id="nps_weekly"></div>
</section>
<section id="responses_daily_section">
<h2>Responses per day</h2>
<p class="note">All surveys, by the device's local day; {esc(span(data))}.</p>
<div class="chart" id="responses_daily"></div>
</section>
{silent_section(data)}
<footer>Generated by <code>python -m pipelines.report</code>. Charts: plotly.js
{esc(get_plotlyjs_version())} (plotly {esc(plotly.__version__)}), embedded in this file: it
needs no server and no network.</footer>
</main>
{blocks}
<script>{RENDER.replace("PLOT_CONFIG", json.dumps(PLOT_CONFIG))}</script>
</body>
</html>
"""


def freshness_section(data: ReportData) -> str:
    fresh = data.freshness
    age = fresh.data_age
    stale = age is None or age > STALE_AFTER
    if fresh.recorded:
        main = card("data_as_of", "Last successful sync (sync status)", fresh.data_as_of,
                    relative(age) if fresh.data_as_of else "no successful sync recorded",
                    css="stale" if stale else "", source="sync_status")
    else:
        main = card("data_as_of", "Last load (dlt _dlt_loads)", fresh.data_as_of,
                    f"{relative(age)}; {fresh.loads:,} loads in all; no sync status recorded",
                    css="stale" if stale else "", source="dlt_loads")
    cards = [
        main,
        card("newest_response_at", "Newest response (responded_at)", fresh.newest_response_at,
             relative(fresh.newest_response_age)),
        card("newest_updated_at", "Newest updated_at loaded", fresh.newest_updated_at,
             "any loaded response, marked ones too"),
        card("models_as_of", "Marts built as of", fresh.models_as_of,
             "the reference time of dim_devices' 7/30-day counts"),
    ]
    silent = len(data.silent_devices)
    totals = [
        plain_card("responses", "Responses", f"{data.responses:,}",
                   f"{len(data.surveys)} surveys"),
        plain_card("devices", "Devices", f"{data.devices:,}",
                   f"{data.active_devices:,} active, {silent:,} gone quiet"),
    ]
    if fresh.recorded:
        source = ("Freshness: the start of the last successful complete sync the sync command "
                  "recorded in the pipeline state (as <code>make status</code> reports it).")
    else:
        source = ("Freshness: the newest completed load in dlt's <code>_dlt_loads</code> (no "
                  "sync status recorded: syncs run through the library record none).")
    what = "last successful sync" if fresh.recorded else "last load"
    warning = f"<strong>The {what} is more than 24 hours old.</strong>" if stale else ""
    if age is None:
        warning = f"<strong>No {what} found.</strong>"
    return f"""<section id="freshness">
<h2>Data freshness</h2>
<p class="note">Times in UTC, as of this report ({esc(stamp(fresh.generated_at))}).
{source} {warning}</p>
{failed_sync_note(fresh.failed_sync)}<dl class="cards">
{"".join(cards)}{"".join(totals)}
</dl>
</section>"""


def failed_sync_note(last: dict[str, Any] | None) -> str:
    """The last sync's failure, when it failed: when, how, why."""
    if last is None:
        return ""
    at = last.get("finished_at") or last.get("started_at")
    cause = last.get("error") or last.get("exit_cause") or "no cause recorded"
    text = (f"Last sync failed at {stamp(utc_or_none(at))} (exit {last.get('exit_code')}, "
            f"{last.get('exit_cause')}): {cause}")
    return (f'<p class="alert" id="last_sync_failed" data-value="{esc(at or "")}">'
            f"<strong>{esc(text)}</strong></p>\n")


def utc_or_none(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def card(key: str, label: str, value: datetime | None, detail: str, css: str = "",
         source: str = "") -> str:
    extra = f' data-source="{esc(source)}"' if source else ""
    return (f'<div class="card {css}" data-freshness="{key}" data-value="{esc(iso(value))}"'
            f"{extra}>"
            f"<dt>{esc(label)}</dt><dd>{esc(stamp(value))}<small>{esc(detail)}</small></dd>"
            f"</div>\n")


def plain_card(key: str, label: str, value: str, detail: str) -> str:
    return (f'<div class="card" data-total="{key}"><dt>{esc(label)}</dt>'
            f"<dd>{esc(value)}<small>{esc(detail)}</small></dd></div>\n")


def silent_section(data: ReportData) -> str:
    devices = data.silent_devices
    as_of = stamp(data.freshness.models_as_of)
    charted = sum(1 for device in devices if device.days_silent is not None)
    if charted > SILENT_CHART_MAX:
        shown = f"The chart shows the {SILENT_CHART_MAX} longest silent of {charted}."
    else:
        shown = ""
    rows = "\n".join(
        f'<tr data-device="{esc(device.device_id)}"><td>{esc(device.device_name or "")}</td>'
        f"<td><code>{esc(device.device_id)}</code></td><td>{esc(device.location_id or '')}</td>"
        f"<td>{esc(stamp(device.last_response_at) if device.last_response_at else 'never')}"
        f'</td><td class="num">'
        f"{'' if device.days_silent is None else f'{device.days_silent:.1f}'}</td>"
        f'<td class="num">{device.responses_last_30d}</td></tr>'
        for device in devices
    )
    table = (
        "<table><thead><tr><th>device</th><th>id</th><th>location</th><th>last response</th>"
        '<th class="num">days silent</th><th class="num">responses, 30 days</th></tr></thead>'
        f"<tbody>\n{rows}\n</tbody></table>"
        if devices else ""
    )
    return f"""<section id="silent_devices_section">
<h2>Devices gone quiet</h2>
<p class="note">Active devices in <code>dim_devices</code> without a response in the 7 days
before {esc(as_of)} (<code>is_silent</code>): {len(devices):,} of {data.active_devices:,} active
devices. {shown}</p>
<div class="chart" id="silent_devices"></div>
{table}
</section>"""


def write_report(data: ReportData, path: Path | str) -> Path:
    """Writes the page to ``path`` (atomically: a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise IsADirectoryError(f"--output {str(target)!r} is a directory; name a file in it")
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(render_html(data), encoding="utf-8")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)  # a few MB of hidden half-report otherwise
        raise
    return target.resolve()


# -- formatting ---------------------------------------------------------------------------------

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def stamp(value: datetime | None) -> str:
    return "none" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def span(data: ReportData) -> str:
    if not data.days:
        return "no response yet"
    return f"{data.responses:,} responses from {data.days[0].day} to {data.days[-1].day}"


def relative(age: timedelta | None) -> str:
    """``3 h 12 min before this report`` (or after it, when a clock is off)."""
    if age is None:
        return "never"
    when = "after" if age < timedelta(0) else "before"
    return f"{age_text(abs(age))} {when} this report"


def age_text(age: timedelta) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``40 s`` (whole units, rounded down)."""
    seconds = int(age.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
