"""Paging by the ``Next-Cursor`` response header."""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import HeaderCursorPaginator
from requests import Response


class NextCursorPaginator(HeaderCursorPaginator):
    """dlt's header cursor paginator, fixed for this API's end-of-data signal.

    dlt 1.31 treats an empty header value as a next page; the API sends ``Next-Cursor:`` with
    an empty value (or no header) on the last page, which would loop on the first page forever.
    """

    def __init__(self) -> None:
        super().__init__(cursor_key="Next-Cursor", cursor_param="cursor")

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        value = (response.headers.get(self.cursor_key) or "").strip()
        self._next_reference = value or None

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next page (None on the last page): kept in state when a round
        stops part-way through a window."""
        return self._next_reference
