"""Builds the models in a pipeline's dataset through dlt's SQL client, then runs the data tests.

Staging models become views and marts tables, in the order their SQL reads each other. The
reference time of a build (``now``) reaches the SQL as the one-row view ``stg_run_context``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from sqlglot import exp

from pipelines.error_chain import causes, one_line

from .absent import source_columns, with_absent_columns
from .compiler import (
    DIALECTS,
    Params,
    Qualifier,
    as_of_literal,
    build_statements,
    compile_query,
    generate,
    table_node,
)
from .graph import build_order
from .in_place import (
    View,
    as_kind,
    can_replace_in_place,
    dependent_views,
    forget_model_attributes,
    give_back,
    keep_given_up,
    keep_model_attributes,
    model_attributes,
    view_unchanged,
    views_not_recreated,
)
from .kinds import existing_kinds
from .project import Model, ModelsError, Project, load_project
from .time_zones import destination_time_zones
from .variants import pipeline_schema, schema_tables, with_variants

SAMPLE_ROWS = 5
log = logging.getLogger("micrometrics")


@dataclass(frozen=True)
class DataTestResult:
    """What one data test found: ``offending`` rows in all, the first few as ``sample``;
    ``problem`` when its result could not be read as a count (which is a failure, never a
    pass)."""

    name: str
    offending: int
    columns: tuple[str, ...] = ()
    sample: tuple[tuple[Any, ...], ...] = ()
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.offending == 0 and self.problem is None

    def describe(self) -> str:
        """One line: the test, its count of offending rows and the sample."""
        if self.problem:
            return f"{self.name}: {self.problem}"
        rows = "; ".join(
            "(" + ", ".join(f"{col}={value!r}" for col, value in zip(self.columns, row,
                                                                        strict=False)) + ")"
            for row in self.sample
        )
        noun = "row" if self.offending == 1 else "rows"
        return f"{self.name}: {self.offending} offending {noun}: {rows}"


class DataTestFailed(ModelsError):
    """One or more data tests returned rows. ``str()`` is one line naming them."""

    def __init__(self, failures: Sequence[DataTestResult]) -> None:
        self.failures = list(failures)
        names = ", ".join(failure.name for failure in self.failures)
        details = " | ".join(failure.describe() for failure in self.failures)
        super().__init__(f"data test failed: {names} -- {details}")


@dataclass
class ModelsReport:
    """What a build did."""

    dialect: str
    as_of: str
    built: list[tuple[str, str]] = field(default_factory=list)  # (name, view|table)
    tests: list[DataTestResult] = field(default_factory=list)
    seconds: float = 0.0
    # Source tables the destination does not have yet: nothing was built (see .absent).
    waiting_for: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.waiting_for:
            return (f"models: not built yet: the destination has no "
                    f"{', '.join(self.waiting_for)} (dlt creates a table once the API served "
                    f"a row of it); the first sync that loads them builds the models")
        views = sum(1 for _, kind in self.built if kind == "view")
        tables = len(self.built) - views
        passed = sum(1 for test in self.tests if test.passed)
        return (f"models: {views} staging views and {tables} mart tables built ({self.dialect}), "
                f"{passed}/{len(self.tests)} data tests passed, as of {self.as_of}, "
                f"in {self.seconds:.1f} s")


def dialect_of(client: Any) -> str:
    """The sqlglot dialect of a dlt SQL client's destination.

    Raises:
        ModelsError: The models are not written for that destination.
    """
    dialect = client.capabilities.sqlglot_dialect
    if dialect not in DIALECTS:
        raise ModelsError(f"models support {', '.join(DIALECTS)}; this destination speaks "
                          f"{dialect or 'no known SQL dialect'}")
    return dialect


def client_qualifier(client: Any) -> Qualifier:
    """Qualifies names the way dlt does for this destination (catalog, casefolding)."""
    return lambda name: client.make_qualified_table_name_path(name, quote=False)


def build_models(
    pipeline: dlt.Pipeline,
    now: datetime | None = None,
    sql_dir: Path | str | None = None,
    run_tests: bool = True,
) -> ModelsReport:
    """Builds every model in the pipeline's dataset, then runs the data tests.

    Args:
        pipeline: The pipeline whose destination and dataset hold the loaded tables.
        now: Reference time for "last N days" (``stg_run_context.as_of``); naive means UTC,
            None the wall clock.
        sql_dir: The SQL project (default: the repository's ``sql/``).
        run_tests: Whether to run the data tests after building.

    Returns:
        What was built and what the tests found.

    Raises:
        DataTestFailed: A data test returned rows (the models stay built, for inspection).
        ModelsError: A model could not be built, or the destination is not supported.
    """
    started = time.monotonic()
    with pipeline.sql_client() as client:
        dialect = dialect_of(client)
        params = {"as_of": as_of_literal(now),
                  "time_zones": destination_time_zones(client, dialect)}
        qualify = client_qualifier(client)
        project, missing = adapted_project(pipeline, sql_dir, client)
        report = ModelsReport(dialect=dialect, as_of=params["as_of"], waiting_for=missing)
        if report.waiting_for:
            return report
        taken_along: list[View] = []  # users' views a drop took along
        try:
            build(client, project, dialect, qualify, params, report, taken_along)
        finally:
            # Also when a later model fails: the next build would not find them to restore.
            if taken_along:
                restore_users_views(client, taken_along)
        if run_tests:
            report.tests = [run_test(client, test, dialect, qualify) for test in project.tests]
    report.seconds = time.monotonic() - started
    failures = [test for test in report.tests if not test.passed]
    if failures:
        raise DataTestFailed(failures)
    return report


def build(client: Any, project: Project, dialect: str, qualify: Qualifier,
          params: Params, report: ModelsReport, taken_along: list[View]) -> None:
    """Builds every model in order into ``report.built``; on PostgreSQL, the users' views a
    model's drop takes along go into ``taken_along`` (to be created again), and a model dropped
    and created gets back its grants, comments, indexes and the rest (``kept_attributes``)."""
    models = {tuple(qualify(model.name)[-2:]) for model in project.models}
    # Each model's grants, comments and indexes, before any drop: a model view a drop of
    # another takes along (DROP ... CASCADE: stg_survey_answers reads stg_survey_questions)
    # is gone by its own turn. In the dataset while models are dropped (``kept``), for a
    # build that fails after such a drop.
    attributes_before, kept = model_attributes(
        client, [relation_of(model, qualify) for model in project.models]
    ) if dialect == "postgres" else ({}, False)
    kinds = existing_kinds(client, dialect, qualify, project.model_names)
    for model in build_order(project.models):
        existing = other_kind(model, kinds.get(model.name))
        in_place = dialect == "postgres" and replaceable(client, model, qualify, params)
        if in_place and model.materialization.upper() == "VIEW" and view_unchanged(
                client, relation_of(model, qualify)):
            report.built.append((model.name, model.materialization))
            continue  # nothing to replace (and no lock to wait for)
        attributes: tuple[str, ...] = ()
        if dialect == "postgres" and not in_place:
            taken_along += dependent_views(client, relation_of(model, qualify), models)
            attributes = attributes_before[relation_of(model, qualify)]
            kept = keep_model_attributes(client, attributes_before) or kept
        try:
            for statement in build_statements(model, dialect, qualify, params, in_place,
                                              existing):
                execute(client, statement, f"model {model.name}")
        except ModelsError as exc:
            if not (in_place and refused_definition(exc)):
                raise  # a lost connection must not cost the views users built on it
            # Refused in place after all (its transaction rolled back): drop and create.
            log.warning("warning: model %s could not be replaced in place; dropped and "
                        "created", model.name)
            taken_along += dependent_views(client, relation_of(model, qualify), models)
            attributes = attributes_before[relation_of(model, qualify)]
            kept = keep_model_attributes(client, attributes_before) or kept
            for statement in build_statements(model, dialect, qualify, params):
                execute(client, statement, f"model {model.name}")
        if existing:
            attributes = as_kind(attributes, existing, (model.materialization or "").upper())
        for line in give_back(client, relation_of(model, qualify), attributes):
            log.warning("warning: model %s: %s", model.name, line)
        report.built.append((model.name, model.materialization or ""))
    if kept:
        forget_model_attributes(client)


def other_kind(model: Model, existing: str | None) -> str | None:
    """``existing`` when the model's name is of another kind in the destination than the model
    (moved between staging/ and marts/, or a user's view or table under its name), said in a
    warning: it is dropped and the model created."""
    kind = (model.materialization or "").upper()
    if existing is None or existing == kind:
        return None
    log.warning("warning: model %s is a %s in the destination and is built as a %s: the %s is "
                "dropped", model.name, existing.lower(), kind.lower(), existing.lower())
    return existing


def relation_of(model: Model, qualify: Qualifier) -> str:
    return generate(table_node(qualify(model.name)), "postgres", model.name)


def restore_users_views(client: Any, views: list[View]) -> None:
    """PostgreSQL: create again the views of users that a model's drop took along (a model
    whose columns changed: DROP ... CASCADE), from their definitions, with their grants,
    comments, options, indexes and owner; name those that no longer fit."""
    partly: list[str] = []
    failed = keep_given_up(client, views_not_recreated(client, views, partly))
    restored = len(views) - len(failed)
    if restored:
        log.warning("warning: %d view(s) of yours read a model whose columns changed and were "
                    "created again after its rebuild", restored)
    for line in failed:
        log.warning("warning: a view of yours read a model whose columns changed and could not "
                    "be created again: %s", line)
    for line in partly:
        log.warning("warning: %s", line)


def refused_definition(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a statement for the relation's columns (SQLSTATE 42P16: a view
    column renamed or dropped; 42804: a type changed; 42601: an INSERT's column count)."""
    return any(getattr(link, "pgcode", None) in ("42P16", "42804", "42601")
               for link in causes(exc))


def replaceable(client: Any, model: Model, qualify: Qualifier, params: Params) -> bool:
    """PostgreSQL: whether ``model`` exists with the columns it would get (``in_place``)."""
    relation = relation_of(model, qualify)
    query = generate(compile_query(model, "postgres", qualify, params), "postgres", model.name)
    try:
        return can_replace_in_place(client, relation, (model.materialization or "").upper(),
                                    query)
    except Exception as exc:  # noqa: BLE001 - dlt wraps driver errors in several classes
        raise ModelsError(f"model {model.name} failed: {one_line(exc)}") from exc


def run_data_tests(pipeline: dlt.Pipeline, sql_dir: Path | str | None = None
                   ) -> list[DataTestResult]:
    """Runs every data test against the built models; never raises for offending rows."""
    with pipeline.sql_client() as client:
        dialect = dialect_of(client)
        qualify = client_qualifier(client)
        project, _missing = adapted_project(pipeline, sql_dir, client)
        return [run_test(client, test, dialect, qualify) for test in project.tests]


def adapted_project(pipeline: dlt.Pipeline, sql_dir: Path | str | None, client: Any
                    ) -> tuple[Project, list[str]]:
    """The SQL project, reading the variant columns the pipeline's tables have (see
    :mod:`.variants`) and NULL for the columns the destination's tables lack; and the source
    tables the destination does not have yet (see :mod:`.absent`)."""
    project = with_variants(load_project(sql_dir), schema_tables(pipeline_schema(pipeline)))
    loaded = source_columns(project, client)
    present = {table: columns for table, columns in loaded.items() if columns is not None}
    return (with_absent_columns(project, present),
            [table for table, columns in loaded.items() if columns is None])


def run_test(client: Any, test: Model, dialect: str, qualify: Qualifier) -> DataTestResult:
    """Counts the test's rows and fetches a few; a test passes only when that count is 0.

    A count query that returns no row, or NULL, or something that is not a number, is a
    failure: a pass must be proven, never assumed.
    """
    offending = compile_query(test, dialect, qualify).subquery("offending")
    count_sql = generate(exp.select("COUNT(*)").from_(offending.copy()), dialect, test.name)
    rows = execute(client, count_sql, f"data test {test.name}")
    first = rows[0] if rows else None
    value = first[0] if first else None
    if value is None:
        what = "no row" if first is None else "NULL"
        return DataTestResult(test.name, 0, problem=f"its row count query returned {what}, "
                                                    f"which counts as a failure, not a pass")
    try:
        count = int(value)
    except (TypeError, ValueError):
        return DataTestResult(test.name, 0, problem=f"its row count query returned {value!r}, "
                                                    f"not a number; counted as a failure")
    if not count:
        return DataTestResult(test.name, 0)
    sample_sql = generate(exp.select("*").from_(offending).limit(SAMPLE_ROWS), dialect, test.name)
    with client.execute_query(sample_sql) as cursor:
        columns = tuple(column[0] for column in cursor.description)
        sample = tuple(tuple(row) for row in cursor.fetchmany(SAMPLE_ROWS))
    return DataTestResult(test.name, count, columns, sample)


def execute(client: Any, sql: str, what: str) -> Any:
    """Runs ``sql``, naming ``what`` failed if the database refuses it."""
    try:
        return client.execute_sql(sql)
    except Exception as exc:  # dlt wraps driver errors in several classes; all mean the same
        raise ModelsError(f"{what} failed: {one_line(exc)}") from exc


