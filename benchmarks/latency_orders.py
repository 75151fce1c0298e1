"""What-if: would another order of requests bring a latency-bound sync within 1.10x of its floor?

The ``latency`` scenario of ``benchmarks.scale`` (1 request/s, burst 10, 1.5 s +-50% latency,
2,000 responses, page size 37) measures about 1.27x the floor. Its answer was: one survey holds
about 4 in 10 of the pages, and a stream's pages are a chain. This script tests that answer by
running the same sync in-process, side by side, with the client's order of requests replaced:

- ``as shipped``: the client as it is (``inflight``: the chain with most pages left first
  where the pages read tell it, from records sent in time order; else first come, first
  served, as on the shuffled server);
- ``oracle``: a client told which stream is longest (from the sandbox's ground truth, which no
  real client has); its requests go before every other and each token goes, at the instant it
  frees, to the best request waiting (not to the one that booked it first);
- ``most pages first``: the same dispatch, with the stream that has read the most pages so far
  first (a length-blind guess at the longest).

These orders are patched in for the run only (this file); nothing here changes the connector.
Each run reports the sandbox's own request count and 429s, the floor ``(pages needed - burst)
/ rate`` (pages needed from the ground truth: a window sliced by the client re-reads pages,
and those extra requests must not raise the floor it is measured against) and the sync's
elapsed time over it, and for the longest stream when its first request
went out and when its last answer came. It also splits the time above the floor into four
parts that add up to it: before the first request (the sync's set-up), the tokens no request
used (the last request went out this much later than the bucket allowed, counted from the first
one), the last answer's wait after the last request, and the round's normalize and load after
it.

With ``--spread even`` the sandbox's responses are dealt to the surveys in turn (the same
records, the same number of pages), so no stream is much longer than another; with
``dominant``, 9 in 10 go to one survey. ``--server-order asc desc`` has the sandbox send each
window's records sorted by ``updated_at`` (as a server paging by id nearly does) instead of
shuffled; those runs go to their own section of RESULTS.md (``latency_orders_sorted``).

Single runs of one configuration differ by up to 0.06 with nothing changed (the jitter, and
whether a window was sliced); ``--repeat N`` runs each N times, in turns, and the table shows
the run of median elapsed / floor beside every run's.

    .venv/bin/python -m benchmarks.latency_orders [--surveys 5 20] [--spread uneven even] \
        [--repeat 3] [--write]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt

from benchmarks._results import machine, write_section
from benchmarks.scale import pages_needed
from pipelines.micrometrics import inflight, sync
from pipelines.micrometrics.client import MicrometricsClient
from pipelines.micrometrics.retry import RetryPolicy
from pipelines.micrometrics.session import MicrometricsSession
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.throttle import LeakyBucket
from pipelines.sandbox import Sandbox
from pipelines.sandbox import server as sandbox_server

KEY, SECRET = "bench-key-0123456789", "bench-secret-0123456789abcdef"
RATE, BURST, LATENCY, JITTER, RESPONSES, PAGE_SIZE = 1.0, 10, 1.5, 0.5, 2_000, 37
STREAM = re.compile(r"/(devices|surveys)(?:/(\d+)/responses)?")


def stream_of(url: str) -> str:
    match = STREAM.search(url)
    return (match.group(2) or match.group(1)) if match else url


class Arrivals:
    """The sandbox's view: when each request arrived and was answered, per stream."""

    def __init__(self) -> None:
        self.log: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()

    @contextmanager
    def traced(self) -> Iterator[None]:
        handler = next(c for c in vars(sandbox_server).values()
                       if isinstance(c, type) and hasattr(c, "_api_in_flight"))
        original = handler._api_in_flight
        log, lock = self.log, self._lock

        def in_flight(self: Any, method: str, body: bytes, endpoint: str, cursor: bool) -> None:
            start = time.monotonic()
            try:
                return original(self, method, body, endpoint, cursor)
            finally:
                with lock:
                    log.append((start, time.monotonic(), stream_of(self.path)))

        handler._api_in_flight = in_flight
        try:
            yield
        finally:
            handler._api_in_flight = original


