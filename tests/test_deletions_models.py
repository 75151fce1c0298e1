"""Deletions reach the models: a survey gone from the list and records erased upstream are
marked (``deleted_at``) by the sync, the marts and ``dim_devices`` leave them out and equal the
figures computed in Python from the sandbox's truth, the data tests pass, and the README's purge
SQL removes marked rows for good. Over real HTTP against the sandbox, on the virtual clock."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dlt
import duckdb
import pytest
import sqlglot

from pipelines.models import DataTestFailed, build_models
from pipelines.sync.options import SyncOptions
from tests.models import expected
from tests.models.conftest import rows
from tests.syncing import DATASET, SyncResult, query, sync_sandbox

SMALL = {"devices": 10, "surveys": 3, "responses": 300, "rate": 1000.0, "burst": 1000}
README = Path(__file__).resolve().parents[1] / "README.md"
FACT_COLUMNS = ("response_id", "survey_id", "device_id", "responded_at", "response_date",
                "nps_score", "rating", "comment_text")
DAILY_COLUMNS = ("responses", "nps_responses", "promoters", "passives", "detractors", "nps")
DEVICE_COLUMNS = ("device_name", "status", "location_id", "timezone", "first_response_at",
                  "last_response_at", "responses_last_7d", "responses_last_30d", "is_silent")


def sync(sandbox, tmp_path: Path, clock, reconcile: bool = False) -> SyncResult:
    return sync_sandbox(sandbox, tmp_path, clock, options=SyncOptions(reconcile=reconcile),
                        rate=1000.0, burst=1000)


def now(clock) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


def utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def marks(tmp_path: Path, table: str) -> dict[Any, datetime | None]:
    """``{id: deleted_at}`` of every row of a loaded table."""
    return {rid: utc(at) for rid, at in query(
        tmp_path, f"SELECT id, deleted_at FROM {DATASET}.{table}")}


def build(pipeline: dlt.Pipeline, clock) -> datetime:
    """Builds the models as of now; ``build_models`` raises if a data test fails."""
    as_of = now(clock)
    report = build_models(pipeline, now=as_of)
    assert report.tests and all(test.passed for test in report.tests)
    return as_of


def marts(pipeline: dlt.Pipeline) -> dict[str, dict]:
    """The three marts, keyed like ``tests.models.expected`` computes them."""
    facts = {}
    for row in rows(pipeline, f"SELECT {', '.join(FACT_COLUMNS)} "
                              f"FROM {DATASET}.fct_survey_responses"):
        fact = dict(zip(FACT_COLUMNS, row, strict=True))
        fact["responded_at"] = utc(fact["responded_at"])
        facts[fact["response_id"]] = fact
    daily = {
        (survey, device, day): dict(zip(DAILY_COLUMNS, rest, strict=True))
        for survey, device, day, *rest in rows(
            pipeline, f"SELECT survey_id, device_id, response_date, {', '.join(DAILY_COLUMNS)} "
                      f"FROM {DATASET}.mart_nps_daily")
    }
    devices = {}
    for device_id, *values in rows(pipeline, f"SELECT device_id, {', '.join(DEVICE_COLUMNS)} "
                                             f"FROM {DATASET}.dim_devices"):
        device = dict(zip(DEVICE_COLUMNS, values, strict=True))
        for column in ("first_response_at", "last_response_at"):
            device[column] = utc(device[column])
        devices[device_id] = device
    return {"fct": facts, "daily": daily, "devices": devices}


def assert_marts_match_truth(pipeline: dlt.Pipeline, truth: dict, as_of: datetime) -> dict:
    """The marts equal the figures computed in Python from what the API serves now."""
    got = marts(pipeline)
    facts = expected.responses(truth)
    assert got["fct"] == facts
    assert got["daily"] == expected.nps_daily(facts)
    assert got["devices"] == expected.devices(truth, facts, as_of)
    return got


def survey_to_remove(truth: dict) -> int:
    """The survey with most responses."""
    counts: dict[int, int] = {}
    for response in truth["survey_responses"]:
        counts[response["survey_id"]] = counts.get(response["survey_id"], 0) + 1
    return max(counts, key=counts.__getitem__)


def local_day_differs(device: dict, responses: list[dict]) -> bool:
    """Some response of ``device`` falls on another day in its time zone than in UTC."""
    zone = ZoneInfo(device["timezone"])
    return any(expected.parse_ts(r["created_at"]).astimezone(zone).date()
               != expected.parse_ts(r["created_at"]).date() for r in responses)


def erasure_plan(truth: dict, spare_survey: int | None = None) -> dict[str, Any]:
    """What to erase upstream: a device with a time zone whose responses stay (some fall on
    another local day than in UTC, so its dropped time zone shows in response_date), one of
    its responses, a device erased together with all its responses, and a few other
    responses, one with an nps answer at least. Responses of ``spare_survey`` are left alone."""
    by_device: dict[str, list[dict]] = {}
    for response in truth["survey_responses"]:
        if response["survey_id"] != spare_survey:
            by_device.setdefault(response["device_id"], []).append(response)
    kept_device = next(d for d in sorted(truth["devices"], key=lambda d: d["id"])
                       if d.get("timezone") and len(by_device.get(d["id"], [])) > 3
                       and local_day_differs(d, by_device[d["id"]][1:]))
    gone_device = next(d["id"] for d in sorted(truth["devices"], key=lambda d: d["id"])
                       if d["id"] != kept_device["id"] and 0 < len(by_device.get(d["id"], [])))
    gone_device_responses = [r["id"] for r in by_device[gone_device]]
    others = sorted(r["id"] for device, responses in by_device.items()
                    if device not in (kept_device["id"], gone_device) for r in responses)
    erased = [by_device[kept_device["id"]][0]["id"], *others[:3], *others[-2:]]
    return {"kept_device": kept_device["id"], "gone_device": gone_device,
            "responses": erased + gone_device_responses}


def erase(sandbox, plan: dict[str, Any]) -> None:
    sandbox.erase_records("survey_responses", plan["responses"])
    sandbox.erase_records("devices", [plan["kept_device"], plan["gone_device"]])


def test_a_survey_gone_from_the_list_leaves_the_marts_and_comes_back(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    survey = survey_to_remove(sandbox.truth())
    clock.advance(3600)
    gone = sandbox.remove_survey(survey)
    assert gone
    clock.advance(60)
    removed_at = now(clock)
    result = sync(sandbox, tmp_path, clock)

    # The survey and its responses are marked with the time this sync first saw it gone.
    assert marks(tmp_path, "surveys")[survey] == removed_at
    responses = marks(tmp_path, "survey_responses")
    assert {rid for rid, at in responses.items() if at is not None} == set(gone)
    assert {responses[rid] for rid in gone} == {removed_at}
    assert {rid for rid, at in marks(tmp_path, "surveys").items() if at is not None} == {survey}
    assert result.report.marks.marked == {"surveys": 1, "survey_responses": len(gone)}

    as_of = build(result.pipeline, clock)
    # Staging shows the marks (answers inherit their response's); the marts leave them out and
    # equal what the API serves now, which no longer has the survey.
    assert rows(result.pipeline, f"SELECT deleted_at FROM {DATASET}.stg_surveys "
                                 f"WHERE survey_id = {survey}") == [(removed_at,)]
    answer_marks = dict(rows(result.pipeline, f"SELECT response_id, MIN(deleted_at) "
                                              f"FROM {DATASET}.stg_survey_answers "
                                              f"GROUP BY response_id"))
    assert {rid for rid, at in answer_marks.items() if at is not None} == set(gone)
    assert {utc(answer_marks[rid]) for rid in gone} == {removed_at}
    truth = sandbox.truth()
    got = assert_marts_match_truth(result.pipeline, truth, as_of)
    assert got["fct"] and not {f["survey_id"] for f in got["fct"].values()} & {survey}
    assert not {key[0] for key in got["daily"]} & {survey}

    # Restored upstream: unmarked, and back in the marts.
    clock.advance(3600)
    assert sorted(sandbox.restore_survey(survey)) == sorted(gone)
    clock.advance(60)
    result = sync(sandbox, tmp_path, clock)
    assert all(at is None for at in marks(tmp_path, "surveys").values())
    assert all(at is None for at in marks(tmp_path, "survey_responses").values())
    as_of = build(result.pipeline, clock)
    got = assert_marts_match_truth(result.pipeline, sandbox.truth(), as_of)
    assert set(gone) <= set(got["fct"])


def test_erased_responses_and_devices_are_marked_by_reconcile_and_leave_the_marts(
        start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    before = sandbox.truth()
    plan = erasure_plan(before)
    clock.advance(3600)
    erase(sandbox, plan)
    clock.advance(60)
    reconciled_at = now(clock)
    result = sync(sandbox, tmp_path, clock, reconcile=True)

    devices = marks(tmp_path, "devices")
    assert {d for d, at in devices.items() if at is not None} == {plan["kept_device"],
                                                                  plan["gone_device"]}
    assert {devices[plan["kept_device"]], devices[plan["gone_device"]]} == {reconciled_at}
    responses = marks(tmp_path, "survey_responses")
    assert {r for r, at in responses.items() if at is not None} == set(plan["responses"])
    assert {responses[r] for r in plan["responses"]} == {reconciled_at}
    assert result.report.reconcile.marks.marked == {
        "devices": 2, "survey_responses": len(plan["responses"])}

    as_of = build(result.pipeline, clock)
    truth = sandbox.truth()
    got = assert_marts_match_truth(result.pipeline, truth, as_of)
    assert not set(plan["responses"]) & set(got["fct"])
    assert not {plan["kept_device"], plan["gone_device"]} & set(got["devices"])
    # The erased device's other responses stay, with its id; its time zone is gone with it,
    # so their day is UTC's, which differs from the local day for some of them.
    kept = [f for f in got["fct"].values() if f["device_id"] == plan["kept_device"]]
    assert kept and all(f["response_date"] == f["responded_at"].date() for f in kept)
    zone = ZoneInfo(next(d["timezone"] for d in before["devices"]
                         if d["id"] == plan["kept_device"]))
    assert any(f["responded_at"].astimezone(zone).date() != f["response_date"] for f in kept)
    assert any(key[1] == plan["kept_device"] for key in got["daily"])

    # The data tests still catch real breakage: a live response naming a device never seen.
    rows(result.pipeline, f"UPDATE {DATASET}.survey_responses SET device_id = 'no-such-device' "
                          f"WHERE id = {min(f['response_id'] for f in got['fct'].values())}")
    with pytest.raises(DataTestFailed) as failed:
        build_models(result.pipeline, now=as_of)
    (known,) = failed.value.failures
    assert known.name == "responses_have_known_device" and known.offending == 1
    assert "no-such-device" in str(failed.value)


def purge_statements() -> list[str]:
    """The purge SQL of the README's "Deletions" subsection, statement by statement."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Deletions", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def test_the_readme_purge_removes_marked_rows_for_good(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    sync(sandbox, tmp_path, clock)
    survey = survey_to_remove(sandbox.truth())
    plan = erasure_plan(sandbox.truth(), spare_survey=survey)
    clock.advance(3600)
    removed = sandbox.remove_survey(survey)
    erase(sandbox, plan)
    clock.advance(60)
    result = sync(sandbox, tmp_path, clock, reconcile=True)
    build(result.pipeline, clock)
    before = marts(result.pipeline)
    marked = {table: {rid for rid, at in marks(tmp_path, table).items() if at is not None}
              for table in ("surveys", "survey_responses", "devices")}
    assert marked == {"surveys": {survey},
                      "survey_responses": set(plan["responses"]) | set(removed),
                      "devices": {plan["kept_device"], plan["gone_device"]}}

    statements = purge_statements()
    assert len(statements) == 5 and all(s.startswith("DELETE FROM") for s in statements)
    for dialect in ("postgres", "snowflake", "bigquery"):  # the README says they take it as is
        for statement in statements:
            assert isinstance(sqlglot.parse_one(statement, read=dialect), sqlglot.exp.Delete)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        for statement in statements:
            connection.execute(statement)

    def check_purged() -> None:
        assert not marked["surveys"] & set(marks(tmp_path, "surveys"))
        assert not marked["survey_responses"] & set(marks(tmp_path, "survey_responses"))
        assert all(at is None for at in marks(tmp_path, "surveys").values())
        assert all(at is None for at in marks(tmp_path, "survey_responses").values())
        # A marked device goes once no kept response names it; one that kept responses still
        # name stays marked (a kiosk, no personal data) so they keep a known device.
        assert {d for d, at in marks(tmp_path, "devices").items() if at is not None} == {
            plan["kept_device"]}
        assert plan["gone_device"] not in marks(tmp_path, "devices")
        assert plan["kept_device"] in {device for (device,) in query(
            tmp_path, f"SELECT device_id FROM {DATASET}.survey_responses")}
        for child, parent in (("survey_responses__answers", "survey_responses"),
                              ("surveys__questions", "surveys")):
            assert query(tmp_path, f"SELECT COUNT(*) FROM {DATASET}.{child} AS c "
                                   f"WHERE NOT EXISTS (SELECT 1 FROM {DATASET}.{parent} AS p "
                                   f"WHERE p._dlt_id = c._dlt_parent_id)") == [(0,)]
        # The question history keeps the removed survey's questions: texts, no personal data.
        assert query(tmp_path, f"SELECT COUNT(*) > 0 FROM {DATASET}.survey_questions "
                               f"WHERE survey_id = {survey}") == [(True,)]

    check_purged()
    build(result.pipeline, clock)
    assert marts(result.pipeline) == before  # the marts already treated them as purged

    # The next sync, reconcile included, brings none of them back.
    clock.advance(3600)
    result = sync(sandbox, tmp_path, clock, reconcile=True)
    check_purged()
    assert result.report.marks.marked == {} and result.report.marks.unmarked == {}
    as_of = build(result.pipeline, clock)
    assert_marts_match_truth(result.pipeline, sandbox.truth(), as_of)


