"""One request on the wire, which another thread can end.

requests bounds each read (the read timeout), not the response: a server or proxy that sent its
status line and headers a byte now and then held a request, and a SIGTERM that waited for it,
for as long as it kept sending; a read blocked on a socket wakes for nothing but bytes or the
socket's end. So the session's connection pools tell the attempt (:class:`Exchange`) which
connection it runs on, and a watchdog at the response deadline, or the walk's cancel scope
(a stop, a SIGTERM), shuts that connection down: the blocked read ends at once, and the attempt
says why (``ended_by``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from . import cancel

DEADLINE, STOPPED = "deadline", "stopped"


class Exchange:
    """An attempt's connection, and what ended it early (None: nothing did)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        self._over = False
        self.ended_by: str | None = None

    def attach(self, connection: Any) -> None:
        """The attempt runs on ``connection`` (again once it has connected: a stop or the
        deadline while it connected found no socket to shut)."""
        with self._lock:
            self._connection = connection
            if self.ended_by is not None:
                shut(connection)

    def detach(self, connection: Any) -> None:
        """``connection`` went back to the pool: another thread's request may take it next."""
        with self._lock:
            if self._connection is connection:
                self._connection = None

    def end(self, why: str) -> None:
        """Shuts the connection down (once, and not after the attempt is over). Under the
        lock, so that a connection handed back to the pool meanwhile is not shut."""
        with self._lock:
            if self._over or self.ended_by is not None:
                return
            self.ended_by = why
            if self._connection is not None:
                shut(self._connection)

    def over(self) -> None:
        with self._lock:
            self._over = True


def shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass


_current = threading.local()


@contextmanager
def watched(deadline: float) -> Iterator[Exchange]:
    """The exchange of this thread's request in the block: ended ``deadline`` seconds from now
    (a real timer: sockets wait in real time) or when this thread's cancel scope is."""
    exchange = Exchange()
    timer = threading.Timer(deadline, exchange.end, args=(DEADLINE,))
    timer.daemon = True
    stopping = cancel.current()
    _current.exchange = exchange
    timer.start()
    try:
        with (stopping.aborting(partial(exchange.end, STOPPED)) if stopping is not None
              else nullcontext()):
            yield exchange
    finally:
        exchange.over()
        timer.cancel()
        _current.exchange = None


def current_exchange() -> Exchange | None:
    return getattr(_current, "exchange", None)


class _WatchedConnection:
    """A connection that, once connected (a proxy's tunnel included), is this thread's
    exchange's again: its socket exists only now."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if (exchange := current_exchange()) is not None:
            exchange.attach(self)


class WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool:
    """A connection pool that hands each request's connection to this thread's exchange, and
    takes it back from the exchange as it returns to the pool."""

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        if (exchange := current_exchange()) is not None:
            exchange.attach(conn)
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]

    def _put_conn(self, conn: Any) -> None:
        if (exchange := current_exchange()) is not None:
            exchange.detach(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class WatchedHTTPConnectionPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


WATCHED_POOLS = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, its pools watched, a proxy's too (requests makes those apart); not a
    SOCKS proxy's, whose pools are its own classes: there the read timeout alone bounds the
    head of a response."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = WATCHED_POOLS
        return manager
