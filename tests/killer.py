"""Run the sync and SIGKILL (or SIGTERM) it at an exact point inside one phase (tests only).

    python -m tests.killer --phase load --after 2 --marker kill.json -- --quiet --no-models

One internal of dlt (or of the sync) is wrapped so that its N-th call writes a marker file and
then sends SIGKILL to its own process: no ``finally``, no ``atexit``, no flush, as ``kill -9``
or the OOM killer would. The marker (JSON) names the phase, the dlt step that was running, what
the wrapped call was doing and the load packages on disk at that instant, so a test can check
the kill landed where it says. Everything after ``--`` is passed to ``pipelines.sync.cli.main``;
``--script FILE`` runs a Python file instead (a user's script calling ``sync()``).

Phases, with what the N-th call is:

- ``extract``: a page the client has just read (in ``pipeline.extract``; the records of the
  step's earlier pages are in the open, uncommitted extract package).
- ``extract-commit``: the extract just committed its package (data and the state it
  advanced), before the pipeline saved that state locally.
- ``normalize``: the normalize worker returning (normalized files written in ``load/new``,
  the package not committed).
- ``normalize-workers``: the sync waiting for its normalize worker processes (dlt polls them),
  which are normalizing; the marker lists their pids.
- ``normalize-commit``: the normalized package just moved to ``load/normalized``, its
  extracted copy not deleted yet (dlt's own two-step commit).
- ``load``: a load job (a file copied into the staging dataset, or a merge) about to run in
  the destination; the package's earlier jobs are committed there.
- ``load-commit``: a load job the destination has just committed, before dlt records it.
- ``rounds``: the sync starting a round (N >= 2: the round before is loaded, the next not
  extracted yet).
- ``schema``: dlt rebuilding a schema it keeps live (its tables cleared, not yet filled again);
  the detail says whether that is inside ``set_live_schema`` and whether the sync's own stop
  handler (not dlt's, inside its normalize and load) is the one a signal would reach.

``--match REGEX`` counts only the calls whose description (the marker's detail: page path,
load id, job file name) matches, e.g. ``'"job": "survey_responses\\.\\w+\\.\\d+\\.sql"'`` for
the responses' merge job.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dlt

PHASES = ("extract", "extract-commit", "normalize", "normalize-workers", "normalize-commit",
          "load", "load-commit", "rounds", "schema")

_steps: list[str] = []  # dlt steps in progress: extract, normalize, load
_pages_in_step = [0]
_lock = threading.Lock()


def track_steps() -> None:
    """Remember which of ``pipeline.extract/normalize/load`` is running (``run`` calls them)."""
    for name in ("extract", "normalize", "load"):
        original = getattr(dlt.Pipeline, name)

        @functools.wraps(original)
        def step(self, *args, __original=original, __name=name, **kwargs):
            _steps.append(__name)
            _pages_in_step[0] = 0
            try:
                return __original(self, *args, **kwargs)
            finally:
                _steps.pop()

        setattr(dlt.Pipeline, name, step)


def die(marker: Path, phase: str, call: int, detail: dict[str, Any]) -> None:
    from pipelines.micrometrics.pending import package_states

    pipeline = dlt.current.pipeline()
    record = {
        "phase": phase,
        "call": call,
        "step": _steps[-1] if _steps else None,
        "pages_in_step": _pages_in_step[0],
        "packages": package_states(pipeline),
        **state_versions(Path(pipeline.working_dir)),
        **detail,
    }
    partial = marker.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=1, default=str))
    partial.replace(marker)
    for _ in range(_repeats[0]):
        os.kill(os.getpid(), _signal[0])


_signal = [signal.SIGKILL]  # --signal TERM: a stop the sync may handle (then the call goes on)
_repeats = [1]  # --signal TERMx2: the same stop twice (timeout signals make and its group)


def state_versions(working_dir: Path) -> dict[str, Any]:
    """The version of the state saved in the working directory, and of the state each
    extracted package carries (what the destination will hold once it is loaded)."""
    saved = working_dir / "state.json"
    packages = {}
    for path in sorted((working_dir / "normalize" / "extracted").glob("*/load_package_state.json")):
        carried = json.loads(path.read_text()).get("pipeline_state")
        if carried:
            packages[path.parent.name] = carried["version"]
    return {"saved_state_version": json.loads(saved.read_text())["_state_version"]
            if saved.exists() else None, "package_state_versions": packages}


def kill_at(owner: Any, attribute: str, phase: str, after: int, marker: Path,
            when: str = "before", describe: Callable[..., dict] = lambda *a, **k: {},
            match: str = "") -> None:
    """Wrap ``owner.attribute`` so that its ``after``-th call (counting only calls whose
    description, as JSON, matches the regular expression ``match``) dies ``before`` or
    ``after`` it."""
    original = getattr(owner, attribute)
    calls = [0]

    @functools.wraps(original)
    def hooked(*args, **kwargs):
        detail = describe(*args, **kwargs)
        with _lock:
            counted = re.search(match, json.dumps(detail)) is not None
            calls[0] += counted
            fatal = counted and calls[0] == after
        if fatal and when == "before":
            die(marker, phase, after, detail)
        result = original(*args, **kwargs)
        if fatal and when == "after":  # once: a TERM returns, and the call goes on
            die(marker, phase, after, detail)
        return result

    setattr(owner, attribute, hooked)


def install(phase: str, after: int, marker: Path, match: str = "") -> None:
    track_steps()
    if phase == "extract":
        from pipelines.micrometrics.client import MicrometricsClient

        original = MicrometricsClient.extract_response

        def counted(self, response, data_selector):
            _pages_in_step[0] += 1
            return original(self, response, data_selector)

        MicrometricsClient.extract_response = counted
        kill_at(MicrometricsClient, "extract_response", phase, after, marker, when="after",
                describe=lambda client, response, *_: {"path": response.request.path_url},
                match=match)
    elif phase == "extract-commit":
        from dlt.extract.extract import Extract

        # "step": the command's record of the sync commits a state-only package outside any.
        kill_at(Extract, "commit_packages", phase, after, marker, when="after",
                describe=lambda extract: {"committed": sorted(extract._load_id_metrics),
                                          "step": _steps[-1] if _steps else None},
                match=match)
    elif phase == "normalize":
        import dlt.normalize.normalize as normalize_module

        kill_at(normalize_module, "w_normalize_files", phase, after, marker, when="after",
                describe=lambda *args, **_: {"load_id": args[4]}, match=match)
    elif phase == "normalize-workers":
        import dlt.normalize.normalize as normalize_module

        def children(*_args: Any) -> dict:
            task = Path(f"/proc/{os.getpid()}/task")
            return {"workers": sorted(int(pid) for thread in task.iterdir()
                                      for pid in (thread / "children").read_text().split())}

        kill_at(normalize_module, "sleep", phase, after, marker, when="before",
                describe=children, match=match)
    elif phase == "normalize-commit":
        from dlt.common.storages.load_storage import LoadStorage

        kill_at(LoadStorage, "commit_new_load_package", phase, after, marker, when="after",
                describe=lambda _storage, load_id: {"load_id": load_id}, match=match)
    elif phase == "load":
        from dlt.common.destination.client import RunnableLoadJob

        kill_at(RunnableLoadJob, "run_managed", phase, after, marker, when="before",
                describe=lambda job, *_: {"job": job.file_name()}, match=match)
    elif phase == "load-commit":
        from dlt.common.storages.load_package import PackageStorage

        # Called by the job's worker right after the destination committed it.
        kill_at(PackageStorage, "save_pending_transition", phase, after, marker,
                when="before",
                describe=lambda _storage, load_id, file_name, state, *_: {
                    "load_id": load_id, "job": file_name, "job_state": state},
                match=match)
    elif phase == "rounds":
        from pipelines.micrometrics.rounds import RoundBudget

        # Called at the start of every round: the N-th call comes after N-1 rounds loaded.
        kill_at(RoundBudget, "new_round", phase, after, marker, when="before",
                describe=lambda budget: {"pages_of_the_last_round": budget.spent}, match=match)
    elif phase == "schema":
        import inspect

        from dlt.common.schema.schema import Schema

        def rebuilding(*_args: Any, **_kwargs: Any) -> dict:
            handler = signal.getsignal(_signal[0])
            return {"live": any(frame.function == "set_live_schema"
                                for frame in inspect.stack(context=0)),
                    "ours": getattr(handler, "__module__", "") == "pipelines.sync.terminate"}

        kill_at(Schema, "_add_standard_tables", phase, after, marker, when="before",
                describe=rebuilding, match=match)
    else:
        raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, sync_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m tests.killer")
    parser.add_argument("--phase", choices=PHASES, required=True)
    parser.add_argument("--after", type=int, default=1, help="die at this call (1-based)")
    parser.add_argument("--match", default="",
                        help="count only calls whose description matches this regular expression, "
                             "e.g. a job's file name")
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--signal", choices=("KILL", "TERM", "TERMx2", "INT"), default="KILL",
                        help="the signal sent (TERM: as a timeout or a stop would; TERMx2: twice "
                             "at once, as `timeout make ...` delivers it; INT: Ctrl-C)")
    parser.add_argument("--script", type=Path,
                        help="run this Python file (a user's script calling sync()) instead of "
                             "the command line")
    args = parser.parse_args(ours)
    name, _, times = args.signal.partition("x")
    _signal[0], _repeats[0] = signal.Signals[f"SIG{name}"], int(times or 1)
    install(args.phase, args.after, args.marker, args.match)
    if args.script:
        import runpy

        runpy.run_path(str(args.script), run_name="__main__")
        return 0
    from pipelines.sync.cli import main as sync_main

    return sync_main(sync_args)


if __name__ == "__main__":
    sys.exit(main())
