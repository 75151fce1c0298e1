"""Configuration checks that happen before any request, and the docs generated from messages."""

import re
import subprocess
from pathlib import Path

import pytest

from pipelines import demo
from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.settings import check_base_url, load_settings
from pipelines.sync import troubleshooting
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


@pytest.mark.parametrize("url", ["https://usr:URLzq9PASSuu@tenant.example.com",
                                 "http://usr:URLzq9PASSuu@127.0.0.1:8765/",
                                 "https://URLzq9PASSuu@tenant.example.com",
                                 "usr:URLzq9PASSuu@tenant.example.com",
                                 "ftp://usr:URLzq9PASSuu@[::1"])
def test_a_user_name_or_password_in_base_url_is_refused_unechoed(url):
    # Accepted, requests sent them as Basic auth and the password reached messages and state.
    with pytest.raises(ConfigurationError) as raised:
        check_base_url(url)
    assert str(raised.value).startswith("base_url must not hold a user name or password; ")
    assert "URLzq9PASSuu" not in str(raised.value) and "usr" not in str(raised.value)


@pytest.mark.parametrize("url,message", [
    ("https://tenant.example.com/?token=x", "must not have a query string"),
    ("https://tenant.example.com?", "must not have a query string"),
    ("https://tenant.example.com/#top", "or fragment"),
    ("https://tenant.example.com:0", "has an invalid port (1 to 65535)"),
    ("https://tenant.example.com:65536", "has an invalid port (1 to 65535)"),
    ("http://127.0.0.1:http", "has an invalid port (1 to 65535)"),
    # Failed after the first requests, in dlt's words (or "not sent"), not as a setting.
    ("https://tenant .example.com", "has an invalid host name"),
    ("https://.example.com", "has an invalid host name"),
    ("https://tenant..example.com", "has an invalid host name"),
])
def test_a_query_fragment_or_bad_port_in_base_url_is_refused(monkeypatch, url, message):
    set_configuration(monkeypatch, BASE_URL=url)
    with pytest.raises(ConfigurationError, match=r"^base_url .*" + re.escape(message)):
        load_settings()


@pytest.mark.parametrize("key", ["API_KEY", "API_SECRET"])
@pytest.mark.parametrize("value", [" ", "\n", "\t\r\n"])
def test_a_blank_key_or_secret_is_missing(monkeypatch, key, value):
    # Taken as set, then stripped: every request went out signed with an empty one, and the
    # run failed with a 401, as a wrong secret does.
    set_configuration(monkeypatch, **{key: value})
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (f"missing configuration: SOURCES__MICROMETRICS__{key}; "
                                 f"{hint('missing_config')}")


@pytest.mark.parametrize("url", ["https://svc:Zq/9xPASS@tenant.example.com",
                                 "http://svc:8443/9xPASS@tenant.example.com",
                                 "https://svc:8443/9xPASS@tenant.example.com",
                                 "ftp://svc:Zq/9xPASS@tenant.example.com"])
def test_a_password_with_a_slash_in_base_url_is_refused_never_echoed(url):
    # What follows its "/" reads as the path: with a port-like start it was accepted (the
    # password sent as a path, printed in errors), otherwise refused naming the whole URL.
    with pytest.raises(ConfigurationError) as raised:
        check_base_url(url)
    assert "9xPASS" not in str(raised.value)


def test_a_transport_error_names_the_host_and_port_never_a_user_or_password():
    import requests

    from pipelines.micrometrics.session import transport_error

    request = requests.Request("GET", "http://usr:URLzq9PASSuu@127.0.0.1:9/devices").prepare()
    for exc in (requests.ConnectionError("refused"), requests.Timeout("slow")):
        message = str(transport_error(request, exc, 3))
        assert "127.0.0.1:9" in message
        assert "URLzq9PASSuu" not in message and "usr" not in message


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


def test_the_troubleshooting_generator_writes_only_when_asked(monkeypatch, tmp_path, capsys):
    # `--help` rewrote the README of the checkout it was imported from.
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text(encoding="utf-8").replace(
        "<!-- troubleshooting:end -->", "stale\n<!-- troubleshooting:end -->"), encoding="utf-8")
    monkeypatch.setattr(troubleshooting, "README", copy)
    stale = copy.read_bytes()
    with pytest.raises(SystemExit) as helped:
        troubleshooting.main(["--help"])
    assert helped.value.code == 0 and copy.read_bytes() == stale
    assert troubleshooting.main(["--check"]) == 1 and copy.read_bytes() == stale
    assert "out of date" in capsys.readouterr().out
    assert troubleshooting.main([]) == 0 and troubleshooting.main(["--check"]) == 0


