"""HTTP edges the real API's stack answers in JSON: other methods, bad lengths, bursts."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from pipelines.sandbox.server import _Handler, _Server

BASE = "/api/experience"


def _raw(sandbox, method: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    parts = urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def test_head_and_options_get_json_405(sandbox, api):
    for method in ("HEAD", "OPTIONS"):
        response = api.request(method, sandbox.url + BASE + "/devices")
        assert response.status_code == 405, method
        assert response.headers["Content-Type"].startswith("application/json")
        assert "GET" in response.headers["Allow"]
        assert "RateLimit-Burst-Remaining" in response.headers
        if method == "OPTIONS":
            assert "not allowed" in response.json()["error"]

    # A HEAD answer carries no body: the next answer on the same connection still parses.
    parts = urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    for method in ("HEAD", "GET"):
        conn.request(method, BASE + "/devices")
        response = conn.getresponse()
        assert (response.status, response.read() == b"") == (401, method == "HEAD")
    conn.close()


def test_bad_content_length_is_refused_in_json(sandbox):
    path = BASE + "/surveys/237/responses"
    negative = _raw(sandbox, "POST", path, {"Content-Length": "-5"})
    assert (negative.status, negative.body) == (400, b'{"error": "invalid Content-Length"}')
    huge = _raw(sandbox, "POST", path, {"Content-Length": str(10**12)})
    assert huge.status == 413 and b"body over" in huge.body
    assert huge.getheader("Content-Type").startswith("application/json")


def test_a_burst_of_connections_queues_instead_of_being_dropped():
    """Many requests in flight open many connections at once; while the server is busy, the
    kernel queues them up to the listen backlog and drops the rest (TCP retries after 1 s)."""
    server = _Server(("127.0.0.1", 0), _Handler)  # listening, not accepting: all wait queued
    clients = []
    try:
        for _ in range(64):
            client = socket.socket()
            client.settimeout(0.5)
            clients.append(client)
            client.connect(server.server_address)
    finally:
        for client in clients:
            client.close()
        server.server_close()
