"""The client-side leaky bucket, on a virtual clock."""

import threading

import pytest

from pipelines.micrometrics.throttle import LeakyBucket
from tests.fakes import FakeClock


def make(rate=1.0, burst=10, skew=0.0):
    """A mirror of the server's bucket; ``skew=0``: the whole burst is usable (the tests of
    departure skew say otherwise)."""
    clock = FakeClock()
    return LeakyBucket(rate=rate, burst=burst, clock=clock, sleep=clock.sleep, skew=skew), clock


def test_burst_goes_out_at_once_then_one_per_second():
    bucket, clock = make()
    started = clock.now
    waits = [bucket.acquire() for _ in range(13)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([1.0, 1.0, 1.0])
    assert clock.now - started == pytest.approx(3.0)


def test_observe_adopts_server_level_and_rate():
    bucket, clock = make()
    bucket.acquire()
    # The server says only 2 more fit (another client shares the key) and leaks 2/s.
    bucket.observe({"RateLimit-Rate": "2", "RateLimit-Burst-Remaining": "2"})
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


def test_observe_lets_us_go_faster_when_server_bucket_is_empty():
    bucket, clock = make()
    for _ in range(10):
        bucket.acquire()
        bucket.observe({"RateLimit-Burst-Remaining": "9"})
    assert bucket.acquire() == 0.0


def test_hold_after_429_blocks_for_retry_after():
    bucket, clock = make()
    bucket.acquire()
    bucket.observe({"RateLimit-Burst-Remaining": "9"})
    bucket.hold(2.5)
    assert bucket.acquire() == pytest.approx(2.5)


def test_threads_queue_behind_each_other():
    # Time stands still and sleep returns at once: each concurrent caller must be booked
    # one leak interval behind the previous, never two on the same slot.
    bucket = LeakyBucket(rate=1.0, burst=5, clock=lambda: 100.0, sleep=lambda s: None, skew=0)
    waits = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            wait = bucket.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0.0] * 5 + [float(n) for n in range(1, 16)])


def test_departure_skew_keeps_that_many_seconds_of_the_burst_free():
    """By default a request may reach the server 0.25 s after its booked instant without
    finding the server's bucket full: at 20/s, 5 tokens of a burst of 20 stay free."""
    bucket, clock = make(rate=20.0, burst=20, skew=0.25)
    waits = [bucket.acquire() for _ in range(17)]
    assert waits == pytest.approx([0.0] * 15 + [0.05, 0.05])
    assert LeakyBucket().skew == 0.25


def test_departure_skew_leaves_one_token_usable():
    """However slow the rate, one request can always go out: at 1 per 10 s a skew of 0.25 s
    would be 0.025 tokens, at 0.01/s with burst 1 it would be the whole bucket."""
    bucket, clock = make(rate=1.0, burst=10, skew=0.25)
    assert [bucket.acquire() for _ in range(10)] == pytest.approx([0.0] * 9 + [0.25])
    lone, _ = make(rate=0.01, burst=1, skew=500.0)
    assert lone.acquire() == 0.0


def test_hold_after_429_waits_what_the_server_said_despite_the_skew():
    bucket, clock = make(skew=0.25)
    bucket.acquire()
    bucket.hold(2.5)
    assert bucket.acquire() == pytest.approx(2.5)


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        LeakyBucket(rate=0)
    with pytest.raises(ValueError):
        LeakyBucket(skew=-1)
