"""The Micrometrics connector as a library: ``sync(pipeline)`` and the dlt source.

    import dlt
    from pipelines.micrometrics import sync

    pipeline = dlt.pipeline("micrometrics", destination="duckdb", dataset_name="micrometrics")
    report = sync(pipeline)  # checkpointed rounds, exactly what `make sync` does
"""

from .runner import RESOURCES, SyncReport, sync
from .source import micrometrics_source

__all__ = ["RESOURCES", "SyncReport", "micrometrics_source", "sync"]
