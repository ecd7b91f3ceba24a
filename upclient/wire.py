"""urllib3 connections that answer to the call's deadline and cancel token.

A connection used by :class:`~upclient.transport.HttpTransport` registers its
socket with the :class:`~upclient.transfer.StopSignal` bound to the sending
thread, so a cancel, a deadline, ``close()`` or Ctrl-C shuts the socket down
from the controlling thread whatever the server is doing.  Its connect waits
at most what is left of the deadline, and a request body is sent under the
read timeout (urllib3 would use the connect timeout), so a server that stops
reading the body is a :class:`~upclient.errors.Timeout` after
``read_timeout``, not after ``connect_timeout``.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, List, Optional, Set, Tuple

import urllib3
import urllib3.connection
import urllib3.connectionpool

from .transfer import deadline
from .transfer.deadline import StopSignal

__all__ = ["Flight", "WatchedHTTPConnectionPool", "WatchedHTTPSConnectionPool"]

log = logging.getLogger("upclient.http")

_local = threading.local()


class Flight:
    """The sockets one request registered, and the read timeout it runs under."""

    def __init__(self, read_timeout: Optional[float], signal: Optional[StopSignal]) -> None:
        self.read_timeout = read_timeout
        self.signal = signal
        self.tracked: List[Tuple[StopSignal, socket.socket]] = []

    def __enter__(self) -> "Flight":
        self._previous = getattr(_local, "flight", None)
        _local.flight = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.flight = self._previous

    def land(self) -> None:
        """The request is over: its sockets no longer answer to the signal."""
        tracked, self.tracked = self.tracked, []
        for signal, sock in tracked:
            signal.untrack(sock)


def _current_flight() -> Optional[Flight]:
    return getattr(_local, "flight", None)


class _Watched:
    """Mixin for urllib3's connection classes."""

    sock: Optional[socket.socket]
    timeout: Any

    def _watch(self, f: Optional[Flight]) -> None:
        """Register the socket with the flight's signal (shut down at once if it has fired)."""
        signal = f.signal if f is not None else None
        if signal is not None and self.sock is not None:
            signal.track(self.sock)
            f.tracked.append((signal, self.sock))  # type: ignore[union-attr]

    def connect(self) -> None:
        signal = deadline.current()
        if signal is not None:
            signal.check()
            if isinstance(self.timeout, (int, float)) or self.timeout is None:
                self.timeout = deadline.remaining(self.timeout)
        super().connect()  # type: ignore[misc]
        self._watch(_current_flight())

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:
        f = _current_flight()
        if f is not None:
            if self.sock is None:
                self.connect()
            else:
                self._watch(f)
            if f.read_timeout is not None:
                self.timeout = f.read_timeout  # urllib3 applies it to the socket before sending
        super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        """urllib3's check, with its per-request InsecureRequestWarning made one log record per host."""
        urllib3.connectionpool.HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()
        if not conn.is_verified and not conn.proxy_is_verified:
            _unverified_once(conn.host)


_warned_hosts: Set[str] = set()
_warned_lock = threading.Lock()


def _unverified_once(host: str) -> None:
    with _warned_lock:
        if host in _warned_hosts:
            return
        _warned_hosts.add(host)
    log.warning(
        "TLS certificates of %s are not verified (verify=False): anyone on the way can read and change "
        "what is sent; pass verify='/path/to/ca.pem' to trust a private CA instead", host,
    )


class _NoQueryInLogs(logging.Filter):
    """urllib3 logs each request's target at DEBUG: its query string (a signature, a token) is cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "?" in a for a in args):
            record.args = tuple(
                a.split("?", 1)[0] + "?<redacted>" if isinstance(a, str) and "?" in a else a for a in args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_NoQueryInLogs())


POOL_CLASSES = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
