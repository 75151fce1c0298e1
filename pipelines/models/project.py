"""The SQL project on disk: models under ``sql/staging`` and ``sql/marts``, data tests under
``sql/tests``, each a single SELECT in DuckDB's dialect named after its file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

# Editable install: the package sits in <repo>/pipelines/models, the SQL in <repo>/sql.
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
SOURCE_DIALECT = "duckdb"
# Folder -> how its models are materialized. Tests are queries, never materialized.
KINDS = {"staging": "view", "marts": "table"}
TESTS_FOLDER = "tests"


class ModelsError(Exception):
    """The SQL project is broken, or a model could not be built."""


@dataclass(frozen=True)
class Model:
    """One SQL file.

    Attributes:
        name: File stem; also the name of the view or table it builds.
        layer: ``staging``, ``marts`` or ``tests``.
        sql: The SELECT as written (DuckDB dialect).
        reads: Unqualified names of the tables and models it selects from (CTEs excluded).
    """

    name: str
    layer: str
    sql: str
    reads: frozenset[str]

    @property
    def materialization(self) -> str | None:
        """``view``, ``table``, or None for a data test."""
        return KINDS.get(self.layer)


@dataclass(frozen=True)
class Project:
    """Models (to build) and data tests (to run after)."""

    models: tuple[Model, ...]
    tests: tuple[Model, ...]

    @property
    def model_names(self) -> frozenset[str]:
        return frozenset(model.name for model in self.models)


def parse(sql: str, name: str = "<sql>") -> exp.Expression:
    """Parses one SELECT in the source dialect.

    Raises:
        ModelsError: The SQL does not parse or is not a single query.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=SOURCE_DIALECT) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise ModelsError(f"{name}: {exc}") from exc
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ModelsError(f"{name}: expected exactly one SELECT")
    return statements[0]


def cte_names(tree: exp.Expression) -> set[str]:
    """Names defined by WITH clauses anywhere in ``tree``."""
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def table_reads(tree: exp.Expression) -> frozenset[str]:
    """Unqualified table names ``tree`` reads, other than its own CTEs."""
    local = cte_names(tree)
    return frozenset(
        table.name.lower()
        for table in tree.find_all(exp.Table)
        if not table.db and table.name and table.name.lower() not in local
    )


def load_model(path: Path, layer: str) -> Model:
    sql = path.read_text(encoding="utf-8")
    return Model(path.stem, layer, sql, table_reads(parse(sql, path.name)))


def load_project(sql_dir: Path | str | None = None) -> Project:
    """Reads every ``*.sql`` under the staging, marts and tests folders of ``sql_dir``.

    Raises:
        ModelsError: A file does not parse, or two models share a name.
    """
    root = Path(sql_dir) if sql_dir is not None else SQL_DIR
    models = [
        load_model(path, layer)
        for layer in KINDS
        for path in sorted((root / layer).glob("*.sql"))
    ]
    tests = [load_model(path, TESTS_FOLDER) for path in sorted((root / TESTS_FOLDER).glob("*.sql"))]
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise ModelsError(f"two models are named {model.name!r}")
        seen.add(model.name)
    if not models:
        raise ModelsError(f"no models under {root}")
    return Project(tuple(models), tuple(tests))
