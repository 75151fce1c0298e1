"""Turns a model's DuckDB SELECT into the destination's SQL: parameters filled in, table names
qualified with the dataset, and the dialect translated by sqlglot."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from .project import Model, ModelsError, cte_names, parse

# The destinations the models are written and tested for (sqlglot dialect names).
DIALECTS = ("duckdb", "postgres", "snowflake", "bigquery")
# A string literal that is exactly '{{ name }}' is a parameter the runner fills in.
PARAMETER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# The runner's parameters: one value, or several for an IN list.
Params = Mapping[str, str | tuple[str, ...]]

# Maps an unqualified table name to its path in the destination: [catalog,] dataset, table.
Qualifier = Callable[[str], Sequence[str]]


def dataset_qualifier(dataset: str) -> Qualifier:
    """A qualifier for ``dataset.table`` without a destination at hand (offline transpiling)."""
    return lambda name: (dataset, name)


def default_params(now: datetime | None = None) -> dict[str, str | tuple[str, ...]]:
    """The models' parameters without a destination at hand: ``as_of`` (``now``, default the
    wall clock) and the time zones Python knows (the runner asks the destination itself where it
    can: ``time_zones``)."""
    return {"as_of": as_of_literal(now), "time_zones": python_time_zones()}


# In a system's tz database beside the zones: this machine's own zone, and a file of rules.
NOT_ZONES = {"localtime", "posixrules"}


def python_time_zones() -> tuple[str, ...]:
    """The IANA zone names of Python's tz database (the ``tzdata`` package or the system's)."""
    return tuple(sorted(zoneinfo.available_timezones() - NOT_ZONES)) or ("UTC",)


def as_of_literal(now: datetime | None) -> str:
    """``now`` (a naive value is taken as UTC; None means the wall clock) as a literal every
    dialect casts to a timestamp with time zone."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def fill_parameters(tree: exp.Expression, params: Params, name: str) -> exp.Expression:
    """Replaces ``'{{ key }}'`` literals with ``params[key]``, as literals: never spliced text.
    A parameter that holds several values (a tuple) fills a whole ``IN ('{{ key }}')`` list.

    Raises:
        ModelsError: The SQL uses a parameter that ``params`` does not have, or a list where
            one value goes.
    """

    def value_of(node: exp.Expression) -> str | tuple[str, ...] | None:
        if not (isinstance(node, exp.Literal) and node.is_string):
            return None
        match = PARAMETER.fullmatch(node.this)
        if not match:
            return None
        if match.group(1) not in params:
            raise ModelsError(f"{name}: no value for parameter {match.group(1)!r}")
        return params[match.group(1)]

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.In) and len(node.expressions) == 1:
            values = value_of(node.expressions[0])
            if isinstance(values, tuple):
                node.set("expressions", [exp.Literal.string(v) for v in values])
                return node
        value = value_of(node)
        if isinstance(value, tuple):
            raise ModelsError(f"{name}: parameter {node.this!r} holds a list: use it as "
                              f"IN ('{node.this}')")
        return node if value is None else exp.Literal.string(value)

    return tree.transform(fill)


def table_node(path: Sequence[str]) -> exp.Table:
    """A quoted ``[catalog.]dataset.table`` reference; quoting keeps the helper's casefolding."""
    *prefix, table = path
    parts = [exp.to_identifier(part, quoted=True) for part in prefix]
    catalog, db = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return exp.Table(this=exp.to_identifier(table, quoted=True), db=db, catalog=catalog)


def qualify_tables(tree: exp.Expression, qualify: Qualifier) -> exp.Expression:
    """Qualifies every unqualified table reference that is not a CTE.

    A reference without an alias gets its bare name as alias, so ``devices.id`` style column
    references keep resolving.
    """
    local = cte_names(tree)

    def qualify_one(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Table) or node.db or node.name.lower() in local:
            return node
        qualified = table_node(qualify(node.name))
        alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
        qualified.set("alias", alias)
        return qualified

    return tree.transform(qualify_one)


