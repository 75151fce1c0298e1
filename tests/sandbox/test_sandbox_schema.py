"""Record patches and malformed records, for schema-evolution and robustness tests."""

from __future__ import annotations

import pytest
import requests

from .support import EARLY, LATE, walk

BASE = "/api/experience"


def _served(api, sb, path: str, **params) -> tuple[list[dict], list]:
    return walk(api, sb.url + BASE + path, {"start_at": EARLY, **params})


def test_patch_records_any_json_value(sandbox, api, clock):
    device_ids = [d["id"] for d in sandbox.truth()["devices"][:2]]
    old = {d["id"]: d for d in sandbox.truth()["devices"]}
    clock.advance(60)
    fields = {
        "status": {"code": 3, "labels": ["a", "b"]},  # was a string
        "tags": [1, "two", None, {"x": [True]}],
        "notes": "ü" * 5000,
        "firmware_version": None,
    }
    assert sandbox.patch_records("devices", device_ids, fields) == device_ids
    fields["tags"].append("caller's later change must not leak")
    truth = {d["id"]: d for d in sandbox.truth()["devices"]}
    served = {d["id"]: d for d in _served(api, sandbox, "/devices")[0]}
    for did in device_ids:
        assert truth[did]["status"] == {"code": 3, "labels": ["a", "b"]}
        assert truth[did]["tags"] == [1, "two", None, {"x": [True]}]
        assert truth[did]["notes"] == "ü" * 5000 and truth[did]["name"] == old[did]["name"]
        assert truth[did]["updated_at"] == "2026-03-15T12:35:56.000Z"
        assert served[did] == truth[did]
    # The bump moves them into a window of "now" only.
    recent = _served(api, sandbox, "/devices", start_at="2026-03-15T12:35:00Z")[0]
    assert {d["id"] for d in recent} == set(device_ids)
    # Later mutations still work on patched records.
    assert len(sandbox.update_devices(40)) == 40


def test_patch_without_bump_and_explicit_updated_at(sandbox, api, clock):
    survey = sandbox.truth()["surveys"][0]
    clock.advance(60)
    sandbox.patch_records("surveys", [survey["id"]], {"locale": "de-CH"}, bump=False)
    patched = sandbox.truth()["surveys"][0]
    assert patched == {**survey, "locale": "de-CH"}
    sandbox.patch_records("surveys", [survey["id"]], {"updated_at": "2001-02-03T04:05:06+01:00"})
    assert sandbox.truth()["surveys"][0]["updated_at"] == "2001-02-03T04:05:06+01:00"
    window = {"start_at": "2001-02-03T03:05:06Z", "end_at": "2001-02-03T03:05:06Z"}
    assert [s["id"] for s in _served(api, sandbox, "/surveys", **window)[0]] == [survey["id"]]


def test_patched_questions_do_not_break_mutations(sandbox):
    surveys = [s["id"] for s in sandbox.truth()["surveys"]]
    sandbox.patch_records("surveys", surveys, {"questions": "gone"})
    assert len(sandbox.update_responses(5)) == 5
    assert len(sandbox.add_responses(2)) == 2
    assert sandbox.add_survey() == max(surveys) + 1


