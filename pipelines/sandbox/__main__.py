"""Command line: ``python -m pipelines.sandbox`` / ``micrometrics-sandbox``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .paging import ORDERS
from .server import LAST_CURSOR_MODES, Sandbox
from .window import BOUNDARIES


def _number(kind: Callable, low: float, high: float | None = None, low_open=False) -> Callable:
    """An argparse type: ``kind`` within [low, high] (or (low, high] when ``low_open``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a valid {kind.__name__}: {text!r}") from None
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The CLI's options, with their defaults shown in ``--help``."""
    p = argparse.ArgumentParser(
        prog="micrometrics-sandbox",
        description="Local imitation of the Micrometrics Experience API on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--port", type=_number(int, 0, 65535), default=8765, help="0 = any free")
    p.add_argument("--api-key", default="sandbox-key", help="accepted API key")
    p.add_argument("--api-secret", default="sandbox-secret", help="its HMAC secret")
    p.add_argument("--seed", type=int, default=1, help="seed of data, order and faults")
    p.add_argument("--page-size", type=_number(int, 1), default=100, help="records per page")
    p.add_argument("--fault-rate", type=_number(float, 0, 1), default=0.0,
                   help="probability of an injected fault per admitted request")
    p.add_argument("--latency", type=_number(float, 0), default=0.0,
                   help="seconds an admitted API request takes to answer")
    p.add_argument("--latency-jitter", type=_number(float, 0, 1), default=0.0,
                   help="each answer's latency drawn within this fraction of --latency either "
                        "side (seeded)")
    p.add_argument("--rate", type=_number(float, 0, low_open=True), default=1.0,
                   help="leaky bucket: tokens leaked per second")
    p.add_argument("--burst", type=_number(int, 1), default=10, help="leaky bucket capacity")
    p.add_argument("--devices", type=_number(int, 0), default=40, help="generated devices")
    p.add_argument("--surveys", type=_number(int, 0), default=5, help="generated surveys")
    p.add_argument("--silent-devices", type=_number(int, 0), default=0,
                   help="active devices with no response in the last 21 days (default 0)")
    p.add_argument("--responses", type=_number(int, 0), default=6000,
                   help="generated survey responses")
    p.add_argument("--last-cursor", choices=LAST_CURSOR_MODES, default="empty",
                   help="Next-Cursor on the last page: empty value, or header absent")
    p.add_argument("--boundary", choices=BOUNDARIES, default="closed",
                   help="inclusiveness of start_at/end_at")
    p.add_argument("--order", choices=ORDERS, default="shuffled", help="order of index results")
    p.add_argument("--gzip", action="store_true",
                   help="compress API bodies for clients that accept gzip (a CDN in front)")
    p.add_argument("--ready-file", type=Path, help="write the base URL here once listening")
    return p


def start(args: argparse.Namespace) -> Sandbox:
    return Sandbox(
        api_key=args.api_key, api_secret=args.api_secret, seed=args.seed,
        page_size=args.page_size, fault_rate=args.fault_rate, latency=args.latency,
        latency_jitter=args.latency_jitter,
        rate=args.rate, burst=args.burst, devices=args.devices, surveys=args.surveys,
        responses=args.responses, silent_devices=args.silent_devices,
        last_cursor=args.last_cursor, boundary=args.boundary,
        order=args.order, gzip=args.gzip, port=args.port,
    ).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the sandbox until SIGINT or SIGTERM; returns the exit status (0; 2 when it cannot
    listen on the port)."""
    args = build_parser().parse_args(argv)
    try:
        sandbox = start(args)
    except OSError as exc:  # the port taken, or not ours to bind
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}; choose "
              f"another with --port (0 = any free port)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Ready file first, so whoever reads the stdout line can rely on the file too.
    if args.ready_file:
        args.ready_file.write_text(sandbox.url + "\n", encoding="utf-8")
    print(f"sandbox listening on {sandbox.url}", flush=True)
    # The connector's settings for it (its key and secret are the sandbox's, not secrets).
    print(f"point the connector at it: export SOURCES__MICROMETRICS__BASE_URL={sandbox.url} "
          f"SOURCES__MICROMETRICS__API_KEY={args.api_key} "
          f"SOURCES__MICROMETRICS__API_SECRET={args.api_secret}", flush=True)
    try:
        while not stop.wait(0.5):  # wait() with a timeout keeps signals responsive
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
