"""Cursor chains visit every record exactly once; bad cursors are refused."""

from __future__ import annotations

import itertools

import pytest

from .support import EARLY, LATE, walk

BASE = "/api/experience"


def _walk(api, url: str, params: dict, last_cursor: str) -> tuple[list[dict], int]:
    """Walks a chain and checks how its last page signals the end."""
    records, responses = walk(api, url, params)
    last = responses[-1]
    # On the last page the header is empty or absent, as configured.
    assert ("Next-Cursor" in last.headers) == (last_cursor == "empty")
    assert last.json() or len(responses) == 1, "a cursor never points to an empty page"
    return records, len(responses)


@pytest.mark.parametrize(
    "order,last_cursor", list(itertools.product(["shuffled", "asc", "desc"], ["empty", "absent"]))
)
def test_chains_visit_truth_exactly_once(make_sandbox, api, order, last_cursor):
    sb = make_sandbox(order=order, last_cursor=last_cursor, page_size=40)
    truth = sb.truth()
    window = {"start_at": EARLY, "end_at": LATE}
    for kind, path in (("devices", "/devices"), ("surveys", "/surveys")):
        records, _ = _walk(api, sb.url + BASE + path, window, last_cursor)
        assert sorted(records, key=lambda r: r["id"]) == truth[kind]
    served = []
    for survey in truth["surveys"]:
        url = f"{sb.url}{BASE}/surveys/{survey['id']}/responses"
        served += _walk(api, url, window, last_cursor)[0]
    assert len(served) == len(truth["survey_responses"])
    assert sorted(served, key=lambda r: r["id"]) == truth["survey_responses"]
    if order != "shuffled":
        times = [r["updated_at"] for r in served[:40]]  # first page of the first survey
        assert times == sorted(times, reverse=order == "desc")


def test_shuffled_is_not_time_ordered(sandbox, api):
    page = api.get(sandbox.url + BASE + "/devices", params={"start_at": EARLY}).json()
    times = [d["updated_at"] for d in page]
    assert times != sorted(times) and times != sorted(times, reverse=True)


def test_page_exactly_at_end_has_no_cursor(make_sandbox, api):
    sb = make_sandbox(devices=20, page_size=10, last_cursor="absent")
    _, pages = _walk(api, sb.url + BASE + "/devices", {"start_at": EARLY}, "absent")
    assert pages == 2


def test_record_leaving_window_does_not_shift_others(make_sandbox, api):
    sb = make_sandbox(page_size=10, order="asc")
    url = sb.url + BASE + "/devices"
    params = {"start_at": EARLY, "end_at": LATE}
    first = api.get(url, params=params)
    # Every device changes now: the ones not yet served move behind the cursor's key.
    sb.update_devices(40)
    rest, _ = _walk(api, url, {**params, "cursor": first.headers["Next-Cursor"]}, "empty")
    ids = [r["id"] for r in first.json() + rest]
    assert len(set(ids)) == 40


def test_bad_cursors_are_refused(sandbox, api):
    url = sandbox.url + BASE + "/devices"
    params = {"start_at": EARLY}
    cursor = api.get(url, params=params).headers["Next-Cursor"]
    assert cursor
    body, mac = cursor.split(".")
    for bad in ("garbage", "x.y.z", body + "." + mac[::-1], body[:-2] + "AA." + mac,
                body + "." + mac[:-1] + "é"):
        response = api.get(url, params={**params, "cursor": bad})
        assert response.status_code == 400
        assert response.json()["error"].startswith("invalid cursor")
    # Same cursor with other parameters, or on another path.
    other = api.get(url, params={"start_at": "2001-01-01T00:00:00Z", "cursor": cursor})
    assert other.status_code == 400 and "invalid cursor" in other.json()["error"]
    surveys = api.get(sandbox.url + BASE + "/surveys", params={**params, "cursor": cursor})
    assert surveys.status_code == 400
    assert api.get(url, params={**params, "cursor": cursor}).status_code == 200


def test_stats_count_pages_and_records(make_sandbox, api):
    sb = make_sandbox(devices=30, page_size=10)
    sb.reset_stats()
    records, pages = _walk(api, sb.url + BASE + "/devices", {"start_at": EARLY}, "empty")
    api.get(sb.url + BASE + "/devices", params={"start_at": LATE, "end_at": LATE})  # empty page
    stats = sb.stats()
    assert stats["pages"] == pages + 1 == 4
    assert stats["pages_with_data"] == 3 and stats["empty_pages"] == 1
    assert stats["records_served"] == 30
    assert stats["by_endpoint"] == {"devices": 4} and stats["requests"] == 4
