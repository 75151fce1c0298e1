"""Where this source's resources keep their state inside the dlt pipeline state, and how a
change of it reaches the destination on its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt

# The source's name (``@dlt.source(name=...)``): its key in the state, and its schema's name.
SOURCE_NAME = "micrometrics"


def resource_states(state: Any) -> dict[str, Any]:
    """``{resource: its state}`` in a pipeline ``state`` (empty before the first extract)."""
    return state.get("sources", {}).get(SOURCE_NAME, {}).get("resources", {})


def source_state(state: Any) -> dict[str, Any]:
    """The source's own part of a pipeline ``state`` to change (created when missing)."""
    return state.setdefault("sources", {}).setdefault(SOURCE_NAME, {})


@contextmanager
def loaded_at_once(pipeline: dlt.Pipeline) -> Iterator[Any]:
    """The pipeline state, changed in the block, then loaded to the destination at once in a
    package of its own (dlt's state travels with a round's data otherwise): for a change that
    a sync killed before its next round, or the next sync on another machine (a fresh runner
    restores the destination's state), must not miss."""
    with pipeline.managed_state(extract_state=True) as state:
        yield state
    pipeline.normalize()
    pipeline.load()
