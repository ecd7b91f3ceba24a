"""What the loopback proxies of :mod:`upclient.testing` have in common.

:class:`LoopbackProxy` owns the listening socket, the accept thread and the
set of open connections, and gives a proxy its lifecycle (:meth:`~LoopbackProxy.start`,
:meth:`~LoopbackProxy.stop`, use as a context manager) and its address
(:attr:`~LoopbackProxy.port`, :attr:`~LoopbackProxy.url`,
:meth:`~LoopbackProxy.url_for`). A subclass says what a connection does:
:meth:`~LoopbackProxy._new_connection` builds one for each accepted client
socket; the object returned has ``start()`` (run it), ``abort()`` (wake and
end all its threads) and ``threads()`` (the threads to join when stopping),
and calls ``proxy._forget(conn)`` once it is done.

Used by :class:`~upclient.testing.faultproxy.FaultProxy` and
:class:`~upclient.testing.shaping.ShapingProxy`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any, ClassVar, Generic, List, Optional, Protocol, Set, Tuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LoopbackProxy", "parse_upstream", "proxied_url"]

log = logging.getLogger(__name__)


def parse_upstream(upstream: Any) -> Tuple[str, int]:
    """``(host, port)`` from a URL, ``"host:port"``, a tuple, or an object with ``.url``.

    Used by :class:`~upclient.testing.faultproxy.FaultProxy` and
    :class:`~upclient.testing.shaping.ShapingProxy`.
    """
    if hasattr(upstream, "url") and not isinstance(upstream, (str, tuple)):
        upstream = upstream.url
    if isinstance(upstream, tuple):
        host, port = upstream
        return str(host), int(port)
    if not isinstance(upstream, str):
        raise TypeError(f"upstream must be a URL, 'host:port' or (host, port), not {upstream!r}")
    if "://" in upstream:
        parts = urlsplit(upstream)
        if not parts.hostname:
            raise ValueError(f"no host in {upstream!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname, port
    host, sep, port_text = upstream.rpartition(":")
    if not sep or not host:
        raise ValueError(f"upstream {upstream!r} is not 'host:port'")
    return host.strip("[]"), int(port_text)


def proxied_url(proxy_base: str, upstream_url: str) -> str:
    """``upstream_url`` with its scheme and authority replaced by ``proxy_base``'s.

    A relative URL (``/files/abc``) is joined to ``proxy_base``.
    """
    base = urlsplit(proxy_base)
    parts = urlsplit(upstream_url)
    return urlunsplit((base.scheme, base.netloc, parts.path or "/", parts.query, parts.fragment))


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on ``sock`` (errors are ignored)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProxyConnection(Protocol):
    """What :class:`LoopbackProxy` needs of one proxied connection."""

    def start(self) -> None: ...

    def abort(self) -> None: ...

    def threads(self) -> List[threading.Thread]: ...


ConnT = TypeVar("ConnT", bound=ProxyConnection)
ProxyT = TypeVar("ProxyT", bound="LoopbackProxy[Any]")


class LoopbackProxy(Generic[ConnT]):
    """A threaded TCP proxy listening on one address and forwarding to one upstream.

    :param upstream: where to forward: anything :func:`parse_upstream` takes.
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one (see :attr:`port`).
    :param connect_timeout: seconds allowed to connect to the upstream.
    """

    #: The name used in log messages, errors and ``repr()``.
    _label: ClassVar[str] = "LoopbackProxy"
    #: The name of the accept thread.
    _accept_thread_name: ClassVar[str] = "LoopbackProxy-accept"
    #: The logger of the subclass's module, so its messages keep their logger.
    _log: ClassVar[logging.Logger] = log

    def __init__(
        self,
        upstream: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream: Tuple[str, int] = parse_upstream(upstream)
        self.host = host
        self._requested_port = port
        self._port: Optional[int] = None
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conns: Set[ConnT] = set()
        self._listener: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._conn_seq = 0
        self._connections = 0

    # --------------------------------------------------------------- lifecycle

    def start(self: ProxyT) -> ProxyT:
        """Bind and start accepting connections; returns ``self``."""
        if self._listener is not None:
            raise RuntimeError(f"{self._label} is already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._port or self._requested_port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=self._accept_thread_name, daemon=True)
        self._accept_thread.start()
        self._log_started()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, cut every open connection, and join all threads.

        Returns within about ``timeout`` seconds; idempotent. What the proxy
        counted (and a :class:`~upclient.testing.faultproxy.FaultProxy`'s armed
        faults) is kept, and :meth:`start` may be called again (same port).
        """
        if self._listener is None:
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(OSError):
            self._listener.close()
        self._listener = None
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.abort()
        for conn in conns:
            for thread in conn.threads():
                if thread.ident is not None:  # started
                    thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for c in conns for t in c.threads() if t.is_alive()]
        if alive:
            self._log.warning("%s: threads still running after stop: %s", self._label, alive)
        self._log.info("%s %s stopped", self._label, self.url)

    def __enter__(self: ProxyT) -> ProxyT:
        if self._listener is None:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        if self._port is None:
            raise RuntimeError(f"{self._label} has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, upstream_url: str) -> str:
        """The URL that reaches ``upstream_url`` through this proxy.

        Scheme and authority are replaced by the proxy's; path and query are
        kept. A relative URL (``/files/abc``) is joined to the proxy's address.
        """
        return proxied_url(self.url, upstream_url)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "(not started)"
        return f"<{self._label} {where} -> {self.upstream[0]}:{self.upstream[1]}{self._repr_details()}>"

    # ---------------------------------------------------------------- counters

    @property
    def connections(self) -> int:
        """How many client connections were accepted."""
        with self._lock:
            return self._connections

    @property
    def active_connections(self) -> int:
        """Client connections open right now."""
        with self._lock:
            return len(self._conns)

    # ------------------------------------------------------- for the subclasses

    def _new_connection(self, client: socket.socket, peer: Any, number: int) -> ConnT:
        """A connection object for an accepted ``client`` socket (not started yet).

        Called with the proxy's lock held; ``number`` counts from 1 for the
        proxy's lifetime.
        """
        raise NotImplementedError

    def _connection_ended(self, conn: ConnT) -> None:
        """Called (with the lock held) when ``conn`` leaves the open set."""

    def _log_started(self) -> None:
        self._log.info("%s %s -> %s:%s", self._label, self.url, *self.upstream)

    def _repr_details(self) -> str:
        """Text appended inside :meth:`__repr__`'s angle brackets."""
        return ""

    # --------------------------------------------------------------- internals

    def _forget(self, conn: ConnT) -> None:
        """A connection is done: it is no longer open."""
        with self._lock:
            if conn in self._conns:
                self._conns.discard(conn)
                self._connection_ended(conn)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if not self._stopping.is_set():
                    self._log.warning("%s: accept failed: %s", self._label, exc)
                    time.sleep(0.05)
                continue
            client.settimeout(None)
            set_nodelay(client)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    break
                self._connections += 1
                self._conn_seq += 1
                conn = self._new_connection(client, peer, self._conn_seq)
                self._conns.add(conn)
            conn.start()
