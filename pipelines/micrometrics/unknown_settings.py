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
        nearest = _nearest(shown, name, known)
        message = (f"warning: {shown} is not a setting of this connector and is ignored"
                   + (f" (did you mean {nearest}?)" if nearest else ""))
        if message not in _warned:
            _warned.add(message)
            log.warning(message)


def _nearest(shown: str, name: str, known: list[str]) -> str | None:
    """The setting ``shown`` was probably meant to be, written as ``shown`` is."""
    if name.startswith("credentials"):  # dlt's usual place; the key and secret sit next to base_url
        return (shown.replace("CREDENTIALS__", "") if "__" in shown
                else "api_key and api_secret right under [sources.micrometrics]")
    guess = difflib.get_close_matches(name, known, n=1)
    if not guess:
        return None
    return shown[:-len(name)] + guess[0].upper() if shown.endswith(name.upper()) else guess[0]


def unknown_keys(known: set[str], pipeline_name: str | None) -> Iterator[tuple[str, str]]:
    """(how the key is written, its setting name) of each unknown key: environment variables,
    unscoped or scoped to this pipeline, then keys in the TOML files. A section below
    (``DATA_WRITER__FILE_MAX_ITEMS``, ``[sources.micrometrics.survey_responses]``) is dlt's to
    read, and another pipeline's scope is that pipeline's: neither is judged."""
    ours = f"(?:{re.escape(pipeline_name.upper())}__)?" if pipeline_name else ""
    scoped = re.compile(rf"^{ours}{SECTION}([A-Z0-9_]+)$")
    for variable in sorted(os.environ):
        matched = scoped.match(variable)
        name = matched.group(1).lower() if matched else ""
        if name.startswith("credentials__"):  # dlt's usual place, not read here
            yield variable, name
        elif matched and "__" not in name and name not in known:
            yield variable, name
    for provider in Container()[PluggableRunContext].providers.providers:
        if not hasattr(provider, "to_toml"):  # the environment, done above; vaults list nothing
            continue
        for scope in dict.fromkeys((None, pipeline_name)):
            for key, value in _table(provider, scope):
                if str(key).lower() == "credentials" or (
                        not isinstance(value, dict) and str(key).lower() not in known):
                    where = f"[{scope}.sources.micrometrics]" if scope else "[sources.micrometrics]"
                    yield f"{key} under {where} in {provider.name}", str(key).lower()


def _table(provider: Any, scope: str | None) -> list[tuple[Any, Any]]:
    try:
        value, _ = provider.get_value("micrometrics", Any, scope, "sources")
    except Exception:  # noqa: BLE001 - a provider that cannot answer names no keys
        return []
    return list(value.items()) if isinstance(value, dict) else []
