"""Runs the Airflow DAG of deploy/airflow in real Airflow, for tests/test_schedules.py.

Started with ``.venv-airflow/bin/python`` (Airflow and this project, built by ``make
test-warehouses``), never imported by the test process: it imports only Airflow and the
standard library (the DAG's task imports the connector). ``AIRFLOW_HOME`` (with a migrated
database) and ``AIRFLOW__CORE__DAGS_FOLDER`` come from the environment.

    python tests/airflow_dag_runner.py plan.json result.json

``plan.json``: ``{"dag_id": ..., "scenarios": [{"name", "env", "conf"}]}``. The DAG folder is
parsed with Airflow's ``DagBag`` (what the DAG processor does); then each scenario sets its
environment (the sandbox's URL and credentials, the destination, ``DLT_DATA_DIR``) and runs the
DAG once with ``dag.test(run_conf=...)``: Airflow's own loop of scheduling, running and retrying
the task in this process. The only change to the DAG: no delay between tries (the retries and
their count are the DAG's). ``result.json`` gets what the DagBag holds and each run's state and
tries; ``=== <scenario>`` lines on stdout delimit each run's log.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

SCENARIO_PREFIXES = ("SOURCES__", "DESTINATION__", "DLT_DATA_DIR")


def describe(bag: Any, dag_id: str) -> dict[str, Any]:
    dag = bag.dags.get(dag_id)
    facts: dict[str, Any] = {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dag_ids),
        # Parsing the file must not import the connector (or dlt): the DAG processor parses it
        # every few seconds.
        "parse_imported": sorted(m for m in ("dlt", "pipelines") if m in sys.modules),
    }
    if dag is None:
        return facts
    tasks = list(dag.tasks)
    facts.update(
        schedule=str(getattr(dag, "schedule", None) or dag.timetable.summary),
        max_active_runs=dag.max_active_runs,
        catchup=dag.catchup,
        params={key: dag.params[key] for key in dag.params},
        tasks=[
            {
                "task_id": task.task_id,
                "operator": type(task).__name__,
                "callable": getattr(getattr(task, "python_callable", None), "__name__", None),
                "retries": task.retries,
                "retry_delay_seconds": task.retry_delay.total_seconds(),
                "retry_exponential_backoff": bool(task.retry_exponential_backoff),
                "execution_timeout_seconds": (task.execution_timeout.total_seconds()
                                              if task.execution_timeout else None),
            }
            for task in tasks
        ],
    )
    return facts


def run_scenario(dag: Any, scenario: dict[str, Any]) -> dict[str, Any]:
    for name in [n for n in os.environ if n.startswith(SCENARIO_PREFIXES)]:
        del os.environ[name]
    os.environ.update(scenario["env"])
    print(f"=== {scenario['name']}", flush=True)
    run = dag.test(run_conf=scenario.get("conf") or {})
    tries = [
        {"task_id": ti.task_id, "state": str(getattr(ti.state, "value", ti.state)),
         "try_number": ti.try_number, "max_tries": ti.max_tries}
        for ti in run.get_task_instances()
    ]
    print(f"=== end {scenario['name']}", flush=True)
    return {"state": str(getattr(run.state, "value", run.state)), "tasks": tries}


def main(plan_path: str, result_path: str) -> None:
    from airflow.models.dagbag import DagBag

    plan = json.loads(Path(plan_path).read_text())
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"], include_examples=False)
    result: dict[str, Any] = {"dagbag": describe(bag, plan["dag_id"]), "runs": {}}
    dag = bag.dags.get(plan["dag_id"])
    if dag is not None:
        for task in dag.tasks:  # tries follow each other at once; their number is the DAG's
            task.retry_delay = timedelta(0)
            task.retry_exponential_backoff = False
        for scenario in plan["scenarios"]:
            result["runs"][scenario["name"]] = run_scenario(dag, scenario)
    Path(result_path).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:3])