@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    # A bad argument for the sync deleted them before the sync refused it; the dry run and
    # another dataset or destination ended in a traceback from the examples.
    (["--bogus"], 2), (["--dry-run"], 2), (["--dataset", "other"], 2),
    (["--destination", "postgres"], 2), (["--no-models"], 2), (["--resources", "devices"], 2)])
def test_the_demos_help_or_bad_arguments_delete_nothing(monkeypatch, tmp_path, args, code):
    # It deleted demo.duckdb, .demo/ and report.html, started a sandbox, then crashed.
    monkeypatch.chdir(tmp_path)
    kept = [tmp_path / "demo.duckdb", tmp_path / "report.html"]
    for path in kept:
        path.write_text("mine")
    with pytest.raises(SystemExit) as helped:
        demo.main(args)
    assert helped.value.code == code and all(path.read_text() == "mine" for path in kept)


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


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("WINDOW_PAGES", "-3", "window_pages must be a positive number, got -3"),
        ("WINDOW_PAGES", "2.5", "window_pages must be a whole number >= 1, got 2.5"),
        ("ROUND_PAGES", "0", "round_pages must be a positive number, got 0"),
        ("MAX_ATTEMPTS", "abc", "max_attempts must be a positive number, got 'abc'"),
        ("INITIAL_WINDOW_DAYS", "0", "initial_window_days must be a positive number, got 0"),
        ("DEEP_EVERY_HOURS", "-1", "deep_every_hours must be a number >= 0, got -1"),
        ("LOOKBACK_MINUTES", "5",
         "lookback_minutes must be at least 15 (the clock skew the API allows), got 5"),
        ("START_AT", "last tuesday", "start_at: not an ISO 8601 timestamp: 'last tuesday'"),
        # Numbers that would fail later, naming no setting.
        ("LOOKBACK_MINUTES", "nan", "lookback_minutes must be a finite number up to 1e+09, "
                                    "got nan"),
        ("MAX_IN_FLIGHT", "inf", "max_in_flight must be a finite number up to 1e+09, got inf"),
        ("DEEP_EVERY_HOURS", "1e12", "deep_every_hours must be a finite number up to 1e+09, "
                                     "got 1000000000000.0"),
        ("INITIAL_WINDOW_DAYS", "1e9", "initial_window_days must be at most 100 years, got 1e+09"),
        ("DEEP_LOOKBACK_HOURS", "1e8", "deep_lookback_hours must be at most 100 years, got 1e+08"),
        ("API_KEY", "key with space", "api_key holds a space, line break or control character"),
        ("API_SECRET", "sec\x07ret", "api_secret holds a space, line break or control character"),
        # Booleans and junk read as something else, silently.
        ("WINDOW_PAGES", "true", "window_pages must be a positive number, got True"),
        ("MAX_ATTEMPTS", "TRUE", "max_attempts must be a positive number, got True"),
        ("ROUND_PAGES", "false", "round_pages must be a positive number, got False"),
        ("ALLOW_INSECURE_HTTP", "maybe",
         "allow_insecure_http must be true or false (or 1/0, yes/no, on/off), got 'maybe'"),
        ("ALLOW_INSECURE_HTTP", "2",
         "allow_insecure_http must be true or false (or 1/0, yes/no, on/off), got 2"),
        # A key that cannot go in a header failed every request; never echoed.
        ("API_KEY", "KEY\u20ac", "api_key holds a character that is not ASCII (it is sent in a "
                                 "header)"),
    ],
)
def test_invalid_settings_are_named_in_one_line_as_before(monkeypatch, key, value, message):
    """The messages of the hand-written lookup, now that dlt resolves the configuration."""
    set_configuration(monkeypatch, **{key: value})
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"{message}; {hint('invalid_start' if key == 'START_AT' else 'invalid_setting')}")


