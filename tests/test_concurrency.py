"""Streams read at once (``MAX_IN_FLIGHT``): exact whatever the completion order, bounded, paced.

The sandbox makes the orders: ``reorder(group, order)`` holds concurrent requests and lets them
answer one by one in a chosen order (reverse, seeded permutations), so "every completion
order" is tested without sleeps; its ``max_in_flight`` counter says how many were in flight at
once. Time is virtual (``clock``) except for the SIGKILL, which needs a real process.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.error_chain import causes
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.errors import ApiError, ConfigurationError
from pipelines.micrometrics.lanes import Lanes
from pipelines.micrometrics.retry import RetryPolicy
from pipelines.micrometrics.settings import DEFAULT_MAX_IN_FLIGHT, load_settings
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.sandbox import Sandbox
from tests.cli import kill_now, run_cli, start_sync, sync_env
from tests.conftest import KEY, SECRET
from tests.fakes import FakeClock
from tests.syncing import query, sync_sandbox
from tests.truth import assert_matches_truth

SURVEYS = 6
# ~45 pages over 7 streams, in rounds of 7 pages: rounds cut windows part-way.
SANDBOX = dict(devices=30, surveys=SURVEYS, responses=700, page_size=20, rate=1000.0,
               burst=1000)
SETTINGS = dict(window_pages=7, initial_window_days=60)
FAST = dict(rate=1000.0, burst=1000)  # the client's bucket: never waits, the clock stands still


def sources_state(pipeline) -> dict:
    """The source's committed state (every stream's windows, the survey list's tracking)."""
    return json.loads(json.dumps(pipeline.state["sources"], default=str))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The state of the same sync read one request at a time, in arrival order."""
    clock = FakeClock()
    with Sandbox(api_key=KEY, api_secret=SECRET, clock=clock, **SANDBOX) as sandbox:
        result = sync_sandbox(sandbox, tmp_path_factory.mktemp("sequential"), clock,
                              max_in_flight=1, **FAST, **SETTINGS)
        assert sandbox.stats()["max_in_flight"] == 1
        return {"state": sources_state(result.pipeline), "rounds": result.report.rounds}


SLOW = pytest.mark.slow  # the other orders run in make test-slow (and CI)


@pytest.mark.parametrize(("max_in_flight", "order", "seed"), [
    # (1, reverse): one request at a time, as the `reference` every case compares with is
    # synced in the fast suite too: this one runs in make test-slow only.
    pytest.param(1, "reverse", 0, marks=SLOW), (4, "reverse", 0),
    pytest.param(4, "random", 1, marks=SLOW),
    pytest.param(4, "random", 2, marks=SLOW), (8, "random", 3),
    pytest.param(8, "reverse", 0, marks=SLOW),
])
def test_exact_and_same_state_whatever_the_completion_order(
    max_in_flight, order, seed, reference, start_sandbox, tmp_path, clock
):
    sandbox = start_sandbox(clock=clock, **SANDBOX)
    sandbox.reorder(group=max_in_flight, order=order, seed=seed)
    result = sync_sandbox(sandbox, tmp_path, clock, max_in_flight=max_in_flight, **FAST,
                          **SETTINGS)

    assert_matches_truth(tmp_path, sandbox.truth())
    # Every stream's windows, cursors' end, densities, deep-pass marks: as read sequentially.
    assert sources_state(result.pipeline) == reference["state"]
    assert result.report.rounds > 2  # the round budget did cut the streams part-way
    seen = sandbox.stats()["max_in_flight"]
    # The orders were really exercised: as many requests in flight as streams allowed.
    assert min(max_in_flight, SURVEYS) <= seen <= max_in_flight
    if max_in_flight > 1:
        assert max(sandbox.reordered_groups()) > 1


def test_response_streams_do_not_wait_for_the_devices(start_sandbox, tmp_path, clock):
    """dlt pulls the resources in turn in one thread: while the devices' first page is
    unanswered, every survey's first page is requested all the same (a resource waiting for
    its first answer held the others' start: the streams began a devices' latency late)."""
    sandbox = start_sandbox(clock=clock, **SANDBOX)
    sandbox.hold_answers("devices")
    finished: list = []
    syncing = threading.Thread(target=lambda: finished.append(
        sync_sandbox(sandbox, tmp_path, clock, max_in_flight=8, **FAST, **SETTINGS)))
    syncing.start()
    try:
        assert sandbox.wait_for_endpoint("survey_responses", SURVEYS, timeout=30)
        assert sandbox.stats()["by_endpoint"]["devices"] == 1  # its first page, unanswered
    finally:
        sandbox.release_answers()
        syncing.join()
    assert finished
    assert_matches_truth(tmp_path, sandbox.truth())


def test_walks_share_the_context_of_the_dlt_thread_that_runs_the_resource():
    """A parallelized resource runs in a thread of dlt's extract pool; the threads walking its
    streams must resolve dlt's context (dlt.current.pipeline()...) to the same one, which dlt
    finds by the pool's thread-name prefix."""
    names: list[str] = []

    def resource() -> None:
        names.extend(Lanes(2).run([lambda: [threading.current_thread().name]]))

    pool_thread = threading.Thread(target=resource, name="dlt-pool-4242-extract-threads_0")
    pool_thread.start()
    pool_thread.join()
    assert names and names[0].startswith("dlt-pool-4242-")


