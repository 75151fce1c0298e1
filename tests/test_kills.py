"""SIGKILL inside every phase of a sync (a real process, see tests/killer.py), then a rerun.

The rerun always ends exact, loads first what the killed sync left, and then does what its own
flags ask: --full-refresh drops and reloads, --resources fetches only those, --start-at/--end-at
re-reads that range.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.micrometrics.timeutil import parse_timestamp
from pipelines.sync import cli
from tests.cli import sync_env, tmp_cwd
from tests.syncing import query
from tests.truth import assert_matches_truth

# A first sync of ~35 pages in 4 or 5 rounds, no waiting on the rate limit.
SANDBOX = dict(devices=30, surveys=4, responses=600, page_size=20, rate=1000.0, burst=1000)
WINDOW_PAGES = "10"
FLAGS = ("--quiet", "--no-models")
ROOT_COPY = r'"job": "survey_responses\.\w+\.\d+\.parquet"'  # the responses' staging copy
ROOT_MERGE = r'"job": "survey_responses\.\w+\.\d+\.sql"'  # their merge into the dataset


@dataclass
class Tenant:
    """A sandbox and a destination, and the sync's command line run against them."""

    sandbox: object
    env: dict[str, str]
    path: Path
    monkeypatch: pytest.MonkeyPatch
    kills: int = 0

    def kill(self, phase: str, after: int, *args: str, match: str = "",
             must_land: bool = True) -> dict | None:
        """Run the sync in a new process that SIGKILLs itself at the ``after``-th call of the
        phase's hook; returns what it saw then (the marker), or None if the sync finished
        first (only when not ``must_land``)."""
        self.kills += 1
        marker = self.path / f"kill-{self.kills}.json"
        env = dict(self.env)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.killer", "--phase", phase, "--after", str(after),
             "--match", match, "--marker", str(marker), "--", *FLAGS, *args],
            cwd=tmp_cwd(env), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        out, err = process.communicate(timeout=120)
        if process.returncode == 0 and not must_land:
            assert not marker.exists()
            return None
        assert process.returncode == -signal.SIGKILL, (phase, after, out, err[-3000:])
        seen = json.loads(marker.read_text())
        assert seen["phase"] == phase
        return seen

    def sync(self, *args: str) -> int:
        """The sync's command line in this process (a new process costs a second of imports),
        with the same environment as the killed one."""
        with self.monkeypatch.context() as patch:
            for key in os.environ:
                if key.startswith(("SOURCES__", "DESTINATION__")) and key not in self.env:
                    patch.delenv(key)
            for key, value in self.env.items():
                if key.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__")):
                    patch.setenv(key, value)
            patch.chdir(tmp_cwd(dict(self.env)))
            return cli.main([*FLAGS, *args])

    def assert_exact(self) -> None:
        assert_matches_truth(self.path, self.sandbox.truth())

    def requests(self) -> dict[str, int]:
        return dict(self.sandbox.stats()["by_endpoint"])


@pytest.fixture
def tenant(start_sandbox, tmp_path, monkeypatch) -> Tenant:
    sandbox = start_sandbox(**SANDBOX)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES=WINDOW_PAGES)
    return Tenant(sandbox, env, tmp_path, monkeypatch)


def pending(seen: dict) -> list[str]:
    """Packages the killed sync left to load."""
    packages = seen["packages"]
    return packages["extracted"] + packages["normalized"] + packages["loading"]


def load_ids(tenant: Tenant, table: str) -> set[str]:
    return {row[0] for row in query(tenant.path,
                                    f"SELECT DISTINCT _dlt_load_id FROM micrometrics.{table}")}


def change_upstream(sandbox, rng: random.Random | None = None) -> None:
    rng = rng or random.Random(0)
    sandbox.add_responses(rng.randint(10, 40))
    sandbox.update_responses(rng.randint(5, 30))
    sandbox.update_devices(rng.randint(1, 4))


# -- one kill inside each phase of a first sync -------------------------------------------------


def check_extract(seen: dict) -> None:
    # Pages read, their records in an extract package that was never committed.
    assert seen["step"] == "extract" and seen["pages_in_step"] >= 2
    assert seen["packages"]["extracting"] and not pending(seen)


