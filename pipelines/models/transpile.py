"""Offline translation of the whole project, for review and for the dialect tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .compiler import DIALECTS, compile_model, dataset_qualifier, default_params
from .graph import build_order
from .project import ModelsError, load_project


def transpile_models(
    dialect: str,
    dataset: str = "micrometrics",
    now: datetime | None = None,
    sql_dir: Path | str | None = None,
) -> dict[str, str]:
    """Every model (in build order) and data test as a SELECT in ``dialect``.

    Args:
        dialect: A sqlglot dialect name: duckdb, postgres, snowflake or bigquery.
        dataset: Dataset (schema) that qualifies table names.
        now: Value for ``stg_run_context.as_of`` (default: the wall clock).
        sql_dir: The SQL project (default: the repository's ``sql/``).

    Raises:
        ModelsError: Unknown dialect, or a model uses something ``dialect`` cannot express.
    """
    if dialect not in DIALECTS:
        raise ModelsError(f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}")
    project = load_project(sql_dir)
    qualify = dataset_qualifier(dataset)
    params = default_params(now)
    return {
        model.name: compile_model(model, dialect, qualify, params)
        for model in [*build_order(project.models), *project.tests]
    }
