"""An exception's chain of causes, for code of any layer that judges a failure by its cause
(the sync's exit statuses, the scheduler's retries, the models' fallback), the dlt errors
that mean bad configuration, and an error's message on one line."""

from __future__ import annotations

from collections.abc import Iterator

from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigProviderException,
    InvalidNativeValue,
    LookupTrace,
    LookupTraces,
)
from dlt.common.destination.exceptions import UnknownDestinationModule

# What the destination's configuration lacks or misnames (an unknown --destination, missing or
# malformed credentials), or a config file dlt cannot read (a TOML syntax error): bad
# configuration, exit 2, not a failed or unreachable destination.
CONFIG_ERRORS = (ConfigFieldMissingException, UnknownDestinationModule, InvalidNativeValue,
                 ConfigProviderException)


def causes(exc: BaseException, *, implicit: bool = True) -> Iterator[BaseException]:
    """``exc``, then what caused it, outermost first: ``__cause__``, else (``implicit``)
    ``__context__``. Stops at a loop."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (link.__context__ if implicit else None)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message with whitespace folded (dlt's span many lines: a TOML error names the
    line and column on its second), at most ``limit`` characters (then ``...``)."""
    text = missing_settings(exc) or " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def missing_settings(exc: BaseException) -> str | None:
    """dlt's missing configuration, as the fields and the environment variables that set them:
    its own text lists every key it tried, and the field missing (a password left out of a
    connection string) came after 500 characters of them."""
    if not isinstance(exc, ConfigFieldMissingException):
        return None
    missing = []
    for field, traces in exc.traces.items():
        forms = [trace for trace in traces if isinstance(trace, LookupTraces)]
        if not forms:
            missing.append(f"{field} (set {variable(traces)})")
            continue
        # The form begun (BigQuery's credentials are a service account's or OAuth's): the one
        # with the most fields set; each, when as many.
        most = max(len(form.resolved_fields_set) for form in forms)
        begun = [form for form in forms if len(form.resolved_fields_set) == most]
        if not most:  # none: the value as a whole (a connection string), or its fields
            whole = variable(next(iter(forms[0].traces.values()), [])).rpartition("__")[0]
            fields = "" if len(forms) > 1 else f": {', '.join(forms[0].traces)}"
            missing.append(f"{field} (set {whole}, or its fields {whole}__<FIELD>{fields})")
            continue
        missing.append(" or ".join(
            ", ".join(f"{field}.{inner} (set {variable(inner_traces)})"
                      for inner, inner_traces in form.traces.items())
            + (f" for {form.spec_name}" if len(begun) > 1 else "")
            for form in begun))
    return (f"missing configuration: {'; '.join(missing)}; or the same keys in "
            f".dlt/secrets.toml")


def variable(traces: list) -> str:
    """The first environment variable dlt looked for a field under outside the pipeline's own
    section (``MICROMETRICS__...``, which few set)."""
    names = [trace.key for trace in traces if isinstance(trace, LookupTrace)
             and trace.provider == "Environment Variables"]
    plain = [name for name in names if not name.startswith("MICROMETRICS__")]
    return (plain or names or ["?"])[0]
