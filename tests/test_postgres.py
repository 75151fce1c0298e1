"""PostgreSQL for real: a PostgreSQL 15 server started by the tests (tests/postgres.py), one
database per test; syncs over real HTTP against the sandbox, on the virtual clock. The same
exactness, merges, models, data tests and issue-8 scenarios as on DuckDB, and the same mart
figures as DuckDB on the same sandbox data."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import psycopg2
import pytest
from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient
from psycopg2.extensions import TRANSACTION_STATUS_INTRANS
from sqlglot import exp

from pipelines import postgres_sessions
from pipelines.destination import open_pipeline
from pipelines.micrometrics import refresh_views
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.timeutil import format_timestamp
from pipelines.models import ModelsError, build_models
from pipelines.models import runner as models_runner
from pipelines.models.compiler import CAST_SHAPES
from pipelines.models.in_place import GIVEN_UP_TABLE, can_replace_in_place
from pipelines.models.project import SQL_DIR
from pipelines.schedules.retry_causes import classify
from pipelines.sync.cli import main
from pipelines.sync.dataset_lock import LOCK_CLASS, lock_key
from pipelines.sync.lock import SyncLockedError
from pipelines.sync.options import SyncOptions
from pipelines.sync.run import failure
from tests.cli import run_cli, run_in_process, sync_env
from tests.destination_scenarios import (
    command_loads_exact,
    deletion_marks_and_reconcile,
    ids_and_times_that_drift_keep_the_models_building,
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs,
    models_that_change_kind_build,
    survey_edit_history_and_type_drift,
)
from tests.destinations import FAST, HOUR, SMALL, all_passed, pipeline_on
from tests.syncing import DATASET, sync_into, sync_sandbox
from tests.truth import assert_matches_truth, query


def postgres_pipeline(tmp_path: Path, credentials: str) -> dlt.Pipeline:
    return pipeline_on(dlt.destinations.postgres(credentials=credentials),
                       tmp_path / "postgres_pipelines")


def synced_with_views(start_sandbox, tmp_path: Path, clock, credentials: str,
                      *views: str) -> tuple[dlt.Pipeline, Any]:
    """A PostgreSQL dataset synced once with its models built, and an analyst's ``views``
    (``CREATE VIEW`` statements) in a schema ``bi`` of their own."""
    pipeline = postgres_pipeline(tmp_path, credentials)
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))
    with pipeline.sql_client() as sql:
        sql.execute_sql("CREATE SCHEMA bi")
        for view in views:
            sql.execute_sql(view)
    return pipeline, sandbox


def test_loads_and_merges_exact_finds_late_uploads_and_the_marts_equal_duckdbs(
        start_sandbox, tmp_path, clock, postgres_credentials):
    loads_merges_finds_late_uploads_and_marts_equal_duckdbs(
        start_sandbox, postgres_pipeline(tmp_path, postgres_credentials), tmp_path, clock,
        "postgres")


def test_deletion_marks_and_reconcile(start_sandbox, tmp_path, clock, postgres_credentials):
    deletion_marks_and_reconcile(start_sandbox, postgres_pipeline(tmp_path, postgres_credentials),
                                 clock)


def test_a_survey_edit_keeps_question_history_and_typing_and_type_drift_reaches_staging(
        start_sandbox, tmp_path, clock, postgres_credentials):
    survey_edit_history_and_type_drift(
        start_sandbox, postgres_pipeline(tmp_path, postgres_credentials), clock)


def test_the_command_loads_postgres_exact(start_sandbox, tmp_path, postgres_credentials):
    command_loads_exact(start_sandbox, tmp_path, "postgres",
                        {"DESTINATION__POSTGRES__CREDENTIALS": postgres_credentials},
                        postgres_pipeline(tmp_path, postgres_credentials))


def test_rebuilding_the_models_keeps_the_views_users_built_on_them(
        start_sandbox, tmp_path, clock, postgres_credentials, monkeypatch, caplog):
    # PostgreSQL cannot replace a table, and DROP ... CASCADE would take along every view that
    # reads a model: an analyst's view on a mart or a staging view must survive the next build,
    # and see the new rows.
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.nps AS SELECT * FROM {DATASET}.mart_nps_daily",
        f"CREATE VIEW bi.answers AS SELECT * FROM {DATASET}.stg_survey_answers",
        f"CREATE VIEW bi.responses AS SELECT * FROM {DATASET}.fct_survey_responses")

    clock.advance(HOUR)
    sandbox.add_responses(30)
    sync_into(sandbox, pipeline, clock)
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))

    live_responses = len(sandbox.truth()["survey_responses"])
    assert query(pipeline, "SELECT count(*) FROM bi.responses") == [(live_responses,)]
    assert (query(pipeline, "SELECT count(*) FROM bi.answers")
            == query(pipeline, f"SELECT count(*) FROM {DATASET}.stg_survey_answers"))
    assert (query(pipeline, "SELECT sum(responses) FROM bi.nps")
            == query(pipeline, f"SELECT sum(responses) FROM {DATASET}.mart_nps_daily"))

    # A model whose columns change (a new version of the connector) is dropped and created.
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    mart = sql_dir / "marts" / "mart_nps_daily.sql"
    head, select, tail = mart.read_text().rpartition("\nSELECT\n")
    mart.write_text(f"{head}{select}    1 AS build_version,\n{tail}")
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                   sql_dir=sql_dir))
    assert query(pipeline, f"SELECT DISTINCT build_version FROM {DATASET}.mart_nps_daily") == [
        (1,)]
    # The drop took the users' views along; they are created again, and read the new table.
    assert (query(pipeline, "SELECT sum(responses) FROM bi.nps")
            == query(pipeline, f"SELECT sum(responses) FROM {DATASET}.mart_nps_daily"))

    # Taken for unchanged and refused in place, it is dropped and created all the same.
    monkeypatch.setattr(models_runner, "can_replace_in_place", lambda *args: True)
    mart.write_text(f"{head}{select}    2 AS build_version, 'b' AS build_label,\n{tail}")
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                   sql_dir=sql_dir))
    assert query(pipeline, f"SELECT DISTINCT build_version, build_label "
                           f"FROM {DATASET}.mart_nps_daily") == [(2, "b")]
    assert query(pipeline, "SELECT count(*) FROM bi.nps") == query(
        pipeline, f"SELECT count(*) FROM {DATASET}.mart_nps_daily")

    # A view of a user's that no longer fits the new columns is named; the others come back.
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"CREATE VIEW bi.labels AS SELECT build_label FROM "
                        f"{DATASET}.mart_nps_daily")
    mart.write_text(f"{head}{select}    3 AS build_version,\n{tail}")
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                       sql_dir=sql_dir))
    warned = [record.getMessage() for record in caplog.records]
    assert any('"bi"."labels"' in line and "could not be created again" in line
               and f'its definition is kept in "{DATASET}"."{GIVEN_UP_TABLE}"' in line
               for line in warned), warned
    # Its definition was gone with it: kept, for its owner to mend and create again.
    [(statement,)] = query(pipeline, f"SELECT create_statement FROM {DATASET}.{GIVEN_UP_TABLE} "
                                     "WHERE view_schema = 'bi' AND view_name = 'labels'")
    assert statement.startswith('CREATE VIEW "bi"."labels" AS ') and "build_label" in statement
    assert query(pipeline, "SELECT table_name FROM information_schema.views "
                           "WHERE table_schema = 'bi' ORDER BY 1") == [
        ("answers",), ("nps",), ("responses",)]

    # Any other failure in place (a lost connection) fails the build and drops nothing.
    monkeypatch.setattr(models_runner, "can_replace_in_place", can_replace_in_place)
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"CREATE VIEW bi.nps_again AS SELECT * FROM {DATASET}.mart_nps_daily")
    execute = models_runner.execute

    def connection_lost(client, statement, what):
        if statement.startswith("LOCK TABLE"):
            raise ModelsError(f"{what} failed: server closed the connection unexpectedly")
        return execute(client, statement, what)

    monkeypatch.setattr(models_runner, "execute", connection_lost)
    with pytest.raises(ModelsError, match="connection"):
        build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC), sql_dir=sql_dir)
    assert query(pipeline, "SELECT count(*) FROM bi.nps_again") == query(
        pipeline, f"SELECT count(*) FROM {DATASET}.mart_nps_daily")


def set_the_servers_time_zone(credentials: str, zone: str) -> None:
    """The test database's default time zone (each new session's), as a DBA may set it."""
    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
        cursor.execute(f"ALTER DATABASE {database} SET timezone TO '{zone}'")


def built_here_and_on_duckdb(sandbox, tmp_path: Path, clock, credentials: str,
                             as_of: datetime) -> dlt.Pipeline:
    """The sandbox synced into PostgreSQL and into DuckDB (``tmp_path / "duckdb"``), the models
    built on both as of ``as_of``, every data test passing; returns the PostgreSQL pipeline."""
    pipeline = postgres_pipeline(tmp_path, credentials)
    sync_into(sandbox, pipeline, clock)
    assert all_passed(build_models(pipeline, now=as_of))
    duck = sync_sandbox(sandbox, tmp_path / "duckdb", clock, **FAST)
    assert all_passed(build_models(duck.pipeline, now=as_of))
    return pipeline


def test_last_7_and_30_days_are_exact_durations_whatever_the_servers_time_zone(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # PostgreSQL subtracts INTERVAL '7 days' from a timestamptz in calendar days of the
    # session's time zone: across a daylight-saving change that is 167 or 169 hours, and the
    # server's time zone is the DBA's choice. DuckDB, Snowflake and BigQuery count 168 hours.
    set_the_servers_time_zone(postgres_credentials, "America/New_York")
    as_of = datetime(2026, 11, 5, 12, tzinfo=UTC)  # a week after the clocks went back (Nov 1)
    sandbox = start_sandbox(clock=clock, **SMALL)
    response = sandbox.truth()["survey_responses"][0]
    # 168.5 hours before as_of: outside the last 7 days, inside a 169-hour "week".
    sandbox.patch_records("survey_responses", [response["id"]],
                          {"created_at": "2026-10-29T11:30:00.000Z"})
    pipeline = built_here_and_on_duckdb(sandbox, tmp_path, clock, postgres_credentials, as_of)

    counts = (f"SELECT device_id, responses_last_7d, responses_last_30d "
              f"FROM {DATASET}.dim_devices ORDER BY device_id")
    assert query(pipeline, counts) == query(tmp_path / "duckdb", counts)


def test_a_drifted_time_without_an_offset_is_utcs_whatever_the_servers_time_zone(
        start_sandbox, tmp_path, clock, postgres_credentials):
    """A ``created_at`` that dlt could not read as a time (here: blanks around it) lands as
    text; the models cast it. Without an offset, PostgreSQL's cast took the session's zone (the
    server's, the DBA's choice): the response moved to another hour, and day, than on DuckDB."""
    set_the_servers_time_zone(postgres_credentials, "Pacific/Kiritimati")
    sandbox = start_sandbox(clock=clock, **SMALL)
    unzoned, zoned, one_digit = (r["id"] for r in sandbox.truth()["survey_responses"][:3])
    sandbox.patch_records("survey_responses", [unzoned], {"created_at": " 2026-03-14 12:00:00"})
    sandbox.patch_records("survey_responses", [zoned],
                          {"created_at": " 2026-03-14 12:00:00+02:00"})
    sandbox.patch_records("survey_responses", [one_digit], {"created_at": " 2026-3-14 23:30"})
    as_of = datetime(2026, 4, 1, tzinfo=UTC)
    pipeline = built_here_and_on_duckdb(sandbox, tmp_path, clock, postgres_credentials, as_of)

    facts = (f"SELECT response_id, responded_at, response_date FROM {DATASET}."
             f"fct_survey_responses WHERE response_id IN ({unzoned}, {zoned}, {one_digit}) "
             f"ORDER BY response_id")
    on_postgres = [(i, at.astimezone(UTC), day) for i, at, day in query(pipeline, facts)]
    on_duckdb = [(i, at.astimezone(UTC), day) for i, at, day in query(tmp_path / "duckdb", facts)]
    assert on_postgres == on_duckdb
    assert {i: at for i, at, _ in on_postgres} == {
        unzoned: datetime(2026, 3, 14, 12, tzinfo=UTC),
        zoned: datetime(2026, 3, 14, 10, tzinfo=UTC),
        one_digit: datetime(2026, 3, 14, 23, 30, tzinfo=UTC)}


def test_ids_and_times_that_drift_keep_the_models_building(start_sandbox, tmp_path, clock,
                                                           postgres_credentials):
    ids_and_times_that_drift_keep_the_models_building(
        start_sandbox, postgres_pipeline(tmp_path, postgres_credentials), clock)


# Values a drifted time column may hold: PostgreSQL reads some, refuses the others.
DRIFTED_TIMES = {
    "timestamptz": [
        "2024-02-29T10:00:00Z", "2023-02-29T10:00:00Z", "2024-02-30", "2024-04-31T00:00:00+02:00",
        "2024-06-31", "2024-13-01", "2024-01-01T25:00:00Z", "2024-01-01T24:00:00Z",
        "2024-01-01T24:00:01Z", "2024-01-01T23:60:00Z", "2024-01-01T23:59:60Z",
        "2024-01-01T23:59:60.5Z", "2024-01-01T23:59:60.000Z", "0000-01-01", "0001-01-01",
        "2000-02-29", "1900-02-29", "2100-02-29", "2400-02-29", "0400-02-29", "0000-02-29",
        "2024-01-01T10:00:00+15:59", "2024-01-01T10:00:00+16:00", "2024-01-01T10:00:00-1530",
        "2024-01-01T10:00:00+14", "2024-01-01 10:00:00.123456789 +02:00",
        " 2024-06-01T10:00:00z ", "2024-06-01T10:00", "9999-12-31T23:59:59Z", "soon", "",
        "2026-3-14 23:30", "2024-2-29T10:00:00Z", "2023-2-29", "2024-6-31", "2024-06-1"],
    "date": ["2024-02-29", "2023-02-29", "2024-06-31", "2024-06-30", " 2024-01-01 ", "2024-3-1",
             "2024-2-29", "2023-2-29", "2024-4-31", "2024-012-01"],
    "time": ["10:00", "24:00:00", "24:00:00.000", "24:00:00.5", "23:59:60", "23:60:00", "25:00"],
}


@pytest.mark.parametrize("kind", sorted(DRIFTED_TIMES))
def test_the_guard_before_a_cast_takes_exactly_what_postgres_reads(postgres_credentials, kind):
    """PostgreSQL has no TRY_CAST: the models guard each cast of a drifted value with the
    shape of what the type reads (``compiler.CAST_SHAPES``). A value the guard lets through
    that PostgreSQL refuses (a 30 February) failed every build until upstream fixed it; one
    it keeps out that PostgreSQL reads would be NULL for nothing."""
    shape = CAST_SHAPES[exp.DataType.Type[kind.upper()]]
    connection = psycopg2.connect(postgres_credentials)
    connection.autocommit = True
    disagree = []
    try:
        with connection.cursor() as cursor:
            for value in DRIFTED_TIMES[kind]:
                try:
                    cursor.execute(f"SELECT CAST(%s AS {kind})", (value,))
                    reads = True
                except psycopg2.DataError:
                    reads = False
                cursor.execute("SELECT %s ~* %s", (value, shape))
                if cursor.fetchone()[0] != reads:
                    disagree.append((value, reads))
    finally:
        connection.close()
    assert disagree == []


# What a drop loses besides a view's definition, as a BI role and a DBA see it.
ATTRIBUTES = """
SELECT pg_get_userbyid(c.relowner), c.reloptions, obj_description(c.oid, 'pg_class'),
       col_description(c.oid, 1), has_table_privilege(%(role)s, c.oid, 'SELECT'),
       has_table_privilege(%(role)s, c.oid, 'SELECT WITH GRANT OPTION'),
       (SELECT array_agg(pg_get_indexdef(i.indexrelid) ORDER BY 1)
        FROM pg_index i WHERE i.indrelid = c.oid)
