"""Run the sync command as a user does, configured through the environment.

``run_cli`` calls ``pipelines.sync.cli.main(argv)`` in this process, seeing what a real process
would see (exactly that environment, the same working directory and ``.dlt/`` config, its own
stdout and stderr) and leaving nothing behind: the fast default. ``run_sync`` and ``start_sync``
start a real ``python -m pipelines.sync``, for what only a process boundary shows (SIGKILL, two
processes on one lock, what leaves the process).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from dlt.common.configuration.container import Container
from dlt.common.configuration.specs import PluggableRunContext
from dlt.common.pipeline import PipelineContext

from pipelines.sync.cli import main
from tests.conftest import KEY, SECRET

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "pipelines.sync"]


def sync_env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update(
        SOURCES__MICROMETRICS__BASE_URL=base_url,
        SOURCES__MICROMETRICS__API_KEY=KEY,
        SOURCES__MICROMETRICS__API_SECRET=SECRET,
        DESTINATION__DUCKDB__CREDENTIALS=str(tmp_path / "warehouse.duckdb"),
        DLT_DATA_DIR=str(tmp_path / "dlt"),
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    env.update(extra)
    return env


def start_sync(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMAND, *args],
        cwd=tmp_cwd(env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def kill_now(process: subprocess.Popen) -> None:
    """SIGKILL a sync that must still be running (no clean-up, as ``kill -9``), and reap it."""
    assert process.poll() is None, "the sync finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def tmp_cwd(env: dict[str, str]) -> str:
    # Run from the data dir so no project .dlt/ config leaks in; the package comes via PYTHONPATH.
    env["PYTHONPATH"] = str(ROOT)
    return str(Path(env["DLT_DATA_DIR"]).parent)


def run_sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The command in a real process."""
    process = start_sync(env, *args)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run_cli(env: dict[str, str], *args: str, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """The sync command in this process (see ``run_in_process``)."""
    return run_in_process(main, COMMAND, env, *args, cwd=cwd)


def run_in_process(command_main: Callable[[list[str]], int], command: Sequence[str],
                   env: dict[str, str], *args: str, cwd: Path | None = None
                   ) -> subprocess.CompletedProcess:
    """A command's ``main`` in this process, with ``run_sync``'s environment, working
    directory (or ``cwd``), result and exit status (argparse's ``SystemExit`` included; an
    exception that escapes ``main`` is a traceback on stderr and status 1, as in a process)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with as_a_process(env, stderr, cwd), contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            code = command_main(list(args))
        except SystemExit as exc:
            code = exit_status(exc.code)
        except Exception:  # noqa: BLE001 - what the interpreter would do with it
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess([*command, *args], code, stdout.getvalue(),
                                       stderr.getvalue())


def run_module(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` in this process: the package's ``__main__`` run by ``runpy``
    with that ``sys.argv``, as ``run_in_process`` runs a ``main``."""
    def module_main(argv: list[str]) -> int:
        saved = sys.argv
        sys.argv = [module, *argv]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        finally:
            sys.argv = saved
        return 0  # __main__ ends in SystemExit(main()), which run_in_process turns into a code

    return run_in_process(module_main, [sys.executable, "-m", module], env, *args)


def exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def as_a_process(env: dict[str, str], stderr: io.StringIO, cwd: Path | None = None
                 ) -> Iterator[None]:
    """Exactly ``env`` as the environment, ``run_sync``'s working directory (or ``cwd``) with
    dlt's config providers rebuilt for it (they read ``.dlt/`` of the working directory when
    built), dlt's log handler writing to ``stderr``; all of it, logging and the active dlt
    pipeline as they were afterwards."""
    cwd = str(cwd) if cwd else tmp_cwd(dict(env))
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root, ours, dlt_logger = (logging.getLogger(), logging.getLogger("micrometrics"),
                              logging.getLogger("dlt"))
    saved_root = (root.handlers[:], root.level)
    saved_levels = (ours.level, dlt_logger.level)
    dlt_streams = {h: h.stream for h in dlt_logger.handlers if isinstance(h, logging.StreamHandler)}
    pipelines = Container()[PipelineContext]
    active = pipelines.pipeline() if pipelines.is_active() else None
    run_context = Container()[PluggableRunContext]
    try:
        replace_environ(env)
        os.chdir(cwd)
        run_context.reload_providers()
        for handler in dlt_streams:
            handler.setStream(stderr)
        yield
    finally:
        # main() replaced the root handlers (basicConfig(force=True)) and dlt may have made its
        # handler while sys.stderr was the capture.
        for handler in root.handlers:
            if handler not in saved_root[0]:
                handler.close()
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        ours.setLevel(saved_levels[0])
        dlt_logger.setLevel(saved_levels[1])
        for handler in dlt_logger.handlers:
            if handler in dlt_streams:
                handler.setStream(dlt_streams[handler])
            elif isinstance(handler, logging.StreamHandler) and handler.stream is stderr:
                handler.setStream(sys.stderr)
        if active is None:
            pipelines.deactivate()
        elif not pipelines.is_active() or pipelines.pipeline() is not active:
            pipelines.activate(active)
        replace_environ(saved_env)
        os.chdir(saved_cwd)
        run_context.reload_providers()


def replace_environ(env: dict[str, str]) -> None:
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
