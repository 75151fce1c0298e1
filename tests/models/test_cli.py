"""``python -m pipelines.models``: help, success with a preview, one-line failure."""

from __future__ import annotations

from pipelines.micrometrics import duckdb_session
from pipelines.micrometrics.messages import hint
from pipelines.models.cli import main
from tests.cli import run_module, sync_env
from tests.file_holder import hold_in_another_process
from tests.models.conftest import rows


def test_help_lists_the_options(tmp_path):
    done = run_module("pipelines.models", sync_env(tmp_path, "http://127.0.0.1:9"), "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--destination", "--dataset", "--as-of"):
        assert option in done.stdout


def run_cli(pipeline, monkeypatch, tmp_path, *args: str) -> int:
    """The CLI against the copy's DuckDB file, configured the way a user would."""
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS",
                       str(pipeline.destination.config_params["credentials"]))
    return main(["--pipelines-dir", str(tmp_path / "cli"), "--as-of", "2027-01-15T08:00:00Z",
                 *args])


def test_builds_and_prints_the_preview(warehouse_copy, monkeypatch, tmp_path, capsys):
    assert run_cli(warehouse_copy(), monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    assert "data tests passed" in out and "silent for 7+ days" in out


def test_failing_data_test_exits_4_with_one_line(warehouse_copy, monkeypatch, tmp_path, capsys):
    pipeline = warehouse_copy()
    # A device id of 100,000 characters: the line stays a line (it printed all of it).
    rows(pipeline, "UPDATE micrometrics.survey_responses SET device_id = 'nowhere' || "
                   "repeat('x', 100000) "
                   "WHERE id = (SELECT MIN(id) FROM micrometrics.survey_responses)")
    # 4, not 1: the models are built, only a data test failed.
    assert run_cli(pipeline, monkeypatch, tmp_path) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "responses_have_known_device" in err
    assert len(err) < 1000
    assert err.rstrip().endswith(hint("data_test"))


def test_file_named_like_the_dataset_is_a_configuration_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "micrometrics.duckdb"))
    assert main(["--pipelines-dir", str(tmp_path / "cli")]) == 2
    assert "same name as the dataset" in capsys.readouterr().err


def test_an_unknown_destination_or_a_missing_file_is_a_configuration_error(tmp_path):
    """In a process of its own: dlt sets its logging up on the first destination it resolves."""
    env = sync_env(tmp_path, "http://127.0.0.1:9")
    done = run_module("pipelines.models", env, "--destination", "nosuch")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: destination configuration:")
    assert done.stderr.count("\n") == 1

    missing = tmp_path / "nowhere.duckdb"
    env["DESTINATION__DUCKDB__CREDENTIALS"] = str(missing)
    done = run_module("pipelines.models", env)
    assert done.returncode == 2, done.stderr
    assert f"no DuckDB file {str(missing)!r}" in done.stderr
    assert not missing.exists()


def test_a_file_another_process_keeps_open_is_named_as_such(
        warehouse_copy, monkeypatch, tmp_path, capsys):
    # dlt's wrapper blamed the credentials ("Please check if you configured the credentials").
    pipeline = warehouse_copy()
    holder = hold_in_another_process(pipeline.destination.config_params["credentials"])
    now = [0.0]
    monkeypatch.setattr(duckdb_session, "waited", lambda: now[0])
    monkeypatch.setattr(duckdb_session, "pause",
                        lambda seconds: now.__setitem__(0, now[0] + seconds))
    try:
        assert run_cli(pipeline, monkeypatch, tmp_path) == 1
    finally:
        holder.communicate("\n", timeout=30)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: another process (pid {holder.pid}) has the DuckDB file open")
    assert "credentials" not in err and now[0] == duckdb_session.LOCK_WAIT_SECONDS
