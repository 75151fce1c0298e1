"""Errors the connector raises. Messages are one line, name what to check, carry no secret."""

from __future__ import annotations

import re

EXCERPT_CHARS = 200


def body_excerpt(text: str | bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """First ``limit`` characters of a body with whitespace folded, for error messages."""
    if not text:
        return "(empty body)"
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


class MicrometricsError(Exception):
    """Base class: everything the connector raises on purpose."""


class ConfigurationError(MicrometricsError):
    """Missing or invalid configuration, found before any request."""


class ApiError(MicrometricsError):
    """The API answered with an error (after retries where they apply).

    Attributes:
        method: HTTP method.
        path: Request path and query as sent (no credentials ever travel in it).
        status: HTTP status, or None when no response came back.
    """

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        what = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {path} failed: {what}: {detail}")


class AuthenticationError(ApiError):
    """401: the signature was refused. Not retried."""


class UnexpectedResponseError(ApiError):
    """A 2xx body that is not what an index endpoint returns."""


class IncompleteBodyError(ApiError):
    """A 2xx whose body was empty or JSON cut short, on every attempt: the server's or the
    network's doing, not base_url's; a later sync may get it whole."""


class UnsendableRequestError(ApiError):
    """A request this machine could not send (a header or URL with a character HTTP does not
    allow): no retry, here or by a scheduler, can help."""


class PagingLoopError(UnexpectedResponseError):
    """A ``Next-Cursor`` a chain of pages already followed: the server pages in a loop, and
    following it would read the same pages for ever (every round, every sync)."""


class CursorRejectedError(ApiError):
    """A 400, 404, 410 or 422 on a request that carried a paging cursor: the window can start
    over."""


def survey_gone(exc: ApiError) -> bool:
    """Whether ``exc``, raised reading a survey's responses, says the survey is gone: a 404 on
    a page without a cursor (one on a cursor is a refused cursor, the survey still there)."""
    return exc.status == 404 and not isinstance(exc, CursorRejectedError)
