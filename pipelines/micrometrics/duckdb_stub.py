"""A DuckDB file a full disk cut short as it was created: it never held anything.

``duckdb.connect`` creates the file, then writes its 12 KB of headers; on a full disk (or
under a file-size limit) the write fails and the file stays, empty or cut short. Every later
sync, the models and the report then failed on it ("not a valid DuckDB database file", "Could
not read enough bytes"), with the space back, for good: nothing said to delete it (the failed
sync's record, written through dlt's own connection, makes it again). The next sync sets such a
file aside and makes a new one: shorter than an empty database, with no WAL, it can hold no
data; empty, zeros or DuckDB's header begun, it is no other file the setting names by mistake.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

log = logging.getLogger("micrometrics")

# An empty DuckDB database file: its main header and two database headers, 4 KB each.
EMPTY_DATABASE_BYTES = 12288
REFUSED = ("not a valid DuckDB database file", "Could not read enough bytes")
MAGIC = b"DUCK"  # at bytes 8-11 of the main header, after its checksum


def never_held_data(path: str, refused: BaseException) -> bool:
    """Whether DuckDB ``refused`` the file at ``path`` for being cut short as it was made:
    shorter than an empty database, no WAL, and empty, zeros, or DuckDB's header begun (not
    some other file the setting names by mistake, which DuckDB refuses the same way)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(EMPTY_DATABASE_BYTES)
    except OSError:
        return False
    begun = not head.strip(b"\0") or head[8:12] == MAGIC
    return (size < EMPTY_DATABASE_BYTES and begun and not os.path.exists(f"{path}.wal")
            and any(text in str(refused) for text in REFUSED))


def set_aside(path: str) -> str:
    """Moves the file aside (kept for a look, not deleted); returns where, having warned."""
    aside = f"{path}.unfinished-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    os.replace(path, aside)
    log.warning("warning: the DuckDB file %s was cut short as it was created (%d bytes: a full "
                "disk or a file-size limit then) and never held data: moved aside to %s, and a "
                "new one made", path, os.path.getsize(aside), aside)
    return aside