def test_a_device_erased_before_the_first_sync_is_recorded_as_deleted(
        start_sandbox, tmp_path, clock, caplog):
    # A kiosk decommissioned before the connector's first sync: the API no longer serves it,
    # its responses name it, and responses_have_known_device failed every build (exit 4), from
    # the first sync on, and again after any --full-refresh of devices.
    sandbox = start_sandbox(clock=clock, **SMALL)
    gone = sandbox.truth()["devices"][0]["id"]
    sandbox.erase_records("devices", [gone])
    clock.advance(60)
    sandbox.reset_stats()
    first = sync(sandbox, tmp_path, clock)
    as_of = build(first.pipeline, clock)
    assert marks(tmp_path, "devices")[gone] == as_of.replace(microsecond=0)
    assert first.report.marks.marked == {"devices": 1}
    listing = sandbox.stats()["requests"]
    assert any(f["device_id"] == gone for f in assert_marts_match_truth(
        first.pipeline, sandbox.truth(), as_of)["fct"].values())

    # Once recorded, no listing: the next sync costs what any sync costs.
    clock.advance(3600)
    sandbox.reset_stats()
    sync(sandbox, tmp_path, clock)
    recorded = sandbox.stats()["requests"]
    clock.advance(3600)
    sandbox.reset_stats()
    sync(sandbox, tmp_path, clock)
    assert sandbox.stats()["requests"] == recorded < listing
    build(first.pipeline, clock)

    # A full refresh of devices drops the row; it is recorded again, and said so (not "never
    # loaded").
    clock.advance(3600)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="micrometrics"):
        sync_sandbox(sandbox, tmp_path, clock, SyncOptions(resources=("devices",),
                                                           full_refresh=True),
                     rate=1000.0, burst=1000)
    assert marks(tmp_path, "devices")[gone] is not None
    assert ("1 device(s) that responses name are no longer served by the API and the "
            "destination holds no row of (erased before a sync saw them, or their rows dropped "
            "by a --full-refresh): recorded as deleted") in caplog.text
    build(first.pipeline, clock)

    # A device the API still lists but the table lacks (a read missed it) is not recorded: the
    # data test says so, and the devices are read again from their start by the next sync.
    kept = sandbox.truth()["devices"][1]["id"]
    rows(first.pipeline, f"DELETE FROM {DATASET}.devices WHERE id = '{kept}'")
    clock.advance(3600)
    sandbox.add_responses(3)
    sync(sandbox, tmp_path, clock)
    assert kept not in marks(tmp_path, "devices")
    with pytest.raises(DataTestFailed, match="responses_have_known_device"):
        build_models(first.pipeline, now=now(clock))
    clock.advance(3600)
    sync(sandbox, tmp_path, clock)
    assert marks(tmp_path, "devices")[kept] is None  # read again, live
    build(first.pipeline, clock)

    # Recorded as erased, then listed again (an undelete keeps its updated_at, which no
    # incremental read reaches): unmarked, the row was a live device with no name or zone.
    rows(first.pipeline, f"DELETE FROM {DATASET}.devices WHERE id = '{kept}'")
    rows(first.pipeline, f"INSERT INTO {DATASET}.devices (id, deleted_at, _dlt_load_id, "
                         f"_dlt_id) VALUES ('{kept}', TIMESTAMP '2026-03-01 00:00:00', '1', 'x')")
    clock.advance(3600)
    sync(sandbox, tmp_path, clock, reconcile=True)
    # Kept marked until then: deleted, its responses failed that sync's build (exit 4).
    assert marks(tmp_path, "devices")[kept] is not None
    build(first.pipeline, clock)
    clock.advance(3600)
    sync(sandbox, tmp_path, clock)
    assert marks(tmp_path, "devices")[kept] is None
    ((name,),) = rows(first.pipeline, f"SELECT name FROM {DATASET}.devices WHERE id = '{kept}'")
    assert name == next(d["name"] for d in sandbox.truth()["devices"] if d["id"] == kept)
    build(first.pipeline, clock)


