"""Numeric answers handed to dlt as text, the type of their column.

The ``answers.value`` column is text (nps and rating answers are numbers, text and choice
answers strings; staging types them per question). dlt's normalizer passes a value of its
column's type as is and coerces any other one by one, a number into text through a raised and
caught TypeError: 0.5 s of 9.5 s normalizing 30,000 responses (``cProfile``). ``str`` here is
the same text (dlt's text fallback is ``str`` for a number) at a fraction of the cost.

The timestamps stay strings: converted here they cost more in the extract (dlt encodes every
datetime through a Python callback) than they save in the normalize, which runs on two cores
(``dlt_settings``) while the extract is one thread's.
"""

from __future__ import annotations

from typing import Any


def as_column_types(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with numeric answer values as text, in place; a bool or an object is left
    as the API sent it, for dlt to coerce (or keep in a variant column) as before."""
    for record in records:
        answers = record.get("answers")
        if isinstance(answers, list):
            for answer in answers:
                if isinstance(answer, dict) and type(answer.get("value")) in (int, float):
                    answer["value"] = str(answer["value"])
    return records
