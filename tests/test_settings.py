"""Configuration checks that happen before any request, and the docs generated from messages."""

import subprocess
from pathlib import Path

import pytest

from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.settings import check_base_url, load_settings
from pipelines.sync.troubleshooting import README, render_section

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url", ["https://tenant.example.com/", "http://127.0.0.1:8765",
                                 "http://localhost:1", "http://[::1]:9"])
def test_https_or_loopback_accepted(url):
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://tenant.example.com", "http://10.0.0.5:80",
                                 "ftp://tenant.example.com", "tenant.example.com"])
def test_cleartext_or_odd_urls_refused(url):
    with pytest.raises(ConfigurationError, match="base_url"):
        check_base_url(url)


def test_cleartext_allowed_only_with_the_explicit_flag():
    assert check_base_url("http://tenant.example.com", allow_insecure_http=True)
    settings = load_settings(base_url="http://tenant.example.com", api_key="k", api_secret="s",
                             allow_insecure_http="true")
    assert settings.allow_insecure_http


def test_settings_repr_hides_the_secret():
    settings = load_settings(base_url="https://t.example.com", api_key="k", api_secret="hush")
    assert "hush" not in repr(settings) and "hush" not in str(settings)


def test_readme_troubleshooting_is_generated_from_the_messages():
    text = README.read_text(encoding="utf-8")
    assert render_section(text) == text, "run: python -m pipelines.sync.troubleshooting"


def test_secrets_file_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".dlt/secrets.toml"], cwd=ROOT)
    assert ignored.returncode == 0
    assert (ROOT / ".dlt" / "secrets.toml.example").exists()


def test_deep_pass_settings_default_and_accept_zero_but_not_negative(monkeypatch):
    from datetime import timedelta

    base = {"base_url": "https://t.example.com", "api_key": "k", "api_secret": "s"}
    settings = load_settings(**base)
    assert settings.deep_lookback == timedelta(hours=72)
    assert settings.deep_every == timedelta(hours=24)
    monkeypatch.setenv("SOURCES__MICROMETRICS__DEEP_EVERY_HOURS", "0")
    monkeypatch.setenv("SOURCES__MICROMETRICS__DEEP_LOOKBACK_HOURS", "48")
    settings = load_settings(**base)
    assert settings.deep_every == timedelta(0) and settings.deep_lookback == timedelta(hours=48)
    monkeypatch.setenv("SOURCES__MICROMETRICS__DEEP_EVERY_HOURS", "-1")
    with pytest.raises(ConfigurationError, match="deep_every_hours must be a number >= 0"):
        load_settings(**base)
    monkeypatch.setenv("SOURCES__MICROMETRICS__DEEP_EVERY_HOURS", "24")
    monkeypatch.setenv("SOURCES__MICROMETRICS__DEEP_LOOKBACK_HOURS", "0")
    with pytest.raises(ConfigurationError, match="deep_lookback_hours must be a positive"):
        load_settings(**base)
