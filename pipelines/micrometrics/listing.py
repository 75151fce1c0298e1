"""Every id a stream lists, over its whole history: what ``--reconcile``, the survey list's
deletions and the check for devices erased before any sync saw them compare with.

A listing is no snapshot: a record changed between two of its pages moves in the server's
order, and where the server sorts by time (newest first, say) it moves to a page already read
and is in none of the others. Taken for gone, a survey edited while the list was paged was
marked deleted with all its responses (and read again from its start the sync after); a
reconcile marked a live response. So a listing of more than one page also reads what changed
since it began (one request, usually): whatever moved is in that window. ``--reconcile``, which
lists every stream, asks for that only of the streams where something seems gone
(``changed_since``): once per stream, it would cost one request per survey.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from .client import MicrometricsClient
from .errors import CursorRejectedError
from .timeutil import CLOCK_SKEW
from .walk import CURSOR_RESTARTS
from .windows import Window

log = logging.getLogger("micrometrics")


def listed_ids(client: MicrometricsClient, path: str, window: Window,
               changed_again: bool = True) -> set[Any]:
    """Every id the stream lists (see ``whole_listing``)."""
    return {record["id"] for record in whole_listing(client, path, window, changed_again)
            if isinstance(record, dict) and record.get("id") is not None}


def whole_listing(client: MicrometricsClient, path: str, window: Window,
                  changed_again: bool = True) -> list[Any]:
    """Every record of ``path`` in ``window``; with ``changed_again``, those changed while it
    was paged included (see the module), each given once, as read last."""
    began = client.now()
    records, pages = _read_to_end(client, path, window)
    if pages < 2 or not changed_again:
        return records
    changed, _ = _read_to_end(client, path, changed_since(began, window))
    again = {str(record["id"]) for record in changed
             if isinstance(record, dict) and record.get("id") is not None}
    return [record for record in records
            if not (isinstance(record, dict) and str(record.get("id")) in again)] + changed


def changed_since(began: datetime, window: Window) -> Window:
    """The part of ``window`` changed since ``began``, by a clock the server's may differ from
    by ``CLOCK_SKEW``."""
    return Window(max(window.start, began - CLOCK_SKEW), window.end)


def _read_to_end(client: MicrometricsClient, path: str, window: Window) -> tuple[list[Any], int]:
    """The records of ``path`` in ``window`` and the pages they took; a listing whose cursor
    the API refuses (expired: 400, 404, 410, 422) is read again from its first page,
    ``CURSOR_RESTARTS`` times at most, as a sync's windows are (one refusal on the survey list
    failed the whole sync)."""
    for restart in range(CURSOR_RESTARTS + 1):
        try:
            records: list[Any] = []
            pages = 0
            for page in client.pages(path, params=window.params()):
                records.extend(page)
                pages += 1
            return records, pages
        except CursorRejectedError:
            if restart == CURSOR_RESTARTS:
                raise
            log.warning("warning: the API refused a cursor of %s; listing it again from its "
                        "first page", path)
    raise AssertionError("unreachable")