FROM pg_class c WHERE c.oid = to_regclass(%(relation)s)
"""


def attributes(pipeline: dlt.Pipeline, role: str, relation: str) -> tuple:
    with pipeline.sql_client() as sql, sql.execute_query(
            ATTRIBUTES, role=role, relation=relation) as cursor:
        return cursor.fetchone()


def role_of(tmp_path: Path, prefix: str = "bi") -> str:
    """A role name of this test's own: roles are the server's, shared by the tests' databases."""
    return "".join(c if c.isalnum() else "_" for c in f"{prefix}_{tmp_path.name[-12:]}".lower())


def new_role(pipeline: dlt.Pipeline, tmp_path: Path, *then: str) -> str:
    """A role of this test's own (``role_of``), created, then the statements ``then`` run
    (``{role}`` in them is its name)."""
    role = role_of(tmp_path)
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"CREATE ROLE {role} NOLOGIN")
        for statement in then:
            sql.execute_sql(statement.format(role=role))
    return role


def with_new_column(model: Path) -> None:
    """``model``'s SQL with a column more, first in its last SELECT: a build drops and creates
    it."""
    head, select, tail = model.read_text().rpartition("\nSELECT\n")
    model.write_text(f"{head}{select}    1 AS build_version,\n{tail}")


def with_attributes(pipeline: dlt.Pipeline, role: str, owner: str) -> dict[str, tuple]:
    """A BI role's grants, comments, options, indexes and another owner on the views users
    built on the models and tables, and on a mart: how each looks."""
    relations = {"bi.nps": "VIEW", "bi.device_names": "MATERIALIZED VIEW",
                 "bi.raw": "VIEW", f"{DATASET}.mart_nps_daily": "TABLE",
                 f"{DATASET}.survey_responses": "TABLE"}
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"CREATE ROLE {role} NOLOGIN")
        sql.execute_sql(f"CREATE ROLE {owner} NOLOGIN")
        sql.execute_sql(f"GRANT USAGE ON SCHEMA bi, {DATASET} TO {role}")
        sql.execute_sql(f"GRANT CREATE, USAGE ON SCHEMA bi TO {owner}")
        sql.execute_sql("ALTER VIEW bi.nps SET (security_barrier = true)")
        sql.execute_sql("CREATE INDEX device_names_by_name ON bi.device_names (name)")
        sql.execute_sql(f"CREATE INDEX nps_by_responses ON {DATASET}.mart_nps_daily (responses)")
        sql.execute_sql(f"CREATE INDEX responses_by_time ON {DATASET}.survey_responses "
                        "(updated_at)")
        # bi.raw's owner reads the loaded table: a view reads with its owner's privileges.
        sql.execute_sql(f"GRANT USAGE ON SCHEMA {DATASET} TO {owner}")
        sql.execute_sql(f"GRANT SELECT ON {DATASET}.survey_responses TO {owner}")
        for relation, kind in relations.items():
            sql.execute_sql(f"GRANT SELECT ON {relation} TO {role} WITH GRANT OPTION")
            sql.execute_sql(f"COMMENT ON {kind} {relation} IS 'it''s {relation}, for BI'")
        sql.execute_sql("COMMENT ON COLUMN bi.nps.survey_id IS 'the survey, as the API names it'")
        sql.execute_sql(f"ALTER VIEW bi.raw OWNER TO {owner}")
    return {relation: attributes(pipeline, role, relation) for relation in relations}


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e400"])
def test_text_no_double_holds_in_a_double_column_loads_and_the_syncs_after_too(
        start_sandbox, tmp_path, clock, postgres_credentials, text):
    """dlt converted it into the column's type (NaN, infinity) and wrote PostgreSQL the bare
    word nan or inf: the load failed on every sync after, --drop-pending too (the record
    was read again). It loads as sent, in the variant column."""
    pipeline = postgres_pipeline(tmp_path, postgres_credentials)
    sandbox = start_sandbox(clock=clock, **SMALL)
    devices = sorted(device["id"] for device in sandbox.truth()["devices"])
    sandbox.patch_records("devices", devices, {"battery": 3.5})
    sync_into(sandbox, pipeline, clock)
    sandbox.patch_records("devices", devices[:1], {"battery": text})
    for _ in range(2):
        clock.advance(HOUR)
        sync_into(sandbox, pipeline, clock)
    assert query(pipeline, f"SELECT id, battery, battery__v_text FROM {DATASET}.devices "
                           f"WHERE battery__v_text IS NOT NULL") == [(devices[0], None, text)]


