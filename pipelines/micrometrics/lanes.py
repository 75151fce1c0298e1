"""Several streams walked at once, so that their requests overlap (``MAX_IN_FLIGHT``).

At 1 request/s a sync is paced by the rate limit, not by the API's latency, only while more than
one request can be in flight: one at a time, a 1.5 s answer caps a sync at 0.67 requests/s.
Streams (devices, each survey's responses) are independent, so their requests may overlap;
pages *within* a stream stay sequential (each cursor comes from the page before it), and so do
the windows of a stream (each is sized from the one before). So a stream is the unit of work:

- a resource generator stays where dlt runs it (a thread of dlt's that holds its state context)
  and hands its streams to :meth:`Lanes.run`, which walks them in worker threads and yields
  their items back in that thread, each stream's items in their own order, streams interleaved
  as their answers come;
- dlt pulls the resources in turn, in one thread, and a generator waiting in ``Lanes.run`` for
  its streams' next answer holds that thread: so once a resource's walks are started, it
  hands the turn back once (``let_others_start``: yields None, which dlt takes as "nothing
  yet" and pulls the next resource), and every resource's streams are on their way before any
  waits (without it the response streams started only once the devices' first page was back,
  a latency late). Not ``parallelized`` resources: when one resource fails, dlt closes the
  others' generators while they may still be running in its pool, which raises in place of
  the real error and skips ``Lanes.run``'s clean-up;
- every stream is walked at once (up to ``MAX_WALKS``); the client lets ``max_in_flight`` of
  their requests (the survey list's included) be in flight, the chain with most pages left
  first where that can be told, else in the order they asked
  (:mod:`.inflight`), with one leaky bucket shared by every thread. A stream waiting for a
  worker thread is invisible to that order: with workers for ``4 * max_in_flight`` streams, 20
  surveys at 1.5 s latency had their longest survey's first request wait 25 s for a walk to
  end (benchmarks.latency_orders, one run each: 1.15x the floor, 1.11x with a worker each);
- when a stream fails (or the consumer closes ``run``), the other walks stop: a walk stops
  before its next page, and a request still waiting for its turn gives up unsent
  (:mod:`.cancel`), and so do a retry's backoff and a wait for a token: a failure is raised
  once the requests on the wire are done, not after every waiting walk's request or sleep;
- a stream's windows and cursors live in its own part of the resource state, written by the
  one thread walking it; a window read in two slices (``slicing``) is walked in lanes of its
  own, inside the stream's walk, each slice writing only its own progress (what they share,
  the stream's last change and page size, under a lock), and those walks stop with the others
  (their cancel scope is a child of the stream's) and count among ``unfinished``; the
  round's page budget and the tally are locked (``rounds``). A round ends
  only after every stream's walk has returned and its items were yielded, so the state dlt
  commits with the round's data matches the pages that round yielded, whatever the order in
  which answers came.

Why not dlt's ``parallelized=True`` alone: it runs one ``next()`` per *resource* generator at a
time, and every survey's responses are one resource (one table, one resource state), so their
requests could not overlap without a resource per survey (a new state layout); and
``EXTRACT__WORKERS`` bounds generators of the whole extract, not requests in flight.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from dlt.common.configuration.container import Container

from . import cancel

T = TypeVar("T")
Stream = Callable[[], Iterable[Any]]

_DONE = object()  # a stream's walk returned
# Streams walked at once at most: a walk waiting for its answer or turn is an idle thread, and
# beyond this many (hundreds of surveys) the first pages queue for hundreds of seconds anyway.
MAX_WALKS = 64


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Channel:
    """A FIFO from worker threads to one consumer; ``put`` blocks while ``capacity`` items wait
    (so a slow consumer holds the walks back), ``close`` releases every blocked ``put``."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Any] = deque()
        self._capacity = capacity
        self._changed = threading.Condition()
        self._closed = False

    def put(self, item: Any, *, wait: bool = True) -> bool:
        """Appends ``item`` (waiting for room unless ``wait`` is False); False once closed."""
        with self._changed:
            while wait and len(self._items) >= self._capacity and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._changed.notify_all()
            return True

    def get(self) -> Any:
        with self._changed:
            self._changed.wait_for(lambda: self._items)
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._items.clear()
            self._changed.notify_all()


