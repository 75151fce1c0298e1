"""Settings resolve through dlt's configuration providers: the environment, the project's
``.dlt/*.toml`` and any provider registered with dlt; overrides win, the secret stays hidden."""

from __future__ import annotations

import os
from pathlib import Path

import dlt
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.providers import CustomLoaderDocProvider
from dlt.common.configuration.specs import PluggableRunContext

from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.settings import (
    MicrometricsConfiguration,
    MicrometricsCredentials,
    load_settings,
    resolve_micrometrics_configuration,
)

SECRET = "Zq7-provider-s3cret"
URL = "https://tenant.example.com"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty dlt project as the working directory and no micrometrics variables set.

    dlt reads ``.dlt/`` relative to the working directory when it builds its providers: they are
    rebuilt here, and again for the real working directory afterwards (which also drops any
    provider a test registered).
    """
    for name in list(os.environ):
        if name.startswith("SOURCES__") or name in ("BASE_URL", "API_KEY", "API_SECRET"):
            monkeypatch.delenv(name)
    home = os.getcwd()
    monkeypatch.chdir(tmp_path)
    context = Container()[PluggableRunContext]
    context.reload_providers()
    yield tmp_path
    os.chdir(home)
    context.reload_providers()


def write_dlt_files(project: Path, config: str = "", secrets: str = "") -> None:
    settings = project / ".dlt"
    settings.mkdir(exist_ok=True)
    (settings / "config.toml").write_text(f"[sources.micrometrics]\n{config}\n", encoding="utf-8")
    (settings / "secrets.toml").write_text(f"[sources.micrometrics]\n{secrets}\n", encoding="utf-8")
    Container()[PluggableRunContext].reload_providers()


def test_resolves_from_environment_variables(project, monkeypatch):
    for key, value in {"BASE_URL": URL + "/", "API_KEY": "0123", "API_SECRET": SECRET,
                       "START_AT": "2015-06-01T00:00:00+00:00", "LOOKBACK_MINUTES": "30",
                       "WINDOW_PAGES": "7", "DEEP_EVERY_HOURS": "0"}.items():
        monkeypatch.setenv(f"SOURCES__MICROMETRICS__{key}", value)
    settings = load_settings()
    assert (settings.base_url, settings.api_key, settings.api_secret) == (URL, "0123", SECRET)
    assert settings.start_at.year == 2015 and settings.lookback.total_seconds() == 30 * 60
    assert settings.window_pages == 7 and settings.deep_every.total_seconds() == 0
    assert settings.max_attempts == 6  # the default where nothing is configured


def test_resolves_from_dlt_toml_files_in_the_project(project, monkeypatch):
    write_dlt_files(
        project,
        config=f'base_url = "{URL}"\nstart_at = 2015-06-01T00:00:00Z\nwindow_pages = 7\n'
               "allow_insecure_http = true\nbackoff_seconds = 0.25",
        secrets=f'api_key = "k"\napi_secret = "{SECRET}"',
    )
    settings = load_settings()
    assert (settings.base_url, settings.api_key, settings.api_secret) == (URL, "k", SECRET)
    assert settings.start_at.year == 2015 and settings.window_pages == 7
    assert settings.allow_insecure_http and settings.backoff_seconds == 0.25
    # The environment comes first among dlt's providers, and overrides before all of them.
    monkeypatch.setenv("SOURCES__MICROMETRICS__WINDOW_PAGES", "9")
    assert load_settings().window_pages == 9
    overridden = load_settings(window_pages=3, api_secret="other", api_key=None)
    assert (overridden.window_pages, overridden.api_secret, overridden.api_key) == (3, "other", "k")


def test_resolves_from_a_provider_registered_with_dlt(project):
    vault = {"sources": {"micrometrics": {"base_url": URL, "api_key": "k", "api_secret": SECRET,
                                          "window_pages": 11}}}
    dlt.config.register_provider(CustomLoaderDocProvider("test vault", lambda: vault))
    settings = load_settings()
    assert (settings.base_url, settings.api_key, settings.api_secret) == (URL, "k", SECRET)
    assert settings.window_pages == 11
    assert load_settings(base_url="https://other.example.com").base_url == \
        "https://other.example.com"


@pytest.mark.parametrize("where", ["config.toml", "provider"])
def test_a_secret_where_dlt_keeps_no_secrets_is_refused_in_one_line(project, where):
    if where == "config.toml":
        write_dlt_files(project, config=f'base_url = "{URL}"\napi_key = "k"',
                        secrets=f'api_secret = "{SECRET}"')
    else:
        values = {"sources": {"micrometrics": {"base_url": URL, "api_key": "k",
                                               "api_secret": SECRET}}}
        dlt.config.register_provider(
            CustomLoaderDocProvider("plain settings", lambda: values, supports_secrets=False))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("missing configuration: SOURCES__MICROMETRICS__API_KEY (")
    assert "cannot hold secrets" in message and "\n" not in message and SECRET not in message


def test_missing_keys_are_named_in_one_line(project, monkeypatch):
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (
        "missing configuration: SOURCES__MICROMETRICS__BASE_URL, "
        "SOURCES__MICROMETRICS__API_KEY, SOURCES__MICROMETRICS__API_SECRET; "
        f"{hint('missing_config')}"
    )
    monkeypatch.setenv("SOURCES__MICROMETRICS__BASE_URL", URL)
    monkeypatch.setenv("SOURCES__MICROMETRICS__API_KEY", "k")
    monkeypatch.setenv("SOURCES__MICROMETRICS__API_SECRET", "")  # empty counts as missing
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"missing configuration: SOURCES__MICROMETRICS__API_SECRET; {hint('missing_config')}"
    )
    assert load_settings(api_secret=SECRET).api_secret == SECRET  # an override fills it


def test_the_secret_is_in_no_repr_and_no_dlt_trace(project, tmp_path):
    write_dlt_files(project, config=f'base_url = "{URL}"',
                    secrets=f'api_key = "k"\napi_secret = "{SECRET}"')
    config = resolve_micrometrics_configuration()
    assert isinstance(config, MicrometricsConfiguration)
    assert isinstance(config.credentials, MicrometricsCredentials)
    assert config.credentials.api_secret == SECRET
    settings = load_settings()
    for shown in (config, config.credentials, settings):
        assert SECRET not in repr(shown) and SECRET not in str(shown)
    # dlt records every value it resolved and saves them in the pipeline's trace.
    pipeline = dlt.pipeline(pipeline_name="settings_trace", pipelines_dir=str(tmp_path / "p"))
    try:
        load_settings()
        pipeline.extract([{"id": 1}], table_name="t")
    finally:
        pipeline.deactivate()
    traced = {v.key: v for v in pipeline.last_trace.resolved_config_values
              if v.key in ("base_url", "api_key", "api_secret")}
    assert traced["base_url"].value == URL  # the resolution is traced...
    assert traced["api_secret"].is_secret_hint and traced["api_secret"].value is None  # ...hidden
    assert SECRET not in str(pipeline.last_trace) and SECRET not in repr(pipeline.last_trace)
    files = [p for p in (tmp_path / "p").rglob("*") if p.is_file()]
    assert files and not [p for p in files if SECRET.encode() in p.read_bytes()]
