"""What a scheduler needs around the sync: ``scheduled_sync`` (what ``make sync`` does, as one
call, for an Airflow task or any Python scheduler) and ``classify`` (whether a failure is worth
an automatic retry). The schedules themselves are in ``deploy/``: a crontab line, a GitHub
Actions workflow, an Airflow DAG."""

from .retry_causes import Verdict, classify
from .task import scheduled_sync

__all__ = ["Verdict", "classify", "scheduled_sync"]
