"""The time zone names the destination reads: ``stg_devices.local_zone`` takes a device's
``timezone`` only when it is one of them (``'{{ time_zones }}'``), spelt as IANA spells it.

A name the destination does not know fails every statement that converts a time with it, so
one kiosk with a misspelt zone, a retired one (``US/Pacific-New``) or one newer than the
warehouse's tz database failed every build until the device was fixed upstream. The names are
the same on every destination, so that one device's responses fall on the same local days
wherever they load: Python's tz database, and of those, on DuckDB and PostgreSQL, the ones they
list (Snowflake and BigQuery list none the models could ask for). Exactly as spelt: DuckDB and
PostgreSQL read ``asia/kolkata`` too, Snowflake and BigQuery do not, and DuckDB's list holds
ICU's three-letter ids (``IST`` as India's, where PostgreSQL reads Israel's), which neither
Python nor the other warehouses know: a tenant's local days differed by destination.
"""

from __future__ import annotations

from typing import Any

from .compiler import python_time_zones

LISTS = {
    "duckdb": "SELECT name FROM pg_timezone_names()",
    "postgres": "SELECT name FROM pg_timezone_names",
}


def destination_time_zones(client: Any, dialect: str) -> tuple[str, ...]:
    """The IANA zone names of Python's tz database that ``client``'s destination also lists
    (all of them where it lists none)."""
    names = set(python_time_zones())
    query = LISTS.get(dialect)
    if query is not None:
        names &= {row[0] for row in client.execute_sql(query) or []}
    return tuple(sorted(names)) or ("UTC",)
