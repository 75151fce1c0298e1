"""Numeric answers handed to dlt as text, the type of their column.

The ``answers.value`` column is text (nps and rating answers are numbers, text and choice
answers strings; staging types them per question). dlt's normalizer passes a value of its
column's type as is and coerces any other one by one, a number into text through a raised and
caught TypeError: 0.5 s of 9.5 s normalizing 30,000 responses (``cProfile``). ``str`` here is
the same text (dlt's text fallback is ``str`` for a number) at a fraction of the cost.

An answer whose value is an object or a list (``{"score": 7}``, ``["a", "b"]``) is kept as its
JSON text in the same column: dlt would spread an object over ``value__score`` columns and a
list over a child table, leaving ``value`` NULL and the answer silently out of every mart. As
text, a score that is no number is named by the ``scores_are_numbers`` data test, and a text
or choice answer keeps what was sent. So is a response's ``comment`` (free text, which the API
might start sending as ``{"text": ..., "lang": ...}``): spread, it was NULL in staging, and the
text sat in columns or a child table that neither staging nor the erasure purge reads.

The timestamps stay strings: converted here they cost more in the extract (dlt encodes every
datetime through a Python callback) than they save in the normalize, which runs on two cores
(``dlt_settings``) while the extract is one thread's.
"""

from __future__ import annotations

import json
from typing import Any


def as_column_types(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with numeric answer values as text, a true or false one as JSON spells it
    (dlt's text of a bool is Python's ``True``), and object or list values (of answers and of
    ``comment``) as their JSON text, in place."""
    for record in records:
        comment = record.get("comment")
        if isinstance(comment, dict | list):
            record["comment"] = _json_text(comment)
        answers = record.get("answers")
        if isinstance(answers, list):
            for answer in answers:
                if not isinstance(answer, dict):
                    continue
                value = answer.get("value")
                if type(value) in (int, float):
                    answer["value"] = str(value)
                elif type(value) is bool:
                    answer["value"] = "true" if value else "false"
                elif isinstance(value, dict | list):
                    answer["value"] = _json_text(value)
    return records


def _json_text(value: dict | list) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
