"""Whether a failed sync is worth an automatic retry: ``classify(exc)``.

A scheduler that retries every failure retries a wrong secret or a failed data test three
times, for nothing; one that never retries leaves a 503 burst to the next hour. Retried:

- the API kept failing after the client's own attempts: HTTP 5xx (not 501 or 505), 408, 425,
  429 (another client shares the key's rate limit), no response at all (connection refused or
  dropped, timeouts);
- the API refused its own paging cursor (its hint: run again, completed windows are kept);
- another sync of the pipeline holds the lock (``SyncLockedError``, the command's exit 3);
- a PostgreSQL statement waited ``lock_timeout`` for another session's lock and was cancelled
  (``pipelines.postgres_sessions``): a reader's transaction ends some time;
- another process holds the DuckDB file open (DuckDB's "Could not set lock on file":
  ``make status``, a BI tool, the duckdb CLI), which it lets go of when it is done;
- what dlt marks transient (``TransientException``: a destination connection lost, a load job
  to retry), connection errors and timeouts from any client library, and a PostgreSQL that
  refused or dropped the connection for now (dlt passes psycopg2's error on unwrapped).

Not retried (a retry would fail the same way):

- ``ConfigurationError`` (exit 2), 401 (``AuthenticationError``: key, secret or clock), other
  4xx (404: base_url), 501 and 505, a body that is not the API's JSON (a proxy or login page
  answered), a request this machine could not send (``UnsendableRequestError``);
- a data test failed (``DataTestFailed``, exit 4): the load is good, the data needs a look;
- what dlt marks terminal (``TerminalException``: its configuration errors, missing destination
  credentials, a load job the destination refused), a model that cannot be built;
- ``ValueError`` from ``sync()``'s own argument checks, and anything not listed above.

The connector's own errors decide first, wherever they sit in the chain (``__cause__`` /
``__context__``, walked by ``pipelines.error_chain.causes``) inside dlt's wrappers, as the
command line's ``first_cause`` finds them; then dlt's markers and transport errors; a model
that failed to build is judged by its cause.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import psycopg2
import requests
from dlt.common.exceptions import TerminalException, TransientException

from pipelines.error_chain import causes, one_line
from pipelines.micrometrics.duckdb_session import FILE_LOCKED
from pipelines.micrometrics.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    CursorRejectedError,
    IncompleteBodyError,
    UnexpectedResponseError,
    UnsendableRequestError,
)
from pipelines.micrometrics.retry import is_transient
from pipelines.models import DataTestFailed, ModelsError
from pipelines.postgres_sessions import lock_wait_message
from pipelines.sync.lock import SyncLockedError
from pipelines.sync.terminate import was_interrupted, was_terminated

TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Verdict:
    """What to do about a failed sync.

    Attributes:
        retry: Whether an automatic retry may succeed.
        reason: One line for the scheduler's log: why, and the decisive error's message.
        cause: The exception in the chain that decided.
    """

    retry: bool
    reason: str
    cause: BaseException


def classify(exc: BaseException) -> Verdict:
    """Whether ``exc`` (what ``sync()``, ``scheduled_sync()`` or dlt raised) is worth a retry;
    see the module docstring for the rules."""
    chain = list(causes(exc))
    if was_terminated(exc):  # dlt's own, from inside a step, is a "terminal" exception
        return Verdict(True, "stopped by SIGTERM (a stop or a shutdown); the next run goes on "
                             "from the last checkpoint", exc)
    if was_interrupted(exc):  # dlt's from inside a step too
        return Verdict(True, "interrupted (SIGINT); the next run goes on from the last "
                             "checkpoint", exc)
    for link in chain:
        verdict = ours(link) or file_locked(link) or lock_wait(link)
        if verdict is not None:
            return verdict
    for link in chain:
        if isinstance(link, TransientException):
            return Verdict(True, f"transient destination or dlt error: {one_line(link)}", link)
        if isinstance(link, TerminalException):
            return Verdict(False, f"terminal destination or configuration error: "
                                  f"{one_line(link)}", link)
        if isinstance(link, TRANSPORT_ERRORS):
            return Verdict(True, f"network error: {one_line(link)}", link)
        if database_unreachable(link):
            return Verdict(True, f"the database could not be reached: {one_line(link)}", link)
    models = next((link for link in chain if isinstance(link, ModelsError)), None)
    if models is not None:
        return Verdict(False, f"a model could not be built: {one_line(models)}", models)
    if isinstance(exc, ValueError):
        return Verdict(False, f"bad arguments: {one_line(exc)}", exc)
    return Verdict(False, f"unexpected error, not retried: {type(exc).__name__}: "
                          f"{one_line(exc)}", exc)


# A PostgreSQL that answered a connection with FATAL but may serve later (psycopg2 gives no
# SQLSTATE at connect time, only the server's message).
BUSY_SERVER = ("too many clients", "remaining connection slots", "starting up", "shutting down",
               "in recovery", "accepting connections")


def database_unreachable(exc: BaseException) -> bool:
    """A PostgreSQL connection that failed or was refused for now: dlt 1.31 passes psycopg2's
    ``OperationalError`` on as it is, not as a transient error. A server that answered FATAL for
    another reason (a database that does not exist, a wrong password) refuses a retry too."""
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    message = str(exc)
    return "FATAL:" not in message or any(reason in message for reason in BUSY_SERVER)




def file_locked(exc: BaseException) -> Verdict | None:
    """Another process holds the DuckDB file open: the verdict, else None. Retried as another
    sync holding the lock is (``SyncLockedError``); DuckDB's message names the process."""
    if isinstance(exc, duckdb.IOException) and any(m in str(exc) for m in FILE_LOCKED):
        return Verdict(True, f"another process has the DuckDB file open (retried once it closes "
                             f"it): {one_line(exc)}", exc)
    return None


def lock_wait(exc: BaseException) -> Verdict | None:
    """PostgreSQL cancelled a statement that waited ``lock_timeout`` for a lock another
    session holds (a reader's open transaction): the verdict, else None. Retried: the session
    ends some time, and the pending load goes first."""
    message = lock_wait_message(exc)
    return None if message is None else Verdict(True, message, exc)


def ours(exc: BaseException) -> Verdict | None:
    """The verdict on one of the connector's own errors, or None for any other exception."""
    if isinstance(exc, SyncLockedError):
        return Verdict(True, f"another sync is running: {one_line(exc)}", exc)
    if isinstance(exc, DataTestFailed):
        return Verdict(False, f"loaded, but a data test failed: {one_line(exc)}", exc)
    if isinstance(exc, ConfigurationError):
        return Verdict(False, f"configuration error: {one_line(exc)}", exc)
    if isinstance(exc, AuthenticationError | UnexpectedResponseError | UnsendableRequestError):
        return Verdict(False, f"the API refused or answered wrongly: {one_line(exc)}", exc)
    if isinstance(exc, CursorRejectedError):
        return Verdict(True, f"the API refused its own cursor: {one_line(exc)}", exc)
    if isinstance(exc, IncompleteBodyError):
        return Verdict(True, f"the API kept failing: {one_line(exc)}", exc)
    if isinstance(exc, ApiError):
        if exc.status is None:
            return Verdict(True, f"no response from the API: {one_line(exc)}", exc)
        # The statuses the session retries, and 429s it waited out: what is left is an outage
        # or a busy key, which an hour (or a retry delay) may fix.
        if is_transient(exc.status) or exc.status == 429:
            return Verdict(True, f"the API kept failing: {one_line(exc)}", exc)
        return Verdict(False, f"the API refused the request: {one_line(exc)}", exc)
    return None