def test_survey_list_is_asked_for_before_dlt_prepares_the_first_round(
    start_sandbox, tmp_path, clock, monkeypatch
):
    """Its answer overlaps dlt's preparation of the round (state, schema, destination); only
    once, and the sync stays exact."""
    sandbox = start_sandbox(clock=clock, **SANDBOX)
    sandbox.hold_answers("surveys")  # so the list is surely still unanswered when run starts
    listed_before_run: list[bool] = []
    run = dlt.Pipeline.run

    def first_run_sees_the_list_asked_for(self, *args, **kwargs):
        if not listed_before_run:
            listed_before_run.append(sandbox.wait_for_endpoint("surveys", 1, timeout=30))
            sandbox.release_answers()
        return run(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "run", first_run_sees_the_list_asked_for)
    result = sync_sandbox(sandbox, tmp_path, clock, **FAST, **SETTINGS)

    assert listed_before_run == [True]
    # Once for the rounds, once more at the end of this sync of several (see relist).
    assert result.report.rounds > 1
    assert sandbox.stats()["by_endpoint"]["surveys"] == 2
    assert_matches_truth(tmp_path, sandbox.truth())


def test_survey_list_failure_read_ahead_fails_the_sync_with_the_api_error(
    start_sandbox, tmp_path, clock
):
    """The list is read in a thread of its own before the round: its failure is raised where
    the resources ask for it, as an ApiError, without asking again."""
    sandbox = start_sandbox(clock=clock, **SANDBOX)
    sandbox.script("http_404", endpoint="surveys")
    with pytest.raises(PipelineStepFailed) as failed:
        sync_sandbox(sandbox, tmp_path, clock, **FAST, **SETTINGS)
    chain = list(causes(failed.value))
    assert any(isinstance(c, ApiError) and c.status == 404 for c in chain)
    assert sandbox.stats()["by_endpoint"]["surveys"] == 1  # not asked for again


def test_a_failed_sync_stops_reading_the_survey_list_ahead(
    start_sandbox, tmp_path, clock, monkeypatch
):
    """The list's read-ahead runs in its own thread: when the sync fails while the list's
    first page is unanswered (here the destination, as dlt's run starts), it must send nothing
    more. A next sync's bucket would know nothing of its requests, and draw 429s."""
    sandbox = start_sandbox(clock=clock, **{**SANDBOX, "page_size": 2})  # the list: 3 pages
    sandbox.hold_answers("surveys")

    def destination_down(self, *args, **kwargs):
        assert sandbox.wait_for_endpoint("surveys", 1, timeout=30)
        raise ConnectionError("the warehouse is unreachable")

    monkeypatch.setattr(dlt.Pipeline, "run", destination_down)
    try:
        with pytest.raises(ConnectionError):
            sync_sandbox(sandbox, tmp_path, clock, **FAST, **SETTINGS)
    finally:
        sandbox.release_answers()
    for thread in threading.enumerate():
        if thread.name == "survey-list":
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert sandbox.stats()["by_endpoint"]["surveys"] == 1  # its first page only


@pytest.mark.parametrize("max_in_flight", [2, pytest.param(3, marks=SLOW)])
def test_requests_in_flight_never_exceed_the_setting(
    max_in_flight, start_sandbox, tmp_path, clock
):
    sandbox = start_sandbox(clock=clock, **SANDBOX)
    # Hold up to 16 requests until none arrives for a moment: every request the client can
    # have in flight piles up.
    sandbox.reorder(group=16, order="arrival")
    sync_sandbox(sandbox, tmp_path, clock, max_in_flight=max_in_flight, **FAST, **SETTINGS)
    assert sandbox.stats()["max_in_flight"] == max_in_flight
    assert_matches_truth(tmp_path, sandbox.truth())