class Lanes:
    """Walks the streams of one resource at once; see the module docstring."""

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.max_in_flight = max_in_flight
        self._unfinished = 0
        self._count_lock = threading.Lock()

    def unfinished(self) -> int:
        """Walks started by any ``run`` of these lanes and not ended yet (waiting for a worker
        included): how many chains of pages are still being read, for ``slicing``."""
        with self._count_lock:
            return self._unfinished

    def _ended(self, walks: int = 1) -> None:
        with self._count_lock:
            self._unfinished -= walks

    def run(self, streams: Iterable[Stream], let_others_start: bool = False) -> Iterator[Any]:
        """The items of every stream; each stream (a callable returning its items) is walked in
        a worker thread. ``streams`` itself is read in the calling thread, first. The first
        failure of a stream is raised here once the other walks stopped; closing this
        generator stops them too (a walk stops before its next page; a request waiting for
        its turn is given up, see the module docstring). With
        ``let_others_start``, one None is yielded once the walks are started (for dlt: see the
        module docstring)."""
        walks = list(streams)
        if not walks:
            return
        # A worker per walk, not per request in flight: a walk waiting for its turn holds no
        # slot, and a long stream must not wait for a worker until short ones are done.
        workers = min(max(MAX_WALKS, self.max_in_flight), len(walks))
        channel = Channel(capacity=2 * workers)
        # Inside a walk (a stream's slices), a failure elsewhere stops these walks too.
        stop = cancel.CancelScope(parent=cancel.current())
        # Named as dlt's pools are, so that dlt's context (dlt.current...) resolves in them.
        prefix = context_prefix()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)
        futures = []
        with self._count_lock:
            self._unfinished += len(walks)
        try:
            for walk in walks:
                futures.append(pool.submit(_drain, walk, channel, stop, prefix, self._ended))
            if let_others_start:
                yield None
            done = 0
            while done < len(walks):
                item = channel.get()
                if item is _DONE:
                    done += 1
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield item
        finally:
            stop.cancel()
            channel.close()
            pool.shutdown(wait=True, cancel_futures=True)
            self._ended(sum(1 for future in futures if future.cancelled()))  # never ran


def context_prefix() -> str:
    """A thread name prefix under which dlt resolves the context of the thread it serves. Called
    from a thread of dlt's own extract pool (a ``parallelized`` resource), that pool's prefix:
    ``Container.thread_pool_prefix()`` would name the pool thread itself, which has no context
    (``dlt.current.pipeline()`` would be another pipeline)."""
    if served := re.match(r"dlt-pool-\d+-", threading.current_thread().name):
        return served.group(0)
    # In a walk's worker (a stream's slices), the prefix its own pool was given.
    return getattr(_lane, "prefix", None) or Container.thread_pool_prefix()


_lane = threading.local()  # the thread name prefix of the pool a worker belongs to


def _drain(walk: Stream, channel: Channel, stop: cancel.CancelScope, prefix: str,
           ended: Callable[[], None]) -> None:
    """Walks one stream into ``channel``, in ``stop``'s cancel scope. Its end goes in last
    without waiting, also when it failed (after the failure) or was stopped: a consumer
    inside another walk (a stream's slices) counts the ends to know when to stop waiting."""
    _lane.prefix = prefix
    items: Iterator[Any] | None = None
    try:
        if stop.cancelled:
            return
        with cancel.scope(stop):
            try:
                items = iter(walk())
                for item in items:
                    if not channel.put(item) or stop.cancelled:
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                channel.put(_Failed(exc), wait=False)
                return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
    finally:
        ended()
        channel.put(_DONE, wait=False)
