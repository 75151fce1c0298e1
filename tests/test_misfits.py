"""Values dlt would change to fit their column go to a variant column as sent (``misfits``)."""

from __future__ import annotations

import pytest

from pipelines.micrometrics.misfits import ColumnTypes, misfit


@pytest.mark.parametrize("value, data_type, variant", [
    # What dlt reads as another number, or a number no warehouse stores: as sent, as text.
    ("0042", "bigint", "text"), ("+42", "bigint", "text"), (" 42", "bigint", "text"),
    ("4_2", "bigint", "text"), ("0x2A", "bigint", "text"), ("٤٢", "bigint", "text"),
    ("9223372036854775808", "bigint", "text"), ("42.0", "bigint", "text"),
    ("NaN", "double", "text"), ("Infinity", "double", "text"), ("-inf", "double", "text"),
    ("1e400", "double", "text"), ("1_0.5", "double", "text"), ("0x10", "double", "text"),
    ("yes", "bool", "text"), ("t", "bool", "text"), ("1", "bool", "text"),
    (2, "bool", "bigint"), (0.5, "bool", "double"),
    (True, "bigint", "bool"), (False, "double", "bool"), (True, "text", "bool"),
    (1e30, "bigint", "double"), (7.5, "bigint", "double"),
    # Seconds since 1970 beyond year 9999 (dlt's normalize failed: OSError), or before year 1.
    (10**17, "timestamp", "bigint"), (-1e15, "timestamp", "double"), (10**12, "date", "bigint"),
    ("1e17", "timestamp", "text"), ("100000000000000000", "timestamp", "text"),
    ("-1e17", "date", "text"), ("1" * 5000, "bigint", "text"),
    # What loads as the very value sent: into its own column.
    ("42", "bigint", None), ("-7", "bigint", None), ("0", "bigint", None),
    ("7.5", "double", None), ("-1.5e3", "double", None), (7, "double", None),
    (True, "bool", None), (42, "text", None), ("L-42", "text", None),
    # What dlt makes a variant of itself, or reads as a time.
    (7.0, "bigint", None), ("L-42", "timestamp", None), (1700000000, "timestamp", None),
    ("1700000000", "timestamp", None),
    ("2026-01-01T00:00:00Z", "timestamp", None),
])
def test_misfit(value, data_type, variant):
    assert misfit(value, data_type) == variant


def test_a_value_that_decides_is_judged_each_time_not_once_for_its_type():
    """An in-range number in a time column, then one past year 9999 (the first was taken for
    all of that type: the second failed dlt's normalize on every sync)."""
    types = ColumnTypes({"created_at": {"data_type": "timestamp"},
                         "floor": {"data_type": "bigint"}})
    records = [{"created_at": 1700000000, "floor": "7"}, {"created_at": "1700000000"},
               {"created_at": 10**17, "floor": "0007"}, {"created_at": "1e17"}]
    assert types.route(records) == [
        {"created_at": 1700000000, "floor": "7"}, {"created_at": "1700000000"},
        {"created_at__v_bigint": 10**17, "floor__v_text": "0007"},
        {"created_at__v_text": "1e17"}]


def test_route_moves_each_misfit_to_its_variant_and_learns_new_columns():
    types = ColumnTypes({"timezone": {"data_type": "text"}},
                        {"location_id": {"data_type": "bigint"}, "id": {"data_type": "bigint"}})
    records = [
        {"id": "0237", "location_id": "0042", "timezone": True, "flag": True, "meta": {"a": 1}},
        {"id": 2, "location_id": 42, "timezone": "UTC", "flag": "yes", "Battery": 3.5},
        {"id": 3, "location_id": "42", "flag": None, "Battery": "NaN"},
    ]
    assert types.route(records) is records
    assert records == [
        # The merge key is the quarantine's: an id as text still merges as its number.
        {"id": "0237", "location_id__v_text": "0042", "timezone__v_bool": True, "flag": True,
         "meta": {"a": 1}},
        {"id": 2, "location_id": 42, "timezone": "UTC", "flag__v_text": "yes", "Battery": 3.5},
        {"id": 3, "location_id": "42", "flag": None, "battery__v_text": "NaN"},
    ]
