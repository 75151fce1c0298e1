"""Every id a stream lists, over its whole history: what ``--reconcile`` and the check for
devices erased before any sync saw them compare the destination with."""

from __future__ import annotations

import logging
from typing import Any

from .client import MicrometricsClient
from .errors import CursorRejectedError
from .walk import CURSOR_RESTARTS
from .windows import Window

log = logging.getLogger("micrometrics")


def listed_ids(client: MicrometricsClient, path: str, window: Window) -> set[Any]:
    """Every id the stream lists (see ``whole_listing``)."""
    return {record["id"] for record in whole_listing(client, path, window)
            if isinstance(record, dict) and record.get("id") is not None}


def whole_listing(client: MicrometricsClient, path: str, window: Window) -> list[Any]:
    """Every record of ``path`` in ``window``; a listing whose cursor the API refuses (expired:
    400, 404, 410, 422) is read again from its first page, ``CURSOR_RESTARTS`` times at most,
    as a sync's windows are (one refusal on the survey list failed the whole sync)."""
    for restart in range(CURSOR_RESTARTS + 1):
        try:
            return [record for page in client.pages(path, params=window.params())
                    for record in page]
        except CursorRejectedError:
            if restart == CURSOR_RESTARTS:
                raise
            log.warning("warning: the API refused a cursor of %s; listing it again from its "
                        "first page", path)
    raise AssertionError("unreachable")
