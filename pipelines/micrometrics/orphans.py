"""Devices erased upstream before any sync saw them: known from their responses only.

A device the API no longer serves leaves nothing to read, while its responses still name it. A
destination that had loaded it keeps its row, marked (``deleted_at``, by ``--reconcile``); one
that never had it (the first sync came after the kiosk was decommissioned, or a
``--full-refresh`` of devices dropped its row) had no row at all, and
``responses_have_known_device`` failed every build, for good (exit 4). So after the loads, the
device ids that live responses name and the devices table lacks are looked up in a listing of
every device (a request per page of devices, and only then): each one the API does not list
gets a row of its own, id and mark only, as the row of a device seen before its erasure would
be once purged of its attributes. One the API does list is left alone: a device the devices
stream missed is breakage, and the data test still says so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.common.utils import uniq_id

from pipelines.terminal_text import shown
from pipelines.text_lists import first_of

from .client import MicrometricsClient
from .listing import whole_listing
from .marks import Marker, chunks, timestamp_literal
from .quarantine import rejection_reason
from .source_state import SOURCE_NAME, source_state
from .timeutil import CLOCK_SKEW, format_timestamp, parse_timestamp
from .warehouse import sql_literal
from .windows import listing_window

log = logging.getLogger("micrometrics")


def unknown_devices(marker: Marker) -> list[Any]:
    """Device ids that live responses name and no row of the devices table holds."""
    devices, responses = marker.table("devices"), marker.table("survey_responses")
    if devices is None or responses is None:
        return []
    rows = marker.client.execute_sql(
        f"SELECT DISTINCT r.device_id FROM {responses} AS r WHERE r.device_id IS NOT NULL "
        f"AND r.deleted_at IS NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {devices} AS d WHERE d.id = r.device_id)")
    return sorted((row[0] for row in rows or []), key=str)


def record_erased_devices(client: MicrometricsClient, pipeline: dlt.Pipeline,
                          now: datetime) -> int:
    """Adds a marked row for each device that responses name, the table lacks and the API no
    longer lists; returns how many. No request unless some device is unknown, and none for
    devices found listed (missing for another reason) within the last ``RELIST_AFTER``."""
    with pipeline.sql_client() as sql:
        marker = Marker(sql)
        unknown = unknown_devices(marker)
        if not unknown or not _relist_due(pipeline, unknown, now):
            return 0
        listed = {str(record["id"]): record
                  for record in whole_listing(client, "/devices", listing_window(now))
                  if isinstance(record, dict) and record.get("id") is not None}
        erased = [device for device in unknown if str(device) not in listed]
        _listed_but_missing(pipeline, [listed[str(device)] for device in unknown
                                       if str(device) in listed], now)
        if not erased:
            return 0
        devices = marker.table("devices")
        # The rows need dlt's keys: a load id the tables already hold, an id of their own.
        ((load_id,),) = sql.execute_sql(
            f"SELECT MAX(_dlt_load_id) FROM (SELECT _dlt_load_id FROM {devices} UNION ALL "
            f"SELECT _dlt_load_id FROM {marker.table('survey_responses')}) AS loads")
        when = timestamp_literal(format_timestamp(now))
        for part in chunks(erased):
            values = ", ".join(
                f"({sql_literal(device)}, {when}, {sql_literal(load_id)}, "
                f"{sql_literal(uniq_id())})" for device in part)
            sql.execute_sql(f"INSERT INTO {devices} (id, deleted_at, _dlt_load_id, _dlt_id) "
                            f"VALUES {values}")
    log.warning("warning: %d device(s) that responses name are no longer served by the API "
                "and the destination holds no row of (erased before a sync saw them, or "
                "their rows dropped by a --full-refresh): recorded as deleted",
                len(erased))
    return len(erased)


# A device the API lists but the table lacks (its record quarantined, say) is not listed for
# again before this long: else every sync listed every device (50 requests for 5,000).
RELIST_AFTER = timedelta(hours=24)
MEMO = "devices_listed_but_missing"  # in the source's state: {"ids": [...], "at": ...}


def _relist_due(pipeline: dlt.Pipeline, unknown: list[Any], now: datetime) -> bool:
    memo = pipeline.state.get("sources", {}).get(SOURCE_NAME, {}).get(MEMO) or {}
    seen = {str(i) for i in memo.get("ids", [])}
    if not memo.get("at") or not {str(i) for i in unknown} <= seen:
        return True
    return now - parse_timestamp(memo["at"]) >= RELIST_AFTER


def _listed_but_missing(pipeline: dlt.Pipeline, records: list[dict[str, Any]],
                        now: datetime) -> None:
    """Remembers devices the API lists that the table lacks (``records``: as listed), and says
    why, each kind once: quarantined (a read again would not load them); added or changed
    since this sync began (a kiosk set up during a long backfill, a device edited while the
    devices were paged: the next sync's incremental read loads them); else missed by a read,
    or back unchanged after it was recorded as erased, and the devices are read again from
    their start by the next sync. The data test names them meanwhile."""
    quarantined = [r["id"] for r in records if rejection_reason(r, "devices") is not None]
    recent = [r["id"] for r in records if r["id"] not in quarantined
              and _changed_since(r.get("updated_at"), now - CLOCK_SKEW)]
    missed = [r["id"] for r in records if r["id"] not in quarantined and r["id"] not in recent]
    with pipeline.managed_state() as state:
        source = source_state(state)
        seen = {str(i) for i in (source.get(MEMO) or {}).get("ids", [])}
        source[MEMO] = {"ids": [str(r["id"]) for r in records], "at": format_timestamp(now)}
        new_quarantined = {str(i) for i in quarantined} - seen
        new_missed = {str(i) for i in missed} - seen
        if new_missed:
            source.get("resources", {}).pop("devices", None)
    named = "warning: device(s) %s that responses name are listed by the API but not in the " \
            "devices table: %s"
    if new_quarantined:
        log.warning(named, _ids(quarantined), "quarantined, see _rejected_records")
    if recent:
        log.warning(named, _ids(recent), "added or changed since this sync began; the next "
                    "sync loads them")
    if missed:
        log.warning(named, _ids(missed), "the devices are read again from their start next "
                    "sync" if new_missed else "read again from their start since")


def _ids(ids: list[Any]) -> str:
    return first_of([shown(i) for i in ids], None)


def _changed_since(updated_at: Any, moment: datetime) -> bool:
    try:
        return parse_timestamp(str(updated_at)) >= moment
    except ValueError:
        return False


def forget_returned(pipeline: dlt.Pipeline, marker: Marker, listed: set[str]) -> set[str]:
    """Rows recorded for erased devices (id and mark only, no ``updated_at``) whose device the
    API lists again: the devices are read again from their start by the next sync, whose merge
    puts the live record over the row (an undeleted device keeps its ``updated_at``, which no
    incremental read reaches). Until then the row stays as it is, marked: unmarked, it was a
    live device without a name, status or time zone, for good; deleted, its responses failed
    the data tests of that sync's build (exit 4). Returns their ids, as text."""
    if marker.table("devices") is None:
        return set()
    back = {str(device) for device, _mark in marker.ids("devices", "updated_at IS NULL")
            if str(device) in listed}
    if back:
        with pipeline.managed_state() as state:
            source_state(state).get("resources", {}).pop("devices", None)
    return back
