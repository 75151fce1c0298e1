"""A forwarding HTTP proxy on loopback for the tests (plain ``http://``, as ``HTTP_PROXY``
names one): each request line's absolute URI is made a path, and the bytes are relayed both
ways as they come, a trickle as a trickle."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ABSOLUTE = re.compile(rb"^([A-Z]+) http://[^/ ]+/", re.M)


@contextmanager
def forwarding_proxy(target_port: int) -> Iterator[str]:
    """Its URL while the block runs; every connection goes to 127.0.0.1:``target_port``."""

    def relay(source: socket.socket, sink: socket.socket, rewrite: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(ABSOLUTE.sub(rb"\1 /", data) if rewrite else data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def forward(client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for args in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=relay, args=args, daemon=True).start()

    with serving(forward) as url:
        yield url


@contextmanager
def refusing_proxy() -> Iterator[tuple[str, threading.Event]]:
    """A proxy's URL that takes each connection and closes it at once (a proxy that cannot
    reach the internet), and an event set on the first connection."""
    reached = threading.Event()

    def refuse(client: socket.socket) -> None:
        reached.set()
        client.close()

    with serving(refuse) as url:
        yield url, reached


@contextmanager
def serving(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A proxy's URL on loopback while the block runs, each connection given to ``handle``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the block ended
                return
            handle(client)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