def test_views_and_a_mart_created_again_keep_their_grants_comments_options_indexes_and_owner(
        start_sandbox, tmp_path, clock, postgres_credentials, caplog):
    """A model dropped and created (its columns changed), the users' views its drop took
    along, the views a --full-refresh set aside and the tables it dropped were created again as
    new objects: a BI role's SELECT on them, their comments, options, indexes and owner were
    gone, and dashboards failed after the build."""
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.nps AS SELECT * FROM {DATASET}.mart_nps_daily",
        f"CREATE MATERIALIZED VIEW bi.device_names AS SELECT name FROM {DATASET}.devices",
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses")
    role, owner = role_of(tmp_path), role_of(tmp_path, "owner")
    before = with_attributes(pipeline, role, owner)
    for relation, (_owner, _options, comment, _column, select, grantable, _indexes) in (
            before.items()):
        assert select and grantable and comment.startswith("it's"), relation
    assert before["bi.raw"][0] == owner and before["bi.nps"][1] == ["security_barrier=true"]
    assert before["bi.nps"][3] == "the survey, as the API names it" and before["bi.device_names"][6]

    # A model whose columns change (a new version of the connector) is dropped and created.
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    with_new_column(sql_dir / "marts" / "mart_nps_daily.sql")
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                       sql_dir=sql_dir))
    assert query(pipeline, f"SELECT DISTINCT build_version FROM {DATASET}.mart_nps_daily") == [
        (1,)]
    assert {relation: attributes(pipeline, role, relation) for relation in before} == before
    assert "created again, but not" not in caplog.text

    # A full refresh sets aside every view reading the tables it drops, and creates them again.
    clock.advance(HOUR)
    sandbox.add_responses(5)
    result = sync_into(sandbox, pipeline, clock, SyncOptions(full_refresh=True))
    assert not result.report.warnings
    for relation in ("bi.device_names", "bi.raw", f"{DATASET}.survey_responses"):
        assert attributes(pipeline, role, relation) == before[relation], relation
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [  # its owner's SELECT is back
        (len(sandbox.truth()["survey_responses"]),)]
    assert kept_views(pipeline) == []


