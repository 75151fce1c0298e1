"""``sync(pipeline)`` embedded the way users embed it: a plain dlt pipeline, configuration from
the environment, killed part-way and run again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import dlt
import pytest

from pipelines.micrometrics import RESOURCES, micrometrics_source, sync
from tests.cli import ROOT, sync_env, tmp_cwd
from tests.syncing import loaded
from tests.truth import assert_matches_truth, truth_versions

SCRIPT = ROOT / "examples" / "plain_script.py"
SANDBOX = dict(devices=20, surveys=3, responses=500, page_size=20, rate=1000.0, burst=1000)


def apply_env(monkeypatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        if key.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__")):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_cwd(dict(env)))


def users_pipeline() -> dlt.Pipeline:
    """Exactly the pipeline of examples/plain_script.py (and the README's)."""
    return dlt.pipeline(pipeline_name="micrometrics", dataset_name="micrometrics",
                        destination=dlt.destinations.duckdb("warehouse.duckdb"))


def test_dlts_default_duckdb_file_named_like_the_dataset_is_refused_before_any_request(
        start_sandbox, tmp_path, monkeypatch):
    """dlt's default file for this pipeline, micrometrics.duckdb: the load failed with a Binder
    Error after the whole first round's requests, and every run after on its package."""
    from pipelines.micrometrics.errors import ConfigurationError

    sandbox = start_sandbox(**SANDBOX)
    env = sync_env(tmp_path, sandbox.url)
    del env["DESTINATION__DUCKDB__CREDENTIALS"]
    apply_env(monkeypatch, env)
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS", raising=False)
    pipeline = dlt.pipeline(pipeline_name="micrometrics", destination="duckdb",
                            dataset_name="micrometrics")
    with pytest.raises(ConfigurationError, match=r"^DuckDB file '.*micrometrics\.duckdb' has "
                                                 r"the same name as the dataset"):
        sync(pipeline)
    assert sandbox.stats()["requests"] == 0


@pytest.mark.slow  # the user's script in a real process, SIGKILLed (as the kills of test_kills)
def test_the_plain_script_killed_mid_way_then_run_again_ends_exact(
    start_sandbox, tmp_path, monkeypatch
):
    sandbox = start_sandbox(**SANDBOX)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES="6",
                   SOURCES__MICROMETRICS__ROUND_PAGES="6")
    marker = tmp_path / "kill.json"
    # The user's script in a real process, SIGKILLed as its third round starts.
    killed = subprocess.run(
        [sys.executable, "-m", "tests.killer", "--phase", "rounds", "--after", "3",
         "--marker", str(marker), "--script", str(SCRIPT)],
        cwd=tmp_cwd(env), env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert json.loads(marker.read_text())["phase"] == "rounds"
    partial = loaded(tmp_path, "survey_responses")
    assert 0 < len(partial) < len(sandbox.truth()["survey_responses"])

    apply_env(monkeypatch, env)  # the same script again, in this process
    report = sync(users_pipeline())

    assert_matches_truth(tmp_path, sandbox.truth())
    assert report.rounds >= 2  # it resumed below its checkpoint, in rounds again


def test_sync_accepts_resources_and_an_explicit_range(start_sandbox, tmp_path, monkeypatch):
    sandbox = start_sandbox(**SANDBOX)
    apply_env(monkeypatch, sync_env(tmp_path, sandbox.url))
    sync(users_pipeline(), resources=["devices"])
    assert loaded(tmp_path, "devices") == truth_versions(sandbox.truth()["devices"])
    sandbox.reset_stats()
    report = sync(users_pipeline(), resources=RESOURCES, start_at="2000-01-01T00:00:00Z")
    assert_matches_truth(tmp_path, sandbox.truth())
    assert report.client_stats["requests"] == sandbox.stats()["requests"]


def test_keys_scoped_to_the_pipelines_name_come_first(start_sandbox, tmp_path, monkeypatch):
    """Two tenants in one environment, the dlt way: tenant B's keys scoped to its pipeline's
    name, the unscoped ones tenant A's. ``sync()`` resolved only the unscoped keys and loaded
    tenant A's data into tenant B's dataset, its state then holding A's windows as done."""
    tenant_a = start_sandbox(devices=3, surveys=2, responses=40, rate=1000.0, burst=1000)
    tenant_b = start_sandbox(seed=7, devices=7, surveys=3, responses=90, rate=1000.0,
                             burst=1000)
    apply_env(monkeypatch, sync_env(tmp_path, tenant_a.url))
    for key, value in sync_env(tmp_path, tenant_b.url, SOURCES__MICROMETRICS__MAX_IN_FLIGHT="1"
                               ).items():
        if key.startswith("SOURCES__MICROMETRICS__"):
            monkeypatch.setenv(f"TENANT_B__{key}", value)
    pipeline = dlt.pipeline(pipeline_name="tenant_b", destination="duckdb",
                            dataset_name="micrometrics")
    sync(pipeline)
    assert tenant_a.stats()["requests"] == 0
    assert tenant_b.stats()["max_in_flight"] == 1
    assert_matches_truth(tmp_path, tenant_b.truth())


def test_the_source_alone_is_one_round(start_sandbox, tmp_path, monkeypatch):
    sandbox = start_sandbox(**SANDBOX)
    apply_env(monkeypatch, sync_env(tmp_path, sandbox.url))
    pipeline = users_pipeline()
    pipeline.run(micrometrics_source())  # what the docstring says this mode gives up aside
    assert_matches_truth(tmp_path, sandbox.truth())


def test_the_library_imports_nothing_from_the_command_line():
    from tests.imports import imported_modules

    package = ROOT / "pipelines" / "micrometrics"
    # Relative imports resolved (the library's own style): `from ..sync import x` counts.
    assert "pipelines.micrometrics.runner.sync" in imported_modules(
        package / "__init__.py", "pipelines.micrometrics")
    for module in package.glob("*.py"):
        imported = imported_modules(module, "pipelines.micrometrics")
        assert not any(n.startswith("pipelines.sync") for n in imported), module.name
