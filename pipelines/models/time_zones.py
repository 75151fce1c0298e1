"""The time zone names the destination reads: ``stg_devices.local_zone`` takes a device's
``timezone`` only when it is one of them (``'{{ time_zones }}'``).

A name the destination does not know fails every statement that converts a time with it, so
one kiosk with a misspelt zone, a retired one (``US/Pacific-New``) or one newer than the
warehouse's tz database failed every build until the device was fixed upstream. DuckDB and
PostgreSQL list the names they read; Snowflake and BigQuery take the IANA names, and list none
the models could ask for, so Python's tz database stands in for theirs.
"""

from __future__ import annotations

from typing import Any

from .compiler import python_time_zones

LISTS = {
    "duckdb": "SELECT name FROM pg_timezone_names()",
    # PostgreSQL also reads the abbreviations it lists (PST, CEST).
    "postgres": "SELECT name FROM pg_timezone_names UNION SELECT abbrev FROM pg_timezone_abbrevs",
}


def destination_time_zones(client: Any, dialect: str) -> tuple[str, ...]:
    """The zone names ``client``'s destination reads (Python's where it lists none), in lower
    case: the destinations read a name in any case (``asia/kolkata``), and the model compares
    the device's lowered."""
    query = LISTS.get(dialect)
    if query is None:
        return python_time_zones()
    names = sorted({row[0].lower() for row in client.execute_sql(query) or []})
    return tuple(names) or ("utc",)
