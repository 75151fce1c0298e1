"""The sandbox's devices gone quiet, through the sync, the marts and the report's data."""

from datetime import UTC, datetime, timedelta

from pipelines.models import build_models
from pipelines.report.data import report_data
from pipelines.sandbox import Sandbox
from tests.conftest import KEY, SECRET
from tests.syncing import query, sync_sandbox


def recent_responders(sandbox: Sandbox, days: int) -> set[str]:
    now = datetime.fromtimestamp(sandbox.clock(), UTC)
    return {r["device_id"] for r in sandbox.truth()["survey_responses"]
            if datetime.fromisoformat(r["created_at"]) > now - timedelta(days=days)}


def test_silent_devices_have_no_recent_response_and_the_rest_of_the_data_is_unchanged(clock):
    # One clock for both: each sandbox anchors its data on the minute it starts in.
    quiet = Sandbox(KEY, SECRET, silent_devices=3, clock=clock)
    plain = Sandbox(KEY, SECRET, clock=clock)
    silent = quiet.silent_devices()
    devices = {d["id"]: d for d in quiet.truth()["devices"]}
    assert len(silent) == 3 and all(devices[i]["status"] == "active" for i in silent)
    assert not set(silent) & recent_responders(quiet, 21)
    assert set(silent) <= recent_responders(plain, 21)  # they did respond without the option
    assert plain.silent_devices() == []

    def without_device(sandbox):
        return [{k: v for k, v in r.items() if k != "device_id"}
                for r in sandbox.truth()["survey_responses"]]
    assert without_device(quiet) == without_device(plain)
    assert quiet.truth()["devices"] == plain.truth()["devices"]
    # responses added later (add_responses, add_late_responses) keep them silent
    quiet.add_responses(200)
    quiet.add_late_responses(50, delay_seconds=3600)
    assert not set(silent) & recent_responders(quiet, 21)


def test_the_marts_and_the_report_name_exactly_the_silent_devices(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(devices=12, surveys=2, responses=600, silent_devices=2, clock=clock)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    as_of = datetime.fromtimestamp(clock(), UTC)
    build_models(result.pipeline, now=as_of)
    expected = set(sandbox.silent_devices())
    active = {d["id"] for d in sandbox.truth()["devices"] if d["status"] == "active"}
    assert expected == active - recent_responders(sandbox, 7)
    marts = {row[0] for row in query(tmp_path, "SELECT device_id FROM micrometrics.dim_devices "
                                               "WHERE is_silent")}
    assert marts == expected
    report = report_data(result.pipeline, now=as_of)
    assert {d.device_id for d in report.silent_devices} == expected
