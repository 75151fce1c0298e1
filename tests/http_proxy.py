"""A forwarding HTTP proxy on loopback for the tests (plain ``http://``, as ``HTTP_PROXY``
names one): each request line's absolute URI is made a path, and the bytes are relayed both
ways as they come, a trickle as a trickle."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

ABSOLUTE = re.compile(rb"^([A-Z]+) http://[^/ ]+/", re.M)


@contextmanager
def forwarding_proxy(target_port: int) -> Iterator[str]:
    """Its URL while the block runs; every connection goes to 127.0.0.1:``target_port``."""
    listener = socket.create_server(("127.0.0.1", 0))

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

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the block ended
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for args in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=relay, args=args, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@contextmanager
def refusing_proxy() -> Iterator[tuple[str, threading.Event]]:
    """A proxy's URL that takes each connection and closes it at once (a proxy that cannot
    reach the internet), and an event set on the first connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    reached = threading.Event()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the block ended
                return
            reached.set()
            client.close()

    threading.Thread(target=serve, name="refusing-proxy", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", reached
    finally:
        listener.close()
