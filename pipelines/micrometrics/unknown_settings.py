"""Keys under ``sources.micrometrics`` that are no setting of the connector: a typo's value
(``DEEP_LOOKBACK_HOUR=168``) was dropped without a word, and the default stood in for it.

dlt looks up only the keys a configspec names, so nothing else tells. Warned, not refused: a
key dlt itself reads there one day, or a setting of a newer version of the connector, must not
stop a sync.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from dlt.common.configuration.container import Container
from dlt.common.configuration.specs import PluggableRunContext

log = logging.getLogger("micrometrics")

SECTION = "SOURCES__MICROMETRICS__"
_warned: set[str] = set()  # once a process: the settings are resolved more than once a sync


def warn_unknown(known: Iterable[str], pipeline_name: str | None) -> None:
    """Logs a warning for each configured key that is not in ``known`` (lower-case names)."""
    known = sorted(known)
    for shown, name in unknown_keys(set(known), pipeline_name):
        guess = difflib.get_close_matches(name, known, n=1)
        if guess and shown.endswith(name.upper()):  # a variable: the guess written as one
            guess = [shown[:-len(name)] + guess[0].upper()]
        message = (f"warning: {shown} is not a setting of this connector and is ignored"
                   + (f" (did you mean {guess[0]}?)" if guess else ""))
        if message not in _warned:
            _warned.add(message)
            log.warning(message)


def unknown_keys(known: set[str], pipeline_name: str | None) -> Iterator[tuple[str, str]]:
    """(how the key is written, its setting name) of each unknown key: environment variables,
    unscoped or scoped to a pipeline, then keys in the TOML files."""
    scoped = re.compile(rf"^(?:\w+__)?{SECTION}(\w+)$")
    for variable in sorted(os.environ):
        matched = scoped.match(variable)
        if matched and matched.group(1).lower() not in known:
            yield variable, matched.group(1).lower()
    for provider in Container()[PluggableRunContext].providers.providers:
        if not hasattr(provider, "to_toml"):  # the environment, done above; vaults list nothing
            continue
        for scope in dict.fromkeys((None, pipeline_name)):
            table = _table(provider, scope)
            for key in table:
                if str(key).lower() not in known:
                    where = f"[{scope}.sources.micrometrics]" if scope else "[sources.micrometrics]"
                    yield f"{key} under {where} in {provider.name}", str(key).lower()


def _table(provider: Any, scope: str | None) -> list[str]:
    try:
        value, _ = provider.get_value("micrometrics", Any, scope, "sources")
    except Exception:  # noqa: BLE001 - a provider that cannot answer names no keys
        return []
    return list(value) if isinstance(value, dict) else []
