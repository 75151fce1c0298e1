"""An exception's chain of causes, for code of any layer that judges a failure by its cause
(the sync's exit statuses, the scheduler's retries, the models' fallback), the dlt errors
that mean bad configuration, and an error's message on one line."""

from __future__ import annotations

from collections.abc import Iterator

from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigProviderException,
    InvalidNativeValue,
)
from dlt.common.destination.exceptions import UnknownDestinationModule

# What the destination's configuration lacks or misnames (an unknown --destination, missing or
# malformed credentials), or a config file dlt cannot read (a TOML syntax error): bad
# configuration, exit 2, not a failed or unreachable destination.
CONFIG_ERRORS = (ConfigFieldMissingException, UnknownDestinationModule, InvalidNativeValue,
                 ConfigProviderException)


def causes(exc: BaseException, *, implicit: bool = True) -> Iterator[BaseException]:
    """``exc``, then what caused it, outermost first: ``__cause__``, else (``implicit``)
    ``__context__``. Stops at a loop."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (link.__context__ if implicit else None)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message with whitespace folded (dlt's span many lines: a TOML error names the
    line and column on its second), at most ``limit`` characters (then ``...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