def generate(tree: exp.Expression, dialect: str, name: str) -> str:
    """SQL text of ``tree`` in ``dialect``, refusing anything the dialect cannot express.

    Raises:
        ModelsError: sqlglot cannot translate some construct to ``dialect``.
    """
    try:
        return tree.sql(
            dialect=dialect, pretty=True, comments=False, unsupported_level=ErrorLevel.RAISE
        )
    except SqlglotError as exc:
        raise ModelsError(f"{name}: cannot translate to {dialect}: {exc}") from exc


def compile_query(
    model: Model,
    dialect: str,
    qualify: Qualifier,
    params: Params | None = None,
) -> exp.Expression:
    """The model's SELECT, parameters filled in and tables qualified (still an AST)."""
    tree = parse(model.sql, model.name)
    tree = fill_parameters(tree, params or {}, model.name)
    if dialect == "bigquery":
        tree = tree.transform(local_date_for_bigquery)
    if dialect == "postgres":
        tree = tree.transform(guarded_cast_for_postgres)
    return qualify_tables(tree, qualify)


# What each type reads from text, for PostgreSQL, which has no TRY_CAST (a bad value fails the
# whole statement): exactly the values its input functions take, calendar included (no
# 2024-02-30, no 2023-02-29, no year 0, no 23:60, no offset beyond 15:59), so a drifted value
# that is no time reads as NULL instead of failing every build. Checked value by value against
# PostgreSQL 15's own casts (tests/test_postgres.py).
_YEAR = r"([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001-9999
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
# A month or day of one digit too (2024-3-1), as PostgreSQL and DuckDB read it.
_MONTH_DAY = (r"((0?[13578]|1[02])-(0?[1-9]|[12][0-9]|3[01])|(0?[469]|11)-(0?[1-9]|[12][0-9]|30)"
              r"|0?2-(0?[1-9]|1[0-9]|2[0-8]))")
_DAY = rf"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-0?2-29)"
# 24:00:00 and a leap second are taken (as the next day's or minute's start).
_TIME = (r"(([01][0-9]|2[0-3]):[0-5][0-9](:([0-5][0-9]([.][0-9]+)?|60([.]0+)?))?"
         r"|24:00(:00([.]0+)?)?)")
_ZONE = r"(Z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)"
# A time without an offset is UTC's (dlt's reading, and DuckDB's and Snowflake's in dlt's
# sessions); PostgreSQL's cast would take the session's zone, the DBA's or a BI tool's.
_UNZONED = rf"^\s*{_DAY}([T ]{_TIME})?\s*$"
_ZONED = rf"^\s*{_DAY}([T ]{_TIME})?\s*{_ZONE}\s*$"
CAST_SHAPES = {
    exp.DataType.Type.TIMESTAMPTZ: rf"^\s*{_DAY}([T ]{_TIME})?\s*{_ZONE}?\s*$",
    exp.DataType.Type.DATE: rf"^\s*{_DAY}\s*$",
    exp.DataType.Type.TIME: rf"^\s*{_TIME}\s*$",
    exp.DataType.Type.BOOLEAN: r"^\s*(true|false|t|f|yes|no|on|off|1|0)\s*$",
}


def guarded_cast_for_postgres(node: exp.Expression) -> exp.Expression:
    """``TRY_CAST(text AS type)`` (reading a drifted column, see ``variants``) as PostgreSQL's
    ``CASE WHEN text ~* shape THEN CAST(text AS type) END``: sqlglot renders it as a plain
    CAST, which fails the build on the first value that does not read. A time without an
    offset is read as UTC's (``_UNZONED``), whatever the session's zone."""
    if not isinstance(node, exp.TryCast):
        return node
    shape = next((pattern for kind, pattern in CAST_SHAPES.items() if node.to.is_type(kind)),
                 None)
    if shape is None:
        return node
    text = node.this
    if node.to.is_type(exp.DataType.Type.TIMESTAMPTZ):
        as_utc = exp.AtTimeZone(this=exp.cast(text.copy(), exp.DataType.Type.TIMESTAMP),
                                zone=exp.Literal.string("UTC"))
        return exp.Case(ifs=[exp.If(this=_matches(text, _ZONED),
                                    true=exp.cast(text.copy(), node.to.copy())),
                             exp.If(this=_matches(text, _UNZONED), true=as_utc)])
    return exp.Case(ifs=[exp.If(this=_matches(text, shape),
                                true=exp.cast(text.copy(), node.to.copy()))])


