"""Lists in the text people read, kept to a screen.

A wide tenant (2,000 surveys) made the sync's summary line 20,000 characters long, its
``--json`` line 220 KB (Docker's log driver splits lines at 16 KB, and a log shipper then gets
broken JSON), ``status`` 2,000 lines and ``--dry-run`` as many, every hour: the warnings that
matter were lost in them. Text shows the first few (callers put what matters most first) and
how many more; ``status --json`` keeps every one.
"""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 10  # items of a list in one line
SHOWN_LINES = 20  # lines of a list of lines


def first_of(items: Sequence[str], where: str | None, limit: int = SHOWN) -> str:
    """``items`` joined by "; ", the first ``limit`` of them, then how many more and
    ``where`` they are all listed (if anywhere)."""
    shown = "; ".join(items[:limit])
    more = len(items) - limit
    if more <= 0:
        return shown
    return f"{shown}; ... and {more} more" + (f" ({where})" if where else "")
