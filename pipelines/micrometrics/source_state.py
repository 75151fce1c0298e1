"""Where this source's resources keep their state inside the dlt pipeline state."""

from __future__ import annotations

from typing import Any


def resource_states(state: Any) -> dict[str, Any]:
    """``{resource: its state}`` in a pipeline ``state`` (empty before the first extract)."""
    return state.get("sources", {}).get("micrometrics", {}).get("resources", {})
