"""Result ordering and keyset pagination.

A page is "the next ``size`` records whose sort key is greater than the cursor's key", so a
record that leaves the window between two pages does not shift the others.
"""

from __future__ import annotations

import bisect
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
    keys: list[tuple], records: list[dict], after: tuple | None, size: int
) -> tuple[list[dict], tuple | None]:
    """One page: the next ``size`` records whose key is greater than ``after`` (None: the first
    page), and the key to resume after when more follow. The result set comes sorted by key
    (``keys[i]`` is the key of ``records[i]``), so a page is a bisection, not a sort: result
    sets of 50,000 records sharing one ``updated_at`` stay fast."""
    first = 0 if after is None else bisect.bisect_right(keys, after)
    page = records[first:first + size]
    more = len(records) > first + size
    return page, (keys[first + size - 1] if more else None)