def test_a_model_view_another_models_drop_took_along_and_column_grants_come_back(
        start_sandbox, tmp_path, clock, postgres_credentials, caplog):
    """DROP VIEW ... CASCADE of a model whose columns changed (stg_survey_questions) takes the
    model views reading it along (stg_survey_answers): gone by their own turn, they came back
    without their grants. And a grant on columns (GRANT SELECT (survey_id) ON a mart) is the
    columns', not the relation's: it was not given back either."""
    pipeline, _sandbox = synced_with_views(start_sandbox, tmp_path, clock, postgres_credentials)
    answers, mart = f"{DATASET}.stg_survey_answers", f"{DATASET}.mart_nps_daily"
    role = new_role(pipeline, tmp_path, f"GRANT SELECT ON {answers} TO {{role}}",
                    f"COMMENT ON VIEW {answers} IS 'answers, for BI'",
                    f"GRANT SELECT (survey_id) ON {mart} TO {{role}}")
    check = (f"SELECT has_table_privilege('{role}', '{answers}', 'SELECT'), "
             f"obj_description('{answers}'::regclass, 'pg_class'), "
             f"has_column_privilege('{role}', '{mart}', 'survey_id', 'SELECT'), "
             f"has_table_privilege('{role}', '{mart}', 'SELECT')")
    assert query(pipeline, check) == [(True, "answers, for BI", True, False)]

    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    for model in (sql_dir / "staging" / "stg_survey_questions.sql",
                  sql_dir / "marts" / "mart_nps_daily.sql"):
        with_new_column(model)
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                       sql_dir=sql_dir))
    assert query(pipeline, f"SELECT count(*) FROM {DATASET}.stg_survey_questions "
                           f"WHERE build_version = 1") != [(0,)]
    assert query(pipeline, check) == [(True, "answers, for BI", True, False)]
    assert "created again, but not" not in caplog.text


def test_models_that_change_kind_build(start_sandbox, tmp_path, clock, postgres_credentials):
    models_that_change_kind_build(start_sandbox, postgres_pipeline(tmp_path, postgres_credentials),
                                  tmp_path, clock)


def test_a_view_built_as_a_table_keeps_its_grants_comment_and_the_views_of_users_on_it(
        start_sandbox, tmp_path, clock, postgres_credentials, caplog):
    """stg_surveys moved to marts/: the view is dropped (its CASCADE takes a user's view
    along) and the table created, with the view's grant and comment, and the user's view back."""
    pipeline, _sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.surveys AS SELECT survey_id, survey_name FROM {DATASET}.stg_surveys")
    surveys = f"{DATASET}.stg_surveys"
    role = new_role(pipeline, tmp_path, f"GRANT SELECT ON {surveys} TO {{role}}",
                    f"COMMENT ON VIEW {surveys} IS 'surveys, for BI'")
    check = (f"SELECT c.relkind, has_table_privilege('{role}', c.oid, 'SELECT'), "
             f"obj_description(c.oid, 'pg_class') FROM pg_class c "
             f"WHERE c.oid = '{surveys}'::regclass")
    assert query(pipeline, check) == [("v", True, "surveys, for BI")]
    listed = query(pipeline, "SELECT * FROM bi.surveys ORDER BY 1")

    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "staging" / "stg_surveys.sql").rename(sql_dir / "marts" / "stg_surveys.sql")
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC),
                                       sql_dir=sql_dir))
    assert query(pipeline, check) == [("r", True, "surveys, for BI")]
    assert listed and query(pipeline, "SELECT * FROM bi.surveys ORDER BY 1") == listed
    assert "model stg_surveys is a view in the destination and is built as a table" in caplog.text
    assert "could not" not in caplog.text and "but not" not in caplog.text


def test_a_model_views_grants_outlive_a_build_that_failed_after_a_drop_took_it_along(
        start_sandbox, tmp_path, clock, postgres_credentials):
    """stg_survey_questions' columns change, so its drop takes stg_survey_answers along; the
    build then fails on stg_survey_answers itself. Its grants were in memory only: the next
    build, once the model was fixed, created it bare."""
    pipeline, _sandbox = synced_with_views(start_sandbox, tmp_path, clock, postgres_credentials)
    answers = f"{DATASET}.stg_survey_answers"
    role = new_role(pipeline, tmp_path, f"GRANT SELECT ON {answers} TO {{role}}")
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    with_new_column(sql_dir / "staging" / "stg_survey_questions.sql")
    answers_sql = sql_dir / "staging" / "stg_survey_answers.sql"
    good = answers_sql.read_text()
    head, select, tail = good.rpartition("\nSELECT\n")
    answers_sql.write_text(f"{head}{select}    no_such_column,\n{tail}")
    now = datetime.fromtimestamp(clock(), UTC)
    with pytest.raises(ModelsError, match="no_such_column"):
        build_models(pipeline, now=now, sql_dir=sql_dir)
    assert query(pipeline, f"SELECT to_regclass('{answers}') IS NULL") == [(True,)]

    answers_sql.write_text(good)  # fixed
    assert all_passed(build_models(pipeline, now=now, sql_dir=sql_dir))
    assert query(pipeline, f"SELECT has_table_privilege('{role}', '{answers}', 'SELECT'), "
                           f"to_regclass('{DATASET}._micrometrics_model_attributes')") == [
        (True, None)]


def test_an_attribute_that_cannot_be_given_back_is_named_and_the_rest_are(
        start_sandbox, tmp_path, clock, postgres_credentials, caplog):
    """A comment on a column the rebuilt mart no longer has cannot be given back: named in a
    warning; the mart's grant still is."""
    pipeline, _sandbox = synced_with_views(start_sandbox, tmp_path, clock, postgres_credentials)
    mart = f"{DATASET}.mart_nps_daily"
    role = new_role(pipeline, tmp_path, f"GRANT SELECT ON {mart} TO {{role}}",
                    f"ALTER TABLE {mart} ADD COLUMN dropped_later integer",
                    f"COMMENT ON COLUMN {mart}.dropped_later IS 'gone next build'")
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))
    assert attributes(pipeline, role, mart)[4]
    [line] = [r.getMessage() for r in caplog.records if "created again, but not" in r.getMessage()]
    assert line.startswith("warning: model mart_nps_daily: ")
    assert "COMMENT ON COLUMN" in line and "dropped_later" in line


