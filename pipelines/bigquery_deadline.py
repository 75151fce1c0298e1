"""BigQuery statements that give up after dlt's ``retry_deadline``, as dlt means them to.

dlt's BigQuery SQL client patches the client's ``query`` to retry for ``retry_deadline``
(``DESTINATION__BIGQUERY__RETRY_DEADLINE``, 60 s by default), but every statement dlt runs goes
through google-cloud-bigquery's DB-API cursor, which calls ``query_and_wait``, unpatched. Its
defaults retry a call for 10 minutes and run the query's job again for up to 40: with Google
out of reach (a proxy down, no route), status, the models and the report said nothing for
over 10 minutes, and a sync failed as late. Here ``query_and_wait`` gets dlt's deadline, for
its calls and for running the job again, so an unreachable BigQuery fails in about a minute
(raise ``RETRY_DEADLINE`` to wait longer). Loads are dlt's own load jobs, with their own
retry: unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

import dlt


class bigquery(dlt.destinations.bigquery):  # noqa: N801 - named as dlt's destinations are
    """dlt's BigQuery destination, its statements bounded by ``retry_deadline``."""

    @property
    def destination_type(self) -> str:
        # dlt's own type: the pipeline's state, schemas and checks see no other destination.
        return "dlt.destinations.bigquery"

    @property
    def client_class(self) -> Any:
        return _deadline_client_class()


@functools.cache
def _deadline_client_class() -> Any:
    # Google's client comes with the warehouses extra only: imported once BigQuery is used.
    from dlt.destinations.impl.bigquery.bigquery import BigQueryClient

    class DeadlineBigQueryClient(BigQueryClient):
        """dlt's client; each connection its SQL client opens gets ``bound_query_and_wait``."""

        def __init__(self, schema: Any, config: Any, capabilities: Any) -> None:
            super().__init__(schema, config, capabilities)
            # dlt builds its SQL client in this constructor: the connection it opens is wrapped
            # here rather than the constructor copied.
            opens = self.sql_client.open_connection

            def open_connection() -> Any:
                client = opens()
                bound_query_and_wait(client, config.retry_deadline)
                return client

            self.sql_client.open_connection = open_connection  # type: ignore[method-assign]

    return DeadlineBigQueryClient


def bound_query_and_wait(client: Any, deadline: float) -> None:
    """``client.query_and_wait`` retrying its calls, and its job, for ``deadline`` seconds at
    most, unless the caller passes retries of its own."""
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

    unbounded = client.query_and_wait
    calls, job = DEFAULT_RETRY.with_timeout(deadline), DEFAULT_JOB_RETRY.with_timeout(deadline)

    def query_and_wait(query: str, *, retry: Any = calls, job_retry: Any = job,
                       **kwargs: Any) -> Any:
        return unbounded(query, retry=retry, job_retry=job_retry, **kwargs)

    client.query_and_wait = query_and_wait