def test_a_device_the_api_lists_but_the_table_lacks_is_not_listed_every_sync(
        start_sandbox, tmp_path, clock):
    # Its record quarantined (no loadable updated_at), a device named by responses stays
    # unknown: every sync listed every device again (50 requests a sync for 5,000 devices).
    sandbox = start_sandbox(clock=clock, devices=250, surveys=2, responses=40, page_size=100,
                            rate=1000.0, burst=1000)
    survey = sandbox.truth()["surveys"][0]["id"]
    sandbox.add_malformed("devices", {"id": "dev-odd", "name": "Lobby", "updated_at": "soon"})
    sandbox.add_malformed("survey_responses", {
        "id": 990001, "survey_id": survey, "device_id": "dev-odd", "answers": [],
        "created_at": "2026-03-15T10:00:00.000Z", "updated_at": "2026-03-15T10:00:00.000Z"},
        survey_id=survey)
    device_requests = []
    for _ in range(3):
        sandbox.reset_stats()
        sync(sandbox, tmp_path, clock)
        device_requests.append(sandbox.stats()["by_endpoint"]["devices"])
        clock.advance(3600)
        sandbox.add_responses(2)
    # The first sync reads the devices (3 pages) and lists them (3 more, and one for what
    # changed while it listed); after that only the incremental read: read again, the
    # quarantined record would be quarantined again (fixed upstream, it gets a new updated_at
    # that the incremental read reaches).
    assert device_requests == [7, 1, 1]


