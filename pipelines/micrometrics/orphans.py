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
from datetime import datetime
from typing import Any

import dlt
from dlt.common.utils import uniq_id

from .client import MicrometricsClient
from .marks import Marker, chunks, timestamp_literal
from .reconcile import listed_ids
from .timeutil import format_timestamp
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
    longer lists; returns how many. No request unless some device is unknown."""
    with pipeline.sql_client() as sql:
        marker = Marker(sql)
        unknown = unknown_devices(marker)
        if not unknown:
            return 0
        listed = {str(i) for i in listed_ids(client, "/devices", listing_window(now))}
        erased = [device for device in unknown if str(device) not in listed]
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
                "and were never loaded (erased before a sync saw them): recorded as deleted",
                len(erased))
    return len(erased)