def test_patch_records_errors_and_control_route(sandbox):
    rid = sandbox.truth()["survey_responses"][0]["id"]
    with pytest.raises(KeyError):
        sandbox.patch_records("survey_responses", [rid, -5], {"x": 1})
    with pytest.raises(KeyError):
        sandbox.patch_records("widgets", [rid], {"x": 1})
    for fields in ({"id": 1}, {"updated_at": "yesterday"}, {"x": object()}, [1]):
        with pytest.raises(ValueError):
            sandbox.patch_records("survey_responses", [rid], fields)
    assert "x" not in {k for r in sandbox.truth()["survey_responses"] for k in r}
    reply = requests.post(
        sandbox.url + "/_sandbox/mutate",
        json={"action": "patch_records", "kind": "survey_responses", "ids": [rid],
              "fields": {"answers": {"now": "an object"}}, "bump": False},
    )
    assert reply.status_code == 200 and reply.json() == {"ids": [rid]}
    truth = {r["id"]: r for r in sandbox.truth()["survey_responses"]}
    assert truth[rid]["answers"] == {"now": "an object"}
    bad = requests.post(
        sandbox.url + "/_sandbox/mutate",
        json={"action": "patch_records", "kind": "devices", "ids": ["nope"], "fields": {}},
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("order", ["shuffled", "asc", "desc"])
def test_malformed_without_time_is_in_every_window_once(make_sandbox, api, order):
    sb = make_sandbox(order=order, page_size=7)
    no_id = {"name": "no id, no updated_at"}
    bad_time = {"id": "dup-ish", "updated_at": "not a time"}
    naive = {"id": 99, "updated_at": "2026-03-15 12:00:00"}  # no offset: unparseable
    sb.add_malformed("devices", no_id)
    sb.add_malformed("devices", bad_time)
    sb.add_malformed("devices", naive)
    for window in ({}, {"start_at": LATE, "end_at": LATE}, {"start_at": EARLY}):
        records, responses = walk(api, sb.url + BASE + "/devices", window)
        assert records.count(no_id) == records.count(bad_time) == records.count(naive) == 1
        first = responses[0].json()
        assert no_id in first and bad_time in first and naive in first
    assert sb.malformed()["devices"] == [no_id, bad_time, naive]
    assert all(d.get("id") not in ("dup-ish", 99) for d in sb.truth()["devices"])
    assert len(sb.truth()["devices"]) == 40


@pytest.mark.parametrize("order", ["shuffled", "asc", "desc"])
def test_malformed_with_time_is_filtered(make_sandbox, api, order):
    sb = make_sandbox(order=order, page_size=10)
    # Same millisecond as a generated response: the sort key still breaks the tie.
    twin_time = next(
        r["updated_at"] for r in sb.truth()["survey_responses"] if r["survey_id"] == 238
    )
    stamped = {"survey_id": 238, "answers": "text", "updated_at": "2026-03-15T12:00:00.000001Z"}
    twin = {"id": "string id", "updated_at": twin_time}
    sb.add_malformed("survey_responses", stamped, survey_id=238)
    sb.add_malformed("survey_responses", twin, survey_id=238)
    url = sb.url + BASE + "/surveys/238/responses"
    inside = walk(api, url, {"start_at": "2026-03-15T12:00:00Z", "end_at": "2026-03-15T12:00:01Z"})
    assert inside[0] == [stamped]
    before = walk(api, url, {"start_at": "2026-03-15T11:00:00Z", "end_at": "2026-03-15T12:00:00Z"})
    assert stamped not in before[0]
    everything = walk(api, url, {"start_at": EARLY})[0]
    assert everything.count(stamped) == everything.count(twin) == 1
    assert twin not in walk(api, sb.url + BASE + "/surveys/237/responses", {"start_at": EARLY})[0]


def test_malformed_defaults_errors_and_control_route(sandbox, api):
    sandbox.add_malformed("survey_responses", {"answers": None})
    first = sandbox.truth()["surveys"][0]["id"]
    served = walk(api, f"{sandbox.url}{BASE}/surveys/{first}/responses", {})[0]
    assert {"answers": None} in served
    with pytest.raises(KeyError):
        sandbox.add_malformed("survey_responses", {}, survey_id=1)
    with pytest.raises(ValueError):
        sandbox.add_malformed("devices", {}, survey_id=first)
    with pytest.raises(ValueError):
        sandbox.add_malformed("devices", ["not", "a", "dict"])
    reply = requests.post(
        sandbox.url + "/_sandbox/mutate",
        json={"action": "add_malformed", "kind": "surveys", "record": {"id": None}},
    )
    assert reply.status_code == 200
    late = {"start_at": LATE, "end_at": LATE}
    assert walk(api, sandbox.url + BASE + "/surveys", late)[0] == [{"id": None}]
    over_http = requests.get(sandbox.url + "/_sandbox/malformed").json()
    assert over_http == sandbox.malformed()
    assert over_http["surveys"] == [{"id": None}]
    assert over_http["survey_responses"] == [{"answers": None}]
    assert requests.get(sandbox.url + "/_sandbox/truth").json() == sandbox.truth()
