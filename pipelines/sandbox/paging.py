"""Result ordering and keyset pagination.

A page is "the next ``size`` records whose sort key is greater than the cursor's key", so a
record that leaves the window between two pages does not shift the others.
"""

from __future__ import annotations

import hashlib
from typing import Any

ORDERS = ("shuffled", "asc", "desc")
# Primary sort value below every real key in every order (records without a usable time).
FIRST = -(2**63)


def sort_key(order: str, seed: int, record_id: Any, updated_ms: int) -> tuple:
    """The keyset sort key of a record (JSON-serializable once turned into a list).

    ``shuffled`` is a stable pseudo-random order from hash(seed, id), deliberately unrelated
    to time, so a client cannot rely on an order the vendor never promised.
    """
    if order == "asc":
        return (updated_ms, record_id)
    if order == "desc":
        return (-updated_ms, record_id)
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big"), record_id)


def page_after(
    keyed: list[tuple[tuple, dict]], after: tuple | None, size: int
) -> tuple[list[dict], tuple | None]:
    """Selects one page.

    Args:
        keyed: ``(sort_key, record)`` for every record of the result set, any order.
        after: The key of the last record of the previous page, or None for the first page.
        size: Page size.

    Returns:
        The page's records and, when more records follow, the key to resume after.
    """
    rest = sorted(
        (kr for kr in keyed if after is None or kr[0] > after), key=lambda kr: kr[0]
    )
    page = rest[:size]
    more = len(rest) > size  # a page that ends exactly at the last record gets no cursor
    return [r for _, r in page], (page[-1][0] if more else None)
