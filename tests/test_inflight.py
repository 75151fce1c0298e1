"""The client's bound on requests in flight (``pipelines.micrometrics.inflight``)."""

import threading

import pytest

from pipelines.micrometrics.inflight import InFlight
from pipelines.micrometrics.lanes import Lanes


def test_never_more_than_the_limit_and_no_token_without_a_slot():
    """Twelve threads through a limit of 3: at most 3 blocks at once, one token booked at a
    time, and each booked only when its request has a slot (fewer than 3 on the wire)."""
    in_flight = InFlight(3)
    lock = threading.Lock()
    sending = booking = 0
    seen = {"sending": 0, "booking": 0, "sending_at_booking": 0}
    release = threading.Event()
    entered = threading.Semaphore(0)

    def book() -> float:
        nonlocal booking
        with lock:
            booking += 1
            seen["booking"] = max(seen["booking"], booking)
            seen["sending_at_booking"] = max(seen["sending_at_booking"], sending)
        with lock:
            booking -= 1
        return 0.0

    def request() -> None:
        nonlocal sending
        with in_flight.slot(book):
            with lock:
                sending += 1
                seen["sending"] = max(seen["sending"], sending)
            entered.release()
            release.wait()
            with lock:
                sending -= 1

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for _ in range(3):
        assert entered.acquire(timeout=10)
    assert not entered.acquire(timeout=0.2)  # the fourth waits for a slot
    release.set()
    for thread in threads:
        thread.join()
    assert seen == {"sending": 3, "booking": 1, "sending_at_booking": 2}


def test_a_raised_limit_lets_waiting_requests_go():
    in_flight = InFlight(1)
    release, inside = threading.Event(), threading.Semaphore(0)

    def request() -> None:
        with in_flight.slot(lambda: 0.0):
            inside.release()
            release.wait()

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert inside.acquire(timeout=10)
    assert not inside.acquire(timeout=0.2)
    in_flight.limit = 3
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)
    release.set()
    for thread in threads:
        thread.join()
    with pytest.raises(ValueError):
        in_flight.limit = 0


def test_a_failed_booking_frees_its_slot_and_the_turn():
    in_flight = InFlight(1)

    def refuse() -> float:
        raise RuntimeError("no token")

    with pytest.raises(RuntimeError), in_flight.slot(refuse):
        pass
    with in_flight.slot(lambda: 1.5) as waited:
        assert waited == 1.5


def test_more_streams_are_walked_than_requests_may_be_in_flight():
    """With one request in flight, four streams still start at once: a long stream does not
    wait for a worker until the short ones before it are done."""
    started = threading.Barrier(4, timeout=10)

    def stream(name):
        def walk():
            started.wait()  # breaks (and fails the test) unless all four run at once
            yield name
        return walk

    assert sorted(Lanes(1).run([stream(n) for n in "abcd"])) == list("abcd")
