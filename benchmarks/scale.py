"""Syncs at scale, side by side: requests against pages needed, time, CPU, memory, exactness.

Each scenario builds a sandbox (in this process, its own threads) and runs, each as a
subprocess against the same data: the connector from this working tree (``after``), the
connector from another checkout (``before``, with ``--repo PATH``), dlt's generic
``rest_api`` source configured as a user would (``benchmarks/rest_api_user.py``) and, at an
unlimited rate, a bare signed client that only fetches the pages (``benchmarks/bare_fetch.py``:
what HTTP and JSON alone cost). The connector runs as ``python -m pipelines.sync --quiet
--no-models``; its CPU seconds and peak RSS are its own (``os.wait4`` of that process).

- requests: the sandbox's own counter; pages needed: over the streams a sync reads (devices,
  the survey list, each survey's responses) the sum of max(1, ceil(records / page size)); for
  an incremental sync, 1 for devices and 1 for the survey list plus ceil(new / page size) for
  each survey that changed.
- exact: ``(id, updated_at)`` of devices, surveys and responses in DuckDB equal the sandbox's.
- responses/s: responses in the sandbox / wall seconds of the sync process.

Scenarios: ``200k`` (200,000 responses, unlimited rate, page size 99), ``1m`` (1,000,000,
page size 100; not in --quick), ``bursts`` (dense 3-day bursts separated by quiet months,
page size 37), ``small-surveys`` (300 surveys, 30,000 responses, page size 37; then 5 new
responses and an hourly sync one hour later in sandbox time), ``latency`` (the API's 1
request/s, burst 10, 1.5 s latency with +-50% jitter, page size 37; floor = (requests - 10) / 1).

    .venv/bin/python -m benchmarks.scale [--quick] [--only NAME[,NAME]] [--repo PATH]
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from benchmarks._results import machine, write_section
from pipelines.sandbox import Sandbox
from pipelines.sandbox.data import DAY_MS, format_ms

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "bench-key", "bench-secret"
UNLIMITED = {"rate": 1e9, "burst": 10**9}
HOUR = 3600.0
TABLES = ("devices", "surveys", "survey_responses")

# Runs a module with time.time shifted by BENCH_TIME_OFFSET seconds (the sandbox's clock is
# shifted alike), so a first sync can happen "an hour ago" and the incremental one now; at exit
# it writes its own peak RSS (VmHWM, kB) to BENCH_HWM_FILE. Not wait4's ru_maxrss: Linux
# carries the parent's peak RSS over the exec (vfork or fork), and the parent holds the sandbox.
SHIM = """\
import atexit, os, runpy, sys, time
def _peak_rss():
    with open("/proc/self/status") as status, open(os.environ["BENCH_HWM_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
if os.environ.get("BENCH_HWM_FILE"):
    atexit.register(_peak_rss)
_offset = float(os.environ.get("BENCH_TIME_OFFSET") or 0)
if _offset:
    _real_time = time.time
    time.time = lambda: _real_time() + _offset
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


class ShiftClock:
    """The sandbox's clock: real time plus a settable offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


class JitterSandbox(Sandbox):
    """A sandbox whose per-request latency varies by +-``jitter`` (a fraction) around its
    base, for a sandbox without a ``latency_jitter`` option: its server reads ``latency``
    for every request."""

    jitter = 0.0
    _jitter_rng = random.Random(7)

    @property
    def latency(self) -> float:  # type: ignore[override]
        base = self._base_latency
        if base <= 0 or not self.jitter:
            return base
        return base * (1 + self._jitter_rng.uniform(-self.jitter, self.jitter))

    @latency.setter
    def latency(self, value: float) -> None:
        self._base_latency = value


# -- scenarios -----------------------------------------------------------------------------


def shape_bursts(sandbox: Sandbox) -> None:
    """Moves every response into one of four dense 3-day bursts (400, 290, 170 and 50 days
    ago), leaving quiet months between them."""
    rng = random.Random(11)
    now_ms = int(sandbox.clock() * 1000)
    starts = [now_ms - days * DAY_MS for days in (400, 290, 170, 50)]
    ids = sorted(record["id"] for _, record in sandbox.store.rows("survey_responses"))
    for i, rid in enumerate(ids):
        stamp = format_ms(starts[i % len(starts)] + rng.randrange(3 * DAY_MS))
        sandbox.patch_records("survey_responses", [rid],
                              {"updated_at": stamp, "created_at": stamp})


def five_new(sandbox: Sandbox) -> list[int]:
    return sandbox.add_responses(5)


@dataclass
class Scenario:
    name: str
    title: str
    sandbox: dict[str, Any]
    quick: dict[str, Any] | None  # overrides in --quick; None: skipped in --quick
    jitter: float = 0.0
    shape: Callable[[Sandbox], None] | None = None
    incremental: Callable[[Sandbox], list] | None = None  # mutation before a 2nd sync
    incremental_label: str = ""
    first_offset: float = 0.0  # time offset of the sandbox and the sync during the first sync
    rate_limited: bool = False
    targets: str = ""
    bare: bool = True  # also run the bare client


SCENARIOS = [
    Scenario("200k", "200,000 responses, unlimited rate, page size 99",
             {"responses": 200_000, "page_size": 99, **UNLIMITED}, {"responses": 20_000},
             targets="requests <= 1.03x pages needed; >= 2x before's responses/s"),
    Scenario("1m", "1,000,000 responses, unlimited rate, page size 100",
             {"responses": 1_000_000, "page_size": 100, **UNLIMITED}, None,
             targets="requests <= 1.03x pages needed; peak < 300 MB"),
    Scenario("bursts", "60,000 responses in four 3-day bursts separated by quiet months, "
             "unlimited rate, page size 37",
             {"responses": 60_000, "page_size": 37, **UNLIMITED}, {"responses": 8_000},
             shape=shape_bursts, targets="requests <= 1.03x pages needed"),
    Scenario("small-surveys", "300 surveys, 30,000 responses, unlimited rate, page size 37; "
             "then 5 new responses and a sync one hour later (sandbox time)",
             {"surveys": 300, "responses": 30_000, "page_size": 37, **UNLIMITED},
             {"responses": 6_000},
             incremental=five_new, incremental_label="hourly sync, 5 new responses",
             first_offset=-HOUR,
             targets="first sync <= 1.03x pages needed; hourly sync < 30 requests"),
    Scenario("latency", "1 request/s, burst 10 (the API's limit), 1.5 s latency +-50% jitter, "
             "2,000 responses, page size 37",
             {"responses": 2_000, "page_size": 37, "rate": 1.0, "burst": 10, "latency": 1.5},
             {"responses": 400}, jitter=0.5, rate_limited=True, bare=False,
             targets="sync within 1.10x the rate-limit floor"),
]


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Run:
    runner: str
    sync: str
    requests: int = 0
    throttled: int = 0
    needed: int = 0
    responses: int = 0
    wall: float = math.nan
    own: float = math.nan  # the sync's own elapsed time from its summary
    cpu: float = math.nan
    peak_mb: float = math.nan
    tree_mb: float = math.nan  # sampled PSS of the sync and its worker processes together
    exact: str = "-"
    floor: float = 0.0
    note: str = ""
    summary: str = field(default="", repr=False)


def child(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Runs one process; its wall time, own CPU seconds (``os.wait4``) and peak RSS (its own
    VmHWM, written at exit by ``SHIM``; else wait4's ru_maxrss, an upper bound)."""
    out, err, hwm = cwd / "stdout.txt", cwd / "stderr.txt", cwd / "vmhwm.txt"
    hwm.unlink(missing_ok=True)
    env = {**env, "BENCH_HWM_FILE": str(hwm)}
    with out.open("w") as stdout, err.open("w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        timed_out, tree_kb, polls = False, 0, 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if polls % 5 == 0:  # every 0.1 s: read from here, not in the measured process
                tree_kb = max(tree_kb, tree_pss_kb(proc.pid))
            polls += 1
            if time.perf_counter() - started > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "code": proc.returncode, "timed_out": timed_out, "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mb": int(hwm.read_text()) / 1024 if hwm.exists() else usage.ru_maxrss / 1024,
        "tree_mb": tree_kb / 1024 if tree_kb else math.nan,
        "stdout": out.read_text(), "stderr": err.read_text(),
    }


def tree_pss_kb(pid: int) -> int:
    """Proportional set size of ``pid`` and its descendants, in kB: the memory a process tree
    uses, a page shared by forked processes counted once (RSS would count it in each)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pending += [int(child) for child in children.read().split()]
        except (OSError, StopIteration, ValueError):
            continue  # ended meanwhile
    return total


def base_env(repo: Path, tmp: Path, offset: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__MICROMETRICS__")}
    env.update({
        "PYTHONPATH": str(repo),
        "DLT_DATA_DIR": str(tmp / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "BENCH_TIME_OFFSET": str(offset),
    })
    return env


def connector_argv(profile: Path | None) -> list[str]:
    argv = [sys.executable, "-c", SHIM, "pipelines.sync", "--quiet", "--no-models"]
    if profile is None:
        return argv
    spy = Path(sys.executable).with_name("py-spy")
    return [str(spy), "record", "--format", "raw", "--rate", "200", "--subprocesses",
            "--nonblocking", "-o", str(profile), "--", *argv]


def truth_of(sandbox: Sandbox) -> dict[str, set[tuple]]:
    """``{table: {(id, updated_at ms)}}`` as the sandbox serves it now (no deep copies)."""
    return {kind: {(record["id"], ms) for ms, record in sandbox.store.rows(kind)}
            for kind in TABLES}


def pages_needed(sandbox: Sandbox, page_size: int) -> tuple[int, int]:
    """Pages of a full read (see the module doc) and the number of responses."""
    counts = Counter(record["survey_id"] for _, record in sandbox.store.rows("survey_responses"))
    surveys = [record["id"] for _, record in sandbox.store.rows("surveys")]
    devices = len(sandbox.store.rows("devices"))
    pages = [devices, len(surveys)] + [counts.get(s, 0) for s in surveys]
    return sum(max(1, math.ceil(n / page_size)) for n in pages), sum(counts.values())


def incremental_needed(sandbox: Sandbox, changed: list, page_size: int) -> int:
    by_survey = Counter(sandbox.store.get("survey_responses", rid)["survey_id"]
                        for rid in changed)
    return 2 + sum(math.ceil(n / page_size) for n in by_survey.values())


def exactness(db: Path, truth: dict[str, set[tuple]]) -> str:
    """``exact``, or what differs from the sandbox's records."""
    if not db.exists():
        return "no database"
    problems = []
    with duckdb.connect(str(db), read_only=True) as con:
        for table, want in truth.items():
            try:
                rows = con.sql(f"SELECT id, epoch_ms(updated_at) FROM micrometrics.{table}"
                               ).fetchall()
            except duckdb.Error:
                rows = []
            got = set(rows)
            ids_want = {i for i, _ in want}
            ids_got = {i for i, _ in got}
            missing = len(ids_want - ids_got)
            stale = len({i for i, _ in want - got} & ids_got)
            extra = len(ids_got - ids_want)
            dupes = len(rows) - len(ids_got)
            for n, what in ((missing, "missing"), (stale, "stale"), (extra, "extra"),
                            (dupes, "duplicate")):
                if n:
                    problems.append(f"{n} {what} {table}")
    return "exact" if not problems else "; ".join(problems)


def parse_summary(run: Run, stdout: str) -> None:
    own = re.search(r"^elapsed ([0-9.]+)s", stdout, re.MULTILINE)
    run.own = float(own.group(1)) if own else math.nan


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timeout = args.timeout
        runners = [("after", "connector", ROOT)]
        if args.repo:
            runners.insert(0, ("before", "connector", Path(args.repo).resolve()))
        if not args.no_rest_api:
            runners.append(("rest_api", "rest_api", ROOT))
        runners.append(("bare client", "bare", ROOT))
        if args.runners:
            wanted = {name.strip() for name in args.runners.split(",")}
            runners = [r for r in runners if r[0].split()[0] in wanted]
        self.runners = runners
        self.extra_env = dict(pair.split("=", 1) for pair in args.env)

    def sandbox(self, scenario: Scenario, clock: ShiftClock) -> Sandbox:
        kwargs = dict(scenario.sandbox)
        if self.args.quick:
            kwargs.update(scenario.quick or {})
        sandbox_class: type[Sandbox] = Sandbox
        if scenario.jitter and "latency_jitter" in inspect.signature(Sandbox).parameters:
            kwargs["latency_jitter"] = scenario.jitter  # the sandbox's own option
        elif scenario.jitter:
            sandbox_class = JitterSandbox
            JitterSandbox.jitter = scenario.jitter
        sandbox = sandbox_class(KEY, SECRET, clock=clock, **kwargs)
        if scenario.shape:
            scenario.shape(sandbox)
        return sandbox.start()

    def run_scenario(self, scenario: Scenario) -> list[Run]:
        fresh = scenario.incremental is not None or scenario.rate_limited
        runs: list[Run] = []
        clock = ShiftClock(scenario.first_offset)
        shared = None if fresh else self.sandbox(scenario, clock)
        try:
            for label, kind, repo in self.runners:
                if kind == "bare" and not scenario.bare:
                    continue
                if fresh:
                    clock = ShiftClock(scenario.first_offset)
                    sandbox = self.sandbox(scenario, clock)
                else:
                    sandbox = shared
                try:
                    runs += self.run_runner(scenario, sandbox, clock, label, kind, repo)
                finally:
                    if fresh:
                        sandbox.stop()
        finally:
            if shared is not None:
                shared.stop()
        return runs

    def run_runner(self, scenario: Scenario, sandbox: Sandbox, clock: ShiftClock,
                   label: str, kind: str, repo: Path) -> list[Run]:
        page_size = sandbox._api.page_size
        runs = []
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{scenario.name}-") as name:
            tmp = Path(name)
            needed, responses = pages_needed(sandbox, page_size)
            first = self.one_sync(scenario, sandbox, tmp, label, kind, repo, "first sync",
                                  clock.offset)
            first.needed, first.responses = needed, responses
            if kind != "bare":
                first.exact = exactness(tmp / "warehouse.duckdb", truth_of(sandbox))
            runs.append(first)
            if scenario.incremental and kind != "bare":
                clock.offset = 0.0
                changed = scenario.incremental(sandbox)
                again = self.one_sync(scenario, sandbox, tmp, label, kind, repo,
                                      scenario.incremental_label, 0.0)
                again.needed = incremental_needed(sandbox, changed, page_size)
                again.responses = len(changed)
                again.exact = exactness(tmp / "warehouse.duckdb", truth_of(sandbox))
                runs.append(again)
        return runs

    def one_sync(self, scenario: Scenario, sandbox: Sandbox, tmp: Path, label: str,
                 kind: str, repo: Path, sync: str, offset: float) -> Run:
        env = base_env(repo, tmp, offset)
        work = tmp / "cwd"
        work.mkdir(exist_ok=True)
        profile = None
        if kind == "connector":
            env.update({
                "SOURCES__MICROMETRICS__BASE_URL": sandbox.url,
                "SOURCES__MICROMETRICS__API_KEY": KEY,
                "SOURCES__MICROMETRICS__API_SECRET": SECRET,
                "DESTINATION__DUCKDB__CREDENTIALS": str(tmp / "warehouse.duckdb"),
                **self.extra_env,
            })
            if self.args.profile:
                self.args.profile.mkdir(parents=True, exist_ok=True)
                slug = re.sub(r"\W+", "-", f"{scenario.name}-{sync}-{label}")
                profile = self.args.profile / f"{slug}.txt"
            argv = connector_argv(profile)
        else:
            env.update({"BENCH_URL": sandbox.url, "BENCH_KEY": KEY, "BENCH_SECRET": SECRET,
                        "BENCH_DUCKDB": str(tmp / "warehouse.duckdb")})
            module = "benchmarks.rest_api_user" if kind == "rest_api" else "benchmarks.bare_fetch"
            argv = [sys.executable, "-c", SHIM, module]
        # Cold start for every runner: no result set sorted by an earlier runner's windows.
        sandbox._api._sorted.clear()
        sandbox.reset_stats()
        result = child(argv, env, work, self.timeout)
        stats = sandbox.stats()
        run = Run(label, sync, requests=stats["requests"], throttled=stats["throttled"],
                  wall=result["wall"], cpu=result["cpu"], peak_mb=result["peak_mb"],
                  tree_mb=result["tree_mb"], summary=result["stdout"])
        if scenario.rate_limited:
            rate, burst = scenario.sandbox["rate"], scenario.sandbox["burst"]
            run.floor = max(0.0, (run.requests - burst) / rate)
        if kind == "connector":
            parse_summary(run, result["stdout"])
        if result["timed_out"]:
            run.note = f"killed after {self.timeout:.0f} s"
        elif result["code"] != 0:
            run.note = f"exit {result['code']}: {result['stderr'].strip().splitlines()[-1:]}"
        print(f"  {scenario.name} | {sync} | {label}: {run.requests} requests, "
              f"wall {run.wall:.1f} s, cpu {run.cpu:.1f} s, peak {run.peak_mb:.0f} MB "
              f"(all processes, PSS: {run.tree_mb:.0f} MB) "
              f"{run.note}", flush=True)
        if result["code"] != 0 and self.args.verbose:
            print(result["stderr"][-3000:])
        return run


# -- the stock paginator's empty-cursor loop -----------------------------------------------


def stock_paginator_check(seconds: float) -> str:
    """Runs rest_api with the stock HeaderCursorPaginator for ``seconds`` on a small sandbox."""
    with Sandbox(KEY, SECRET, responses=200, page_size=37, **UNLIMITED) as sandbox, \
            tempfile.TemporaryDirectory(prefix="bench-scale-stock-") as name:
        tmp = Path(name)
        needed, _ = pages_needed(sandbox, 37)
        env = base_env(ROOT, tmp, 0.0)
        env.update({"BENCH_URL": sandbox.url, "BENCH_KEY": KEY, "BENCH_SECRET": SECRET,
                    "BENCH_DUCKDB": str(tmp / "warehouse.duckdb")})
        result = child([sys.executable, "-m", "benchmarks.rest_api_user", "--stock-paginator"],
                       env, tmp, seconds)
        stats = sandbox.stats()
        first_pages = stats["requests"] - stats["cursor_requests"]
        ended = "still running, killed" if result["timed_out"] else f"exit {result['code']}"
        return (f"rest_api with the stock `HeaderCursorPaginator` on a 200-response sandbox: "
                f"{stats['requests']} requests in {result['wall']:.0f} s for {needed} pages "
                f"needed ({first_pages} of them first pages: the empty `Next-Cursor` sends it "
                f"back to the start), {ended}.")


# -- report --------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


def table(scenario: Scenario, runs: list[Run]) -> str:
    lines = [
        "| sync | runner | requests | pages needed | requests / needed | 429s | wall s "
        "| sync s | CPU s | peak MB | all processes MB | responses/s | exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        per_second = r.responses / r.wall if r.sync == "first sync" and r.wall else math.nan
        exact = r.exact + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.sync} | {r.runner} | {r.requests} | {r.needed} | "
            f"{ratio(r.requests, r.needed)} | {r.throttled} | {fmt(r.wall)} | {fmt(r.own)} | "
            f"{fmt(r.cpu)} | {fmt(r.peak_mb, 0)} | {fmt(r.tree_mb, 0)} | {fmt(per_second, 0)} | "
            f"{exact} |")
    if scenario.rate_limited:
        lines += ["", "| runner | requests | floor s | wall / floor | sync / floor |",
                  "|---|---:|---:|---:|---:|"]
        for r in runs:
            lines.append(f"| {r.runner} | {r.requests} | {fmt(r.floor)} | "
                         f"{ratio(r.wall, r.floor)} | {ratio(r.own, r.floor)} |")
    by = {(r.runner, r.sync): r for r in runs}
    comparisons = []
    for sync in dict.fromkeys(r.sync for r in runs):
        after, before = by.get(("after", sync)), by.get(("before", sync))
        rest = by.get(("rest_api", sync))
        for other, name in ((before, "before"), (rest, "rest_api")):
            if after and other:
                comparisons.append(
                    f"| {sync} | after / {name} | {ratio(after.requests, other.requests)} | "
                    f"{ratio(after.wall, other.wall)} | {ratio(after.cpu, other.cpu)} | "
                    f"{ratio(after.peak_mb, other.peak_mb)} |")
    if comparisons:
        lines += ["", "| sync | ratio | requests | wall | CPU | peak memory |",
                  "|---|---|---:|---:|---:|---:|", *comparisons]
    return "\n".join(lines)


HEADER = """\
## Scale: requests vs pages needed, time, CPU, memory, exactness

Each scenario below comes from the run its first line names (`--only` re-runs replace only
their own scenarios). Runners: `before` is the connector from the `--repo` checkout (a `git
worktree` of the commit before the change), `after` the one of this working tree (both `python
-m pipelines.sync --quiet --no-models`), `rest_api` is dlt's generic source configured as a user
would (`benchmarks/rest_api_user.py`: `HeaderCursorPaginator` on `Next-Cursor` with the
empty-cursor fix, incremental `updated_at` sent as `start_at` from 1970, a custom requests auth,
dlt's default loader format), `bare client` only fetches and decodes the pages
(`benchmarks/bare_fetch.py`, no dlt). Wall is the process (interpreter start included), sync s
the connector's own elapsed time from its summary, CPU s that process's own (`os.wait4`: user +
system, its normalize workers' included), peak MB its own VmHWM read at its exit (wait4's max
RSS would include the benchmark process's, which holds the sandbox), all processes MB the
largest sum of PSS over the process and its normalize workers, sampled every 0.1 s (PSS counts
a page the forked workers share with it once). Each runner starts from an empty destination and
a cold sandbox cache; the sandbox runs in the benchmark's process, on the same 2 cores.
"""

SCENARIO_ORDER = [s.name for s in SCENARIOS] + ["stock-paginator"]


def merged_blocks(new: dict[str, str]) -> str:
    """The scenario blocks of the current RESULTS.md section, with ``new`` ones replacing
    theirs, in scenario order."""
    from benchmarks._results import RESULTS

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    old: dict[str, str] = {}
    if "<!-- scale:start -->" in text and "<!-- scale:end -->" in text:
        section = text.split("<!-- scale:start -->", 1)[1].split("<!-- scale:end -->", 1)[0]
        for block in re.split(r"^(?=### )", section, flags=re.MULTILINE)[1:]:
            old[block[4:].split(":", 1)[0]] = block.rstrip() + "\n"
    blocks = {**old, **new}
    names = [n for n in SCENARIO_ORDER if n in blocks] + [n for n in blocks
                                                          if n not in SCENARIO_ORDER]
    return "\n".join(blocks[n] for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller data, no 1m scenario (a few minutes)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated scenarios: {', '.join(s.name for s in SCENARIOS)}")
    parser.add_argument("--repo", help="a checkout to run as 'before' (e.g. a git worktree of "
                        "HEAD): PYTHONPATH=PATH")
    parser.add_argument("--no-rest-api", action="store_true", help="skip dlt's rest_api")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the connector runs (e.g. dlt settings)")
    parser.add_argument("--runners", default="",
                        help="comma-separated subset of: before, after, rest_api, bare")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="run the connector under py-spy, raw stacks into DIR")
    parser.add_argument("--timeout", type=float, default=1800, help="per sync, seconds")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--verbose", action="store_true", help="stderr of failed runs")
    args = parser.parse_args()

    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    if args.quick:
        chosen = [s for s in chosen if s.quick is not None]
    if not chosen:
        parser.error(f"no scenario matches {args.only!r}")
    bench = Bench(args)
    flags = " ".join(filter(None, [
        "--quick" if args.quick else "", f"--only {args.only}" if args.only else "",
        f"--repo {args.repo}" if args.repo else "",
        f"--runners {args.runners}" if args.runners else "",
        "--no-rest-api" if args.no_rest_api else "", *(f"--env {e}" for e in args.env)]))
    command = f"`.venv/bin/python -m benchmarks.scale{' ' + flags if flags else ''}`"
    blocks: dict[str, str] = {}
    for scenario in chosen:
        print(f"{scenario.name}: {scenario.title}", flush=True)
        started = time.perf_counter()
        runs = bench.run_scenario(scenario)
        seconds = time.perf_counter() - started
        title = scenario.title
        if args.quick and scenario.quick:
            title += f" (--quick: {scenario.quick})"
        blocks[scenario.name] = (
            f"### {scenario.name}: {title}\n\n{command}; {machine()}; this scenario took "
            f"{seconds:.0f} s (all runners, data generation included).\n\n"
            f"Target: {scenario.targets}.\n\n{table(scenario, runs)}\n")
        print(blocks[scenario.name], flush=True)
    if not args.no_rest_api and "rest_api" in {r[0] for r in bench.runners}:
        blocks["stock-paginator"] = (
            f"### stock-paginator: rest_api without the empty-cursor fix\n\n{command}; "
            f"{machine()}.\n\n{stock_paginator_check(10 if args.quick else 20)}\n")
        print(blocks["stock-paginator"])
    if not args.no_write:
        write_section("scale", HEADER + "\n" + merged_blocks(blocks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