def check_normalize(seen: dict) -> None:
    # Extracted (state committed locally), normalized files half-written, nothing loaded.
    assert seen["step"] == "normalize"
    assert seen["load_id"] in seen["packages"]["extracted"]
    assert seen["load_id"] in seen["packages"]["normalizing"]


def check_normalize_commit(seen: dict) -> None:
    # dlt's normalize moved the package to load/ but had not deleted its extracted copy.
    assert seen["step"] == "normalize"
    assert seen["load_id"] in seen["packages"]["extracted"]
    assert seen["load_id"] in seen["packages"]["normalized"]


def check_load(seen: dict) -> None:
    # Part of the package's jobs done in the destination, this one about to run.
    assert seen["step"] == "load" and seen["packages"]["loading"] == pending(seen)


def check_load_commit(seen: dict) -> None:
    # The destination committed the responses' staging copy; dlt had not recorded it.
    assert seen["step"] == "load" and seen["job_state"] == "completed"
    assert seen["load_id"] in seen["packages"]["loading"]
    assert seen["job"].startswith("survey_responses.")


def check_rounds(seen: dict) -> None:
    # Between rounds: two loaded, the third not extracted yet, nothing pending.
    assert seen["step"] is None and seen["rounds_done"] == 2
    assert len(seen["packages"]["loaded"]) >= 2 and not pending(seen)


@pytest.mark.parametrize("phase, after, match, check", [
    ("extract", 9, "", check_extract),
    ("normalize", 2, "", check_normalize),
    ("normalize-commit", 2, "", check_normalize_commit),
    ("load", 4, "", check_load),
    ("load-commit", 2, ROOT_COPY, check_load_commit),
    ("rounds", 3, "", check_rounds),
])
def test_kill_in_each_phase_then_rerun_ends_exact(tenant, phase, after, match, check):
    seen = tenant.kill(phase, after, match=match)
    check(seen)
    tenant.sandbox.reset_stats()
    assert tenant.sync() == 0
    tenant.assert_exact()
    assert tenant.requests().get("survey_responses", 0) > 0  # and it went on fetching


# -- kills during loads into a destination that already holds data ------------------------------


def test_kill_during_loads_into_a_full_destination(tenant):
    assert tenant.sync() == 0
    now = datetime.now(UTC)
    # Edited quietly (updated_at unchanged): only the explicit re-read below brings them, and
    # the plain rerun does not re-read them, so they arrive through the killed sync's package.
    # Older than the lookback, inside the first round of a re-read (newest windows first).
    old = [r["id"] for r in tenant.sandbox.truth()["survey_responses"]
           if now - timedelta(days=15) < parse_timestamp(r["updated_at"]) < now - timedelta(days=1)]
    assert len(old) > 10
    tenant.sandbox.patch_records("survey_responses", old, {"comment": "edited quietly"},
                                 bump=False)
    seen = tenant.kill("load-commit", 1, "--start-at", "2000-01-01T00:00:00Z",
                       match=ROOT_COPY)
    check_load_commit(seen)
    assert tenant.sync() == 0
    tenant.assert_exact()

    # An incremental sync cut just before its responses' merge (staging loaded, the
    # dataset's rows not replaced yet).
    change_upstream(tenant.sandbox)
    seen = tenant.kill("load", 1, match=ROOT_MERGE)
    assert seen["step"] == "load" and seen["job"].endswith(".sql")
    assert tenant.sync() == 0
    tenant.assert_exact()


# -- the rerun does what its own flags ask ------------------------------------------------------


def kill_between_extract_and_load(tenant: Tenant, *args: str) -> str:
    seen = tenant.kill("normalize", 1, *args)
    check_normalize(seen)
    return seen["load_id"]


