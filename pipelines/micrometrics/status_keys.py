"""Where the sync command's status record sits in the dlt pipeline state (``pipelines.status``
writes it; the sync itself marks a full refresh under way, so that status and the report stop
vouching for the last success as soon as the refresh's first round has dropped the tables)."""

STATUS_KEY = "micrometrics_status"  # top-level key of the dlt pipeline state
# A --full-refresh started (or failed) since the last successful complete sync.
REFRESH_FAILED = "full_refresh_failed_at"
