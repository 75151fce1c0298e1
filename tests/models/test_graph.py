"""Build order comes from the tables each model's SQL reads; no hand-kept list."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.models import ModelsError
from pipelines.models.graph import build_order
from pipelines.models.project import load_project


def write(root: Path, layer: str, name: str, sql: str) -> None:
    (root / layer).mkdir(parents=True, exist_ok=True)
    (root / layer / f"{name}.sql").write_text(sql)


def test_every_model_follows_the_models_it_reads():
    order = [model.name for model in build_order(load_project().models)]
    position = {name: i for i, name in enumerate(order)}
    for model in load_project().models:
        for read in model.reads & set(position):
            assert position[read] < position[model.name], (read, model.name)
    assert position["stg_survey_questions"] < position["stg_survey_answers"]
    assert position["fct_survey_responses"] < position["mart_nps_daily"]


def test_a_model_that_reads_another_is_built_after_it(tmp_path):
    # Alphabetically "a_report" would come first; its FROM puts it second.
    write(tmp_path, "marts", "a_report", "SELECT * FROM z_base")
    write(tmp_path, "marts", "z_base", "SELECT id FROM devices")
    project = load_project(tmp_path)
    assert [m.name for m in build_order(project.models)] == ["z_base", "a_report"]
    assert project.models[0].reads == frozenset({"z_base"})


def test_ctes_and_source_tables_impose_no_order(tmp_path):
    write(tmp_path, "staging", "stg_a", "WITH stg_b AS (SELECT 1 AS x) SELECT * FROM stg_b")
    write(tmp_path, "staging", "stg_b", "SELECT * FROM stg_a_source")
    project = load_project(tmp_path)
    assert {m.name: m.reads for m in project.models} == {
        "stg_a": frozenset(), "stg_b": frozenset({"stg_a_source"})}
    assert [m.name for m in build_order(project.models)] == ["stg_a", "stg_b"]


def test_a_cycle_is_refused(tmp_path):
    write(tmp_path, "marts", "one", "SELECT * FROM two")
    write(tmp_path, "marts", "two", "SELECT * FROM one")
    with pytest.raises(ModelsError, match="cycle"):
        build_order(load_project(tmp_path).models)


def test_a_file_that_is_not_one_select_is_refused(tmp_path):
    write(tmp_path, "marts", "bad", "DELETE FROM devices")
    with pytest.raises(ModelsError, match="bad.sql"):
        load_project(tmp_path)
