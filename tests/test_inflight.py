"""The client's bound on requests in flight (``pipelines.micrometrics.inflight``)."""

import threading
from collections.abc import Callable, Iterator

import pytest

from pipelines.micrometrics import cancel, inflight
from pipelines.micrometrics.cancel import Cancelled, CancelScope
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.inflight import InFlight
from pipelines.micrometrics.lanes import Lanes
from pipelines.micrometrics.retry import RetryPolicy
from pipelines.micrometrics.throttle import LeakyBucket
from tests.conftest import KEY, SECRET


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
    assert seen["sending"] == 3 and seen["booking"] == 1
    # A token booked with 3 on the wire would be a fourth request's without a slot. (2 only
    # when the scheduler lets two of them reach the wire first: not asserted.)
    assert seen["sending_at_booking"] <= 2


def test_waiting_requests_go_in_the_order_they_asked_and_none_is_left_waiting():
    """Ten requests queue, one by one, behind the only slot: they book their tokens in the
    order they asked. Each waits on a condition of its own and only the head of the queue is
    woken, so a wake-up lost on the way would leave the rest waiting (the joins would fail)."""
    in_flight = InFlight(1)
    booked: list[int] = []

    def request(i: int) -> None:
        with in_flight.slot(lambda: booked.append(i) or 0.0):
            pass

    queue_behind_the_only_slot(in_flight, [lambda i=i: request(i) for i in range(10)])
    assert booked == list(range(10))


def queue_behind_the_only_slot(in_flight: InFlight, requests: list[Callable[[], None]]) -> None:
    """Holds ``in_flight``'s only slot while each of ``requests`` starts in a thread of its own,
    one by one (each waiting in the queue before the next starts); then frees the slot and
    waits for them all to end."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with in_flight.slot(lambda: 0.0):
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=10)
    waiters = []
    for count, request in enumerate(requests, start=1):
        waiters.append(threading.Thread(target=request))
        waiters[-1].start()
        assert in_flight.wait_for_waiting(count, timeout=10)
    release.set()
    for thread in [holder, *waiters]:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_head_cancelled_as_the_slot_frees_hands_its_turn_to_the_next():
    """The slot frees (waking the head of the queue) and the head's walk is cancelled at the
    same instant: the head gives up, and the request behind it, which nothing else would wake,
    goes. Both happen under the queue's lock here, so the head wakes to find both done."""
    in_flight = InFlight(1)
    stopping = CancelScope()
    outcome: list[str] = []

    def head() -> None:
        with cancel.scope(stopping):
            try:
                with in_flight.slot(lambda: 0.0):
                    outcome.append("head sent")
            except Cancelled:
                outcome.append("head cancelled")

    def behind() -> None:
        with in_flight.slot(lambda: 0.0):
            outcome.append("behind sent")

    held = in_flight.slot(lambda: 0.0)
    held.__enter__()  # this thread holds the only slot
    waiters = [threading.Thread(target=head), threading.Thread(target=behind)]
    for count, waiter in enumerate(waiters, start=1):
        waiter.start()
        assert in_flight.wait_for_waiting(count, timeout=10)
    with in_flight._lock:  # noqa: SLF001 - one instant, as far as the waiters can tell
        stopping.cancel()
        held.__exit__(None, None, None)
    for waiter in waiters:
        waiter.join(timeout=10)
        assert not waiter.is_alive()
    assert outcome == ["head cancelled", "behind sent"]


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


def test_every_stream_is_walked_at_once_even_with_one_request_in_flight():
    """A stream that waits for a worker thread asks for nothing, so the order of requests never
    sees it: with a worker per request in flight (or four), 20 surveys had the first page of
    one go out only once another survey was read to its end. Every walk starts at once (here:
    none can go on before all 20 have started)."""
    streams = 20
    started = threading.Barrier(streams, timeout=10)

    def stream(name):
        def walk():
            started.wait()  # BrokenBarrierError, raised by run, unless all run at once
            yield name
        return walk

    assert sorted(Lanes(1).run([stream(n) for n in range(streams)])) == list(range(streams))


