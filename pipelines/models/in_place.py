"""PostgreSQL: rebuild a model in place when its columns are unchanged.

PostgreSQL has no ``CREATE OR REPLACE TABLE`` and refuses to replace a view whose columns
changed, so a model is rebuilt by a drop and a create there, and ``DROP ... CASCADE`` also drops
every view that reads it: the views analysts and BI tools build on the marts and staging views
would be gone after every sync. So when the relation already exists, of the same kind, with the
same column names and types in the same order (every build but the first after an upgrade that
changed a model), a view is replaced (``CREATE OR REPLACE VIEW``) and a table emptied and
refilled in one transaction: what depends on it stays.
"""

from __future__ import annotations

from typing import Any

RELKINDS = {"VIEW": ("v",), "TABLE": ("r", "p")}  # pg_class.relkind of each materialization
PROBE = "pg_temp.micrometrics_columns_of"  # a session's own: gone when it ends


def relation_columns(client: Any, relation: str) -> list[tuple[str, str]]:
    """Names and full types (``numeric(10,2)``, not ``numeric``: PostgreSQL will not replace a
    view column's type modifier either) of ``relation``'s columns, in order."""
    with client.execute_query(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum", relation
    ) as cursor:
        return [(name, kind) for name, kind in cursor.fetchall()]


def existing_columns(client: Any, relation: str, kind: str) -> list[tuple[str, str]] | None:
    """``relation_columns`` of ``relation`` (quoted, qualified); None when it does not exist
    or is not of ``kind``."""
    with client.execute_query(
        "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", relation
    ) as cursor:
        row = cursor.fetchone()
    if row is None or row[0] not in RELKINDS[kind]:
        return None
    return relation_columns(client, relation)


def query_columns(client: Any, query: str) -> list[tuple[str, str]]:
    """``relation_columns`` of what ``query`` returns (a temporary view of it; no row read)."""
    client.execute_sql(f"DROP VIEW IF EXISTS {PROBE};\nCREATE TEMP VIEW "
                       f"{PROBE.split('.')[1]} AS {query}")
    return relation_columns(client, PROBE)


def can_replace_in_place(client: Any, relation: str, kind: str, query: str) -> bool:
    """Whether ``relation`` exists as ``kind`` with exactly the columns ``query`` returns."""
    existing = existing_columns(client, relation, kind)
    return existing is not None and existing == query_columns(client, query)
