"""One-line messages of exceptions and their cause chains, shared by sync, status and schedules."""

from __future__ import annotations

# The sync's callers import these from here.
from pipelines.error_chain import CONFIG_ERRORS, causes  # noqa: F401


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message with whitespace folded, at most ``limit`` characters (then ``...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