def test_users_views_a_drop_took_along_come_back_even_if_a_later_model_fails(
        start_sandbox, tmp_path, clock, postgres_credentials):
    pipeline = postgres_pipeline(tmp_path, postgres_credentials)
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync_into(sandbox, pipeline, clock)
    now = datetime.fromtimestamp(clock(), UTC)
    assert all_passed(build_models(pipeline, now=now))
    with pipeline.sql_client() as sql:
        sql.execute_sql("CREATE SCHEMA bi")
        sql.execute_sql(f"CREATE VIEW bi.devices AS SELECT device_id FROM {DATASET}.stg_devices")
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    staging = sql_dir / "staging" / "stg_devices.sql"  # new columns: dropped and created
    staging.write_text(staging.read_text().replace("    deleted_at\n",
                                                   "    deleted_at,\n    1 AS build_version\n"))
    mart = sql_dir / "marts" / "mart_nps_daily.sql"  # built later, and refused
    mart.write_text(mart.read_text().replace("FROM fct_survey_responses",
                                             "FROM fct_survey_responses WHERE no_such_column"))
    with pytest.raises(ModelsError, match="mart_nps_daily"):
        build_models(pipeline, now=now, sql_dir=sql_dir)
    assert query(pipeline, "SELECT count(*) FROM bi.devices") == query(
        pipeline, f"SELECT count(*) FROM {DATASET}.stg_devices")


def test_a_full_refresh_after_the_models_were_built_drops_and_reloads_keeping_every_view(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # PostgreSQL refuses to drop a table a view reads: the models' staging views read every
    # loaded table, so --full-refresh failed every time once the models existed, and its
    # pending package failed every sync after it.
    # An analyst's views: on a loaded table, on a staging view, and one reading another.
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses",
        f"CREATE VIEW bi.answers AS SELECT * FROM {DATASET}.stg_survey_answers",
        "CREATE VIEW bi.answer_count AS SELECT count(*) AS n FROM bi.answers",
        f"CREATE MATERIALIZED VIEW bi.device_names AS SELECT name FROM {DATASET}.devices")

    clock.advance(HOUR)
    sandbox.add_responses(20)
    result = sync_into(sandbox, pipeline, clock, SyncOptions(full_refresh=True))
    assert not result.report.warnings
    assert_matches_truth(pipeline, sandbox.truth())
    live_responses = len(sandbox.truth()["survey_responses"])
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [(live_responses,)]
    assert query(pipeline, "SELECT n FROM bi.answer_count") == query(
        pipeline, f"SELECT count(*) FROM {DATASET}.stg_survey_answers")
    assert query(pipeline, "SELECT count(*) FROM bi.device_names") == [
        (len(sandbox.truth()["devices"]),)]
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))

    # And the syncs after it load as before.
    clock.advance(HOUR)
    sandbox.add_responses(5)
    sync_into(sandbox, pipeline, clock)
    assert_matches_truth(pipeline, sandbox.truth())


def test_a_sync_from_another_machine_into_the_same_dataset_waits_its_turn(
        start_sandbox, tmp_path, postgres_credentials):
    # The sync lock is a file on one machine: two hosts (or an Airflow retry on another worker
    # beside the first attempt) loaded at once through one staging dataset, and one failed on
    # a duplicate key in dlt's merge or a catalog clash in a model, which is never retried.
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=postgres_credentials)
    other_machine = psycopg2.connect(postgres_credentials)
    try:
        with other_machine.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(DATASET)))
        locked = run_cli(env, "--destination", "postgres", "--quiet")
        assert locked.returncode == 3, locked.stderr
        last = locked.stderr.strip().splitlines()[-1]
        assert f"another sync of dataset '{DATASET}' is running against this PostgreSQL" in last
        assert f"server pid {other_machine.get_backend_pid()}" in last
        with other_machine.cursor() as cursor:  # how long it has held it: hanging, or at work
            cursor.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = "
                           "pg_backend_pid()")
            ((started,),) = cursor.fetchall()
        assert f"session started {format_timestamp(started)} (" in last
        assert sandbox.stats()["requests"] == 0
        assert classify(SyncLockedError(last)).retry  # a scheduler tries again later
    finally:
        other_machine.close()  # its session ends, and the lock with it
    done = run_cli(env, "--destination", "postgres", "--quiet")
    assert done.returncode == 0, done.stderr
    assert_matches_truth(postgres_pipeline(tmp_path, postgres_credentials), sandbox.truth())


def test_a_refresh_whose_load_failed_or_was_killed_keeps_every_view(
        start_sandbox, tmp_path, clock, postgres_credentials, monkeypatch):
    # The refresh's package, left pending when its first load failed, dropped the tables in
    # the next sync's first step with every view in place: that sync failed, and each after it.
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses")
    view_oid = "SELECT 'bi.raw'::regclass::oid"
    load = dlt.Pipeline.load

    def fails_once(self, *args, **kwargs):
        monkeypatch.setattr(dlt.Pipeline, "load", load)
        raise ConnectionError("the server went away as the load started")

    def pending_after(options: SyncOptions) -> None:
        clock.advance(HOUR)
        sandbox.add_responses(3)
        monkeypatch.setattr(dlt.Pipeline, "load", fails_once)
        with pytest.raises(Exception, match="went away"):
            sync_into(sandbox, pipeline, clock, options)
        assert pipeline.list_normalized_load_packages()

    # A package that drops nothing leaves the views alone (created again, a view is a new
    # object: what else referred to the old one does not follow).
    before = query(pipeline, view_oid)
    pending_after(SyncOptions())
    clock.advance(HOUR)
    sync_into(sandbox, pipeline, clock)
    assert query(pipeline, view_oid) == before

    pending_after(SyncOptions(full_refresh=True))
    clock.advance(HOUR)
    result = sync_into(sandbox, pipeline, clock)
    assert not result.report.warnings
    assert_matches_truth(pipeline, sandbox.truth())
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [
        (len(sandbox.truth()["survey_responses"]),)]

    # Killed (SIGKILL) while the views were set aside, a package left: the next sync creates
    # them again (setting views aside for that package must not write over their definitions).
    pending_after(SyncOptions())
    with pipeline.sql_client() as sql:
        views = refresh_views._views_reading(sql, ["survey_responses"])
        (Path(pipeline.pipelines_dir) / "micrometrics.views-set-aside.json").write_text(
            json.dumps([view[:4] for view in views]))  # as the version that kept files did
        sql.execute_sql("DROP VIEW bi.raw")
    clock.advance(HOUR)
    sync_into(sandbox, pipeline, clock)
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [
        (len(sandbox.truth()["survey_responses"]),)]


