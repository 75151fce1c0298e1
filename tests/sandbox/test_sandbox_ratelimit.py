"""Leaky bucket: headers, 429 after the burst, admitted again after Retry-After."""

from __future__ import annotations

from pipelines.sandbox.ratelimit import LeakyBucket

from .support import signed_session

SURVEYS = "/api/experience/surveys"


def test_headers_and_burst_remaining_decreasing(make_sandbox, api):
    sb = make_sandbox(rate=1.0, burst=10)
    remaining = []
    for _ in range(3):
        response = api.get(sb.url + SURVEYS)
        assert response.headers["RateLimit-Rate"] == "1"
        assert response.headers["RateLimit-Retry-After"] == "0.000"
        remaining.append(int(response.headers["RateLimit-Burst-Remaining"]))
    assert remaining == [9, 8, 7]


def test_429_after_burst_then_admitted_after_retry_after(make_sandbox, clock):
    sb = make_sandbox(rate=2.0, burst=3)
    with signed_session(clock) as api:
        codes = [api.get(sb.url + SURVEYS).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        throttled = api.get(sb.url + SURVEYS)
        assert throttled.status_code == 429
        assert throttled.json() == {"error": "Too Many Requests"}
        assert throttled.headers["RateLimit-Burst-Remaining"] == "0"
        wait = float(throttled.headers["RateLimit-Retry-After"])
        assert wait == 0.5
        # A refused request adds nothing: still refused just before the wait is over.
        clock.advance(wait - 0.01)
        assert api.get(sb.url + SURVEYS).status_code == 429
        clock.advance(0.01)
        again = api.get(sb.url + SURVEYS)
        assert again.status_code == 200
        assert again.headers["RateLimit-Burst-Remaining"] == "0"
    stats = sb.stats()
    assert stats["throttled"] == 2 and stats["by_status"] == {200: 4, 429: 2}


def test_bucket_is_per_key_and_fractional():
    bucket = LeakyBucket(rate=1.0, burst=2)
    assert bucket.admit("a", 0.0).admitted and bucket.admit("a", 0.0).admitted
    refused = bucket.admit("a", 0.0)
    assert not refused.admitted and refused.retry_after == 1.0
    assert bucket.admit("b", 0.0).admitted  # another key has its own bucket
    assert bucket.admit("a", 0.25).retry_after == 0.75  # continuous leak
    assert bucket.admit("a", 1.0).admitted


def test_a_request_that_read_the_clock_earlier_but_comes_in_later_leaks_nothing_twice():
    bucket = LeakyBucket(rate=1.0, burst=10)
    for _ in range(10):
        assert bucket.admit("k", 100.0).admitted
    assert bucket.admit("k", 101.0).admitted  # a second leaked one token
    assert not bucket.admit("k", 100.0).admitted  # read the clock before that one
    assert not bucket.admit("k", 101.0).admitted  # the same second, its token already used
