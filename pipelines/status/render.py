"""The status report as text, for people."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipelines.micrometrics import RESOURCES
from pipelines.micrometrics.timeutil import duration, parse_timestamp
from pipelines.text_lists import SHOWN_LINES, first_of

SOURCES = {"none": "none found (nothing synced yet?)",
           "local": "from the local pipeline folder",
           "destination": "from the destination (_dlt_pipeline_state)"}


def ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "never"
    return f"{stamp} ({duration(now - parse_timestamp(stamp))} ago)"


def sync_line(label: str, record: dict[str, Any] | None, now: datetime) -> str:
    if not record:
        return f"{label}: none recorded"
    rows = sum((record.get("rows_loaded") or {}).values())
    what = f"{record['exit_cause']} (exit {record['exit_code']})"
    scope = "" if not record.get("explicit_range") else ", an explicit re-read"
    if set(record.get("resources") or []) != set(RESOURCES):
        scope += f", resources {','.join(record.get('resources') or [])}"
    line = (f"{label}: {what}, started {ago(record['started_at'], now)}, finished "
            f"{record['finished_at']}{scope}")
    if record.get("requests") is not None:
        line += f"; {rows} rows loaded, {record['requests']} requests"
    if record.get("error"):
        line += f"; error: {record['error']}"
    return line


def stream_lines(streams: list[dict[str, Any]]) -> list[str]:
    """A line per stream, in the report's order; of many, those the reader looks for first (an
    open backfill, never read to its end, devices, then the least recently synced), and how many
    more."""
    if len(streams) > SHOWN_LINES:
        def urgency(stream: dict[str, Any]) -> tuple:
            return (not stream["backfill"] and bool(stream["high_water"]),
                    stream["stream"] != "devices", stream["high_water"] or "")
        chosen = {id(s) for s in sorted(streams, key=urgency)[:SHOWN_LINES]}
        hidden = [s for s in streams if id(s) not in chosen]
        streams = [s for s in streams if id(s) in chosen]
    else:
        hidden = []
    width = max(len(s["stream"]) for s in streams)
    lines = [stream_line(stream, width) for stream in streams]
    if hidden:
        synced = sorted(s["high_water"] for s in hidden if s["high_water"])
        through = f", synced through {synced[0]} .. {synced[-1]}" if synced else ""
        lines.append(f"  ... and {len(hidden)} more streams{through} (--json lists them all)")
    return lines


def stream_line(stream: dict[str, Any], width: int) -> str:
    name = stream["stream"]
    if not stream["high_water"] and not stream["backfill"]:
        return f"  {name:<{width}} never read to its end"
    parts = [f"synced through {stream['high_water'] or '-'}",
             f"newest record {stream['newest_record'] or '-'}",
             f"deep pass {stream['last_deep_pass'] or '-'}"]
    backfill = stream["backfill"]
    if backfill:
        part_way = ", a window read part-way" if backfill["window_part_way"] else ""
        kind = "deep pass" if backfill["deep_pass"] else "backfill"
        parts.append(f"OPEN {kind}: {backfill['from']} .. {backfill['to']} read down to "
                     f"{backfill['read_down_to']}{part_way} (the next sync continues it)")
    return f"  {name:<{width}} " + "; ".join(parts)


def render(report: dict[str, Any], now: datetime) -> str:
    source = report["state_source"]
    versions = ", ".join(f"{k} v{v}" for k, v in report["state_versions"].items())
    lines = [f"status of pipeline micrometrics: {report['destination']} dataset "
             f"{report['dataset']!r}, as of {report['now']}",
             f"state: {SOURCES.get(source, source)}{' (' + versions + ')' if versions else ''}"]
    lines.append(sync_line("last sync", report["last_sync"], now))
    lines.append(sync_line("last successful complete sync", report["last_success"], now))
    if running := report["sync_running"]:
        lines.append(f"sync running here: pid {running['pid']}, started "
                     f"{ago(running['started_at'], now)}")
    freshness = f"data as of: {ago(report['data_as_of'], now)}"
    if report["fresh"] is not None:
        limit = duration(timedelta(seconds=report["max_age_seconds"]))
        freshness += (f"; fresh (within --max-age {limit})" if report["fresh"]
                      else f"; STALE (older than --max-age {limit})")
    lines.append(freshness)
    lines.append(f"last deep pass (or first full read): {ago(report['last_deep_pass'], now)}")
    reconcile = report["last_reconcile"]
    if reconcile:
        marked = ", ".join(f"{n} {t}" for t, n in sorted(reconcile["marked"].items())) or "none"
        lines.append(f"last reconcile: {ago(reconcile['at'], now)}; marked deleted: {marked}")
    else:
        lines.append("last reconcile: none recorded")
    streams = report["streams"]
    if streams:
        lines.append("streams:")
        lines += stream_lines(streams)
    backfills = report["open_backfills"]
    lines.append(f"open backfills: {', '.join(backfills)}" if backfills
                 else "open backfills: none")
    for reread in report["stopped_rereads"]:
        lines.append(
            f"stopped re-read: --start-at {reread['from']}"
            + (f" --end-at {reread['to']}" if reread["to"] else "")
            + f", begun {reread['begun']}, unfinished: {', '.join(reread['unfinished'])}; "
            + ("begun too long ago: the same command starts it anew" if reread["expired"] else
               f"the same command goes on with it until {reread['goes_on_until']}"))
    listing = report["survey_list"]
    if listing:
        lines.append(f"survey list: {listing['listed']} surveys listed, "
                     f"{len(listing['gone'])} gone (marked deleted)")
    skipped = report["quiet_surveys_skipped"]
    if skipped:
        stalest = sorted(skipped, key=lambda s: s["last_read"])
        stale = first_of([f"{s['survey_id']} {s['stale_hours']:.1f} h" for s in stalest],
                         "--json lists them all")
        lines.append(f"quiet surveys: {len(skipped)} not read by the last sync; stale by: "
                     f"{stale}")
    else:
        lines.append("quiet surveys: none skipped by the last sync")
    tables = report["tables"]
    if tables is not None:
        width = max(len(t) for t in tables)
        lines.append("rows in the destination:")
        lines += [f"  {t:<{width}} {'-' if n is None else n:>10}" for t, n in tables.items()]
    rejected = report["rejected"]
    if rejected is not None:
        detail = "; ".join(f"{r['stream']}: {r['reason']}: {r['rows']}"
                           for r in rejected["by_stream"])
        lines.append(f"rejected records: {rejected['total']}" + (f" ({detail})" if detail else ""))
    lines += [f"warning: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
