"""``python -m pipelines.sync``: the scheduled sync of the Micrometrics source."""

from .cli import main

__all__ = ["main"]
