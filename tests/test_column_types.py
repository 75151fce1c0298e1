"""Numeric answers are handed to dlt as the text dlt itself would have made of them, object and
list answers as their JSON text (dlt would spread them over columns and a child table, leaving
the value NULL); anything else is left for dlt to coerce as before."""

from __future__ import annotations

import pytest
from dlt.common.data_types.type_helpers import coerce_value, py_type_to_sc_type

from pipelines.micrometrics.column_types import as_column_types


@pytest.mark.parametrize("value", [0, 10, -3, 10**20, 4.5, 1e16, 0.1 + 0.2, -0.0])
def test_a_number_becomes_dlts_own_text_for_it(value):
    [record] = as_column_types([{"id": 1, "answers": [{"question_id": 7, "value": value}]}])
    assert record["answers"][0]["value"] == coerce_value("text", py_type_to_sc_type(type(value)),
                                                         value)


@pytest.mark.parametrize(("value", "text"), [
    ({"score": 7}, '{"score":7}'), ([1, 2], "[1,2]"), (["très", "bien"], '["très","bien"]'),
    ({}, "{}"), ([], "[]")])
def test_an_object_or_a_list_becomes_its_json_text(value, text):
    [record] = as_column_types([{"id": 1, "answers": [{"question_id": 7, "value": value}]}])
    assert record["answers"][0]["value"] == text


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (False, "false")])
def test_true_and_false_become_text_as_json_spells_them(value, text):
    # dlt's own text of a bool is Python's: 'True'.
    [record] = as_column_types([{"id": 1, "answers": [{"question_id": 7, "value": value}]}])
    assert record["answers"][0]["value"] == text


@pytest.mark.parametrize("value", [None, "great"])
def test_anything_else_is_left_as_sent(value):
    [record] = as_column_types([{"id": 1, "answers": [{"question_id": 7, "value": value}]}])
    assert record["answers"][0]["value"] == value
    assert type(record["answers"][0]["value"]) is type(value)


def test_records_without_answers_or_with_odd_ones_pass_through():
    records = [{"id": 1}, {"id": 2, "answers": None}, {"id": 3, "answers": ["x", 5]},
               {"id": 4, "answers": [{"question_id": 1}]}]
    assert as_column_types([dict(r) for r in records]) == records


@pytest.mark.parametrize(("comment", "text"), [
    ({"text": "Jane Doe, room 12", "lang": "en"}, '{"text":"Jane Doe, room 12","lang":"en"}'),
    (["Call me", "Jane"], '["Call me","Jane"]'), ("fine", "fine"), (None, None), (5, 5)])
def test_a_comment_sent_as_an_object_or_a_list_becomes_its_json_text(comment, text):
    [record] = as_column_types([{"id": 1, "comment": comment}])
    assert record["comment"] == text
