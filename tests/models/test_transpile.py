"""Every model and data test translates to Snowflake, BigQuery and PostgreSQL, and reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlglot
from sqlglot import exp

from pipelines.models import ModelsError, transpile_models
from pipelines.models.compiler import (
    as_of_literal,
    build_statements,
    dataset_qualifier,
    default_params,
)
from pipelines.models.project import load_project

DIALECTS = ("snowflake", "bigquery", "postgres")
NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=DIALECTS)
def translated(request) -> tuple[str, dict[str, str]]:
    return request.param, transpile_models(request.param, now=NOW)


def test_every_model_and_test_translates_and_parses_back(translated):
    dialect, sql = translated
    project = load_project()
    assert set(sql) == {m.name for m in project.models} | {t.name for t in project.tests}
    for name, text in sql.items():
        tree = sqlglot.parse_one(text, read=dialect)
        assert isinstance(tree, exp.Query), name
        # Every table reference is qualified with the dataset (CTEs aside).
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            assert table.db == "micrometrics" or table.name in ctes, (name, table.sql(dialect))


def test_timezone_conversion_is_each_dialects_own(translated):
    dialect, sql = translated
    fct = sql["fct_survey_responses"]
    if dialect == "snowflake":
        assert "CONVERT_TIMEZONE(COALESCE(d.local_zone, 'UTC'), r.responded_at)" in fct
    elif dialect == "bigquery":
        assert "DATE(r.responded_at, COALESCE(d.local_zone, 'UTC'))" in fct
        assert "DATETIME" not in fct
    else:
        assert "r.responded_at AT TIME ZONE COALESCE(d.local_zone, 'UTC')" in fct


def test_numeric_answers_use_each_dialects_regex_and_types(translated):
    dialect, sql = translated
    answers = sql["stg_survey_answers"]
    pattern = "'^-?[0-9]{1,9}([.][0-9]+)?$'"
    expected = {
        "snowflake": ("REGEXP_LIKE(TRIM(a.value), " + pattern, "AS DOUBLE)"),
        "bigquery": ("REGEXP_CONTAINS(TRIM(a.value), " + pattern, "AS FLOAT64)"),
        "postgres": ("TRIM(a.value) ~ " + pattern, "AS DOUBLE PRECISION)"),
    }[dialect]
    for fragment in expected:
        assert fragment in answers
    assert "TRY_CAST" not in answers and "REGEXP_MATCHES" not in answers


def test_duckdb_only_syntax_does_not_leak(translated):
    dialect, sql = translated
    every = "\n".join(sql.values())
    assert "FILTER(" not in every and "TIMESTAMPTZ '" not in every
    if dialect == "bigquery":
        assert "`micrometrics`.`devices`" in sql["stg_devices"]
        assert "INT64" in sql["fct_survey_responses"]
        assert "CAST('2027-01-15 08:00:00.000000+00:00' AS TIMESTAMP)" in sql["stg_run_context"]
        assert "INTERVAL '168' HOUR" in sql["dim_devices"]
    else:
        assert '"micrometrics"."devices"' in sql["stg_devices"]
        assert "AS TIMESTAMPTZ)" in sql["stg_run_context"]
        assert "INTERVAL '168 HOUR'" in sql["dim_devices"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_build_statements_parse_back(dialect):
    qualify = dataset_qualifier("micrometrics")
    for model in load_project().models:
        statements = build_statements(model, dialect, qualify, default_params(NOW))
        parsed = [tree for text in statements for tree in sqlglot.parse(text, read=dialect)]
        assert any(isinstance(tree, exp.Create) for tree in parsed), model.name
        kind = model.materialization.upper()
        if dialect == "postgres":  # no CREATE OR REPLACE TABLE there: drop then create
            assert statements[0].startswith(f"DROP {kind} IF EXISTS")
            assert "CASCADE;" in statements[0] and "OR REPLACE" not in statements[0]
        else:
            assert statements[0].startswith(f"CREATE OR REPLACE {kind}")
        # Snowflake drops the grants on a replaced object unless told to copy them.
        assert ("COPY GRANTS AS" in statements[0]) == (dialect == "snowflake"), model.name


def test_unknown_dialect_is_refused():
    with pytest.raises(ModelsError, match="unknown dialect"):
        transpile_models("oracle")


def test_as_of_takes_naive_times_as_utc():
    assert as_of_literal(datetime(2027, 1, 15, 8, 0)) == "2027-01-15 08:00:00.000000+00:00"
