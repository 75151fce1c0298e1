"""Staging reads dlt's variant columns wherever a model references a column that has them, in
every dialect, and leaves everything else as written."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from pipelines.models.compiler import DIALECTS, compile_model, dataset_qualifier, default_params
from pipelines.models.project import load_project
from pipelines.models.variants import variant_map, with_variants

DRIFTED = {
    "devices": {
        "id": {"data_type": "text"},
        "location_id": {"data_type": "bigint"},
        "location_id__v_text": {"data_type": "text", "variant": True},
    },
}
TEXT_TYPE = {"duckdb": "TEXT", "postgres": "TEXT", "snowflake": "VARCHAR", "bigquery": "STRING"}


def write(root, layer, name, sql):
    (root / layer).mkdir(parents=True, exist_ok=True)
    (root / layer / f"{name}.sql").write_text(sql)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stg_devices_reads_the_variant_in_every_dialect(dialect):
    plain, drifted = load_project(), with_variants(load_project(), DRIFTED)
    models = {model.name: model for model in drifted.models}
    sql = compile_model(models["stg_devices"], dialect, dataset_qualifier("micrometrics"),
                        default_params())
    assert (f"COALESCE(CAST(location_id AS {TEXT_TYPE[dialect]}), location_id__v_text) "
            f"AS location_id") in sql
    assert isinstance(sqlglot.parse_one(sql, read=dialect), exp.Query)
    # Models that do not read a drifted column are untouched.
    untouched = {m.name: m for m in plain.models if m.name != "stg_devices"}
    assert all(models[name] == model for name, model in untouched.items())
    assert drifted.tests == plain.tests


def test_qualified_bare_and_nested_references_are_rewritten(tmp_path):
    write(tmp_path, "staging", "stg_readings", """
        SELECT r.score, s.name, r.meta__v_text
        FROM readings AS r JOIN sites AS s ON s.id = r.site_id
        WHERE r.score > 0 AND s.id IN (SELECT site_id FROM readings WHERE score < 10)
    """)
    write(tmp_path, "marts", "scores", "SELECT score FROM stg_readings")
    tables = {
        "readings": {"score": {"data_type": "bigint"},
                     "score__v_double": {"data_type": "double", "variant": True},
                     "score__v_text": {"data_type": "text", "variant": True},
                     # a flattened nested field {"meta": {"v_text": ...}}, not a variant
                     "meta__v_text": {"data_type": "text"},
                     "site_id": {"data_type": "bigint"}},
        "sites": {"id": {"data_type": "bigint"}, "name": {"data_type": "text"},
                  "score": {"data_type": "bigint"}},
    }
    assert variant_map(tables) == {"readings": {"score": [
        ("score", "bigint"), ("score__v_double", "double"), ("score__v_text", "text")]}}
    models = {m.name: m for m in with_variants(load_project(tmp_path), tables).models}
    tree = sqlglot.parse_one(models["stg_readings"].sql, read="duckdb")
    merged = ("COALESCE(CAST(r.score AS TEXT), CAST(r.score__v_double AS TEXT), "
              "r.score__v_text)")
    select = tree.sql(dialect="duckdb")
    assert f"{merged} AS score" in select and f"WHERE {merged} > 0" in select
    assert ("SELECT site_id FROM readings WHERE COALESCE(CAST(score AS TEXT), "
            "CAST(score__v_double AS TEXT), score__v_text) < 10") in select
    assert "r.meta__v_text" in select and "COALESCE(r.meta__v_text" not in select
    # A model that reads another model, not the drifted table, is left as written.
    assert models["scores"].sql.strip() == "SELECT score FROM stg_readings"


def test_without_variants_the_project_is_unchanged():
    project = load_project()
    assert with_variants(project, {"devices": {"location_id": {"data_type": "bigint"}}}) \
        is project


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_time_that_drifted_stays_a_time_in_every_dialect(dialect):
    """The models compute with created_at (the question version in force): its text variant is
    read as a time where it is one and NULL where not, never as text, and never by a cast that
    fails the statement (PostgreSQL has no TRY_CAST)."""
    drifted = {"survey_responses": {
        "created_at": {"data_type": "timestamp"},
        "created_at__v_text": {"data_type": "text", "variant": True}}}
    models = {m.name: m for m in with_variants(load_project(), drifted).models}
    sql = compile_model(models["stg_survey_answers"], dialect, dataset_qualifier("micrometrics"))
    guarded = {"duckdb": "TRY_CAST(CAST(r.created_at__v_text AS TEXT) AS TIMESTAMPTZ)",
               "snowflake": "TRY_CAST(CAST(r.created_at__v_text AS VARCHAR) AS TIMESTAMPTZ)",
               "bigquery": "SAFE_CAST(CAST(r.created_at__v_text AS STRING) AS TIMESTAMP)",
               "postgres": "CASE WHEN CAST(r.created_at__v_text AS TEXT) ~* "}[dialect]
    flat = re.sub(r"\(\s+", "(", " ".join(sql.split()))
    assert f"COALESCE(r.created_at, {guarded}" in flat
    assert isinstance(sqlglot.parse_one(sql, read=dialect), exp.Query)
