"""One-line messages of exceptions and their cause chains, shared by sync, status and schedules."""

from __future__ import annotations

# The sync's callers import these from here.
from pipelines.error_chain import CONFIG_ERRORS, causes, one_line  # noqa: F401