def test_a_waiting_request_is_given_up_unsent_when_its_scope_is_cancelled():
    """Cancelling the scope wakes the request waiting for its turn: it gives up, no token
    booked, while the request ahead of it still holds the only slot."""
    in_flight = InFlight(1)
    booked: list[str] = []
    holding, release = threading.Event(), threading.Event()
    stopping = CancelScope()
    outcome: list[str] = []

    def hold() -> None:  # outside any scope: not cancellable
        with in_flight.slot(lambda: booked.append("holder") or 0.0):
            holding.set()
            release.wait(timeout=30)

    def wait_in_scope() -> None:
        with cancel.scope(stopping):
            try:
                with in_flight.slot(lambda: booked.append("waiter") or 0.0):
                    outcome.append("sent")
            except Cancelled:
                outcome.append("cancelled")

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=10)
    waiter = threading.Thread(target=wait_in_scope)
    waiter.start()
    assert in_flight.wait_for_waiting(1, timeout=10)  # queued behind the holder
    stopping.cancel()
    waiter.join(timeout=10)
    try:
        assert not waiter.is_alive()  # woken by the cancel, the slot still held
        assert outcome == ["cancelled"] and booked == ["holder"]
    finally:
        release.set()
        holder.join(timeout=10)
    with in_flight.slot(lambda: 0.0):  # the queue is clear for the next request
        pass


def test_when_a_stream_fails_the_requests_waiting_for_their_turn_are_not_sent():
    """40 walks queue for one request in flight; one fails. Only the request already holding
    the slot is sent: the others give up unsent (before: each waited its turn, booked a token
    and went out, a request a second at the API's rate, after the failure was known)."""
    in_flight = InFlight(1)
    booked: list[int] = []
    queued, on_the_wire = threading.Barrier(41, timeout=10), threading.Event()
    answered: list[bool] = []  # the request on the wire was woken by the stop

    def request(i):
        def walk():
            queued.wait()
            with in_flight.slot(lambda: booked.append(i) or 0.0):
                # The request on the wire: answered once the walks are stopped.
                on_the_wire.set()
                stopped, woken = cancel.current(), threading.Condition()
                stopped.wakes(woken)
                with woken:
                    answered.append(woken.wait_for(lambda: stopped.cancelled, timeout=30))
            yield i
        return walk

    def failing():
        queued.wait()
        assert on_the_wire.wait(timeout=10)
        raise RuntimeError("boom")
        yield  # a generator, as the walks are

    with pytest.raises(RuntimeError, match="boom"):
        list(Lanes(1).run([request(i) for i in range(40)] + [failing]))
    assert len(booked) == 1 and answered == [True]


def test_a_failing_stream_stops_the_walks_of_another_streams_slices():
    """A stream reading its window in two slices walks them in lanes of its own, inside its
    walk; when another stream fails, those slices' scope is cancelled too (else the stream's
    walk would wait for them forever, and the failure would never be raised)."""
    lanes = Lanes(4)
    both, stopped = threading.Barrier(3, timeout=10), []

    def slice_walk():
        scope, woken = cancel.current(), threading.Condition()
        scope.wakes(woken)
        both.wait()
        with woken:
            stopped.append(woken.wait_for(lambda: scope.cancelled, timeout=30))
        return iter(())

    def sliced_stream():
        yield from lanes.run([slice_walk, slice_walk])

    def failing():
        both.wait()
        raise RuntimeError("boom")
        yield  # a generator, as the walks are

    with pytest.raises(RuntimeError, match="boom"):
        list(lanes.run([sliced_stream, failing]))
    assert stopped == [True, True]
    assert lanes.unfinished() == 0


