"""Every id a stream lists, over its whole history: what ``--reconcile`` and the check for
devices erased before any sync saw them compare the destination with."""

from __future__ import annotations

import logging
from typing import Any

from .client import MicrometricsClient
from .errors import CursorRejectedError
from .windows import Window

log = logging.getLogger("micrometrics")


def listed_ids(client: MicrometricsClient, path: str, window: Window) -> set[Any]:
    """Every id the stream lists; a listing whose cursor the API refuses (expired: 400, 404,
    410, 422) is read again from its first page, once, as a sync's windows are."""
    try:
        return ids_of(client, path, window)
    except CursorRejectedError:
        log.warning("warning: reconcile: the API refused a cursor of %s; listing it again", path)
        return ids_of(client, path, window)


def ids_of(client: MicrometricsClient, path: str, window: Window) -> set[Any]:
    return {record["id"] for page in client.pages(path, params=window.params())
            for record in page if isinstance(record, dict) and record.get("id") is not None}
