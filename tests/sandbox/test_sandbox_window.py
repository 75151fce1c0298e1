"""start_at / end_at: defaults, boundary modes, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from .support import EARLY, LATE, walk

DEVICES = "/api/experience/devices"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_default_window_is_last_month(sandbox, api, clock):
    truth = sandbox.truth()["devices"]
    now = datetime.fromtimestamp(clock(), UTC)
    served = {d["id"] for d in walk(api, sandbox.url + DEVICES, {})[0]}
    old = {d["id"] for d in truth if _ts(d["updated_at"]) < now - timedelta(days=32)}
    recent = {d["id"] for d in truth if _ts(d["updated_at"]) > now - timedelta(days=27)}
    assert recent and old and len(old) >= 0.8 * len(truth) * 0.9
    assert recent <= served and not (old & served)
    everything = walk(api, sandbox.url + DEVICES, {"start_at": EARLY})[0]
    assert {d["id"] for d in everything} == {d["id"] for d in truth}


def test_end_at_alone_keeps_the_default_start(sandbox, api, clock):
    """The vendor's default start is a month before the end of today, whatever end_at says: an
    end_at two months back with no start_at serves nothing, not the month before it."""
    now = datetime.fromtimestamp(clock(), UTC)
    truth = sandbox.truth()["devices"]
    end = now - timedelta(days=60)
    assert any(end - timedelta(days=25) < _ts(d["updated_at"]) < end for d in truth)
    records, _ = walk(api, sandbox.url + DEVICES, {"end_at": end.isoformat()})
    assert records == []
    recent_end = now - timedelta(days=5)
    served = {d["id"] for d in walk(api, sandbox.url + DEVICES,
                                    {"end_at": recent_end.isoformat()})[0]}
    expected = {d["id"] for d in truth
                if now - timedelta(days=27) < _ts(d["updated_at"]) <= recent_end}
    assert expected and expected <= served
    assert all(_ts(d["updated_at"]) <= recent_end for d in truth if d["id"] in served)


def test_data_spans_more_than_a_year(sandbox):
    times = sorted(_ts(d["updated_at"]) for d in sandbox.truth()["devices"])
    assert times[-1] - times[0] > timedelta(days=365)


@pytest.mark.parametrize(
    "boundary,at_start,at_end",
    [("closed", True, True), ("open", False, False), ("left", True, False),
     ("right", False, True)],
)
def test_boundary_modes(make_sandbox, api, boundary, at_start, at_end):
    sb = make_sandbox(boundary=boundary)
    device = sb.truth()["devices"][0]
    t = device["updated_at"]  # e.g. 2025-11-09T22:23:34.017Z

    def served(**params) -> bool:
        records, _ = walk(api, sb.url + DEVICES, {"start_at": EARLY, "end_at": LATE, **params})
        return device["id"] in {d["id"] for d in records}

    assert served(start_at=t) is at_start
    assert served(end_at=t) is at_end
    # The same instant written with another offset is the same bound.
    shifted = (_ts(t).astimezone(timezone(timedelta(hours=-4)))).isoformat(timespec="milliseconds")
    assert served(start_at=shifted) is at_start


@pytest.mark.parametrize(
    "params,name",
    [({"start_at": "yesterday"}, "start_at"),
     ({"end_at": "2024-01-01T00:00:00"}, "end_at"),  # no offset
     ({"start_at": "2024-13-01T00:00:00Z"}, "start_at"),
     ({"start_at": "2024-02-01T00:00:00Z", "end_at": "2024-01-01T00:00:00Z"}, "start_at")],
)
def test_bad_bounds_are_400(sandbox, api, params, name):
    response = api.get(sandbox.url + DEVICES, params=params)
    assert response.status_code == 400
    assert name in response.json()["error"]


def test_offset_and_millisecond_forms_accepted(sandbox, api):
    forms = ("2020-09-05T23:59:59.999-04:00", "2020-09-05T23:59:59Z", "2020-09-05T23:59:59+0200")
    for bound in forms:
        assert api.get(sandbox.url + DEVICES, params={"start_at": bound}).status_code == 200
