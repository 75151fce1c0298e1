"""A package that fails on every sync, and the way out: ``--drop-pending``.

dlt keeps a package that failed in normalize or load and loads it first on every later run,
and the sync must too (its windows are already in the local state). For a cause the
quarantine does not know, that used to mean exit 1 on every sync, even once the vendor had
fixed the record, with dlt's 500-character message as the only help. Through the command line,
in this process, against the sandbox and a real DuckDB file.

Each value seen to fail dlt's normalize is now quarantined or loaded in a variant column (1e30
in an integer column was the one these tests used; ``misfits`` routes it), so the value is a
marker dlt's normalize is made to fail on (``unloadable``), as it did on those: the failure of
an unknown cause, whichever it will be."""

from __future__ import annotations

import duckdb
import pytest
from dlt.normalize.items_normalizers.jsonl import JsonLItemsNormalizer

from tests.cli import run_cli, sync_env
from tests.syncing import DATASET
from tests.truth import assert_matches_truth

STUCK_HINT = ("the package stays pending and every sync loads it first: fix the cause, or sync "
              "once with --drop-pending to drop it and read its windows again from the API")


# A value dlt's normalize fails on (``unloadable``), with the error it raised on 1e30.
UNLOADABLE = "no warehouse column takes this"
UNLOADABLE_ERROR = "Python int too large to convert to C long"


@pytest.fixture(autouse=True)
def unloadable(monkeypatch):
    """dlt's normalize fails on a row holding ``UNLOADABLE`` (forked workers inherit it)."""
    coerce_row = JsonLItemsNormalizer._coerce_row

    def failing(self, table_name, parent_table, row):
        if UNLOADABLE in row.values():
            raise OverflowError(UNLOADABLE_ERROR)
        return coerce_row(self, table_name, parent_table, row)

    monkeypatch.setattr(JsonLItemsNormalizer, "_coerce_row", failing)


def first_device(sandbox) -> str:
    return sorted(device["id"] for device in sandbox.truth()["devices"])[0]


def synced_with_an_integer_floor(start_sandbox, tmp_path, responses: int = 60):
    """A sandbox synced once with a device whose ``floor`` is an integer (so the column is);
    returns it, the command's environment, and that device."""
    sandbox = start_sandbox(devices=5, surveys=2, responses=responses, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    device = first_device(sandbox)
    sandbox.patch_records("devices", [device], {"floor": 3})  # an integer column
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    return sandbox, env, device


def test_a_package_dlt_cannot_normalize_fails_every_sync_until_dropped(start_sandbox, tmp_path):
    sandbox, env, device = synced_with_an_integer_floor(start_sandbox, tmp_path, responses=120)

    # One window, three changes: the bad value and two good ones that travel with it.
    sandbox.patch_records("devices", [device], {"floor": UNLOADABLE})
    sandbox.add_responses(7)
    sandbox.update_responses(4)
    failed = [run_cli(env, "--quiet", "--no-models") for _ in range(2)]
    for result in failed:
        assert result.returncode == 1
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("error: sync failed: dlt's normalize failed (package "), error
        assert error.endswith(f"{UNLOADABLE_ERROR}; {STUCK_HINT}"), error
    package = failed[0].stderr.split("(package ", 1)[1].split(")", 1)[0]
    assert package in failed[1].stderr  # the same package, tried first again

    plan = run_cli(env, "--dry-run", "--drop-pending")
    assert plan.returncode == 0, plan.stderr
    assert ("1 package(s) a failed or killed sync left: dropped with the local state"
            in plan.stdout)
    assert "1 package(s) a failed or killed sync left: loaded first" in run_cli(
        env, "--dry-run").stdout

    # The vendor fixes the record: a plain sync still fails on the package it holds.
    sandbox.patch_records("devices", [device], {"floor": 4})
    assert run_cli(env, "--quiet", "--no-models").returncode == 1

    dropped = run_cli(env, "--no-models", "--drop-pending")
    assert dropped.returncode == 0, dropped.stderr
    assert (f"warning: --drop-pending: package(s) {package} not loaded; their windows are read "
            f"again" in dropped.stderr)
    # Nothing the dropped package held is missing: the responses added and changed with it too.
    assert_matches_truth(tmp_path, sandbox.truth())
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as db:
        assert db.execute(f"SELECT floor FROM {DATASET}.devices WHERE id = ?",
                          [device]).fetchall() == [(4,)]

    # Nothing left to drop: the flag changes nothing.
    again = run_cli(env, "--quiet", "--no-models", "--drop-pending")
    assert again.returncode == 0 and "--drop-pending" not in again.stderr


@pytest.mark.parametrize("forked", [False, True])
def test_dropping_while_the_bad_value_is_still_upstream_fails_the_same_way(start_sandbox,
                                                                           tmp_path, forked,
                                                                           monkeypatch):
    if forked:  # a DuckDB sync's default: two forked normalize workers fail it, not the sync
        monkeypatch.delenv("NORMALIZE__WORKERS")
    sandbox, env, device = synced_with_an_integer_floor(start_sandbox, tmp_path)
    sandbox.patch_records("devices", [device], {"floor": UNLOADABLE})
    first = run_cli(env, "--quiet", "--no-models")
    assert first.returncode == 1

    result = run_cli(env, "--no-models", "--drop-pending")
    assert result.returncode == 1
    assert "warning: --drop-pending: package(s)" in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: sync failed: dlt's normalize failed (package "), error
    assert error.endswith(STUCK_HINT)  # a new package, read again: the same value fails it


def test_a_load_the_destination_refuses_says_so_and_loads_once_the_cause_is_fixed(
        start_sandbox, tmp_path):
    """A column added by hand, NOT NULL without a default: every merge into devices fails.
    No drop is needed once the table is fixed: the next sync loads the package as it was."""
    sandbox = start_sandbox(devices=5, surveys=2, responses=60, rate=1000.0, burst=1000)
    env = sync_env(tmp_path, sandbox.url)
    assert run_cli(env, "--quiet", "--no-models").returncode == 0
    warehouse = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(warehouse) as db:
        for change in ("ADD COLUMN by_hand INTEGER DEFAULT 1", "ALTER by_hand SET NOT NULL",
                       "ALTER by_hand DROP DEFAULT"):
            db.execute(f"ALTER TABLE {DATASET}.devices {change}")
    sandbox.patch_records("devices", [first_device(sandbox)], {"name": "Lobby, renamed"})
    sandbox.add_responses(5)

    for _ in range(2):
        result = run_cli(env, "--quiet", "--no-models")
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            "error: sync failed: the load of devices failed: Constraint Error: NOT NULL "
            f"constraint failed: devices.by_hand; {STUCK_HINT}")

    with duckdb.connect(warehouse) as db:
        db.execute(f"ALTER TABLE {DATASET}.devices DROP COLUMN by_hand")
    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())