def test_views_a_killed_refresh_set_aside_come_back_in_their_own_dataset_only(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # Kept per pipeline name and written with bare table names, they were created by the
    # machine's next sync, whichever dataset it was for, reading that dataset's tables.
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses")
    with refresh_views.views_set_aside(pipeline, ["survey_responses"]):
        pass  # killed (SIGKILL) while they were set aside: nothing created them again
    (kept,) = [view for view in kept_views(pipeline) if view[:2] == ("bi", "raw")]
    assert f"{DATASET}.survey_responses" in kept[3]  # whatever the session's search_path
    other = dlt.pipeline(pipeline_name="micrometrics", dataset_name="tenant_b",
                         destination=dlt.destinations.postgres(credentials=postgres_credentials),
                         pipelines_dir=pipeline.pipelines_dir)
    other_sandbox = start_sandbox(clock=clock, devices=3, surveys=1, responses=7, **FAST)
    sync_into(other_sandbox, other, clock)
    assert query(pipeline, "SELECT to_regclass('bi.raw') IS NULL") == [(True,)]

    clock.advance(HOUR)
    sync_into(sandbox, postgres_pipeline(tmp_path, postgres_credentials), clock)
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [
        (len(sandbox.truth()["survey_responses"]),)]
    assert query(pipeline, "SELECT table_schema FROM information_schema.view_table_usage"
                           " WHERE view_schema = 'bi'") == [(DATASET,)]


def test_views_a_killed_refresh_set_aside_come_back_from_a_fresh_runner(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # Kept in the killed sync's pipeline folder only: the next sync, on a fresh runner (GitHub
    # Actions) or another worker, never created them again, and said nothing.
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses",
        "CREATE VIEW bi.total AS SELECT count(*) AS n FROM bi.raw")
    with refresh_views.views_set_aside(pipeline, ["survey_responses"]):
        pass  # killed (SIGKILL) while they were set aside: nothing created them again
    assert query(pipeline, "SELECT to_regclass('bi.total') IS NULL") == [(True,)]
    fresh = pipeline_on(dlt.destinations.postgres(credentials=postgres_credentials),
                        tmp_path / "fresh_runner")
    clock.advance(HOUR)
    result = sync_into(sandbox, fresh, clock)
    assert not result.report.warnings
    assert query(fresh, "SELECT n FROM bi.total") == [(len(sandbox.truth()["survey_responses"]),)]
    assert kept_views(fresh) == []  # and the definitions' table is gone
    assert query(fresh, f"SELECT to_regclass('{DATASET}.{refresh_views.KEPT_TABLE}') IS NULL"
                 ) == [(True,)]


def test_the_views_kept_survive_a_rewrite_cut_short(start_sandbox, tmp_path, clock,
                                                    postgres_credentials, monkeypatch):
    # Rewritten after each round (those that could not be created again yet), one DELETE then
    # an INSERT each, in autocommit: a connection lost in between lost every definition.
    pipeline, _ = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id, comment FROM {DATASET}.survey_responses")
    with refresh_views.views_set_aside(pipeline, ["survey_responses"]):
        with pipeline.sql_client() as sql:  # a first round that brought no comment yet
            sql.execute_sql(f"ALTER TABLE {DATASET}.survey_responses DROP COLUMN comment")
        kept = kept_views(pipeline)
        real = Psycopg2SqlClient.execute_sql

        def lost_at_insert(self, sql, *args, **kwargs):
            if sql.startswith("INSERT INTO") and refresh_views.KEPT_TABLE in sql:
                raise ConnectionError("server closed the connection unexpectedly")
            return real(self, sql, *args, **kwargs)

        monkeypatch.setattr(Psycopg2SqlClient, "execute_sql", lost_at_insert)
        with pytest.raises(ConnectionError):
            refresh_views.restore_set_aside(pipeline, [], final=False)
        monkeypatch.undo()
        assert ("bi", "raw") in {view[:2] for view in kept_views(pipeline)}
        assert len(kept_views(pipeline)) == len(kept)


def test_views_an_earlier_version_set_aside_in_the_dataset_are_created_again(
        start_sandbox, tmp_path, clock, postgres_credentials):
    """Its table had no attributes column (a refresh of it killed, then an upgrade)."""
    pipeline, sandbox = synced_with_views(
        start_sandbox, tmp_path, clock, postgres_credentials,
        f"CREATE VIEW bi.raw AS SELECT id FROM {DATASET}.survey_responses")
    with pipeline.sql_client() as sql:
        [(_schema, _name, kind, definition, _attributes)] = [
            view for view in refresh_views._views_reading(sql, ["survey_responses"])
            if view[:2] == ("bi", "raw")]
        table = sql.make_qualified_table_name(refresh_views.KEPT_TABLE)
        sql.execute_sql(f"CREATE TABLE {table} (position integer, view_schema text,"
                        " view_name text, kind text, definition text)")
        sql.execute_sql(f"INSERT INTO {table} VALUES (0, 'bi', 'raw', %s, %s)", kind, definition)
        sql.execute_sql("DROP VIEW bi.raw")
    clock.advance(HOUR)
    result = sync_into(sandbox, pipeline, clock)
    assert not result.report.warnings
    assert query(pipeline, "SELECT count(*) FROM bi.raw") == [
        (len(sandbox.truth()["survey_responses"]),)]
    assert kept_views(pipeline) == []


def kept_views(pipeline: dlt.Pipeline) -> list:
    with pipeline.sql_client() as sql:
        return refresh_views._kept(pipeline, sql)


def test_a_view_of_what_only_a_later_round_of_a_refresh_brings_back_is_kept(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # Created again after the first round, which held only its own pages' tables and columns,
    # such a view failed and its definition was deleted: gone for good, exit 0.
    pipeline = postgres_pipeline(tmp_path, postgres_credentials)
    # Newest records first: the refresh's first round reads none of the oldest.
    sandbox = start_sandbox(clock=clock, devices=4, surveys=1, responses=60, page_size=10,
                            order="desc", **FAST)
    oldest = sorted(sandbox.truth()["survey_responses"], key=lambda r: r["updated_at"])[:5]
    ids = [r["id"] for r in oldest]
    sandbox.patch_records("survey_responses", ids, {"channel": "kiosk", "legacy": "x"},
                          bump=False)  # the refresh reads them last (newest windows first)
    sync_into(sandbox, pipeline, clock)
    with pipeline.sql_client() as sql:
        sql.execute_sql("CREATE SCHEMA bi")
        sql.execute_sql(f"CREATE VIEW bi.by_channel AS SELECT channel, count(*) AS n"
                        f" FROM {DATASET}.survey_responses GROUP BY channel")
        sql.execute_sql(f"CREATE VIEW bi.legacy AS SELECT legacy FROM {DATASET}.survey_responses")
    sandbox.patch_records("survey_responses", ids, {"legacy": None}, bump=False)  # gone upstream
    clock.advance(HOUR)
    result = sync_into(sandbox, pipeline, clock, SyncOptions(full_refresh=True),
                       window_pages=2, round_pages=2)
    assert result.report.rounds > 2
    assert_matches_truth(pipeline, sandbox.truth())
    assert query(pipeline, "SELECT n FROM bi.by_channel WHERE channel = 'kiosk'") == [(5,)]
    # What no round brought back is named once, at the end, and given up.
    (warning,) = result.report.warnings
    assert warning.startswith("warning: a view set aside for a refresh could not be created again: "
                              '"bi"."legacy"')
    assert warning.endswith(f'(its definition is kept in "{DATASET}"."{GIVEN_UP_TABLE}")')
    assert kept_views(pipeline) == []
    [(statement,)] = query(pipeline, f"SELECT create_statement FROM {DATASET}.{GIVEN_UP_TABLE}")
    # Created from it once the column is back (the owner's fix): the very view.
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"ALTER TABLE {DATASET}.survey_responses ADD COLUMN legacy text")
        sql.execute_sql(statement)
    assert query(pipeline, "SELECT count(*) FROM bi.legacy") == [(60,)]


def test_a_readers_open_transaction_does_not_hold_up_the_models_build(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # A notebook (psycopg2 opens a transaction on its first query) that read a mart and a
    # staging view and stayed idle: the build's TRUNCATE and CREATE OR REPLACE VIEW waited for
    # it for ever, and every dashboard's read of those relations queued behind them.
    pipeline, sandbox = synced_with_views(start_sandbox, tmp_path, clock, postgres_credentials)
    filenode = f"SELECT pg_relation_filenode('{DATASET}.mart_nps_daily')"
    with pipeline.sql_client() as sql:  # a wait fails the test instead of hanging it
        sql.execute_sql("ALTER DATABASE " + sql.credentials.database + " SET lock_timeout = '3s'")
    notebook = psycopg2.connect(postgres_credentials)
    try:
        with notebook.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {DATASET}.mart_nps_daily")
            cursor.execute(f"SELECT count(*) FROM {DATASET}.stg_survey_answers")
        clock.advance(HOUR)
        sandbox.add_responses(10)
        sync_into(sandbox, pipeline, clock)
        before = query(pipeline, filenode)
        assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))
        assert query(pipeline, filenode) == before  # its rows deleted: no lock to wait for
    finally:
        notebook.close()
    assert query(pipeline, f"SELECT count(*) FROM {DATASET}.fct_survey_responses") == [
        (len(sandbox.truth()["survey_responses"]),)]
    # With no reader in the way, truncated (a new file): deleted rows would stay as dead rows.
    before = query(pipeline, filenode)
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))
    assert query(pipeline, filenode) != before