def test_full_refresh_after_a_kill_drops_and_reloads(tenant):
    assert tenant.sync() == 0
    # Deleted in the destination by hand: only a real refresh brings these back.
    query_rw(tenant, "DELETE FROM micrometrics.devices WHERE id IN "
                     "(SELECT id FROM micrometrics.devices ORDER BY id LIMIT 3)")
    query_rw(tenant, "DELETE FROM micrometrics.survey_responses WHERE id IN "
                     "(SELECT id FROM micrometrics.survey_responses ORDER BY updated_at LIMIT 5)")
    change_upstream(tenant.sandbox)
    left = kill_between_extract_and_load(tenant)
    tenant.sandbox.reset_stats()
    assert tenant.sync("--full-refresh") == 0
    tenant.assert_exact()
    # Every row was loaded by the refresh, after the package the killed sync left.
    for table in ("devices", "surveys", "survey_responses"):
        assert min(load_ids(tenant, table)) > left, table
    assert tenant.sandbox.stats()["records_served"] >= 600 + 30


def test_resources_after_a_kill_loads_the_left_package_and_fetches_only_those(tenant):
    left = kill_between_extract_and_load(tenant)  # a first sync: its package holds responses
    tenant.sandbox.reset_stats()
    assert tenant.sync("--resources", "devices") == 0
    requests = tenant.requests()
    assert requests.get("devices", 0) > 0
    assert requests.get("surveys", 0) == requests.get("survey_responses", 0) == 0
    assert load_ids(tenant, "survey_responses") == {left}  # loaded, not fetched again
    truth = tenant.sandbox.truth()
    assert sorted(query(tenant.path, "SELECT id, updated_at FROM micrometrics.devices")) == \
        sorted((d["id"], parse_timestamp(d["updated_at"])) for d in truth["devices"])
    assert tenant.sync() == 0
    tenant.assert_exact()


def test_explicit_range_after_a_kill_rereads_that_range(tenant):
    assert tenant.sync() == 0
    now = datetime.now(UTC)
    start, end = now - timedelta(days=400), now - timedelta(days=30)
    inside = [r["id"] for r in tenant.sandbox.truth()["survey_responses"]
              if start < parse_timestamp(r["updated_at"]) < end]
    assert len(inside) > 40
    tenant.sandbox.patch_records("survey_responses", inside[:10], {"comment": "edited quietly"},
                                 bump=False)
    change_upstream(tenant.sandbox)
    left = kill_between_extract_and_load(tenant)
    tenant.sandbox.reset_stats()
    assert tenant.sync("--start-at", start.isoformat(), "--end-at", end.isoformat()) == 0
    stats = tenant.sandbox.stats()
    # The range was read again: at least one page per 20 of its responses.
    assert stats["by_endpoint"]["survey_responses"] >= len(inside) // 20
    assert stats["records_served"] >= len(inside)
    assert left in load_ids(tenant, "devices") | load_ids(tenant, "survey_responses")
    edited = query(tenant.path, "SELECT COUNT(*) FROM micrometrics.survey_responses "
                                "WHERE comment = 'edited quietly'")
    assert edited == [(10,)]
    assert tenant.sync() == 0
    tenant.assert_exact()


def query_rw(tenant: Tenant, sql: str) -> None:
    import duckdb

    with duckdb.connect(str(tenant.path / "warehouse.duckdb")) as connection:
        connection.execute(sql)


# -- kills at random moments --------------------------------------------------------------------


def test_kills_at_seeded_random_moments_end_exact(tenant):
    """Kill, rerun, change upstream, again: the killed syncs run with random flags (long ones
    too, so that later kills still have a backfill to land in); every rerun is plain."""
    rng = random.Random(8)
    landed = []
    for attempt in range(7):
        args = rng.choice([(), ("--full-refresh",), ("--start-at", "2000-01-01T00:00:00Z")])
        long = attempt == 0 or args
        phase, after = rng.choice([
            ("extract", rng.randint(1, 20 if long else 4)),
            ("normalize", rng.randint(1, 3 if long else 1)),
            ("normalize-commit", rng.randint(1, 3 if long else 1)),
            ("load", rng.randint(1, 25 if long else 6)),
            ("load-commit", rng.randint(1, 25 if long else 6)),
            ("rounds", rng.randint(2, 4 if long else 2)),
        ])
        seen = tenant.kill(phase, after, *args, must_land=False)
        if seen:
            assert seen["step"] == {"rounds": None}.get(phase, phase.split("-")[0])
            landed.append((phase, after, args))
        assert tenant.sync() == 0, (attempt, phase, after, args)
        tenant.assert_exact()
        change_upstream(tenant.sandbox, rng)
    assert len(landed) >= 5, landed
