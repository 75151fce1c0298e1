"""Shared fixtures: sandboxes on loopback and clients wired to them, on real or virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.retry import RetryPolicy
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.sandbox import Sandbox
from tests.bigquery_emulator import (  # noqa: F401 - fixtures
    bigquery_destination,
    bigquery_emulator,
    bigquery_env,
    bigquery_project,
)
from tests.fakes import FakeClock
from tests.postgres import postgres_credentials, postgres_server  # noqa: F401 - fixtures
from tests.snowflake_emulator import (  # noqa: F401 - fixtures
    fakesnow_server,
    snowflake_credentials,
    snowflake_destination,
    snowflake_env,
)

KEY, SECRET = "test-key", "test-secret-Zx9!q"


@pytest.fixture(autouse=True)
def normalize_in_process(monkeypatch):
    """dlt's normalize in the sync's own process, as a user's ``NORMALIZE__WORKERS=1`` would
    have it (subprocesses inherit it). A DuckDB sync's default, two forked workers, costs each
    round at least 0.3 s (dlt polls its pool), 80 s over this suite of small syncs; it has its
    own tests (test_dlt_settings, the workers' kill in test_kills)."""
    monkeypatch.setenv("NORMALIZE__WORKERS", "1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with the API's default rate limit unless told otherwise."""
    started: list[Sandbox] = []

    def start(**options) -> Sandbox:
        sandbox = Sandbox(**{"api_key": KEY, "api_secret": SECRET, **options}).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def virtual_client(clock: FakeClock) -> Callable[..., MicrometricsClient]:
    """A client whose every wait advances the shared virtual clock instead of sleeping."""

    def make(sandbox: Sandbox, rate=1.0, burst=10, **retry) -> MicrometricsClient:
        import random

        return MicrometricsClient(
            sandbox.url,
            KEY,
            SECRET,
            bucket=LeakyBucket(rate=rate, burst=burst, clock=clock, sleep=clock.sleep),
            retry=RetryPolicy(rng=random.Random(7), **retry),
            sleep=clock.sleep,
            auth_clock=clock,
        )

    return make