def test_a_sync_held_up_by_another_roles_session_is_told_so(start_sandbox, tmp_path,
                                                              postgres_credentials):
    # PostgreSQL shows another role's session's pid only (its address and start are NULL to a
    # role without pg_read_all_stats): naming its start crashed the refusal (exit 1, "'NoneType'
    # object has no attribute 'astimezone'"), where it is exit 3 and retried.
    sandbox = start_sandbox(**SMALL)
    database = postgres_credentials.rsplit("/", 1)[1]
    with psycopg2.connect(postgres_credentials) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE other_loader_{database} LOGIN")
        cursor.execute(f'GRANT ALL ON DATABASE "{database}" TO other_loader_{database}')
    other_role = postgres_credentials.replace("postgres:x@", f"other_loader_{database}:x@", 1)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=other_role)
    holder = psycopg2.connect(postgres_credentials)  # the superuser's sync holds the dataset
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(DATASET)))
        locked = run_cli(env, "--destination", "postgres", "--quiet")
        pid = holder.get_backend_pid()
    finally:
        holder.close()
    assert locked.returncode == 3, locked.stderr
    assert (f"is running against this PostgreSQL database (server pid {pid}, another role's "
            f"session (its address and start are shown to a superuser or a member of "
            f"pg_read_all_stats));") in locked.stderr.strip().splitlines()[-1], locked.stderr


def test_the_dataset_lock_is_the_schemas_whatever_the_spelling(tmp_path, postgres_credentials):
    # "Kiosk-Data" and "kiosk_data" load one schema, kiosk_data: two spellings took two locks.
    from pipelines.sync.dataset_lock import dataset_lock

    other_machine = psycopg2.connect(postgres_credentials)
    try:
        with other_machine.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key("kiosk_data")))
        pipeline = dlt.pipeline(pipeline_name="micrometrics", dataset_name="Kiosk-Data",
                                destination=dlt.destinations.postgres(
                                    credentials=postgres_credentials),
                                pipelines_dir=str(tmp_path / "pipelines"))
        with pytest.raises(SyncLockedError, match=f"pid {other_machine.get_backend_pid()}"):
            with dataset_lock(pipeline):
                pass
    finally:
        other_machine.close()


def test_two_builds_at_once_do_not_double_a_mart(start_sandbox, tmp_path, clock,
                                                 postgres_credentials, monkeypatch):
    # make models while a sync's build runs: each build's DELETE kept the rows the other had
    # just inserted (its snapshot predates them), and the mart held every row twice.
    pipeline, _sandbox = synced_with_views(start_sandbox, tmp_path, clock,
                                           postgres_credentials)
    statements: list[str] = []
    execute = models_runner.execute

    def kept(client, statement, what):
        statements.append(statement)
        return execute(client, statement, what)

    monkeypatch.setattr(models_runner, "execute", kept)
    assert all_passed(build_models(pipeline, now=datetime.fromtimestamp(clock(), UTC)))
    (rebuild,) = [s for s in statements if "DELETE FROM" in s and "mart_nps_daily" in s]
    with pipeline.sql_client() as sql:
        sql.execute_sql(f"DELETE FROM {DATASET}.mart_nps_daily")  # nothing for a DELETE to wait on
    first, second = psycopg2.connect(postgres_credentials), psycopg2.connect(postgres_credentials)
    try:
        with first.cursor() as cursor:  # the first build, not committed yet
            cursor.execute(rebuild)
        with second.cursor() as cursor, pytest.raises(psycopg2.errors.LockNotAvailable):
            cursor.execute("SET lock_timeout = '200ms'")
            cursor.execute(rebuild)  # the second waits for the first, whatever it deletes
        first.commit()
    finally:
        first.close()
        second.close()
    assert query(pipeline, "SELECT count(*) = count(DISTINCT (survey_id, device_id, "
                           f"response_date)) FROM {DATASET}.mart_nps_daily") == [(True,)]


def test_a_readers_open_transaction_fails_a_new_columns_load_in_time_and_loses_nothing(
        start_sandbox, tmp_path, postgres_credentials, monkeypatch):
    # A notebook that read survey_responses and stayed idle in its transaction: dlt's ALTER
    # TABLE ADD COLUMN, for a field the API started sending, waited for it for ever, and every
    # dashboard's read of the table queued behind it.
    monkeypatch.setattr(postgres_sessions, "LOCK_TIMEOUT", "1s")
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=postgres_credentials)
    assert run_cli(env, "--destination", "postgres", "--quiet", "--no-models").returncode == 0
    ids = sorted(r["id"] for r in sandbox.truth()["survey_responses"])[:3]
    sandbox.patch_records("survey_responses", ids, {"kiosk_mode": "attended"})
    notebook = psycopg2.connect(postgres_credentials)
    # Without a lock timeout the sync would wait for ever: end the notebook's session after a
    # while so that the test fails instead of hanging.
    watchdog = threading.Timer(60, terminate_backend,
                               (postgres_credentials, notebook.get_backend_pid()))
    try:
        with notebook.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {DATASET}.survey_responses")
        watchdog.start()
        waited = run_cli(env, "--destination", "postgres", "--quiet", "--no-models")
        assert notebook.get_transaction_status() == TRANSACTION_STATUS_INTRANS  # still open
    finally:
        watchdog.cancel()
        notebook.close()
    assert waited.returncode == 1, waited.stderr
    last = waited.stderr.strip().splitlines()[-1]
    assert "PostgreSQL gave up waiting for a lock" in last
    assert "idle in transaction" in last  # what to look for
    verdict = classify(psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout"))
    assert verdict.retry and "gave up waiting for a lock" in verdict.reason
    assert column_names(postgres_credentials, "survey_responses").isdisjoint({"kiosk_mode"})
    done = run_cli(env, "--destination", "postgres", "--quiet", "--no-models")
    assert done.returncode == 0, done.stderr
    assert_matches_truth(postgres_pipeline(tmp_path, postgres_credentials), sandbox.truth())
    assert "kiosk_mode" in column_names(postgres_credentials, "survey_responses")


def test_the_lock_timeout_of_the_connections_own_options_wins(tmp_path, postgres_credentials,
                                                               monkeypatch):
    def lock_timeout(credentials: str) -> str:
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", credentials)
        pipeline = open_pipeline("postgres", DATASET, str(tmp_path / "pipelines"))
        with pipeline.sql_client() as sql:
            ((value,),) = sql.execute_sql("SHOW lock_timeout")
        return value

    assert lock_timeout(postgres_credentials) == "1min"
    own = postgres_credentials + "?options=-c%20lock_timeout%3D7s%20-c%20work_mem%3D8MB"
    assert lock_timeout(own) == "7s"
    assert lock_timeout(postgres_credentials + "?options=--lock_timeout%3D9s") == "9s"
    assert lock_timeout(postgres_credentials + "?options=-c%20LOCK-TIMEOUT%3D11s") == "11s"
    # Another setting of that name's ending is not one.
    assert lock_timeout(postgres_credentials + "?options=-c%20deadlock_timeout%3D2s") == "1min"


def terminate_backend(credentials: str, pid: int) -> None:
    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))


