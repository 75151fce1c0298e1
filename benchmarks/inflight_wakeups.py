"""What waking only the head of the queue saves when many walks wait for a slot.

``InFlight`` (``pipelines/micrometrics/inflight.py``) gives each waiting request a condition of
its own and wakes only the head of the queue. Before, every waiting request slept on one
condition and every change woke them all. This runs both side by side, in one process, with no
HTTP: ``--walks`` threads each take ``--requests / --walks`` slots of ``--limit``, holding each
for ``--hold`` seconds (a request on the wire). It prints the process CPU and wall time of each,
and after / before. The numbers depend on the machine; the ratios are the figure.

    .venv/bin/python -m benchmarks.inflight_wakeups [--walks 4 16 64] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from benchmarks._results import machine, write_section
from pipelines.micrometrics.inflight import InFlight


class OneCondition(InFlight):
    """The queue as it was: every waiting request on one condition, woken by every change."""

    @contextmanager
    def slot(self, book: Callable[[], float], *_: object) -> Iterator[float]:
        me = object()
        changed = self.__dict__.setdefault("_all", threading.Condition(self._lock))
        queue: deque[object] = self.__dict__.setdefault("_queue", deque())
        with changed:
            queue.append(me)
            changed.wait_for(lambda: queue[0] is me and not self._booking
                             and self._in_flight < self._limit)
            queue.popleft()
            self._booking = True
            self._in_flight += 1
        try:
            try:
                booked = book()
            finally:
                with changed:
                    self._booking = False
                    changed.notify_all()
            yield booked
        finally:
            with changed:
                self._in_flight -= 1
                changed.notify_all()


def one_run(kind: type[InFlight], walks: int, requests: int, limit: int,
            hold: float) -> tuple[float, float]:
    """CPU and wall seconds for ``walks`` threads to take ``requests`` slots in all."""
    in_flight = kind(limit)

    def walk() -> None:
        for _ in range(requests // walks):
            with in_flight.slot(lambda: 0.0):
                time.sleep(hold)

    threads = [threading.Thread(target=walk) for _ in range(walks)]
    cpu, wall = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.process_time() - cpu, time.monotonic() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--walks", type=int, nargs="+", default=[4, 16, 64],
                        help="threads waiting for slots (default: 4 16 64; 64 is MAX_WALKS)")
    parser.add_argument("--requests", type=int, default=960, help="slots taken in all")
    parser.add_argument("--limit", type=int, default=4, help="MAX_IN_FLIGHT (default 4)")
    parser.add_argument("--hold", type=float, default=0.002,
                        help="seconds each request holds its slot (default 0.002)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternated")
    parser.add_argument("--write", action="store_true",
                        help="write the table into benchmarks/RESULTS.md (inflight_wakeups)")
    args = parser.parse_args()
    lines = [
        "## Requests waiting for a slot: one condition each vs one for all",
        "",
        f"`.venv/bin/python -m benchmarks.inflight_wakeups --walks "
        f"{' '.join(map(str, args.walks))} --write`; {machine()}.",
        "",
        f"{args.requests} slots of {args.limit}, each held {args.hold * 1000:g} ms, no HTTP; "
        f"medians of {args.rounds} alternated runs. Before: every waiting request on one "
        "condition, all woken by every change; after: `InFlight` as shipped (only the head "
        "of the queue is woken).",
        "",
        "| walks waiting | CPU s before | CPU s after | CPU after / before | wall s before | "
        "wall s after | wall after / before |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for walks in args.walks:
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            runs["before"].append(one_run(OneCondition, walks, args.requests, args.limit,
                                          args.hold))
            runs["after"].append(one_run(InFlight, walks, args.requests, args.limit,
                                         args.hold))
        cpu_b, wall_b = (statistics.median(x) for x in zip(*runs["before"], strict=True))
        cpu_a, wall_a = (statistics.median(x) for x in zip(*runs["after"], strict=True))
        print(f"{walks} walks: CPU {cpu_b:.2f} -> {cpu_a:.2f} s, wall {wall_b:.2f} -> "
              f"{wall_a:.2f} s", flush=True)
        lines.append(f"| {walks} | {cpu_b:.2f} | {cpu_a:.2f} | **{cpu_a / cpu_b:.2f}** | "
                     f"{wall_b:.2f} | {wall_a:.2f} | {wall_a / wall_b:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("inflight_wakeups", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
