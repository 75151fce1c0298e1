"""Mutations (Python API, control route, POST/PUT) are visible over HTTP and in truth()."""

from __future__ import annotations

import json

import pytest
import requests

from pipelines.micrometrics.auth import http_date

from .support import walk

BASE = "/api/experience"


def _responses(api, sb, **params) -> dict[int, dict]:
    out = {}
    for survey in sb.truth()["surveys"]:
        url = f"{sb.url}{BASE}/surveys/{survey['id']}/responses"
        out.update({r["id"]: r for r in walk(api, url, params)[0]})
    return out


def test_add_and_update_responses(sandbox, api, clock):
    clock.advance(3600)
    new_ids = sandbox.add_responses(3, survey_id=238)
    changed = sandbox.update_responses(2)
    now = http_date(clock())  # sanity: the fake clock drives the Date header too
    recent = _responses(api, sandbox, start_at="2026-03-15T13:00:00Z")
    assert set(recent) == set(new_ids) | set(changed)
    assert all(recent[i]["survey_id"] == 238 for i in new_ids)
    assert all(r["updated_at"] == "2026-03-15T13:34:56.000Z" for r in recent.values())
    truth = {r["id"]: r for r in sandbox.truth()["survey_responses"]}
    assert all(truth[i] == recent[i] for i in recent)
    assert api.get(sandbox.url + BASE + "/surveys").headers["Date"] == now


def test_late_responses_carry_old_updated_at(sandbox, clock):
    ids = sandbox.add_late_responses(2, delay_seconds=1800)
    truth = {r["id"]: r for r in sandbox.truth()["survey_responses"]}
    assert [truth[i]["updated_at"] for i in ids] == ["2026-03-15T12:04:56.000Z"] * 2


def test_devices_and_surveys(sandbox, api):
    added, updated = sandbox.add_devices(2), sandbox.update_devices(3)
    survey_id = sandbox.add_survey()
    devices = {d["id"] for d in walk(api, sandbox.url + BASE + "/devices", {})[0]}
    assert set(added) | set(updated) <= devices
    survey = api.get(f"{sandbox.url}{BASE}/surveys/{survey_id}").json()
    assert survey["questions"][0]["type"] == "nps"
    assert api.get(f"{sandbox.url}{BASE}/surveys/{survey_id}/responses").json() == []
    one = api.get(f"{sandbox.url}{BASE}/devices/{added[0]}")
    assert one.status_code == 200 and one.json()["id"] == added[0]


def test_mutate_control_route(sandbox):
    response = requests.post(
        sandbox.url + "/_sandbox/mutate", json={"action": "add_responses", "count": 2}
    )
    assert response.status_code == 200 and len(response.json()["ids"]) == 2
    survey = requests.post(sandbox.url + "/_sandbox/mutate", json={"action": "add_survey"})
    assert survey.json() == {"ids": [242]}
    bad = requests.post(sandbox.url + "/_sandbox/mutate", json={"action": "drop_tables"})
    assert bad.status_code == 400


def test_post_and_put_responses(sandbox, api, clock):
    url = f"{sandbox.url}{BASE}/surveys/237/responses"
    body = {"device_id": "dev", "answers": [{"question_id": 1001, "value": 9}], "comment": "Ünï"}
    created = api.post(url, json=body)
    assert created.status_code == 201
    record = created.json()
    assert record["survey_id"] == 237 and record["comment"] == "Ünï"
    assert record["created_at"] == record["updated_at"]
    clock.advance(10)
    put = api.put(f"{url}/{record['id']}", json={"comment": None})
    assert put.status_code == 200 and put.json()["comment"] is None
    assert put.json()["updated_at"] > record["updated_at"]
    truth = {r["id"]: r for r in sandbox.truth()["survey_responses"]}
    assert truth[record["id"]] == put.json()


def test_ids_gone_are_never_handed_out_again(sandbox, api):
    """The vendor never reuses an id: a response, survey or question created after the newest
    one was erased, removed or dropped gets a new id, and restoring the old one loses nothing."""
    url = f"{sandbox.url}{BASE}/surveys/237/responses"
    body = {"device_id": "dev", "answers": [{"question_id": 1001, "value": 9}]}
    first = api.post(url, json={**body, "comment": "first"}).json()
    sandbox.store.erase_records("survey_responses", [first["id"]])
    second = api.post(url, json={**body, "comment": "second"}).json()
    assert second["id"] > first["id"]
    sandbox.store.restore_records("survey_responses", [first["id"]])
    comments = {r["id"]: r.get("comment") for r in sandbox.truth()["survey_responses"]}
    assert (comments[first["id"]], comments[second["id"]]) == ("first", "second")

    newest = max(s["id"] for s in sandbox.truth()["surveys"])
    old_questions = {q["id"] for q in sandbox.store.get("surveys", newest)["questions"]}
    sandbox.store.remove_survey(newest)
    [dropped] = sandbox.store.edit_questions(237, add=["nps"])
    sandbox.store.edit_questions(237, drop=[dropped])
    added = sandbox.add_survey()
    new_questions = {q["id"] for q in sandbox.store.get("surveys", added)["questions"]}
    assert added > newest
    assert not new_questions & (old_questions | {dropped})
    sandbox.store.restore_survey(newest)
    surveys = {s["id"]: s for s in sandbox.truth()["surveys"]}
    assert {q["id"] for q in surveys[newest]["questions"]} == old_questions
    assert {q["id"] for q in surveys[added]["questions"]} == new_questions


def test_errors_404_405_400(sandbox, api):
    assert api.get(sandbox.url + BASE + "/nothing").status_code == 404
    assert api.get(sandbox.url + BASE + "/devices/unknown").status_code == 404
    assert api.get(sandbox.url + BASE + "/surveys/9999/responses").status_code == 404
    assert api.put(sandbox.url + BASE + "/surveys/237/responses/1", json={}).status_code == 404
    wrong = api.delete(sandbox.url + BASE + "/devices")
    assert wrong.status_code == 405 and "error" in wrong.json()
    bad = api.post(sandbox.url + BASE + "/surveys/237/responses", data=b"{not json",
                   headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    shape = api.post(sandbox.url + BASE + "/surveys/237/responses", data=json.dumps([1]),
                     headers={"Content-Type": "application/json"})
    assert shape.status_code == 400


def test_data_is_deterministic(make_sandbox):
    a, b = make_sandbox(seed=7).truth(), make_sandbox(seed=7).truth()
    assert a == b and a != make_sandbox(seed=8).truth()


def test_a_response_is_not_restored_into_a_survey_removed_since(sandbox, api):
    # truth() listed it while the API, its survey gone, could not serve it: a harness
    # comparing the warehouse with the truth reported a loss the connector had not made.
    url = f"{sandbox.url}{BASE}/surveys/237/responses"
    body = {"device_id": "dev", "answers": [{"question_id": 1001, "value": 9}]}
    erased = api.post(url, json=body).json()["id"]
    sandbox.store.erase_records("survey_responses", [erased])
    sandbox.store.remove_survey(237)
    with pytest.raises(ValueError, match="restore the survey first"):
        sandbox.store.restore_records("survey_responses", [erased])
    assert erased not in {r["id"] for r in sandbox.truth()["survey_responses"]}
    sandbox.store.restore_survey(237)
    sandbox.store.restore_records("survey_responses", [erased])  # now it can be served
    assert api.get(url).status_code == 200
    assert erased in {r["id"] for r in sandbox.truth()["survey_responses"]}