def _matches(text: exp.Expression, shape: str) -> exp.Expression:
    return exp.RegexpILike(this=text.copy(), expression=exp.Literal.string(shape))


def local_date_for_bigquery(node: exp.Expression) -> exp.Expression:
    """``CAST(ts AT TIME ZONE zone AS DATE)`` (an instant's calendar date in a zone) as BigQuery's
    own ``DATE(ts, zone)``. sqlglot's rendering, ``CAST(TIMESTAMP(DATETIME(ts, zone)) AS DATE)``,
    is right on BigQuery too, but the BigQuery emulator the tests use misreads ``DATETIME`` with a
    zone that is not a literal; ``DATE(ts, zone)`` means the same on both."""
    if (isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE)
            and isinstance(node.this, exp.AtTimeZone)):
        return exp.Date(this=node.this.this, zone=node.this.args["zone"])
    return node


def compile_model(
    model: Model,
    dialect: str,
    qualify: Qualifier,
    params: Params | None = None,
) -> str:
    """The model's SELECT as ``dialect`` SQL."""
    return generate(compile_query(model, dialect, qualify, params), dialect, model.name)


def build_statements(
    model: Model,
    dialect: str,
    qualify: Qualifier,
    params: Params | None = None,
    in_place: bool = False,
    existing: str | None = None,
) -> list[str]:
    """Statements that (re)build ``model`` as its view or table.

    ``existing``: the other kind (``VIEW``/``TABLE``) the model's name is of in the destination
    (see ``kinds``), which is dropped as such first: nothing replaces a view with a table.

    PostgreSQL has no ``CREATE OR REPLACE TABLE`` and refuses to replace a view whose columns
    changed. There, with ``in_place`` (the relation exists with the same columns, see
    ``in_place``), a view is replaced and a table emptied (truncated, or its rows deleted
    while a reader holds it) and refilled; otherwise it is a drop (which also drops the views
    that read it) and a create. Either way it is one string:
    PostgreSQL runs the statements of one query string in a single transaction, so readers
    never see it missing or half-filled.
    """
    kind = (model.materialization or "").upper()
    if not kind:
        raise ModelsError(f"{model.name} is a data test, not a model")
    target = table_node(qualify(model.name))
    query = compile_query(model, dialect, qualify, params)
    if dialect != "postgres" or (in_place and kind == "VIEW"):
        create = exp.Create(this=target, kind=kind, replace=True, expression=query)
        if dialect == "snowflake":
            # A replaced table or view loses the privileges granted on it (a BI role's SELECT)
            # unless the statement copies them.
            create.set("properties", exp.Properties(expressions=[exp.CopyGrantsProperty()]))
        other = exp.Drop(tables=[target.copy()], kind=existing, exists=True)
        return ([generate(other, dialect, model.name)] if existing else []) + [
            generate(create, dialect, model.name)]
    if in_place:
        # TRUNCATE's lock waits for every open transaction that read the table (an idle
        # notebook's: for ever) and holds up every reader meanwhile. So it waits a second at
        # most, then the rows are deleted instead, which no reader waits for (who sees the old
        # rows until the new ones commit; DELETE on every build would leave a mart's worth of
        # dead rows each time). The lock first, which no reader waits for either: two builds at
        # once (make models during a sync's) each kept the rows the other inserted.
        name = generate(target.copy(), dialect, model.name)
        insert = exp.Insert(this=target, expression=query)
        return [f"LOCK TABLE {name} IN SHARE ROW EXCLUSIVE MODE;\n"
                f"DO $$ BEGIN SET LOCAL lock_timeout = '1s'; TRUNCATE TABLE {name};\n"
                f"EXCEPTION WHEN lock_not_available THEN DELETE FROM {name}; END $$;\n"
                f"{generate(insert, dialect, model.name)}"]
    drop = exp.Drop(tables=[target.copy()], kind=existing or kind, exists=True, cascade=True)
    create = exp.Create(this=target, kind=kind, expression=query)
    return [f"{generate(drop, dialect, model.name)};\n{generate(create, dialect, model.name)}"]
