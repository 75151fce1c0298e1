"""One sync at a time per pipeline: an OS file lock, released by the kernel if the holder dies."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pipelines.micrometrics.errors import MicrometricsError
from pipelines.micrometrics.messages import hint
from pipelines.micrometrics.timeutil import duration, format_timestamp


class SyncLockedError(MicrometricsError):
    """Another sync of the same pipeline holds the lock."""


class Holder(NamedTuple):
    """The sync holding the lock: its pid (as it wrote it), and when it took the lock (the
    lock file's change time, when it wrote its pid)."""

    pid: str
    started_at: datetime

    def describe(self, now: datetime | None = None) -> str:
        # How long it has held the lock tells a sync at work from one that hangs (a process
        # stopped, a mount that no longer answers): cron's next syncs only say "running".
        started = format_timestamp(self.started_at)
        age = duration((now or datetime.now(UTC)) - self.started_at)
        return f"pid {self.pid}, started {started} ({age} ago)"


def holder_of(handle: Any) -> Holder:
    """Who holds the lock ``handle`` is open on (read without taking it)."""
    handle.seek(0)
    started = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
    return Holder(handle.read().strip() or "unknown", started)


@contextmanager
def sync_lock(pipelines_dir: str, pipeline_name: str) -> Iterator[Path]:
    """Hold ``<pipelines_dir>/<name>.sync.lock`` for the duration, or fail at once.

    flock (not a pid file) so that a sync killed with SIGKILL never leaves a stale lock.

    Raises:
        SyncLockedError: naming the holder's pid, when another sync runs.
    """
    path = lock_path(pipelines_dir, pipeline_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            take(handle)
        except BlockingIOError:
            raise SyncLockedError(
                f"another sync of pipeline {pipeline_name!r} is running "
                f"({holder_of(handle).describe()}, lock {path}); {hint('locked')}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_path(pipelines_dir: str, pipeline_name: str) -> Path:
    return Path(pipelines_dir) / f"{pipeline_name}.sync.lock"


def lock_holder(pipelines_dir: str, pipeline_name: str) -> Holder | None:
    """The sync holding the lock, or None. (A shared lock for an instant: a sync starting in
    that instant tries again, ``take``.)"""
    try:
        with open(lock_path(pipelines_dir, pipeline_name)) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return holder_of(handle)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


# ``status`` takes the lock shared for an instant to see whether a sync runs: a sync starting
# in that instant tries again for this long before it reports another one running.
RETRIES, RETRY_SECONDS = 10, 0.01
pause = time.sleep  # between two tries (tests replace it)


def take(handle: Any) -> None:
    """The lock, exclusive; raises BlockingIOError when held beyond ``RETRIES`` tries."""
    for _ in range(RETRIES - 1):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pause(RETRY_SECONDS)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
