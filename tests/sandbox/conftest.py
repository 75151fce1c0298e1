"""Fixtures for the sandbox tests: sandboxes and signed sessions over real HTTP, on the one
virtual clock of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from pipelines.sandbox import Sandbox
from tests.fakes import FakeClock

from .support import KEY, SECRET, signed_session


@pytest.fixture
def make_sandbox(clock: FakeClock, start_sandbox) -> Callable[..., Sandbox]:
    """Starts sandboxes (small data, no throttling by default); tests/conftest.py's
    ``start_sandbox`` stops them afterwards."""

    def make(**kwargs) -> Sandbox:
        options = dict(
            api_key=KEY, api_secret=SECRET, clock=clock, burst=10**6, rate=1000.0,
            devices=40, surveys=5, responses=600, page_size=25,
        )
        options.update(kwargs)
        return start_sandbox(**options)

    return make


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox()


@pytest.fixture
def api(clock: FakeClock) -> Iterator[requests.Session]:
    with signed_session(clock) as session:
        yield session