def test_an_explicit_reread_dropped_with_its_package_is_named_to_be_run_again(start_sandbox,
                                                                               tmp_path):
    """Its slot lived in the local state only (no round of it had loaded): dropped, nothing
    read it again, the quiet edits it was run for stayed out, and the warning said "their
    windows are read again"."""
    sandbox, env, device = synced_with_an_integer_floor(start_sandbox, tmp_path)
    quietly = [r["id"] for r in sandbox.truth()["survey_responses"]]
    sandbox.patch_records("survey_responses", quietly, {"comment": "edited quietly"}, bump=False)
    sandbox.patch_records("devices", [device], {"floor": UNLOADABLE})
    reread = ("--start-at", "2000-01-01T00:00:00+00:00")
    assert run_cli(env, "--quiet", "--no-models", *reread).returncode == 1
    sandbox.patch_records("devices", [device], {"floor": 4})

    dropped = run_cli(env, "--no-models", "--drop-pending")
    assert dropped.returncode == 0, dropped.stderr
    assert ("; run the explicit re-read among them again: `--start-at "
            "2000-01-01T00:00:00.000+00:00`: dropped with the local state" in dropped.stderr)
    # The command it names reads them.
    assert run_cli(env, "--quiet", "--no-models", "--start-at",
                   "2000-01-01T00:00:00.000+00:00").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_package_whose_own_files_were_cut_short_says_what_to_do(start_sandbox, tmp_path):
    sandbox, env, device = synced_with_an_integer_floor(start_sandbox, tmp_path)
    sandbox.patch_records("devices", [device], {"floor": UNLOADABLE})
    assert run_cli(env, "--quiet", "--no-models").returncode == 1
    (package_state,) = (tmp_path / "dlt").rglob("extracted/*/load_package_state.json")
    package_state.write_bytes(b"")  # a power loss
    sandbox.patch_records("devices", [device], {"floor": 4})

    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: sync failed: a load package on this machine could not be "
                            "read (Package with `load_id="), error
    assert error.endswith(STUCK_HINT)
    assert run_cli(env, "--quiet", "--no-models", "--drop-pending").returncode == 0
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_load_dlt_took_for_transient_says_what_to_do_if_it_repeats():
    """dlt's Snowflake client takes most errors for transient (a value it cannot read, say):
    after its retries the package stays pending and fails every sync the same way."""
    from dlt.destinations.exceptions import DatabaseTransientException
    from dlt.load.exceptions import LoadClientJobRetry

    from pipelines.sync.run import failure

    refused = DatabaseTransientException(
        Exception("100038 (22018): Numeric value '1e30' is not recognized"))
    code, message = failure(LoadClientJobRetry("1796.1", "devices.abc.0.parquet", 5, 5,
                                               "retried", refused))
    assert code == 1
    assert message == ("sync failed: the load of devices failed: 100038 (22018): Numeric value "
                       f"'1e30' is not recognized; if this repeats on every sync: {STUCK_HINT}")
