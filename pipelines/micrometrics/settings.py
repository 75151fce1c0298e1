"""Connector settings: a dlt configuration spec, resolved by dlt, validated before any request.

Keys live under ``[sources.micrometrics]`` in ``.dlt/config.toml`` / ``.dlt/secrets.toml``, in
environment variables ``SOURCES__MICROMETRICS__<KEY>``, or in any other dlt configuration
provider (vaults, ``dlt.config.register_provider``): ``MicrometricsConfiguration`` is resolved with
dlt's ``resolve_configuration`` under the ``sources.micrometrics`` section, so dlt's usual lookup
applies (the most specific key wins; ``sources.<key>`` and ``<key>`` are fallbacks, as for any dlt
source). ``api_key`` and ``api_secret`` are secret-typed (``MicrometricsCredentials``): dlt reads
them only from providers that may hold secrets and leaves their values out of its traces.

``load_settings`` turns the configured values (strings or numbers, as configured) into the frozen,
validated ``Settings``; what is missing or invalid raises a one-line ``ConfigurationError``.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ValueNotSecretException
from dlt.common.configuration.inject import inject_section
from dlt.common.configuration.specs import BaseConfiguration, CredentialsConfiguration
from dlt.common.configuration.specs.base_configuration import NotResolved
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.common.configuration.utils import auto_cast
from dlt.common.typing import TSecretStrValue
from requests import PreparedRequest, RequestException
from urllib3.exceptions import LocationParseError

from .errors import ConfigurationError
from .messages import hint
from .retry import DEFAULT_BACKOFF_SECONDS, DEFAULT_MAX_ATTEMPTS
from .session import MAX_CONNECTIONS
from .timeutil import EARLIEST, format_timestamp, out_of_range, parse_timestamp
from .unknown_settings import warn_unknown
from .windows import WindowSettings

SECTION = "sources.micrometrics"
SECTIONS = tuple(SECTION.split("."))
DEFAULT_START_AT = "2000-01-01T00:00:00+00:00"
# Uploads from devices that were offline arrive up to an hour late: re-read two hours.
DEFAULT_LOOKBACK_MINUTES = 120.0
MIN_LOOKBACK_MINUTES = 15.0
DEFAULT_WINDOW_PAGES = 50
ASSUMED_PAGE_SIZE = 100  # the server chooses; this only sizes windows
# Kiosks offline over a long weekend upload up to three days late: a daily deep pass re-reads
# from three days before the previous one, so a record up to three days late is found whenever
# it arrives between two passes.
DEFAULT_DEEP_LOOKBACK_HOURS = 72.0
DEFAULT_DEEP_EVERY_HOURS = 24.0
# Requests in flight at once (see inflight). Measured against the sandbox (1 request/s, burst
# 10, 1.5 s +-50% latency, 5 surveys, 59 requests): elapsed/floor 1.83 with 1 in flight, 1.26
# with 2, 1.29 with 4, 1.29 with 8; with no latency 4 is as fast as 1. Past 2 the gain is nil
# here (pages of a stream are sequential); 4 leaves room for a slower API or a higher rate.
DEFAULT_MAX_IN_FLIGHT = 4
# A survey with no change for this long is read at least this often, not every sync (above
# quiet.FEW_SURVEYS surveys): 300 mostly quiet surveys then cost under 30 requests an hourly
# sync, and a response in a quiet survey is at most a day late (see quiet.py, README).
DEFAULT_QUIET_SURVEY_HOURS = 24.0
REQUIRED = ("base_url", "api_key", "api_secret")
# Above any sane value of any numeric setting; durations have their own bound (dates must stay
# dates when a window or a deep pass reaches back that far).
MAX_SETTING = 1e9
MAX_DURATION = timedelta(days=100 * 365)
HOUR = timedelta(hours=1)


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
    initial_window: timedelta | None  # None: a stream's first read is one window
    window_pages: int
    allow_insecure_http: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    deep_lookback: timedelta = timedelta(hours=DEFAULT_DEEP_LOOKBACK_HOURS)
    deep_every: timedelta = timedelta(hours=DEFAULT_DEEP_EVERY_HOURS)
    round_pages: int | None = None  # None: by destination (see rounds.round_pages_for)
    quiet_survey: timedelta = timedelta(hours=DEFAULT_QUIET_SURVEY_HOURS)  # 0: read every sync
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

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


def check_base_url(url: str, allow_insecure_http: bool = False) -> str:
    """The base URL without a trailing slash; https, or http only to a loopback host; no user
    name or password (never echoed), query, fragment or invalid port."""
    text = url.strip()
    # Any "@": a password may hold a "/" (https://svc:8443/p@ss@host reads as host svc, port
    # 8443, the password a path), and a tenant's root URL has none.
    if "@" in text:
        # requests would send them as Basic auth, and every message and the state would hold them
        raise ConfigurationError(
            f"base_url must not hold a user name or password; {hint('invalid_setting')}")
    if "?" in text or "#" in text:
        # the client appends paths to base_url: a query or fragment would swallow them
        raise ConfigurationError(
            "base_url must not have a query string (?...) or fragment (#...): give the tenant's "
            f"root URL; {hint('invalid_setting')}")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:  # an unclosed [IPv6 literal
        hostname = None
    # Messages name the scheme and host only: a password with a "/" in it hides from the
    # check above (what follows the "/" reads as the path), and must not be echoed either.
    if not hostname or parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            "base_url is not an http(s) URL such as https://tenant.example.com")
    shown = f"{parts.scheme}://{hostname}"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"base_url {shown!r} has an invalid port (1 to 65535); {hint('invalid_setting')}")
    try:  # as requests will (a space or an empty label in the host), before any request
        PreparedRequest().prepare_url(f"{parts.scheme}://{parts.netloc}/", None)
        if not is_ip(hostname) and "" in hostname.removesuffix(".").split("."):
            raise ValueError(hostname)  # tenant..example.com: refused when sent, unsaid
    except (RequestException, LocationParseError, ValueError, UnicodeError):
        raise ConfigurationError(
            f"base_url {shown!r} has an invalid host name; {hint('invalid_setting')}") from None
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise ConfigurationError(
            f"base_url {shown!r} is plain http to a non-loopback host; {hint('insecure_url')} "
            f"(or set {env_name('allow_insecure_http')}=true to accept signed requests and "
            "data in clear)"
        )
    return text.rstrip("/")


def credential(key: str, value: object) -> str:
    """The key or secret without the whitespace around it (a secret file's trailing newline);
    refused if a control character or space is left: it could not go in a header."""
    text = str(value).strip()
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ConfigurationError(
            f"{key} holds a space, line break or control character; {hint('invalid_setting')}")
    if key == "api_key" and not text.isascii():
        # The key goes in the Authorization header: every request failed to encode. (The
        # secret only keys the HMAC, as UTF-8.)
        raise ConfigurationError(
            f"{key} holds a character that is not ASCII (it is sent in a header); "
            f"{hint('invalid_setting')}")
    return text


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def _flag(key: str, value: object) -> bool:
    """A configured true/false (1/0, yes/no, on/off, any case); unset is false. Anything else is
    refused: "maybe" read as false would hide the mistake."""
    if value is None or value == "":
        return False
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise ConfigurationError(f"{key} must be true or false (or 1/0, yes/no, on/off), got "
                             f"{value!r}; {hint('invalid_setting')}")


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(key: str, value: object, default: float, *, zero_ok: bool) -> float:
    """A configured number, or ``default`` when unset; must be > 0 (>= 0 with ``zero_ok``) and
    at most ``MAX_SETTING`` (nan, inf or 1e400 would fail later, naming no setting)."""
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):  # "true" in the environment: float() would make it 1
            raise TypeError(key)
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not math.isfinite(number) or number > MAX_SETTING:
        raise ConfigurationError(f"{key} must be a finite number up to {MAX_SETTING:g}, got "
                                 f"{value!r}; {hint('invalid_setting')}")
    if number < 0 or (number == 0 and not zero_ok):
        rule = "a number >= 0" if zero_ok else "a positive number"
        raise ConfigurationError(
            f"{key} must be {rule}, got {value!r}; {hint('invalid_setting')}"
        )
    return number


def _positive(key: str, value: object, default: float) -> float:
    return _number(key, value, default, zero_ok=False)


def _non_negative(key: str, value: object, default: float) -> float:
    return _number(key, value, default, zero_ok=True)


def _count(key: str, value: object, default: int) -> int:
    number = _positive(key, value, default)
    if number != int(number):
        raise ConfigurationError(
            f"{key} must be a whole number >= 1, got {value!r}; {hint('invalid_setting')}"
        )
    return int(number)


@configspec
class MicrometricsCredentials(CredentialsConfiguration):
    """The API key and secret, secret-typed.

    dlt reads them only from providers that may hold secrets (environment, ``secrets.toml``,
    vaults; a value in ``config.toml`` is refused) and records no value of theirs in its traces.
    """

    # Not dlt's default "credentials": the keys sit next to base_url, under [sources.micrometrics].
    __section__: ClassVar[str | None] = None

    api_key: TSecretStrValue = None
    api_secret: TSecretStrValue = None

    def __repr__(self) -> str:
        return f"MicrometricsCredentials(api_key={self.api_key!r}, api_secret='***')"

    __str__ = __repr__


@configspec
class MicrometricsConfiguration(BaseConfiguration):
    """What is configured under ``[sources.micrometrics]``, as configured (not yet validated).

    The tunables are typed ``Any`` on purpose: dlt then hands them over unconverted, and
    ``load_settings`` validates them with its own messages.
    """

    base_url: str = None
    # Resolved on its own at the same section (see resolve_micrometrics_configuration): embedded,
    # dlt would look for the keys under [sources.micrometrics.credentials].
    credentials: Annotated[MicrometricsCredentials, NotResolved()] = None
    start_at: Any = None
    lookback_minutes: Any = None
    initial_window_days: Any = None
    window_pages: Any = None
    allow_insecure_http: Any = None
    max_attempts: Any = None
    backoff_seconds: Any = None
    deep_lookback_hours: Any = None
    deep_every_hours: Any = None
    round_pages: Any = None
    quiet_survey_hours: Any = None
    max_in_flight: Any = None

    def __repr__(self) -> str:
        return (f"MicrometricsConfiguration(base_url={self.base_url!r}, "
                f"credentials={self.credentials!r})")

    __str__ = __repr__

    def configured(self, key: str) -> Any:
        """The configured value of ``key``; the credentials' fields included."""
        if key in ("api_key", "api_secret"):
            return getattr(self.credentials, key) if self.credentials is not None else None
        return getattr(self, key)


def _fields(spec: type[BaseConfiguration]) -> set[str]:
    return {k for k in spec.get_resolvable_fields() if k != "credentials"}


def resolve_micrometrics_configuration(**explicit: object) -> MicrometricsConfiguration:
    """Resolve ``[sources.micrometrics]`` from dlt's configuration providers, partially.

    ``explicit`` values that are not None are taken as they are, without a lookup. Nothing is
    validated here and a missing key is left None (``load_settings`` names it).

    Raises:
        ConfigurationError: a secret found in a provider that cannot hold secrets (dlt refuses
            it), named like a missing key.
    """
    given = {k: v for k, v in explicit.items() if v is not None}

    def explicit_for(spec: type[BaseConfiguration]) -> dict[str, object]:
        return {k: v for k, v in given.items() if k in _fields(spec)}

    try:
        credentials = resolve_configuration(
            MicrometricsCredentials(), sections=SECTIONS, accept_partial=True,
            explicit_value=explicit_for(MicrometricsCredentials),
        )
        config = resolve_configuration(
            MicrometricsConfiguration(credentials=credentials), sections=SECTIONS,
            accept_partial=True, explicit_value=explicit_for(MicrometricsConfiguration),
        )
    except ValueNotSecretException as exc:
        key = exc.key.rsplit(".", 1)[-1]
        raise ConfigurationError(
            f"missing configuration: {env_name(key)} ({exc.provider_name} cannot hold secrets); "
            f"{hint('missing_config')}"
        ) from None
    # dlt hands over environment values as text; read them as its ``dlt.config[...]`` does, so
    # that messages quote 5, not '5'. Explicit values stay as given.
    for key in _fields(MicrometricsConfiguration) - {"base_url"} - set(given):
        value = getattr(config, key)
        if isinstance(value, str):
            setattr(config, key, auto_cast(value))
    return config


def refuse_future_start(start_at: datetime, now: datetime, clock: str) -> None:
    """Refuse a ``START_AT`` ahead of ``now`` (read from ``clock``): it read nothing, or failed
    after the requests. Checked where a read's clock is known (``sync()``, the source, the dry
    run), not in ``load_settings``: a library caller may inject a clock of its own.

    Raises:
        ConfigurationError: naming the setting.
    """
    if reason := out_of_range(start_at, now, clock):
        raise ConfigurationError(f"{env_name('start_at')} {reason}; {hint('invalid_start')}")


def load_settings(pipeline_name: str | None = None, **overrides: object) -> Settings:
    """Resolve and validate settings; ``overrides`` (not None) win over configuration. With
    ``pipeline_name``, keys scoped to that pipeline come first, as dlt looks them up for a
    source the pipeline runs (``TENANT_B__SOURCES__MICROMETRICS__API_KEY``): ``sync()`` resolves
    its settings before dlt runs anything, and without the name two tenants' pipelines in one
    environment both took the unscoped keys (one tenant's data loaded into the other's dataset).

    Raises:
        ConfigurationError: naming the key to set, before any request is made.
    """
    if pipeline_name is None:
        config = resolve_micrometrics_configuration(**overrides)
    else:
        with inject_section(ConfigSectionContext(pipeline_name=pipeline_name,
                                                 sections=SECTIONS)):
            config = resolve_micrometrics_configuration(**overrides)
    warn_unknown(_fields(MicrometricsConfiguration) | _fields(MicrometricsCredentials),
                 pipeline_name)
    get = config.configured
    # Blank counts as missing: a secret file holding only a line break would sign every request
    # with an empty secret, and fail as a wrong one would (HTTP 401).
    missing = [k for k in REQUIRED if not str(get(k) or "").strip()]
    if missing:
        names = ", ".join(env_name(k) for k in missing)
        raise ConfigurationError(f"missing configuration: {names}; {hint('missing_config')}")
    insecure = _flag("allow_insecure_http", get("allow_insecure_http"))
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
        raise ConfigurationError(f"start_at: {exc}; {hint('invalid_start')}") from None
    if start_at < EARLIEST:
        # It failed after the requests (year 1: "date value out of range"). A future one is
        # refused by sync(), against its clock (a library caller may inject one).
        raise ConfigurationError(f"start_at must be from 1970-01-01T00:00:00Z, got "
                                 f"{format_timestamp(start_at)}; {hint('invalid_start')}")
    return Settings(
        base_url=check_base_url(str(get("base_url")), insecure),
        api_key=credential("api_key", get("api_key")),
        api_secret=credential("api_secret", get("api_secret")),
        start_at=start_at,
        lookback=_duration("lookback_minutes", timedelta(minutes=1), lookback),
        initial_window=(None if get("initial_window_days") in (None, "") else _duration(
            "initial_window_days", timedelta(days=1),
            _positive("initial_window_days", get("initial_window_days"), 1.0))),
        window_pages=_count("window_pages", get("window_pages"), DEFAULT_WINDOW_PAGES),
        allow_insecure_http=insecure,
        max_attempts=_count("max_attempts", get("max_attempts"), DEFAULT_MAX_ATTEMPTS),
        backoff_seconds=_positive("backoff_seconds", get("backoff_seconds"),
                                  DEFAULT_BACKOFF_SECONDS),
        deep_lookback=_duration("deep_lookback_hours", HOUR, _positive(
            "deep_lookback_hours", get("deep_lookback_hours"), DEFAULT_DEEP_LOOKBACK_HOURS)),
        deep_every=_duration("deep_every_hours", HOUR, _non_negative(
            "deep_every_hours", get("deep_every_hours"), DEFAULT_DEEP_EVERY_HOURS)),
        round_pages=(None if get("round_pages") in (None, "")
                     else _count("round_pages", get("round_pages"), 1)),
        quiet_survey=_duration("quiet_survey_hours", HOUR, _non_negative(
            "quiet_survey_hours", get("quiet_survey_hours"), DEFAULT_QUIET_SURVEY_HOURS)),
        max_in_flight=_at_most("max_in_flight", _count(
            "max_in_flight", get("max_in_flight"), DEFAULT_MAX_IN_FLIGHT), MAX_CONNECTIONS),
    )


def _duration(key: str, unit: timedelta, number: float) -> timedelta:
    """``number`` units as a timedelta, at most ``MAX_DURATION``: a longer one would overflow
    later, in a window's or a deep pass's dates, naming no setting."""
    if number * unit.total_seconds() > MAX_DURATION.total_seconds():
        raise ConfigurationError(f"{key} must be at most {MAX_DURATION.days // 365} years, got "
                                 f"{number:g}; {hint('invalid_setting')}")
    return number * unit


def _at_most(key: str, value: int, limit: int) -> int:
    if value > limit:
        raise ConfigurationError(
            f"{key} must be at most {limit}, got {value}; {hint('invalid_setting')}")
    return value
