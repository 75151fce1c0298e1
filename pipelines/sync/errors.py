"""One-line messages of exceptions and their cause chains, shared by sync, status and schedules."""

from __future__ import annotations

from collections.abc import Iterator

from dlt.common.configuration.exceptions import ConfigFieldMissingException, InvalidNativeValue
from dlt.common.destination.exceptions import UnknownDestinationModule

# What the destination's configuration lacks or misnames (an unknown --destination, missing or
# malformed credentials): bad configuration, exit 2, not a failed or unreachable destination.
CONFIG_ERRORS = (ConfigFieldMissingException, UnknownDestinationModule, InvalidNativeValue)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message with whitespace folded, at most ``limit`` characters (then ``...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def causes(exc: BaseException, *, implicit: bool = True) -> Iterator[BaseException]:
    """``exc``, then what caused it, outermost first: ``__cause__``, else (``implicit``)
    ``__context__``. Stops at a loop."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (link.__context__ if implicit else None)
