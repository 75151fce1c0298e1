"""A data test passes only on a count of 0 that the database actually returned: no row, or
NULL, is a failure with a message saying so, never a pass."""

from __future__ import annotations

import pytest

from pipelines.models import DataTestFailed
from pipelines.models.compiler import dataset_qualifier
from pipelines.models.project import load_project
from pipelines.models.runner import run_test


class CannedClient:
    """A SQL client whose count query returns ``result`` (as some drivers and destinations
    do for a statement they did not run as expected)."""

    def __init__(self, result):
        self.result = result
        self.statements: list[str] = []

    def execute_sql(self, sql):
        self.statements.append(sql)
        return self.result

    def execute_query(self, sql):
        raise AssertionError("no sample is read without a count of offending rows")


def a_data_test():
    return next(test for test in load_project().tests if test.name == "scores_in_range")


@pytest.mark.parametrize(("result", "said"), [
    ([], "returned no row"),
    (None, "returned no row"),
    ([(None,)], "returned NULL"),
])
def test_a_count_that_is_missing_or_null_fails(result, said):
    client = CannedClient(result)
    outcome = run_test(client, a_data_test(), "duckdb", dataset_qualifier("micrometrics"))
    assert "COUNT(*)" in client.statements[0]
    assert not outcome.passed
    assert said in outcome.describe() and "failure" in outcome.describe()
    message = str(DataTestFailed([outcome]))
    assert message.startswith("data test failed: scores_in_range -- scores_in_range: ")
    assert said in message


def test_a_count_that_is_not_a_number_fails_and_zero_passes():
    test = a_data_test()
    assert run_test(CannedClient([(0,)]), test, "duckdb", dataset_qualifier("m")).passed
    assert not run_test(CannedClient([("not a number",)]), test, "duckdb",
                        dataset_qualifier("m")).passed
