"""Fault injection: every kind shows up at fault_rate=1.0 with a seeded RNG."""

from __future__ import annotations

import json

import requests

from pipelines.sandbox.faults import FAULT_KINDS

from .support import signed_session

DEVICES = "/api/experience/devices"


def _classify(api, url: str) -> str:
    """What the client sees, named like the server's fault kinds."""
    try:
        response = api.get(url, params={"start_at": "2000-01-01T00:00:00Z"})
    except requests.ConnectionError:
        return "dropped_connection"
    if response.status_code == 429:
        assert response.headers["RateLimit-Retry-After"] == "0.05"
        return "spurious_429"
    if response.status_code == 502:
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<html>" in response.text
        return "http_502_html"
    if response.status_code in (500, 503):
        assert "error" in response.json()
        return f"http_{response.status_code}"
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    try:
        json.loads(response.content)
    except ValueError:
        return "truncated_body"
    return "ok"


def test_every_fault_kind_is_reachable(make_sandbox, clock):
    sb = make_sandbox(fault_rate=1.0, seed=3)
    seen: dict[str, int] = {}
    with signed_session(clock) as api:
        for _ in range(60):
            kind = _classify(api, sb.url + DEVICES)
            seen[kind] = seen.get(kind, 0) + 1
    assert set(seen) == set(FAULT_KINDS)
    assert sb.stats()["faults"] == seen
    assert sb.stats()["requests"] == 60


def test_fault_rate_can_be_switched_off(make_sandbox, api):
    sb = make_sandbox(fault_rate=1.0)
    sb.set_fault_rate(0.0)
    assert all(_classify(api, sb.url + DEVICES) == "ok" for _ in range(5))
    assert sb.stats()["faults"] == {}
