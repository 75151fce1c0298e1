"""Airflow DAG ``micrometrics_sync``: the Micrometrics sync every hour, one run at a time,
retried only when a retry can help.

One task calls the library (not a subprocess): ``pipelines.schedules.scheduled_sync`` runs
the very code of ``make sync`` (``pipelines.sync.run.run_sync``: settings, the pipeline's sync
lock, ``sync()``, the SQL models and their data tests) and returns the summary
``make sync ARGS=--json`` prints, as a dict that lands in XCom. A failure is judged
by ``pipelines.schedules.classify``: a transient cause (the API's 5xx/429 outlasting the
client's own retries, no response, a dropped destination connection, another sync holding the
lock) raises ``AirflowException`` and Airflow retries it; a configuration error, a refused key,
a failed data test (the load itself is good) or anything unexpected raises
``AirflowFailException``: failed at once, no retry.

Install: the project into the Airflow environment (``pip install -e /path/to/micrometrics``;
tested with ``apache-airflow==3.1.8`` on Python 3.11, see ``requirements.txt`` here, and the DAG
also imports on Airflow 2.4+), then copy this file into the dags folder. Configure dlt as for the
command line, on every worker: ``SOURCES__MICROMETRICS__BASE_URL``/``API_KEY``/``API_SECRET``
and ``DESTINATION__<NAME>__CREDENTIALS`` in the environment, or the content of a
``secrets.toml`` in the Airflow Variable ``dlt_secrets_toml`` (dlt reads it inside Airflow).
The destination and dataset are DAG params (trigger with a config to change them).

Only Airflow is imported when the DAG file is parsed; the connector (and dlt) when the task runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.4+
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.python import PythonOperator
from airflow.exceptions import AirflowException, AirflowFailException

DAG_ID = "micrometrics_sync"
SCHEDULE = "7 * * * *"  # hourly, off the top of the hour
DESTINATIONS = ["postgres", "snowflake", "bigquery", "duckdb"]


def sync_micrometrics(params: dict[str, Any] | None = None, **_context: Any) -> dict[str, Any]:
    """The task: one sync and the models; Airflow's exceptions say whether to retry."""
    from pipelines.schedules import classify, scheduled_sync

    params = params or {}
    try:
        return scheduled_sync(params.get("destination", "postgres"),
                              params.get("dataset", "micrometrics"))
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none is swallowed
        verdict = classify(exc)
        if verdict.retry:
            raise AirflowException(f"retryable: {verdict.reason}") from exc
        raise AirflowFailException(f"not retried: {verdict.reason}") from exc


with DAG(
    dag_id=DAG_ID,
    description="Micrometrics devices, surveys and responses into the warehouse, then models",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    # The sync reads from its own high-water mark, whatever the interval: a run for every
    # missed hour would only repeat the latest one.
    catchup=False,
    # Two runs at once would only wait on each other's lock; a long first backfill delays the
    # next hour's run instead of stacking runs behind it.
    max_active_runs=1,
    params={
        # DuckDB only where every worker sees the same disk (one worker, LocalExecutor), at
        # an absolute DESTINATION__DUCKDB__CREDENTIALS: a relative path is read from the
        # task's working directory, which Airflow picks.
        "destination": Param("postgres", type="string", enum=DESTINATIONS),
        "dataset": Param("micrometrics", type="string"),
    },
    default_args={
        # Only what classify() calls transient reaches these: AirflowFailException fails at once.
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        # A first backfill can take hours (1 request/s); killed here, the next try resumes
        # from its last checkpointed round.
        "execution_timeout": timedelta(hours=4),
    },
    tags=["micrometrics", "dlt"],
    doc_md=__doc__,
) as dag:
    PythonOperator(task_id="sync", python_callable=sync_micrometrics)
