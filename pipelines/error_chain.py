"""An exception's chain of causes, for code of any layer that judges a failure by its cause
(the sync's exit statuses, the scheduler's retries, the models' fallback)."""

from __future__ import annotations

from collections.abc import Iterator


def causes(exc: BaseException, *, implicit: bool = True) -> Iterator[BaseException]:
    """``exc``, then what caused it, outermost first: ``__cause__``, else (``implicit``)
    ``__context__``. Stops at a loop."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (link.__context__ if implicit else None)