def dispatch_by(priority: Callable[[str], float]) -> Callable[..., Any]:
    """An ``InFlight.slot`` that gives each token, when it frees, to the waiting request of
    least ``priority(url)`` (ties: first come)."""
    order = itertools.count()

    @contextmanager
    def slot(self: inflight.InFlight, book: Callable[[], float], *_: Any) -> Iterator[float]:
        bucket: LeakyBucket = book.__self__  # type: ignore[attr-defined]
        me = (priority(CURRENT.url), next(order))
        # Every request of this dispatch waits on one condition: it is the heap's head, not
        # the first to ask, that goes.
        changed = self.__dict__.setdefault("_by_priority", threading.Condition(self._lock))
        with changed:
            heap = self.__dict__.setdefault("_heap", [])
            heapq.heappush(heap, me)
            changed.notify_all()
            while True:
                changed.wait_for(lambda: heap[0] == me and self._in_flight < self._limit)
                with bucket._lock:
                    bucket._leak(bucket._clock())
                    wait = (bucket._level + 1.0 - bucket._usable()) / bucket.rate
                if wait <= 0:
                    break
                changed.wait(timeout=wait)
            heapq.heappop(heap)
            self._in_flight += 1
            booked = book()
            changed.notify_all()
        try:
            yield booked
        finally:
            with changed:
                self._in_flight -= 1
                changed.notify_all()

    return slot


class _Current(threading.local):
    url = ""


CURRENT = _Current()


@contextmanager
def request_order(name: str, longest: str) -> Iterator[None]:
    """Patches the client's order of requests for one run (see the module docstring)."""
    if name == "as shipped":
        yield
        return
    walked: Counter[str] = Counter()
    send = MicrometricsSession.send

    def remember_url(self: MicrometricsSession, request: Any, **kwargs: Any) -> Any:
        CURRENT.url = request.url
        walked[stream_of(request.url)] += 1
        return send(self, request, **kwargs)

    if name == "oracle":
        def priority(url: str) -> float:
            return 0 if stream_of(url) == longest else 1
    else:
        def priority(url: str) -> float:
            return -walked[stream_of(url)]
    slot = inflight.InFlight.slot
    MicrometricsSession.send, inflight.InFlight.slot = remember_url, dispatch_by(priority)
    try:
        yield
    finally:
        MicrometricsSession.send, inflight.InFlight.slot = send, slot


def spread_evenly(sandbox: Sandbox) -> None:
    """Deals the responses to the surveys in turn (same records, same updated_at)."""
    truth = sandbox.truth()
    surveys = [s["id"] for s in truth["surveys"]]
    ids = sorted(r["id"] for r in truth["survey_responses"])
    for i, response_id in enumerate(ids):
        sandbox.store.patch_records("survey_responses", [response_id],
                                    {"survey_id": surveys[i % len(surveys)]}, bump=False)