def test_a_device_set_up_during_a_backfill_is_loaded_by_the_next_sync_without_a_reread(
        start_sandbox, tmp_path, clock, caplog):
    # A kiosk set up while a first sync pages the responses: responses read later in that
    # sync name it, and the devices were read before it existed. The next incremental read
    # loads it; the warning blamed the quarantine, and the devices were all read again.
    sandbox = start_sandbox(clock=clock, devices=40, surveys=2, responses=200, page_size=7,
                            order="asc", rate=1000.0, burst=1000)
    survey = sandbox.truth()["surveys"][0]["id"]
    newest = max((r for r in sandbox.truth()["survey_responses"] if r["survey_id"] == survey),
                 key=lambda r: r["updated_at"])["id"]  # oldest first: on its survey's last page
    kiosk: list[str] = []

    def set_up_a_kiosk():
        clock.advance(120)  # past the end of the devices' window, whether read or not yet
        kiosk.extend(sandbox.add_devices(1))
        sandbox.patch_records("survey_responses", [newest], {"device_id": kiosk[0]},
                              bump=False)

    sandbox.after_page("survey_responses", 1, set_up_a_kiosk)
    first = sync(sandbox, tmp_path, clock)
    assert kiosk and kiosk[0] not in marks(tmp_path, "devices")
    assert query(tmp_path, f"SELECT device_id FROM {DATASET}.survey_responses "
                           f"WHERE id = {newest}") == [(kiosk[0],)]
    assert f"device(s) {kiosk[0]} that responses name are listed by the API but not in the " \
           "devices table: added or changed since this sync began" in caplog.text
    assert "quarantined" not in caplog.text and "read again" not in caplog.text

    clock.advance(3600)
    sandbox.reset_stats()
    sync(sandbox, tmp_path, clock)
    assert sandbox.stats()["by_endpoint"]["devices"] == 1  # incremental, not all 6 pages again
    assert marks(tmp_path, "devices")[kiosk[0]] is None
    build(first.pipeline, clock)


def test_a_device_set_up_during_a_long_sync_is_loaded_by_that_sync(
        start_sandbox, tmp_path, clock):
    # The same kiosk, in a sync of several rounds: its closing round reads the devices changed
    # since the sync began (see relist), so that sync's build passes, exit 0, not 4.
    sandbox = start_sandbox(clock=clock, devices=40, surveys=2, responses=200, page_size=7,
                            order="asc", rate=1000.0, burst=1000)
    survey = sandbox.truth()["surveys"][0]["id"]
    newest = max((r for r in sandbox.truth()["survey_responses"] if r["survey_id"] == survey),
                 key=lambda r: r["updated_at"])["id"]
    kiosk: list[str] = []

    def set_up_a_kiosk():
        clock.advance(120)
        kiosk.extend(sandbox.add_devices(1))
        sandbox.patch_records("survey_responses", [newest], {"device_id": kiosk[0]},
                              bump=False)

    sandbox.after_page("survey_responses", 1, set_up_a_kiosk)
    first = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000, window_pages=3)
    assert first.report.rounds > 2
    assert marks(tmp_path, "devices")[kiosk[0]] is None
    build(first.pipeline, clock)
