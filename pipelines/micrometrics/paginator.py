"""Paging by the ``Next-Cursor`` response header."""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import HeaderCursorPaginator
from requests import Request, Response

from .errors import PagingLoopError
from .messages import hint


class NextCursorPaginator(HeaderCursorPaginator):
    """dlt's header cursor paginator, fixed for this API's end-of-data signal.

    dlt 1.31 treats an empty header value as a next page; the API sends ``Next-Cursor:`` with
    an empty value (or no header) on the last page, which would loop on the first page forever.
    """

    def __init__(self) -> None:
        super().__init__(cursor_key="Next-Cursor", cursor_param="cursor")
        self._followed: set[str] = set()

    def init_request(self, request: Request) -> None:
        # A chain resumed from a cursor kept in state: that cursor is followed already.
        self._followed = {str(request.params[self.cursor_param])} if (
            request.params and request.params.get(self.cursor_param)) else set()
        super().init_request(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        """The next page's cursor; one this chain followed already is a loop, which would read
        the same pages for ever (every round, and every sync from the cursor kept in state).

        Raises:
            PagingLoopError: naming the request and the cursor.
        """
        value = (response.headers.get(self.cursor_key) or "").strip()
        if value in self._followed:
            raise PagingLoopError(
                response.request.method or "GET", response.request.path_url,
                response.status_code,
                f"the API sent the paging cursor of a page this chain already read "
                f"({value[:24]}); {hint('paging_loop')}")
        if value:
            self._followed.add(value)
        self._next_reference = value or None

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next page (None on the last page): kept in state when a round
        stops part-way through a window."""
        return self._next_reference
