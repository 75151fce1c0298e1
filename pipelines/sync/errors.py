"""One-line messages of exceptions and their cause chains, shared by sync, status and schedules."""

from __future__ import annotations

from dlt.common.configuration.exceptions import ConfigFieldMissingException, InvalidNativeValue
from dlt.common.destination.exceptions import UnknownDestinationModule

from pipelines.error_chain import causes  # noqa: F401 - the sync's callers import it from here

# What the destination's configuration lacks or misnames (an unknown --destination, missing or
# malformed credentials): bad configuration, exit 2, not a failed or unreachable destination.
CONFIG_ERRORS = (ConfigFieldMissingException, UnknownDestinationModule, InvalidNativeValue)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message with whitespace folded, at most ``limit`` characters (then ``...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


