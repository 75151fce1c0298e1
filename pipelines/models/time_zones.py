"""The time zone names the destination reads: ``stg_devices.local_zone`` takes a device's
``timezone`` only when it is one of them (``'{{ time_zones }}'``), spelt as the device has it.

A name the destination does not know fails every statement that converts a time with it, so
one kiosk with a misspelt zone, a retired one (``US/Pacific-New``) or one newer than the
warehouse's tz database failed every build until the device was fixed upstream. DuckDB and
PostgreSQL list the names they read, and read them in any case (``asia/kolkata``): the devices'
own spellings of a listed name are added. Snowflake and BigQuery take the IANA names as they
are spelt, and list none the models could ask for: Python's tz database stands in for theirs.
"""

from __future__ import annotations

from typing import Any

from .absent import loaded_columns
from .compiler import python_time_zones

# Names only: PostgreSQL also reads abbreviations, but not as DuckDB does (IST is Israel's
# there, India's in DuckDB), so the same data would get other local days.
LISTS = {
    "duckdb": "SELECT name FROM pg_timezone_names()",
    "postgres": "SELECT name FROM pg_timezone_names",
}


def destination_time_zones(client: Any, dialect: str) -> tuple[str, ...]:
    """The zone names ``client``'s destination reads (Python's where it lists none), with the
    devices' spellings of them in another case where the destination reads any case."""
    query = LISTS.get(dialect)
    if query is None:
        return python_time_zones()
    names = {row[0] for row in client.execute_sql(query) or []}
    known = {name.lower() for name in names}
    spelt = {zone for zone in device_zones(client) if zone.lower() in known}
    return tuple(sorted(names | spelt)) or ("UTC",)


def device_zones(client: Any) -> set[str]:
    """The devices' time zones as loaded (trimmed); none before a device with one is loaded.
    (The devices resource declares ``timezone`` text, so a zone sent as a number is its text:
    no variant column holds others.)"""
    if "timezone" not in (loaded_columns(client, "devices") or set()):
        return set()
    table = client.make_qualified_table_name("devices")
    rows = client.execute_sql(f"SELECT DISTINCT TRIM(timezone) FROM {table} "
                              "WHERE timezone IS NOT NULL")
    return {row[0] for row in rows or [] if row[0]}
