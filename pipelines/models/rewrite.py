"""Rewriting the column references of a model's SQL (variant columns, absent columns)."""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from .project import SOURCE_DIALECT, parse

# (the column, its scope's table sources by alias, the scope's number of sources) -> what to
# read instead, or None to leave it.
Replacement = Callable[[exp.Column, dict[str, str], int], exp.Expression | None]


def replace_columns(sql: str, replacement: Replacement, name: str = "<sql>") -> str | None:
    """``sql`` with each column reference ``replacement`` gives an expression for replaced by
    it (a projection keeps its name), or None when none was (then it is left exactly as
    written)."""
    tree = parse(sql, name)
    replaced = False
    for scope in traverse_scope(tree):
        tables = {alias.lower(): source.name.lower() for alias, source in scope.sources.items()
                  if isinstance(source, exp.Table)}
        for column in list(scope.columns):
            new = replacement(column, tables, len(scope.sources))
            if new is None:
                continue
            if isinstance(column.parent, exp.Select) and column.arg_key == "expressions":
                new = exp.alias_(new, column.this.copy())
            column.replace(new)
            replaced = True
    return tree.sql(dialect=SOURCE_DIALECT, pretty=True) if replaced else None