@pytest.mark.parametrize("asleep_in", ["a retry's backoff", "a token's wait"])
def test_a_walk_asleep_in_the_client_stops_at_once_when_another_stream_fails(
        start_sandbox, asleep_in):
    """One walk sleeps an hour in the client, for real: backing off after a 503 (the client's
    default sleep), or waiting for a token after a 429 asked for an hour (the bucket's sleep,
    which says when it starts). When another stream fails, the sleep is cut short: the failure
    comes out at once, and nothing more is sent. (Before, the sync waited out the hour.)"""
    sandbox = start_sandbox()
    asleep = threading.Event()

    class HourLong(RetryPolicy):
        def backoff(self, attempt: int) -> float:
            asleep.set()
            return 3600.0

    def token_sleep(seconds: float) -> None:
        asleep.set()
        cancel.sleep(seconds)

    if asleep_in == "a retry's backoff":
        client = MicrometricsClient(sandbox.url, KEY, SECRET, retry=HourLong())
        sandbox.script("http_503", endpoint="devices")
    else:
        client = MicrometricsClient(sandbox.url, KEY, SECRET,
                                    bucket=LeakyBucket(sleep=token_sleep))
        client.bucket.hold(3600)

    def devices():
        yield from client.pages("/devices")

    def failing():
        assert asleep.wait(timeout=10)
        raise RuntimeError("boom")
        yield  # a generator, as the walks are

    raised: list[BaseException] = []

    def sync() -> None:
        try:
            list(Lanes(2).run([devices, failing]))
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            raised.append(exc)

    syncing = threading.Thread(target=sync, daemon=True)  # a failed test must not wait an hour
    syncing.start()
    syncing.join(timeout=30)
    assert not syncing.is_alive()
    assert [type(exc) for exc in raised] == [RuntimeError]
    sent = 1 if asleep_in == "a retry's backoff" else 0  # the 503'd attempt, or none
    assert sandbox.stats()["requests"] == sent


def test_the_request_whose_chain_has_most_pages_left_goes_first():
    """Behind the only slot: requests of chains that tell nothing go first, in the order they
    asked; then those with the most pages left."""
    in_flight = InFlight(1)
    booked: list[str] = []

    def request(name: str, left: float | None) -> None:
        def page() -> Iterator[None]:
            with in_flight.slot(lambda: booked.append(name) or 0.0):
                yield None
        list(inflight.ranked(page(), lambda: left))

    asks = [("three", 3.0), ("unknown 1", None), ("twelve", 12.0), ("one", 1.0),
            ("unknown 2", None)]
    queue_behind_the_only_slot(
        in_flight, [lambda name=name, left=left: request(name, left) for name, left in asks])
    assert booked == ["unknown 1", "unknown 2", "twelve", "three", "one"]


def test_a_token_goes_at_the_instant_it_frees_to_the_request_that_should_have_it():
    """The turn's holder waits for a free token before booking it; a request of a chain with
    more pages left that comes meanwhile takes that token, and the holder waits for the next
    (booked at once, the later request would have waited a whole token more). Nothing waits
    for real time: the pause is held open by the test."""
    in_flight = InFlight(4)
    booked: list[str] = []
    pausing, resume = threading.Event(), threading.Event()
    free_in = {"seconds": 1.0}

    def pause(seconds: float) -> None:
        pausing.set()
        assert resume.wait(timeout=10)
        free_in["seconds"] = 0.0

    def request(name: str, left: float) -> None:
        def page() -> Iterator[None]:
            with in_flight.slot(lambda: booked.append(name) or 0.0,
                                lambda: free_in["seconds"], pause):
                yield None
        list(inflight.ranked(page(), lambda: left))

    first = threading.Thread(target=request, args=("two left", 2.0))
    first.start()
    assert pausing.wait(timeout=10)
    later = threading.Thread(target=request, args=("nine left", 9.0))
    later.start()
    assert in_flight.wait_for_waiting(2, timeout=10)
    resume.set()
    for thread in (first, later):
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert booked == ["nine left", "two left"]


def test_a_wait_for_a_token_that_fails_hands_the_turn_on():
    """The turn's holder, waiting for a free token, is stopped (here: any exception): no token
    is booked for it, and the next request goes."""
    in_flight = InFlight(1)
    booked: list[str] = []

    def broken_pause(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), in_flight.slot(
            lambda: booked.append("stopped") or 0.0, lambda: 1.0, broken_pause):
        pass

    def next_request() -> None:
        with in_flight.slot(lambda: booked.append("next") or 0.0, lambda: 0.0, broken_pause):
            pass

    waiter = threading.Thread(target=next_request, daemon=True)  # left behind if it hangs
    waiter.start()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and booked == ["next"]
