"""Sync Micrometrics into DuckDB from a plain Python script (see "Use it from Python").

Configuration comes from dlt as usual: SOURCES__MICROMETRICS__BASE_URL / API_KEY / API_SECRET
in the environment or .dlt/secrets.toml; DESTINATION__DUCKDB__CREDENTIALS for the file.
"""

import dlt

from pipelines.micrometrics import sync

pipeline = dlt.pipeline(
    pipeline_name="micrometrics", destination="duckdb", dataset_name="micrometrics"
)
report = sync(pipeline)  # checkpointed rounds: a crash loses at most the round in flight
print(f"{report.rounds} rounds, {report.client_stats['requests']} requests, "
      f"rows loaded: {report.loaded_rows}")
