"""Sync Micrometrics into DuckDB from a plain Python script (see "Use it from Python").

Configuration comes from dlt as usual: SOURCES__MICROMETRICS__BASE_URL / API_KEY / API_SECRET
in the environment or .dlt/secrets.toml. The DuckDB file is named here: dlt's default,
<pipeline_name>.duckdb, would be micrometrics.duckdb, named like the dataset, which DuckDB
cannot tell apart from it (sync() refuses it).
"""

import logging

import dlt

from pipelines.micrometrics import sync

# The sync's progress lines (a line per window, warnings) go to the "micrometrics" logger.
logging.basicConfig(level=logging.INFO, format="%(message)s")

pipeline = dlt.pipeline(
    pipeline_name="micrometrics", dataset_name="micrometrics",
    destination=dlt.destinations.duckdb("warehouse.duckdb"),
)
report = sync(pipeline)  # checkpointed rounds: a crash loses at most the round in flight
print(f"{report.rounds} rounds, {report.client_stats['requests']} requests, "
      f"rows loaded: {report.loaded_rows}")