def column_names(credentials: str, table: str) -> set[str]:
    with psycopg2.connect(credentials) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns "
                       "WHERE table_schema = %s AND table_name = %s", (DATASET, table))
        return {name for (name,) in cursor.fetchall()}


def test_a_lock_wait_in_a_models_build_says_what_to_do():
    # Wrapped as the models' error, it said only "model ... failed: canceling statement due to
    # lock timeout".
    try:
        try:
            raise psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout")
        except psycopg2.Error as cancelled:
            raise ModelsError("model stg_survey_responses failed: canceling statement due to "
                              "lock timeout") from cancelled
    except ModelsError as exc:
        code, message = failure(exc)
    assert code == 1 and "PostgreSQL gave up waiting for a lock" in message
    assert "idle in transaction" in message


def test_the_models_report_and_status_say_what_to_do_about_a_held_lock(
        start_sandbox, tmp_path, postgres_credentials, monkeypatch):
    # A sync's ALTER TABLE ADD COLUMN or a DBA's LOCK TABLE holds a table the models read (a
    # report's query: a mart another build is replacing). The three commands said only
    # "canceling statement due to lock timeout"; the report then asked whether the models were
    # built.
    from pipelines.models.cli import main as models_main
    from pipelines.report.cli import main as report_main
    from pipelines.status.cli import main as status_main

    def arguments(command: str) -> list[str]:
        return ["--destination", "postgres", *{
            "report": ["--quiet", "--output", str(tmp_path / "report.html")],
            "models": ["--quiet"]}.get(command, [])]

    monkeypatch.setattr(postgres_sessions, "LOCK_TIMEOUT", "1s")
    sandbox = start_sandbox(**SMALL)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=postgres_credentials)
    assert run_cli(env, "--destination", "postgres", "--quiet").returncode == 0
    for command_main, command, table in ((models_main, "models", "survey_responses"),
                                         (models_main, "models", "mart_nps_daily"),
                                         (report_main, "report", "mart_nps_daily"),
                                         (report_main, "report", "_dlt_pipeline_state"),
                                         (status_main, "status", "_dlt_pipeline_state")):
        holder = psycopg2.connect(postgres_credentials)
        try:
            with holder.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {DATASET}.{table} IN ACCESS EXCLUSIVE MODE")
            done = run_in_process(command_main, [command], env, *arguments(command))
        finally:
            holder.close()
        if command == "status":  # the local state is shown, the destination's said unread
            assert done.returncode == 0, done.stderr
            [line] = [line for line in done.stdout.splitlines() if "not readable" in line]
        else:
            assert done.returncode == 1, (command, done.stderr)
            [line] = done.stderr.strip().splitlines()
        assert "PostgreSQL gave up waiting for a lock" in line, (command, table, line)
        assert "idle in transaction" in line and "models built" not in line, line
    # Once the lock is let go, both build and report.
    for command_main, command in ((models_main, "models"), (report_main, "report")):
        done = run_in_process(command_main, [command], env, *arguments(command))
        assert done.returncode == 0, (command, done.stderr)


def test_a_password_with_an_unencoded_at_sign_is_refused_and_shown_nowhere(
        start_sandbox, tmp_path, postgres_credentials):
    # dlt read "postgres:Pw@Leak-7731@127.0.0.1" as the password "Pw" and the host
    # "Leak-7731@127.0.0.1": every command's error named that host, and so the rest of the
    # password, on stderr, in --json and in the run's record in the pipeline state.
    from pipelines.models.cli import main as models_main
    from pipelines.report.cli import main as report_main
    from pipelines.status.cli import main as status_main

    sandbox = start_sandbox(**SMALL)
    unencoded = postgres_credentials.replace(":x@", ":Pw@Leak-7731@", 1)
    env = sync_env(tmp_path, sandbox.url, DESTINATION__POSTGRES__CREDENTIALS=unencoded)
    for command_main, command, *more in (
            (main, "sync"), (main, "sync", "--json"), (status_main, "status"),
            (status_main, "status", "--json"), (models_main, "models"),
            (report_main, "report", "--output", str(tmp_path / "report.html"))):
        done = run_in_process(command_main, [command], env, "--destination", "postgres", *more)
        assert done.returncode == 2, (command, more, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert "DESTINATION__POSTGRES__CREDENTIALS: the user or password in the connection " \
               "string holds a character that must be percent-encoded there" in line, line
        assert "Leak" not in done.stdout + done.stderr, (command, more)
    assert sandbox.stats()["requests"] == 0
    assert not [path for path in tmp_path.rglob("*") if path.is_file()
                and b"Leak" in path.read_bytes()]
    # Percent-encoded, the same password is read as it is.
    encoded = postgres_credentials.replace(":x@", ":Pw%40Leak-7731@", 1)
    env["DESTINATION__POSTGRES__CREDENTIALS"] = encoded
    assert run_cli(env, "--destination", "postgres", "--quiet", "--no-models").returncode == 0
    assert_matches_truth(postgres_pipeline(tmp_path, postgres_credentials), sandbox.truth())


def test_a_role_that_may_not_create_the_dataset_is_told_what_it_needs(
        start_sandbox, tmp_path, clock, postgres_credentials):
    # dlt's text spoke of several pipelines loading at once ("a retry is safe") and was cut
    # before naming what the role lacked; the README now lists what it needs.
    database = postgres_credentials.rsplit("/", 1)[1]
    role = f"least_{database}"  # roles are the server's: one per test database
    admin = psycopg2.connect(postgres_credentials)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE ROLE {role} LOGIN")
        least = postgres_credentials.replace("postgres:x@", f"{role}:x@")
        pipeline = postgres_pipeline(tmp_path, least)
        sandbox = start_sandbox(clock=clock, **SMALL)
        with pytest.raises(Exception) as raised:
            sync_into(sandbox, pipeline, clock)
        code, message = failure(raised.value)
        assert code == 1, message
        assert message.startswith("sync failed: the destination refused to create the "), message
        assert "permission denied for database" in message and "retry is safe" not in message
        assert message.endswith(hint("schema_update"))
        # A DBA makes the schemas for it: the next sync loads everything, nothing lost.
        for schema in (DATASET, f"{DATASET}_staging"):
            admin.cursor().execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}")
        sync_into(sandbox, pipeline, clock)
        assert_matches_truth(pipeline, sandbox.truth())
    finally:
        admin.close()
