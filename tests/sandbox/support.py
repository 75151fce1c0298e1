"""Shared constants and helpers of the sandbox tests."""

from __future__ import annotations

from collections.abc import Callable

import requests

from pipelines.micrometrics.auth import APIAuth
from tests.conftest import KEY, SECRET  # one credentials pair for every test

EARLY = "2000-01-01T00:00:00Z"
LATE = "2100-01-01T00:00:00Z"


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
