"""Shared constants and helpers of the sandbox tests."""

from __future__ import annotations

from collections.abc import Callable

import requests

from pipelines.micrometrics.auth import APIAuth
from tests.fakes import FakeClock as SharedFakeClock

KEY, SECRET = "test-key", "test-secret"
# 2026-03-15T12:34:56Z, a fixed "now" so windows and Date checks need no sleeping.
T0 = 1773578096.0
EARLY = "2000-01-01T00:00:00Z"
LATE = "2100-01-01T00:00:00Z"


class FakeClock(SharedFakeClock):
    """The shared virtual clock, starting at the sandbox tests' fixed "now"."""

    def __init__(self, now: float = T0) -> None:
        super().__init__(now)


def signed_session(clock: Callable[[], float], key: str = KEY, secret: str = SECRET):
    """A requests session signing every request with the sandbox's clock."""
    session = requests.Session()
    session.auth = APIAuth(key, secret, clock=clock)
    return session


def walk(api: requests.Session, url: str, params: dict) -> tuple[list[dict], list]:
    """Follows Next-Cursor to the end; returns all records and every response."""
    records, responses, cursor = [], [], None
    while True:
        response = api.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        records += response.json()
        responses.append(response)
        cursor = response.headers.get("Next-Cursor")
        if not cursor:
            return records, responses
        assert len(responses) < 1000
