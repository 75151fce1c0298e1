"""The client-side leaky bucket, on a virtual clock."""

import threading

import pytest

from pipelines.micrometrics import cancel
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


def test_answer_counts_from_the_requests_departure_not_its_arrival_back():
    """The server judges a request when it arrives and answers after its latency: a burst of
    10 answered 1.5 s later finds 1.5 tokens leaked since, so the 11th request goes at once
    and the 12th half a second later (a count taken as of the answer: 1 s and 2 s)."""
    bucket, clock = make()
    for _ in range(10):
        bucket.acquire()
    clock.advance(1.5)
    bucket.observe({"RateLimit-Burst-Remaining": "0"})
    assert [bucket.acquire(), bucket.acquire()] == pytest.approx([0.0, 0.5])


def test_answer_leaves_out_requests_booked_after_it():
    """The server's count of an earlier request misses the requests booked after it (they
    reached it later); requests booked before it are in the count, not added again."""
    bucket, clock = make(burst=4)

    def book() -> None:
        bucket.acquire()

    for _ in range(2):  # two earlier requests, from other threads, still unanswered
        other = threading.Thread(target=book)
        other.start()
        other.join()
    bucket.acquire()  # this thread's request: the server counted 3 on its arrival
    late = threading.Thread(target=book)  # booked after it: not in that count
    late.start()
    late.join()
    bucket.observe({"RateLimit-Burst-Remaining": "1"})
    # 3 counted + 1 booked after = a full bucket of 4: the next token is a second away.
    assert bucket.acquire() == pytest.approx(1.0)


def test_a_settled_request_is_not_added_to_later_answers():
    """Once a request's attempt is over, a later request's answer, which counted it on the
    server, does not add it again: one thread, one request at a time, exact level."""
    bucket, clock = make(burst=2)
    for remaining in ("1", "0"):  # two requests back to back, each answered at once
        bucket.acquire()
        bucket.departing()
        bucket.observe({"RateLimit-Burst-Remaining": remaining})
        bucket.settle()
    clock.advance(1.0)  # one token leaked: room for exactly one more now
    assert [bucket.acquire(), bucket.acquire()] == pytest.approx([0.0, 1.0])


def test_an_earlier_request_still_unanswered_may_have_reached_the_server_later():
    """Two requests go out one after the other from two threads; the second reaches the
    server first (threads race on the way) and its answer counts only itself. The first,
    unanswered yet, is added: it may be in the server's bucket by now."""
    bucket, clock = make(burst=2)
    sent, answer = threading.Event(), threading.Event()

    def first() -> None:
        bucket.acquire()
        bucket.departing()
        sent.set()
        assert answer.wait(timeout=10)
        bucket.settle()

    other = threading.Thread(target=first)
    other.start()
    assert sent.wait(timeout=10)
    bucket.acquire()
    bucket.departing()
    bucket.observe({"RateLimit-Burst-Remaining": "1"})  # the server counted only this one
    bucket.settle()
    try:
        assert bucket.acquire() == pytest.approx(1.0)  # both may be in: a second away
    finally:
        answer.set()
        other.join(timeout=10)


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


def test_a_token_wait_given_up_leaves_no_request_counted_as_still_to_go():
    """A request that booked its token and was stopped while waiting for it (its walk was
    cancelled) never goes out. A later answer must not count it among the requests booked and
    not sent yet: that would keep a token of the burst unused for the bucket's life."""
    clock = FakeClock()

    def stopped(seconds: float) -> None:
        raise cancel.Cancelled

    bucket = LeakyBucket(rate=1.0, burst=2, clock=clock, sleep=stopped, skew=0.0)
    for _ in range(2):  # the burst, each request answered
        bucket.acquire()
        bucket.departing()
        bucket.settle()
    with pytest.raises(cancel.Cancelled):
        bucket.acquire()  # a second's wait for a token, given up
    clock.advance(10)  # the server's bucket has long been empty
    bucket.acquire()
    bucket.departing()
    bucket.observe({"RateLimit-Burst-Remaining": "1"})  # it counted this request alone
    bucket.settle()
    assert bucket.acquire() == 0.0  # the second token of the burst is free