def spread_dominant(sandbox: Sandbox) -> None:
    """Deals 9 in 10 responses to the first survey, the rest to the others in turn (one main
    survey and a few small ones: its chain of pages alone outlasts the rate limit)."""
    truth = sandbox.truth()
    surveys = [s["id"] for s in truth["surveys"]]
    ids = sorted(r["id"] for r in truth["survey_responses"])
    for i, response_id in enumerate(ids):
        owner = surveys[0] if i % 10 else surveys[1 + (i // 10) % (len(surveys) - 1)]
        sandbox.store.patch_records("survey_responses", [response_id],
                                    {"survey_id": owner}, bump=False)


def one_run(order: str, surveys: int, spread: str, max_in_flight: int,
            server_order: str = "shuffled") -> dict[str, Any]:
    sandbox = Sandbox(KEY, SECRET, responses=RESPONSES, surveys=surveys, page_size=PAGE_SIZE,
                      rate=RATE, burst=BURST, latency=LATENCY, latency_jitter=JITTER,
                      order=server_order)
    if spread == "even":
        spread_evenly(sandbox)
    elif spread == "dominant":
        spread_dominant(sandbox)
    sandbox.start()
    arrivals = Arrivals()
    try:
        needed, _ = pages_needed(sandbox, PAGE_SIZE)
        by_survey = Counter(r["survey_id"] for r in sandbox.truth()["survey_responses"])
        longest_id, longest_n = by_survey.most_common(1)[0]
        longest = str(longest_id)
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as name:
            tmp = Path(name)
            pipeline = dlt.pipeline(
                pipeline_name="latency_orders", dataset_name="micrometrics",
                destination=dlt.destinations.duckdb(credentials=str(tmp / "w.duckdb")),
                pipelines_dir=str(tmp / "pipelines"))
            client = MicrometricsClient(sandbox.url, KEY, SECRET,
                                        bucket=LeakyBucket(rate=RATE, burst=BURST),
                                        retry=RetryPolicy(rng=random.Random(3)))
            settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
                                     max_in_flight=max_in_flight)
            with arrivals.traced(), request_order(order, longest):
                started = time.monotonic()
                sync(pipeline, settings=settings, client=client)
                elapsed = time.monotonic() - started
        stats = sandbox.stats()
    finally:
        sandbox.stop()
    t0 = min(start for start, _, _ in arrivals.log)
    chain = [(s - t0, e - t0) for s, e, stream in arrivals.log if stream == longest]
    pages = sum(1 for *_, stream in arrivals.log if stream.isdigit())
    floor = max(0.0, (needed - BURST) / RATE)
    last_request = max(start for start, _, _ in arrivals.log)
    last_answer = max(end for _, end, _ in arrivals.log)
    # elapsed = floor + set_up + unused + last_wait + after
    set_up = t0 - started
    unused = last_request - t0 - floor
    last_wait = last_answer - last_request
    after = started + elapsed - last_answer
    return {"order": order, "surveys": surveys, "spread": spread, "in_flight": max_in_flight,
            "server_order": server_order,
            "requests": stats["requests"],
            "throttled": stats["throttled"], "elapsed": elapsed, "floor": floor,
            "ratio": elapsed / floor, "longest_pages": len(chain),
            "response_pages": pages, "longest_first": min(s for s, _ in chain),
            "longest_last": max(e for _, e in chain), "longest_n": longest_n,
            "set_up": set_up, "unused": unused, "last_wait": last_wait, "after": after}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one configuration's runs, the one of median sync / floor (the higher of the middle
    two), with every run's ratio, lowest first, under ``ratios``."""
    ordered = sorted(runs, key=lambda run: run["ratio"])
    return {**ordered[len(ordered) // 2], "ratios": [run["ratio"] for run in ordered]}


def render(rows: list[dict[str, Any]], command: str) -> str:
    sorted_only = all(r["server_order"] != "shuffled" for r in rows)
    repeats = max(len(r.get("ratios", [])) for r in rows)
    lines = [
        "## Latency, a server that sorts records by time: most pages left first, slices cut "
        "beyond the pages read"
        if sorted_only else "## Latency: does another order of requests reach 1.10x the floor?",
        "",
        f"`{command}`; {machine()}.",
        "",
        f"In-process sync (no subprocess) of the `latency` scenario: {RATE:g} request/s, burst "
        f"{BURST}, {LATENCY} s latency +-{JITTER:.0%}, {RESPONSES:,} responses, page size "
        f"{PAGE_SIZE}. Spread `uneven`: the sandbox's own (survey i gets weight 1/(i+1)); "
        "`even`: the same responses dealt to the surveys in turn; `dominant`: 9 in 10 of them "
        "dealt to one survey. Orders: see "
        "`benchmarks/latency_orders.py`; `oracle` knows the longest stream from the ground "
        "truth, which no client can. The last four columns add up to the time above the "
        "floor: from the sync's start to its first request; the tokens no request used (the "
        "last request went out that much later than the bucket allowed after the first); the "
        "wait for the last answer after the last request; the round's normalize and load "
        "after it." + (
            f" Each configuration ran {repeats} times, in turns; its row is the run of median "
            "sync / floor, and the next column every run's, lowest first." if repeats > 1
            else ""),
        "",
        "| surveys | spread | server's order | order | MAX_IN_FLIGHT | requests | 429s | "
        "longest stream: pages of all response pages | its first request s | its last answer "
        "s | sync s | floor s | sync / floor | " + ("every run's | " if repeats > 1 else "")
        + "above the floor: set-up s | tokens unused s | last answer s | normalize and load s |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---|" if repeats > 1 else "") + "---:|---:|---:|---:|",
    ]
    for r in rows:
        every = (" / ".join(f"{ratio:.2f}" for ratio in r["ratios"]) + " | "
                 if repeats > 1 else "")
        lines.append(
            f"| {r['surveys']} | {r['spread']} | {r['server_order']} | {r['order']} | "
            f"{r['in_flight']} | "
            f"{r['requests']} | "
            f"{r['throttled']} | "
            f"{r['longest_pages']} of {r['response_pages']} | {r['longest_first']:.1f} | "
            f"{r['longest_last']:.1f} | {r['elapsed']:.1f} | {r['floor']:.0f} | "
            f"**{r['ratio']:.2f}** | {every}{r['set_up']:.1f} | {r['unused']:.1f} | "
            f"{r['last_wait']:.1f} | {r['after']:.1f} |")
    best: dict[tuple[int, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["surveys"], r["spread"], r["server_order"])
        if key not in best or r["ratio"] < best[key]["ratio"]:
            best[key] = r
    lines += ["", "Best order per tenant" + (" (median runs)" if repeats > 1 else "") + ": "
              + "; ".join(
        f"{n} surveys, {spread}, {server}: {r['order']}, {r['in_flight']} in flight, "
        f"{r['ratio']:.2f}x" for (n, spread, server), r in best.items()) + ".", ""]
    lines.append(SORTED_EXPLANATION if sorted_only else EXPLANATION)
    return "\n".join(lines)


EXPLANATION = (
    "Spread evenly, no stream's chain of pages outlasts the rate limit, and the client as "
    "shipped ends within 1.10x the floor: what is left above 1.00x is the set-up, the last "
    "answer's latency and the round's normalize and load (2-3.5 s, fixed: 0.05-0.07x of "
    "this tenant's 48-53 s floor), and at most a second of tokens unused. (The first run of "
    "an invocation also imports what a sync imports only once it runs: up to a second more "
    "set-up.) Spread unevenly, 4-8 s of tokens go unused: the longest stream's chain "
    'ends the sync (among 5 surveys one holds about 4 in 10 of the response pages, among 20 '
    'about 1 in 4): each of its pages waits for its answer (0.75-2.25 s) and for a token '
    'shared with every other stream. Serving that stream first (the oracle) closes the gap, '
    'but no client can know which stream that is: the API gives no counts and the order of '
    "records within a window is unknown, so a stream's length shows only once it has been "
    'read. With one dominant survey no order helps: its chain alone, at 1.5 s an answer, is '
    "longer than the whole floor (the oracle, 1.4-1.5x). Only reading that survey's history as "
    "two windows side by side does: the client gives its window up at the 4th page when at "
    "most one other stream is unfinished (or at the 5th or 6th once it is alone) and answers "
    "are slow, and reads it again in two slices (`pipelines/micrometrics/slicing.py`; "
    "`benchmarks.schedule_model` chose the rule); the pages read again and a partial page "
    "count in the requests column, not in the floor. The oracle serves that survey first, "
    "so it is never alone that early and is not sliced. Among 5 uneven surveys the longest "
    "is alone only near its end, past its 6th page, and is not sliced. Among 20, its first "
    "request goes out last of all (the survey list's order) and the others end early: it can "
    "be alone by its 6th page and is then sliced (7 requests more), though its 15 pages are "
    "too few for a re-read to pay (here 1.18-1.19x sliced, 1.13x not). Its pages read cannot "
    "tell it from the dominant survey's 53, where slicing pays.")


SORTED_EXPLANATION = (
    "A server that sends each window's records sorted by time (as one paging by id nearly "
    "does). Such pages tell how many a chain has left: the stretch of time they have not "
    "reached, at the density they show (`pipelines/micrometrics/pages_left.py`), known from a "
    "chain's third page on. The client sends the waiting request of the chain with most pages "
    "left first (`inflight`), which is nearly what the oracle did on the shuffled server: the "
    "sandbox's uneven tenants end at 1.07-1.12x (1.11-1.20x when requests went first come, "
    "first served). Slicing cuts such a window in the middle, in time, between the far end of "
    "the pages read and where the records can end (`slicing.cut_beyond`: oldest first, the "
    "window's end; newest first, the survey's creation) instead of at their median, which "
    "would leave one slice nearly all of it. That is a guess at where half the records lie: "
    "the sandbox's responses are denser in recent months, so oldest first the newer slice "
    "holds most of them and ends the sync. Newest first, the cut needs the survey's creation "
    "below the pages read; the sandbox draws a survey's creation independently of its "
    "responses, and where it is later than most of them (the dominant survey among 20 here) "
    "the window is not sliced. One dominant survey stays 1.27-1.44x: serving it first does not "
    "shorten its chain, as the oracle showed on the shuffled server.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--surveys", type=int, nargs="+", default=[5],
                        help="numbers of surveys to run (default: 5)")
    parser.add_argument("--spread", nargs="+", choices=["uneven", "even", "dominant"],
                        default=["uneven", "even"],
                        help="how responses spread over surveys (default: both)")
    parser.add_argument("--orders", nargs="+",
                        default=["as shipped", "oracle", "most pages first"],
                        help="orders to compare (default: all three)")
    parser.add_argument("--max-in-flight", type=int, nargs="+", default=[4],
                        help="MAX_IN_FLIGHT values to run (default: 4, the default)")
    parser.add_argument("--server-order", nargs="+", default=["shuffled"],
                        choices=["shuffled", "asc", "desc"],
                        help="the sandbox's order of records in a window (default: shuffled)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each configuration, taken in turns (default: 1); the "
                             "table shows the run of median sync / floor and every run's")
    parser.add_argument("--write", action="store_true",
                        help="write the table into benchmarks/RESULTS.md (latency_orders)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    # In turns (every configuration once, then again): a slow spell of the machine falls on
    # all of them alike, not on one configuration's runs.
    for turn in range(1, args.repeat + 1):
        for config in itertools.product(args.surveys, args.spread, args.server_order,
                                        args.orders, args.max_in_flight):
            surveys, spread, server, order, in_flight = config
            row = one_run(order, surveys, spread, in_flight, server)
            print(f"surveys {surveys} {spread} {server} | {order} | {in_flight} in flight | "
                  f"run {turn} of {args.repeat}: {row['requests']} requests, "
                  f"{row['throttled']} 429s, {row['elapsed']:.1f} s, floor {row['floor']:.0f} s, "
                  f"{row['ratio']:.2f}x; longest stream {row['longest_pages']} pages, "
                  f"{row['longest_first']:.1f} -> {row['longest_last']:.1f} s", flush=True)
            runs.setdefault(config, []).append(row)
    rows = [median_run(of_config) for of_config in runs.values()]
    surveys = " ".join(str(s) for s in args.surveys)
    orders = " ".join(f'"{o}"' for o in args.orders)
    in_flight = " ".join(str(n) for n in args.max_in_flight)
    servers = ("" if args.server_order == ["shuffled"]
               else f" --server-order {' '.join(args.server_order)}")
    repeat = f" --repeat {args.repeat}" if args.repeat > 1 else ""
    table = render(rows, f".venv/bin/python -m benchmarks.latency_orders --surveys {surveys} "
                         f"--spread {' '.join(args.spread)} --orders {orders} "
                         f"--max-in-flight {in_flight}{servers}{repeat} --write")
    print(table)
    if args.write:
        shuffled = "shuffled" in args.server_order
        write_section("latency_orders" if shuffled else "latency_orders_sorted", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
