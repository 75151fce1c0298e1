"""BigQuery out of reach: every command fails within dlt's ``retry_deadline``, not Google's
client's own 10 to 40 minutes (``pipelines/bigquery_deadline.py``). Real processes (a hang is
what is tested: the timeout fails it), a real BigQuery client behind a loopback proxy that
closes every connection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import sync_env, tmp_cwd
from tests.http_proxy import refusing_proxy

pytestmark = pytest.mark.warehouses  # BigQuery's client: the warehouses extra

DEADLINE = "3"
# Each command's imports, a few calls, each retried for DEADLINE seconds: measured 7-15 s.
# Google's own retries took more than 10 minutes for status alone.
WITHIN = 90


def bigquery_behind(proxy: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose BigQuery destination (a service account's key, made here) can only
    be reached through ``proxy``; the API's base URL leads nowhere."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return sync_env(tmp_path, "http://127.0.0.1:9", HTTPS_PROXY=proxy, HTTP_PROXY=proxy,
                    NO_PROXY="", no_proxy="",
                    DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID="micrometrics-test",
                    DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL=(
                        "loader@micrometrics-test.iam.gserviceaccount.com"),
                    DESTINATION__BIGQUERY__CREDENTIALS__PRIVATE_KEY=key, **extra)


@pytest.mark.parametrize(("command", "code", "says"), [
    ("status", 3, "status unavailable: destination bigquery not readable: ('Connection aborted."),
    ("models", 1, "Timeout of 3.0s exceeded"),
    ("report", 1, "destination bigquery not readable: ('Connection aborted."),
    ("sync", 1, "Timeout of 3.0s exceeded"),
])
def test_every_command_gives_up_on_an_unreachable_bigquery_at_dlts_deadline(
        tmp_path, command, code, says):
    with refusing_proxy() as (proxy, reached):
        env = bigquery_behind(proxy, tmp_path, DESTINATION__BIGQUERY__RETRY_DEADLINE=DEADLINE)
        done = subprocess.run(
            [sys.executable, "-m", f"pipelines.{command}", "--destination", "bigquery"],
            cwd=tmp_cwd(env), env=env, capture_output=True, text=True, timeout=WITHIN)
        assert reached.is_set()  # it did try Google, through the proxy
    assert done.returncode == code, done.stderr
    assert says in done.stderr, done.stderr
