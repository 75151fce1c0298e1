"""Requests against pages needed on a first sync: a stream of n records needs ceil(n / page
size) pages (an empty one, one request), and a sync should not make many more. Real HTTP against
the sandbox, virtual clock, an unlimited rate."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.syncing import sync_sandbox
from tests.truth import assert_matches_truth, truth_streams

UNLIMITED = {"rate": 1e6, "burst": 10**6}
MOST = 1.03  # requests per page needed


def pages_needed(sandbox, page_size: int) -> int:
    return sum(max(1, math.ceil(len(records) / page_size))
               for records in truth_streams(sandbox.truth()))


def requests_for_first_sync(sandbox, tmp_path, clock, page_size: int) -> tuple[int, int]:
    sandbox.reset_stats()
    sync_sandbox(sandbox, tmp_path, clock, **UNLIMITED)
    assert_matches_truth(tmp_path, sandbox.truth())
    return sandbox.stats()["requests"], pages_needed(sandbox, page_size)


@pytest.mark.parametrize("page_size", [37, 250])
def test_a_dense_history_costs_its_pages(start_sandbox, tmp_path, clock, page_size):
    sandbox = start_sandbox(clock=clock, devices=20, surveys=4, responses=5000,
                            page_size=page_size, **UNLIMITED)
    requests, needed = requests_for_first_sync(sandbox, tmp_path, clock, page_size)
    assert requests <= MOST * needed, (requests, needed)


def test_many_small_surveys_cost_one_request_each(start_sandbox, tmp_path, clock):
    # 120 surveys of a few dozen responses each, spread over a year.
    sandbox = start_sandbox(clock=clock, devices=10, surveys=120, responses=3000,
                            **UNLIMITED)
    requests, needed = requests_for_first_sync(sandbox, tmp_path, clock, 100)
    assert requests <= MOST * needed, (requests, needed)


def test_dense_bursts_between_quiet_months(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, devices=10, surveys=2, responses=4000, page_size=37,
                            **UNLIMITED)
    now = datetime.fromtimestamp(clock(), UTC)
    rng = random.Random(5)
    for n, record in enumerate(sandbox.truth()["survey_responses"]):
        # Three bursts of three days, four months apart.
        at = now - timedelta(days=10 + 120 * (n % 3), seconds=rng.randint(0, 3 * 86400))
        sandbox.patch_records("survey_responses", [record["id"]],
                              {"updated_at": at.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
                              bump=False)
    requests, needed = requests_for_first_sync(sandbox, tmp_path, clock, 37)
    assert requests <= MOST * needed, (requests, needed)
