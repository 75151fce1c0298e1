"""PostgreSQL: rebuild a model in place when its columns are unchanged.

PostgreSQL has no ``CREATE OR REPLACE TABLE`` and refuses to replace a view whose columns
changed, so a model is rebuilt by a drop and a create there, and ``DROP ... CASCADE`` also drops
every view that reads it: the views analysts and BI tools build on the marts and staging views
would be gone after every sync. So when the relation already exists, of the same kind, with the
same column names and types in the same order (every build but the first after an upgrade that
changed a model), a view is replaced (``CREATE OR REPLACE VIEW``) and a table emptied and
refilled in one transaction: what depends on it stays. When the columns did change, the views
of users that the drop takes along are created again from their definitions after the build
(``dependent_views``, ``views_not_recreated``), with what else a drop loses (``kept_attributes``:
their grants, comments, options, a materialized view's indexes and their owner; before, a BI
role's SELECT on them was gone after the build). One that cannot be (its definition no longer fits,
or the connector's role may not create in its schema: PostgreSQL lets ``DROP ... CASCADE``
take another role's views along) was gone for good, its definition with it: it is kept in the
dataset (``GIVEN_UP_TABLE``), for its owner to create again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# schema, name, pg_class.relkind, definition, the statements that give it again what the drop
# took besides (``kept_attributes``)
View = tuple[str, str, str, str, tuple[str, ...]]
RELKINDS = {"VIEW": ("v",), "TABLE": ("r", "p")}  # pg_class.relkind of each materialization
PROBE = "pg_temp.micrometrics_columns_of"  # a session's own: gone when it ends
# In the dataset: users' views a drop took along that could not be created again, each with
# the statement that creates it and why it failed; the connector only adds to it.
GIVEN_UP_TABLE = "_micrometrics_views_given_up"
# In the dataset while a build that drops a model runs: every model's grants and the rest
# (``model_attributes``), so that one failing after a drop took a model view along (``DROP
# ... CASCADE``) leaves them for the next build to give back.
KEPT_ATTRIBUTES = "_micrometrics_model_attributes"


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


def view_unchanged(client: Any, relation: str) -> bool:
    """After ``can_replace_in_place`` said yes for a view: whether it already reads exactly
    what the query it checked reads (PostgreSQL's own rendering of both). Replacing a view
    takes a lock that waits for every open transaction that read it (a notebook's, a BI
    tool's idle session) and holds up every reader behind it: the build hung, and the
    dashboards with it, for as long as any such session stayed open."""
    with client.execute_query(
        "SELECT pg_get_viewdef(to_regclass(%s)) = pg_get_viewdef(to_regclass(%s))",
        relation, PROBE,
    ) as cursor:
        (same,) = cursor.fetchone()
    return bool(same)


# -- when a model must be dropped after all ------------------------------------------------------

# Views (and materialized views) that read ``relation``, directly or through one another, with
# their depth and definition: what DROP ... CASCADE takes along.
DEPENDENTS = """
WITH RECURSIVE dependents(oid, depth) AS (
    SELECT DISTINCT r.ev_class, 1
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.refobjid = to_regclass(%s) AND r.ev_class <> d.refobjid
  UNION
    SELECT DISTINCT r.ev_class, dependents.depth + 1
    FROM dependents
    JOIN pg_depend d ON d.refobjid = dependents.oid
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> d.refobjid AND dependents.depth < 50
)
SELECT n.nspname, c.relname, c.relkind, MAX(dependents.depth), pg_get_viewdef(c.oid), c.oid
FROM dependents
JOIN pg_class c ON c.oid = dependents.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
GROUP BY n.nspname, c.relname, c.relkind, c.oid
ORDER BY MAX(dependents.depth), n.nspname, c.relname
"""


# What a drop loses besides the definition, as the statements that give it back, for the
# relation of oid %s: its options, indexes (a materialized view's, or a user's on a model
# table), comments, grants on it and on its columns (the owner's own are implied) and, last,
# its owner when another role owns it (created again, the connector's role owns it). Quoted
# by the server (%I, %L).
ATTRIBUTES = """
WITH r AS (
    SELECT c.oid, c.relowner, c.relacl, c.reloptions,
           format('%%I.%%I', n.nspname, c.relname) AS target,
           CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'v' THEN 'VIEW'
                ELSE 'TABLE' END AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = %s
)
SELECT statement FROM (
    SELECT 1 AS step, format('ALTER %%s %%s SET (%%s)', kind, target,
                             array_to_string(reloptions, ', ')) AS statement
    FROM r WHERE reloptions IS NOT NULL
  UNION ALL
    -- Not a constraint's (dlt's own, if it made any, come with the table it creates again).
    SELECT 2, regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX ',
                             'CREATE \\1INDEX IF NOT EXISTS ')
    FROM r JOIN pg_index i ON i.indrelid = r.oid
    WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)
  UNION ALL
    SELECT 3, format('COMMENT ON %%s %%s IS %%L', kind, target, d.description)
    FROM r JOIN pg_description d ON d.objoid = r.oid AND d.objsubid = 0
                                 AND d.classoid = 'pg_class'::regclass
  UNION ALL
    SELECT 4, format('COMMENT ON COLUMN %%s.%%I IS %%L', target, a.attname, d.description)
    FROM r JOIN pg_description d ON d.objoid = r.oid AND d.objsubid > 0
                                 AND d.classoid = 'pg_class'::regclass
           JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = d.objsubid
  UNION ALL
    SELECT 5, format('GRANT %%s ON %%s TO %%s%%s', a.privilege_type, target,
                     CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                          ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                     CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
    FROM r, aclexplode(r.relacl) a WHERE a.grantee <> r.relowner
  UNION ALL
    SELECT 5, format('GRANT %%s (%%I) ON %%s TO %%s%%s', a.privilege_type, att.attname, target,
                     CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                          ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                     CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
    FROM r JOIN pg_attribute att ON att.attrelid = r.oid AND att.attnum > 0
                                 AND NOT att.attisdropped AND att.attacl IS NOT NULL,
         aclexplode(att.attacl) a
    WHERE a.grantee <> r.relowner
  UNION ALL
    SELECT 6, format('ALTER %%s %%s OWNER TO %%I', kind, target, pg_get_userbyid(relowner))
    FROM r WHERE pg_get_userbyid(relowner) <> current_user
) steps
ORDER BY step, statement
"""


def dependent_views(client: Any, relation: str, models: set[tuple[str, str]]) -> list[View]:
    """``View``s that read ``relation`` (quoted, qualified) and are not among ``models``
    (``(schema, name)``: rebuilt anyway), shallowest first."""
    with catalog_names(client):
        with client.execute_query(DEPENDENTS, relation) as cursor:
            rows = cursor.fetchall()
        return [(schema, name, kind, definition, attributes_of(client, oid))
                for schema, name, kind, _depth, definition, oid in rows
                if (schema, name) not in models]


def model_attributes(client: Any, relations: list[str]) -> tuple[dict[str, tuple[str, ...]],
                                                                 bool]:
    """``kept_attributes`` of each model's relation (quoted, qualified) before a build drops
    any, and whether ``KEPT_ATTRIBUTES`` holds a failed build's: its statements stand for a
    relation that build dropped and did not create again."""
    found = {relation: kept_attributes(client, relation) for relation in relations}
    table = client.make_qualified_table_name(KEPT_ATTRIBUTES)
    if not exists(client, table):
        return found, False
    with client.execute_query(f"SELECT relation, statements FROM {table}") as cursor:
        for relation, statements in cursor.fetchall():
            if relation in found and not exists(client, relation):
                found[relation] = tuple(json.loads(statements))
    return found, True


def keep_model_attributes(client: Any, attributes: dict[str, tuple[str, ...]]) -> bool:
    """Keeps ``attributes`` (``model_attributes``) in ``KEPT_ATTRIBUTES`` until the build
    ends (``forget_model_attributes``); whether there were any to keep."""
    rows = [(relation, statements) for relation, statements in attributes.items() if statements]
    if not rows:
        return False
    table = client.make_qualified_table_name(KEPT_ATTRIBUTES)
    with client.begin_transaction():
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (relation text, statements text)")
        client.execute_sql(f"DELETE FROM {table}")
        for relation, statements in rows:
            client.execute_sql(f"INSERT INTO {table} VALUES (%s, %s)", relation,
                               json.dumps(list(statements)))
    return True


def forget_model_attributes(client: Any) -> None:
    client.execute_sql(f"DROP TABLE IF EXISTS {client.make_qualified_table_name(KEPT_ATTRIBUTES)}")


def kept_attributes(client: Any, relation: str) -> tuple[str, ...]:
    """The statements that give ``relation`` (quoted, qualified; a model about to be dropped
    and created) back its grants, comments, options, indexes and owner, if it exists."""
    with client.execute_query("SELECT to_regclass(%s)::oid", relation) as cursor:
        (oid,) = cursor.fetchone()
    if oid is None:
        return ()
    with catalog_names(client):
        return attributes_of(client, oid)


def attributes_of(client: Any, oid: int) -> tuple[str, ...]:
    with client.execute_query(ATTRIBUTES, oid) as cursor:
        return tuple(statement for (statement,) in cursor.fetchall())


@contextmanager
def catalog_names(client: Any) -> Iterator[None]:
    """Definitions with every name qualified: under the session's search_path (dlt's dataset
    first) pg_get_viewdef (and pg_get_indexdef) left the dataset's tables bare, and a definition
    created again from another dataset's session read that dataset's tables."""
    with client.execute_query("SHOW search_path") as cursor:
        (search_path,) = cursor.fetchone()
    client.execute_sql("SET search_path TO pg_catalog")
    try:
        yield
    finally:
        client.execute_sql("SELECT set_config('search_path', %s, false)", search_path)


def as_kind(statements: tuple[str, ...], was: str, now: str) -> tuple[str, ...]:
    """``kept_attributes`` of a ``was`` (``VIEW``/``TABLE``) for the same name built as a
    ``now``: a comment and an owner name the kind (an option of one kind only still fails, and
    is named)."""
    return tuple(re.sub(rf"^(COMMENT ON|ALTER) {was} ", rf"\1 {now} ", statement)
                 for statement in statements)


def give_back(client: Any, target: str, statements: tuple[str, ...]) -> list[str]:
    """Runs ``statements`` (``kept_attributes``) for ``target``, each on its own; returns a
    line for each that failed (a role since dropped, an owner the connector's role may not
    give it to)."""
    failed = []
    for statement in statements:
        try:
            client.execute_sql(statement)
        except Exception as exc:  # noqa: BLE001 - named in a warning, the rest still given
            failed.append(f"{target} was created again, but not its "
                          f"`{' '.join(statement.split())[:200]}`: "
                          f"{' '.join(str(exc).split())[:200]}")
    return failed


def views_not_recreated(client: Any, views: list[View],
                        partly: list[str]) -> list[tuple[View, str]]:
    """Creates ``views`` again (views that read others after those), each with its attributes
    (``kept_attributes``); returns each view that could not be created (its definition no
    longer fits what it reads) with its line. Lines of attributes not given back go into
    ``partly``."""
    left, errors = list(views), {}
    while left:
        retry = []
        for view in left:
            schema, name, kind, definition, attributes = view
            target = f"{quoted(schema)}.{quoted(name)}"
            create = ("CREATE MATERIALIZED VIEW IF NOT EXISTS" if kind == "m"
                      else "CREATE OR REPLACE VIEW")
            try:
                if kind in RELKINDS["TABLE"]:  # a refreshed table's: dlt creates it, when it loads
                    if not exists(client, target):
                        raise LookupError("the refresh has not loaded it again")
                else:
                    client.execute_sql(f"{create} {target} AS {definition.rstrip().rstrip(';')}")
            except Exception as exc:  # noqa: BLE001 - named in a warning, the build goes on
                errors[view] = f"{target}: {' '.join(str(exc).split())[:200]}"
                retry.append(view)
            else:
                partly += give_back(client, target, attributes)
        if len(retry) == len(left):
            break  # no progress: what is left reads something that no longer fits
        left = retry
    return [(view, errors[view]) for view in left]


def keep_given_up(client: Any, failed: list[tuple[View, str]]) -> list[str]:
    """Keeps the views ``views_not_recreated`` returned in ``GIVEN_UP_TABLE``; returns their
    lines, each naming where its definition is."""
    if not failed:
        return []
    table = client.make_qualified_table_name(GIVEN_UP_TABLE)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (view_schema text, view_name text,"
                       " create_statement text, reason text, given_up_at timestamptz)")
    for (schema, name, kind, definition, attributes), line in failed:
        create = "CREATE MATERIALIZED VIEW" if kind == "m" else "CREATE VIEW"
        statements = [f"{statement};" for statement in attributes]
        if kind not in RELKINDS["TABLE"]:
            statements.insert(0, f"{create} {quoted(schema)}.{quoted(name)} AS "
                                 f"{definition.rstrip().rstrip(';')};")
        client.execute_sql(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, now())", schema, name,
                           "\n".join(statements), line)
    return [f"{line} (its definition is kept in {table})" for _view, line in failed]


def exists(client: Any, relation: str) -> bool:
    with client.execute_query("SELECT to_regclass(%s) IS NOT NULL", relation) as cursor:
        (found,) = cursor.fetchone()
    return bool(found)


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