def test_bucket_books_each_thread_its_own_departure():
    """Threads taking tokens at one instant get the schedule of one thread taking them in a
    row: the burst at once, then one per 1/rate, never two on the same slot."""
    threads, rate, burst = 32, 2.0, 10
    bucket = LeakyBucket(rate=rate, burst=burst, clock=lambda: 100.0, sleep=lambda _: None,
                         skew=0)
    start = threading.Barrier(threads)
    waits: list[float] = []

    def take() -> None:
        start.wait()
        waits.append(bucket.acquire())

    workers = [threading.Thread(target=take) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(waits) == pytest.approx([0.0] * burst + [
        (n + 1) / rate for n in range(threads - burst)])


class RealClock:
    """Real time, in the shape of ``FakeClock`` (a virtual clock moves for every thread at
    once when one sleeps, so threads woken together arrive together: not what is tested)."""

    __call__ = staticmethod(time.time)
    sleep = staticmethod(time.sleep)


# Real time: the client books tokens by departure, the server counts arrivals, so a thread
# that leaves late can reach the server together with the next one; the client keeps
# ``DEPARTURE_SKEW`` seconds of the burst free for that (without it, about one run in four
# on a loaded machine saw a 429 here).


@pytest.mark.slow
def test_threads_sharing_a_client_never_exceed_the_servers_limit(start_sandbox):
    """Eight threads page through the API with one client whose bucket mirrors the server's
    (burst 5, 10/s): no 429, though the limit binds (most requests waited
    for a token)."""
    clock = RealClock()
    sandbox = start_sandbox(devices=30, page_size=5, rate=10.0, burst=5)  # 6 pages a read
    client = MicrometricsClient(
        sandbox.url, KEY, SECRET, bucket=LeakyBucket(rate=10.0, burst=5),
        retry=RetryPolicy(rng=random.Random(7)))
    failures = []
    everything = {"start_at": "2000-01-01T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}

    def read() -> None:
        try:
            assert sum(len(page) for page in client.pages("/devices", everything)) == 30
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    started = clock()
    workers = [threading.Thread(target=read) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures
    stats = sandbox.stats()
    assert stats["requests"] == 48 + stats["throttled"], (stats, client.stats)
    assert stats["throttled"] == 0 and client.stats.throttled == 0
    assert clock() - started >= (48 - 5) / 10.0 * 0.95  # the limit did bind


@pytest.mark.slow
def test_sync_at_the_servers_limit_has_no_429(start_sandbox, tmp_path):
    """A whole sync, eight requests in flight, at the server's limit (burst 5, 10/s); answers
    take 0.2 s, so requests overlap."""
    sandbox = start_sandbox(devices=30, surveys=SURVEYS, responses=700, page_size=20,
                            rate=10.0, burst=5, latency=0.2)
    result = sync_sandbox(sandbox, tmp_path, RealClock(), max_in_flight=8, rate=10.0, burst=5,
                          **SETTINGS)
    stats = sandbox.stats()
    assert stats["throttled"] == 0 and result.client.stats.throttled == 0
    assert stats["max_in_flight"] > 1
    assert_matches_truth(tmp_path, sandbox.truth())


@pytest.mark.slow  # a real sync process, SIGKILLed (the kills of every phase: test_kills)
def test_sigkill_with_requests_in_flight_then_rerun_is_exact(start_sandbox, tmp_path):
    """A real sync process, SIGKILLed while four of its requests are in flight (held by the
    sandbox) in its second round; the rerun loads what the first round committed and ends
    exact."""
    sandbox = start_sandbox(devices=30, surveys=8, responses=2000, page_size=20, rate=1000.0,
                            burst=1000)
    env = sync_env(tmp_path, sandbox.url, SOURCES__MICROMETRICS__WINDOW_PAGES="40",
                   SOURCES__MICROMETRICS__ROUND_PAGES="40",
                   SOURCES__MICROMETRICS__MAX_IN_FLIGHT="4")
    process = start_sync(env, "--quiet", "--no-models")
    try:
        assert sandbox.wait_for_requests(50, timeout=60)  # into the second round
        sandbox.reorder(group=4, grace=None)  # hold what comes until four are held
        assert sandbox.wait_for_in_flight(4, timeout=30), "never four requests in flight"
        kill_now(process)
    finally:
        if process.poll() is None:
            process.kill()
        sandbox.reorder(0)  # the held requests answer a dead client
    assert process.returncode == -signal.SIGKILL
    # The first round was committed and loaded before the kill.
    assert query(tmp_path, "SELECT count(*) FROM micrometrics.survey_responses")[0][0] > 0

    result = run_cli(env, "--quiet", "--no-models")
    assert result.returncode == 0, result.stderr
    assert_matches_truth(tmp_path, sandbox.truth())


def test_a_failing_stream_stops_the_others_and_is_raised():
    lanes = Lanes(3)
    started, stopped = threading.Event(), []

    def failing():
        started.wait()
        yield "a"
        raise RuntimeError("boom")

    def endless(name):
        def walk():
            try:
                started.set()
                n = 0
                while True:
                    n += 1
                    yield (name, n)
            finally:
                stopped.append(name)
        return walk

    with pytest.raises(RuntimeError, match="boom"):
        list(lanes.run([failing, endless("x"), endless("y")]))
    assert sorted(stopped) == ["x", "y"]


def test_each_streams_items_keep_their_order():
    lanes = Lanes(4)
    streams = [lambda i=i: ((i, n) for n in range(50)) for i in range(10)]
    items = list(lanes.run(streams))
    assert sorted(items) == [(i, n) for i in range(10) for n in range(50)]
    for i in range(10):
        assert [n for s, n in items if s == i] == list(range(50))


def test_max_in_flight_setting():
    base = dict(base_url="https://t.example.com", api_key="k", api_secret="s")
    assert load_settings(**base).max_in_flight == DEFAULT_MAX_IN_FLIGHT
    assert load_settings(**base, max_in_flight=8).max_in_flight == 8
    for bad in (0, -1, 2.5, "many", 33):
        with pytest.raises(ConfigurationError, match="max_in_flight"):
            load_settings(**base, max_in_flight=bad)

