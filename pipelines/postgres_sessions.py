"""PostgreSQL sessions that give up waiting for a lock instead of hanging for ever.

A table's new column (a field the API started sending, a variant column) makes dlt run
``ALTER TABLE ... ADD COLUMN``, which needs the table to itself: it waited for any reader's
open transaction (a notebook that read a table and stayed idle, a BI tool's session), without
end, and every later read of that table, dashboards' included, queued behind it. Dropping a
table (a ``--full-refresh``, a lost table's schema) waits in the same way.

So every session of the connector's own PostgreSQL destination (``open_pipeline``: the sync,
the models, status, report) starts with ``lock_timeout``: a wait longer than
``LOCK_TIMEOUT`` fails the statement; the load's package stays pending and the next sync
loads it first, nothing lost. A ``lock_timeout`` in the connection's own ``options``
(``?options=-c%20lock_timeout%3D5min``) wins; one set for the role or the database
(``ALTER ROLE ... SET lock_timeout``) does not: a startup option comes before those. It is
a startup option because dlt opens its connections itself, passing its own ``options`` to
libpq, so ``PGOPTIONS`` does not reach them; dlt passes the credentials' ``options`` on first.
"""

from __future__ import annotations

import re
from typing import Any

import dlt
import psycopg2.errors

from pipelines.connection_strings import refuse_unencoded_userinfo
from pipelines.error_chain import causes
from pipelines.micrometrics.messages import hint

# Long enough for a reader's ordinary query to end (readers that arrive meanwhile queue
# behind the waiting statement); short enough that a session idle in a transaction blocks
# dashboards for a minute, not for the rest of the day.
LOCK_TIMEOUT = "60s"
# The setting in libpq's options: -c lock_timeout=..., -clock_timeout=..., --lock-timeout=...,
# in any case, with "_" or "-" (as PostgreSQL reads them); not deadlock_timeout.
OWN_LOCK_TIMEOUT = re.compile(r"(?:^|\s)(?:-c\s*|--)lock[-_]timeout\s*=", re.IGNORECASE)


class postgres(dlt.destinations.postgres):  # noqa: N801 - named as dlt's destinations are
    """dlt's PostgreSQL destination, its sessions started with ``LOCK_TIMEOUT`` unless the
    credentials' ``options`` set a ``lock_timeout`` of their own."""

    @property
    def destination_type(self) -> str:
        # dlt's own type: the pipeline's state, schemas and checks see no other destination.
        return "dlt.destinations.postgres"

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        config = super().configuration(initial_config, accept_partial=accept_partial)
        credentials = getattr(config, "credentials", None)
        if credentials is not None:
            refuse_unencoded_userinfo(credentials, "DESTINATION__POSTGRES__CREDENTIALS")
            query = dict(credentials.query or {})
            options = str(query.get("options") or "")
            if not OWN_LOCK_TIMEOUT.search(options):
                query["options"] = f"{options} -clock_timeout={LOCK_TIMEOUT}".strip()
                credentials.query = query
        return config


def lock_wait_message(exc: BaseException) -> str | None:
    """The one line for a statement PostgreSQL cancelled after waiting ``lock_timeout`` for a
    lock (``exc`` being psycopg2's ``LockNotAvailable``); None for any other error."""
    if not isinstance(exc, psycopg2.errors.LockNotAvailable):
        return None
    statement = " ".join(str(exc).split())
    return (f"PostgreSQL gave up waiting for a lock ({statement}): another session holds one "
            f"of the dataset's tables; {hint('lock_timeout')}")


def lock_wait_in(exc: BaseException) -> str | None:
    """``lock_wait_message`` for the first lock wait in ``exc``'s chain of causes (a model's
    build or a report's query wraps it as their own error); None if there is none."""
    return next(filter(None, map(lock_wait_message, causes(exc))), None)
