"""Control routes: loopback only, no signature; stats over HTTP."""

from __future__ import annotations

import requests

from pipelines.sandbox import server


def test_control_routes_without_signature(sandbox, api):
    api.get(sandbox.url + "/api/experience/surveys")
    stats = requests.get(sandbox.url + "/_sandbox/stats").json()
    assert stats["requests"] == 1 and stats["by_status"] == {"200": 1}
    truth = requests.get(sandbox.url + "/_sandbox/truth").json()
    assert truth == sandbox.truth()
    assert requests.post(sandbox.url + "/_sandbox/stats/reset").status_code == 200
    assert sandbox.stats()["requests"] == 0
    assert requests.post(sandbox.url + "/_sandbox/truth").status_code == 405


def test_control_routes_refused_off_loopback(sandbox, monkeypatch):
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1")
    assert not server.is_loopback("10.1.2.3")
    monkeypatch.setattr(server, "is_loopback", lambda host: False)
    response = requests.get(sandbox.url + "/_sandbox/truth")
    assert response.status_code == 403 and "loopback" in response.json()["error"]