@pytest.mark.parametrize("value,got", [("1969-12-31T23:59:59Z", "1969-12-31T23:59:59.000+00:00"),
                                       ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000+00:00")])
def test_a_start_at_before_1970_is_refused(monkeypatch, value, got):
    # Accepted, one before 1970 failed after the requests (year 1: "date value out of range").
    # A future one is refused by sync(), against its own clock (test_sync).
    set_configuration(monkeypatch, START_AT=value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"start_at must be from 1970-01-01T00:00:00Z, got {got}; {hint('invalid_start')}")


def test_a_start_at_within_the_clock_skew_or_at_the_epoch_is_accepted(monkeypatch):
    from datetime import UTC, datetime, timedelta

    for start in (datetime.now(UTC) + timedelta(minutes=10), datetime(1970, 1, 1, tzinfo=UTC)):
        set_configuration(monkeypatch, START_AT=start.isoformat())
        assert load_settings().start_at == start


@pytest.mark.parametrize("value,expected", [("on", True), ("Yes", True), ("1", True),
                                            ("TRUE", True), ("off", False), ("No", False),
                                            ("0", False), ("False", False), ("", False)])
def test_allow_insecure_http_reads_the_usual_words(monkeypatch, value, expected):
    set_configuration(monkeypatch, ALLOW_INSECURE_HTTP=value)
    assert load_settings().allow_insecure_http is expected


def test_a_boolean_given_for_a_number_is_refused_and_a_non_ascii_secret_accepted():
    base = {"base_url": "https://t.example.com", "api_key": "k"}
    with pytest.raises(ConfigurationError, match="^window_pages must be a positive number, got "
                                                 "True"):
        load_settings(**base, api_secret="s", window_pages=True)
    # The secret only keys the HMAC, as UTF-8: it may hold any character.
    assert load_settings(**base, api_secret="s\u00e9\u20ac").api_secret == "s\u00e9\u20ac"


def test_key_and_secret_lose_a_secret_files_trailing_newline(monkeypatch):
    set_configuration(monkeypatch, API_KEY="the-key\n", API_SECRET=" the-secret\r\n")
    settings = load_settings()
    assert (settings.api_key, settings.api_secret) == ("the-key", "the-secret")


def test_an_unclosed_ipv6_base_url_is_refused_in_one_line(monkeypatch):
    set_configuration(monkeypatch, BASE_URL="https://[::1")
    with pytest.raises(ConfigurationError, match=r"^base_url is not an http"):
        load_settings()


def test_plain_http_base_url_is_refused_in_one_line_as_before(monkeypatch):
    set_configuration(monkeypatch, BASE_URL="http://example.com")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"base_url 'http://example.com' is plain http to a non-loopback host; "
        f"{hint('insecure_url')} (or set SOURCES__MICROMETRICS__ALLOW_INSECURE_HTTP=true to "
        "accept signed requests and data in clear)"
    )


def set_configuration(monkeypatch, **values: str) -> None:
    """Valid required keys in the environment (first among dlt's providers), then ``values``."""
    required = {"BASE_URL": "https://t.example.com", "API_KEY": "k", "API_SECRET": "s"}
    for key, value in {**required, **values}.items():
        monkeypatch.setenv(f"SOURCES__MICROMETRICS__{key}", value)


def test_a_misspelt_setting_is_named_with_the_nearest_one(tmp_path, monkeypatch):
    """A typo's value was dropped without a word and the default stood in (a deep lookback
    raised to a week stayed 72 h): each unknown key is now a warning, once a run."""
    from pipelines.micrometrics import unknown_settings
    from tests.cli import run_cli, sync_env, tmp_cwd

    monkeypatch.setattr(unknown_settings, "_warned", set())
    env = sync_env(tmp_path, "https://tenant.example.com",
                   SOURCES__MICROMETRICS__DEEP_EVERY_HOUR="0",
                   MICROMETRICS__SOURCES__MICROMETRICS__MAX_IN_FLIGH="3",
                   SOURCES__MICROMETRICS__CREDENTIALS__API_KEY="x",
                   SOURCES__MICROMETRICS__DEEP_EVERY_HOURS="0",  # known ones: no warning
                   # dlt's own sections below, and another pipeline's scope: not judged
                   SOURCES__MICROMETRICS__DATA_WRITER__FILE_MAX_ITEMS="5000",
                   OTHER__SOURCES__MICROMETRICS__FOO="1")
    config = Path(tmp_cwd(dict(env))) / ".dlt"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text("[sources.micrometrics]\ndeep_lookback_hour = 168\n"
                                        "window_pages = 40\n"
                                        "[sources.micrometrics.data_writer]\n"
                                        "buffer_max_items = 5000\n")
    plan = run_cli(env, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    ignored = " is not a setting of this connector and is ignored"
    assert plan.stderr.splitlines() == [
        f"warning: MICROMETRICS__SOURCES__MICROMETRICS__MAX_IN_FLIGH{ignored} (did you mean "
        "MICROMETRICS__SOURCES__MICROMETRICS__MAX_IN_FLIGHT?)",
        f"warning: SOURCES__MICROMETRICS__CREDENTIALS__API_KEY{ignored} (did you mean "
        "SOURCES__MICROMETRICS__API_KEY?)",
        f"warning: SOURCES__MICROMETRICS__DEEP_EVERY_HOUR{ignored} (did you mean "
        "SOURCES__MICROMETRICS__DEEP_EVERY_HOURS?)",
        f"warning: deep_lookback_hour under [sources.micrometrics] in config.toml{ignored} "
        "(did you mean deep_lookback_hours?)"]
