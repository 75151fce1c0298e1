"""``deleted_at`` in the destination: marking rows gone upstream, unmarking rows that came back.

dlt merges whole records and cannot set one column of a row, so marks are plain SQL UPDATEs
through the pipeline's SQL client, run after a sync's loads. Each one is idempotent (it only
touches rows whose mark differs), so a sync killed before or during them leaves nothing that
the next sync's marks do not repair.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dlt

from .deletions import deleted_surveys, restored_surveys
from .source_state import resource_states
from .warehouse import sql_literal

CHUNK = 500  # ids per statement: well below every warehouse's limit on statement size


@dataclass
class MarkCounts:
    """Rows marked and unmarked, by table."""

    marked: dict[str, int] = field(default_factory=dict)
    unmarked: dict[str, int] = field(default_factory=dict)

    def add(self, other: MarkCounts) -> None:
        for mine, theirs in ((self.marked, other.marked), (self.unmarked, other.unmarked)):
            for table, rows in theirs.items():
                mine[table] = mine.get(table, 0) + rows


def timestamp_literal(value: str) -> str:
    """An ISO 8601 string literal; every destination coerces it to its timestamp type."""
    return sql_literal(value)


def chunks(ids: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


class Marker:
    """Sets ``deleted_at`` through an open dlt SQL client; counts what it changed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.counts = MarkCounts()
        self._tables: dict[str, str | None] = {}

    def table(self, name: str) -> str | None:
        """The qualified name of ``name``, or None when it was never loaded (asked once)."""
        if name not in self._tables:
            qualified = self.client.make_qualified_table_name(name)
            try:
                self.client.execute_sql(f"SELECT 1 FROM {qualified} WHERE 1 = 0")
            except Exception:  # noqa: BLE001 - no such table (yet): nothing to mark
                qualified = None
            self._tables[name] = qualified
        return self._tables[name]

    def unmarked(self, table: str, where: str) -> int:
        """Rows of ``table`` matching ``where`` that carry no mark."""
        qualified = self.table(table)
        if qualified is None:
            return 0
        rows = self.client.execute_sql(
            f"SELECT COUNT(*) FROM {qualified} WHERE {where} AND deleted_at IS NULL")
        return int(rows[0][0]) if rows else 0

    def _update(self, table: str, where: str, value: str | None, unmark: bool,
                marked_at: str | None = None) -> None:
        qualified = self.table(table)
        if qualified is None:
            return
        condition = "deleted_at IS NOT NULL" if unmark else "deleted_at IS NULL"
        if marked_at is not None:
            condition = f"deleted_at = {timestamp_literal(marked_at)}"
        rows = self.client.execute_sql(
            f"SELECT COUNT(*) FROM {qualified} WHERE {where} AND {condition}")
        count = int(rows[0][0]) if rows else 0
        if not count:
            return
        new = "NULL" if value is None else timestamp_literal(value)
        self.client.execute_sql(
            f"UPDATE {qualified} SET deleted_at = {new} WHERE {where} AND {condition}")
        counter = self.counts.unmarked if unmark else self.counts.marked
        counter[table] = counter.get(table, 0) + count

    def mark(self, table: str, column: str, ids: Iterable[Any], when: str) -> None:
        for part in chunks(list(ids)):
            self._update(table, in_list(column, part), when, unmark=False)

    def unmark(self, table: str, column: str, ids: Iterable[Any],
               marked_at: str | None = None) -> None:
        """Clears the marks of these rows (only those set at ``marked_at``, when given)."""
        for part in chunks(list(ids)):
            self._update(table, in_list(column, part), None, unmark=True, marked_at=marked_at)

    def ids(self, table: str, where: str = "1 = 1") -> list[tuple[Any, Any]]:
        """``(id, deleted_at)`` of every row of ``table`` matching ``where``."""
        qualified = self.table(table)
        if qualified is None:
            return []
        return [tuple(row) for row in self.client.execute_sql(
            f"SELECT id, deleted_at FROM {qualified} WHERE {where}") or []]


def in_list(column: str, ids: list[Any]) -> str:
    return f"{column} IN ({', '.join(sql_literal(i) for i in ids)})"


def surveys_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    return resource_states(pipeline.state).get("surveys", {})


def apply_survey_marks(pipeline: dlt.Pipeline) -> MarkCounts:
    """Marks every survey gone from the list, and its responses, with the time a sync first
    saw it gone; unmarks the surveys that came back (their responses come back unmarked as
    they are read again: ``deletions.reread_returned``). Run at the start of a sync
    (repairing one killed before its marks) and after its loads."""
    state = surveys_state(pipeline)
    deleted, restored = deleted_surveys(state), restored_surveys(state)
    if not deleted and not restored:
        return MarkCounts()
    with pipeline.sql_client() as client:
        marker = Marker(client)
        for table, column in (("surveys", "id"), ("survey_responses", "survey_id")):
            # Every survey ever deleted stays in the state, and this runs twice a sync: one
            # count per table and chunk when all is marked already (a statement per survey and
            # table cost minutes a sync on a warehouse after years of churn), then one mark per
            # time the surveys were seen gone.
            for part in chunks(deleted):
                if not marker.unmarked(table, in_list(column, [i for i, _ in part])):
                    continue
                seen_gone: dict[str, list[Any]] = {}
                for survey_id, when in part:
                    seen_gone.setdefault(when, []).append(survey_id)
                for when, ids in seen_gone.items():
                    marker.mark(table, column, ids, when)
        for survey_id, when in restored:
            marker.unmark("surveys", "id", [survey_id], when)
    return marker.counts
