"""Hourly syncs of a tenant with 300 mostly quiet surveys: requests per sync, with quiet surveys
read in turn (``QUIET_SURVEY_HOURS`` 24, the default) and with every survey read every sync
(``0``), side by side in one run.

The sandbox (300 surveys, 30,000 responses, page size 100, the API's 1 request/s with a burst of
10) runs on a virtual clock; its data is two days old when the first sync runs, so no survey is
active then. Each hour, 5 responses arrive in 3 surveys; 24 hourly syncs follow the first.
"Stalest" is how long ago the least recently read survey was read, after each sync.

    .venv/bin/python -m benchmarks.quiet_surveys
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dlt

from benchmarks._results import machine, write_section
from pipelines.micrometrics import sync as micrometrics_sync
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.sandbox import Sandbox
from tests.fakes import FakeClock  # the tests' virtual clock: sleeps advance it

KEY, SECRET = "bench-key", "bench-secret"
RATE, BURST = 1.0, 10
HOUR = 3600.0
SYNCS = 24


def run(quiet_hours: float) -> dict[str, float]:
    clock = FakeClock(time.time())
    per_sync: list[int] = []
    stalest = 0.0
    with Sandbox(api_key=KEY, api_secret=SECRET, clock=clock, surveys=300,
                 responses=30_000) as sandbox, tempfile.TemporaryDirectory() as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_quiet", pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.duckdb(str(Path(tmp) / "warehouse.duckdb")),
            dataset_name="micrometrics")
        surveys = sorted(s["id"] for s in sandbox.truth()["surveys"])
        clock.sleep(48 * HOUR)  # the data is two days old: nothing is active at first

        def sync() -> int:
            # On the virtual clock, a thread's wait for its token moves time on at once, also
            # for a request another thread has just sent: it can reach the sandbox up to a
            # token's wait after it left (on a real clock, milliseconds). The mirror keeps that
            # much of the burst free, as DEPARTURE_SKEW does for real threads; with the
            # default 0.25 s, 10-15 of a sync's ~300 requests drew a 429 here.
            client = MicrometricsClient(
                sandbox.url, KEY, SECRET, sleep=clock.sleep, auth_clock=clock,
                bucket=LeakyBucket(rate=RATE, burst=BURST, clock=clock, sleep=clock.sleep,
                                   skew=1.0 / RATE))
            settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
                                     quiet_survey_hours=quiet_hours)
            sandbox.reset_stats()
            micrometrics_sync(pipeline, settings=settings, client=client, clock=clock)
            return sandbox.stats()["requests"]

        first = sync()
        for hour in range(SYNCS):
            clock.sleep(HOUR)
            for n in range(5):
                sandbox.add_responses(1, survey_id=surveys[(hour + n) % 3])
            per_sync.append(sync())
            reads = (pipeline.state["sources"]["micrometrics"]["resources"]["survey_responses"]
                     ["surveys"])
            now = datetime.fromtimestamp(clock(), UTC)
            stalest = max(stalest, max(
                (now - datetime.fromisoformat(s["high_water"].replace("Z", "+00:00")))
                .total_seconds() / 3600 for s in reads.values()))
    return {"first": first, "mean": sum(per_sync) / len(per_sync), "max": max(per_sync),
            "stalest": stalest}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    quiet, every = run(24.0), run(0.0)
    lines = [
        "## 300 mostly quiet surveys, hourly syncs (virtual clock)",
        "",
        f"`.venv/bin/python -m benchmarks.quiet_surveys`; {machine()}.",
        "",
        "300 surveys, 30,000 responses two days old, page size 100; then 24 hourly syncs, 5 new "
        "responses in 3 surveys before each. Requests from the sandbox's counters (429s "
        "included; the client keeps a token's wait of the burst free, see the script).",
        "",
        "| QUIET_SURVEY_HOURS | first sync | hourly: mean requests | hourly: most | stalest "
        "survey after a sync, h |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in (("24 (default)", quiet), ("0 (every survey)", every)):
        lines.append(f"| {label} | {row['first']} | {row['mean']:.1f} | {row['max']} | "
                     f"{row['stalest']:.1f} |")
    lines += ["", f"Hourly requests, quiet surveys read in turn against every survey read: "
              f"**{quiet['mean'] / every['mean']:.2f}x** (mean), at most {quiet['max']} a sync."]
    write_section("quiet_surveys", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
