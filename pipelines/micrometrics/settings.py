"""Connector settings, resolved the dlt way and validated before any request is made.

Keys live under ``[sources.micrometrics]`` in ``.dlt/config.toml`` / ``.dlt/secrets.toml`` or in
environment variables ``SOURCES__MICROMETRICS__<KEY>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from .errors import ConfigurationError
from .messages import hint
from .timeutil import parse_timestamp
from .windows import WindowSettings

SECTION = "sources.micrometrics"
DEFAULT_START_AT = "2000-01-01T00:00:00+00:00"
# Uploads from devices that were offline arrive up to an hour late: re-read two hours.
DEFAULT_LOOKBACK_MINUTES = 120.0
MIN_LOOKBACK_MINUTES = 15.0
DEFAULT_INITIAL_WINDOW_DAYS = 30.0
DEFAULT_WINDOW_PAGES = 50
ASSUMED_PAGE_SIZE = 100
# Kiosks offline over a long weekend upload up to three days late: a daily deep pass re-reads
# three days, so each late record gets three chances to be found.
DEFAULT_DEEP_LOOKBACK_HOURS = 72.0
DEFAULT_DEEP_EVERY_HOURS = 24.0  # the server chooses; this only sizes windows


def env_name(key: str) -> str:
    return f"SOURCES__MICROMETRICS__{key.upper()}"


def where_to_set(key: str) -> str:
    return f"set {env_name(key)} or {key} under [sources.micrometrics] in .dlt/secrets.toml"


@dataclass(frozen=True)
class Settings:
    """Validated connector settings. ``api_secret`` is never printed (see ``__repr__``)."""

    base_url: str
    api_key: str
    api_secret: str
    start_at: datetime
    lookback: timedelta
    initial_window: timedelta
    window_pages: int
    allow_insecure_http: bool = False
    max_attempts: int = 6
    backoff_seconds: float = 0.5
    deep_lookback: timedelta = timedelta(hours=DEFAULT_DEEP_LOOKBACK_HOURS)
    deep_every: timedelta = timedelta(hours=DEFAULT_DEEP_EVERY_HOURS)

    def __repr__(self) -> str:
        return f"Settings(base_url={self.base_url!r}, api_key={self.api_key!r}, api_secret='***')"

    def window_settings(self, start_at: datetime | None = None) -> WindowSettings:
        return WindowSettings(
            start_at=start_at or self.start_at,
            lookback=self.lookback,
            initial_window=self.initial_window,
            target_pages=self.window_pages,
            page_size=ASSUMED_PAGE_SIZE,
            deep_lookback=self.deep_lookback,
            deep_every=self.deep_every,
        )


def _lookup(key: str, secret: bool = False) -> object | None:
    provider = dlt.secrets if secret else dlt.config
    try:
        return provider[f"{SECTION}.{key}"]
    except (KeyError, ConfigFieldMissingException):
        if secret:  # a base_url may sit in secrets.toml too
            return None
        try:
            return dlt.secrets[f"{SECTION}.{key}"]
        except (KeyError, ConfigFieldMissingException):
            return None


def check_base_url(url: str, allow_insecure_http: bool = False) -> str:
    """The base URL without a trailing slash; https, or http only to a loopback host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {url!r} is not an http(s) URL such as https://tenant.example.com"
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"base_url {url!r} is plain http to a non-loopback host; {hint('insecure_url')} "
            f"(or set {env_name('allow_insecure_http')}=true to accept signed requests and "
            "data in clear)"
        )
    return url.strip().rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive(key: str, value: object, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise ConfigurationError(
            f"{key} must be a positive number, got {value!r}; {hint('invalid_setting')}"
        )
    return number


def _non_negative(key: str, value: object, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number < 0:
        raise ConfigurationError(
            f"{key} must be a number >= 0, got {value!r}; {hint('invalid_setting')}"
        )
    return number


def _count(key: str, value: object, default: int) -> int:
    number = _positive(key, value, default)
    if number != int(number):
        raise ConfigurationError(
            f"{key} must be a whole number >= 1, got {value!r}; {hint('invalid_setting')}"
        )
    return int(number)


def load_settings(**overrides: object) -> Settings:
    """Resolve and validate settings; ``overrides`` (not None) win over configuration.

    Raises:
        ConfigurationError: naming the key to set, before any request is made.
    """

    def get(key: str, secret: bool = False) -> object | None:
        value = overrides.get(key)
        return value if value is not None else _lookup(key, secret)

    missing = [k for k, s in (("base_url", False), ("api_key", True), ("api_secret", True))
               if not get(k, s)]
    if missing:
        names = ", ".join(env_name(k) for k in missing)
        raise ConfigurationError(f"missing configuration: {names}; {hint('missing_config')}")
    insecure = str(get("allow_insecure_http") or "").lower() in ("1", "true", "yes")
    start_raw = get("start_at") or DEFAULT_START_AT
    lookback = _positive("lookback_minutes", get("lookback_minutes"), DEFAULT_LOOKBACK_MINUTES)
    if lookback < MIN_LOOKBACK_MINUTES:
        # The API accepts clocks 15 minutes apart: a shorter lookback could skip the records
        # changed between the server's "now" and ours.
        raise ConfigurationError(
            f"lookback_minutes must be at least {MIN_LOOKBACK_MINUTES:g} (the clock skew the "
            f"API allows), got {lookback:g}; {hint('invalid_setting')}"
        )
    try:
        start_at = parse_timestamp(str(start_raw))
    except ValueError as exc:
        raise ConfigurationError(f"start_at: {exc}; {hint('invalid_setting')}") from None
    return Settings(
        base_url=check_base_url(str(get("base_url")), insecure),
        api_key=str(get("api_key", True)),
        api_secret=str(get("api_secret", True)),
        start_at=start_at,
        lookback=timedelta(minutes=lookback),
        initial_window=timedelta(
            days=_positive("initial_window_days", get("initial_window_days"),
                           DEFAULT_INITIAL_WINDOW_DAYS)
        ),
        window_pages=_count("window_pages", get("window_pages"), DEFAULT_WINDOW_PAGES),
        allow_insecure_http=insecure,
        max_attempts=_count("max_attempts", get("max_attempts"), 6),
        backoff_seconds=_positive("backoff_seconds", get("backoff_seconds"), 0.5),
        deep_lookback=timedelta(hours=_positive(
            "deep_lookback_hours", get("deep_lookback_hours"), DEFAULT_DEEP_LOOKBACK_HOURS)),
        deep_every=timedelta(hours=_non_negative(
            "deep_every_hours", get("deep_every_hours"), DEFAULT_DEEP_EVERY_HOURS)),
    )
