"""A TCP proxy that adds latency and caps bandwidth, for benchmarks.

:class:`ShapingProxy` makes a loopback server look like one across a network:
every byte is delivered ``delay`` seconds after the proxy received it (in
each direction, so the round trip grows by ``2 * delay``), and each TCP
connection is limited to ``rate`` bytes per second in each direction by its
own token bucket (so several parallel connections get ``rate`` each, as
behind a per-flow limit). With ``handshake=True`` (the default) a new
connection's first bytes are additionally held back by one round trip, as
the TCP handshake would cost.

The delay is modelled as latency, not as a pause per chunk: data keeps
flowing at the full rate while earlier data is "in flight", so a single
connection still reaches ``rate`` once its window is open::

    with TusNodeServer() as server, ShapingProxy(server, delay=0.020, rate=20e6) as wan:
        run_benchmark(wan.url_for(server.url))

Each connection uses four threads (a reader and a writer per direction) that
move large blocks, so the proxy's own CPU cost stays small; all threads end
when the proxy stops.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
import time
from typing import Any, Deque, List, Optional, Tuple

from upclient.testing.proxy import LoopbackProxy
from upclient.testing.proxy import set_nodelay as _set_nodelay

__all__ = ["ShapingProxy"]

log = logging.getLogger(__name__)


class _Pipe:
    """One direction of a connection: reader (rate limit) -> queue -> writer (delay)."""

    def __init__(
        self,
        conn: "_ShapedConnection",
        src: socket.socket,
        dst: socket.socket,
        name: str,
        not_before: float,
    ) -> None:
        proxy = conn.proxy
        self.conn = conn
        self.src = src
        self.dst = dst
        self.name = name
        self.delay = proxy.delay
        self.rate = proxy.rate
        self.not_before = not_before
        if self.rate:
            self.chunk = int(min(1 << 20, max(16 << 10, self.rate / 100)))
            self.burst = float(self.chunk)
            self.max_queued = int(max(4 << 20, 2 * self.rate * max(self.delay, 0.001)))
        else:
            self.chunk = 1 << 20
            self.burst = 0.0
            self.max_queued = 16 << 20
        self.queue: Deque[Tuple[float, Optional[bytes]]] = collections.deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.bytes = 0
        self.reader = threading.Thread(target=self._read, name=f"Shaping-{name}-read", daemon=True)
        self.writer = threading.Thread(target=self._write, name=f"Shaping-{name}-write", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _put(self, item: Tuple[float, Optional[bytes]]) -> bool:
        size = len(item[1]) if item[1] is not None else 0
        with self.cond:
            while self.queued > self.max_queued and not self.conn.closing.is_set():
                self.cond.wait(0.1)
            if self.conn.closing.is_set():
                return False
            self.queue.append(item)
            self.queued += size
            self.cond.notify_all()
        return True

    def _read(self) -> None:
        closing = self.conn.closing
        tokens = self.burst
        last = time.monotonic()
        try:
            while not closing.is_set():
                data = self.src.recv(self.chunk)
                if not data:
                    self._put((time.monotonic(), None))
                    return
                if self.rate:
                    now = time.monotonic()
                    tokens = min(self.burst, tokens + (now - last) * self.rate) - len(data)
                    last = now
                    if tokens < 0:
                        # Serialising this block on the "link" takes that long.
                        if closing.wait(-tokens / self.rate):
                            return
                stamp = max(time.monotonic(), self.not_before)
                self.bytes += len(data)
                if not self._put((stamp, data)):
                    return
        except OSError as exc:
            log.debug("%s: read: %s", self.name, exc)
            self.conn.abort()
        finally:
            self.conn.thread_done()

    def _write(self) -> None:
        closing = self.conn.closing
        try:
            while True:
                with self.cond:
                    while not self.queue and not closing.is_set():
                        self.cond.wait(0.1)
                    if closing.is_set():
                        return
                    stamp, data = self.queue[0]
                due = stamp + self.delay
                wait = due - time.monotonic()
                if wait > 0 and closing.wait(wait):
                    return
                with self.cond:
                    self.queue.popleft()
                    if data is not None:
                        self.queued -= len(data)
                    self.cond.notify_all()
                if data is None:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
        except OSError as exc:
            log.debug("%s: write: %s", self.name, exc)
            self.conn.abort()
        finally:
            self.conn.thread_done()


class _ShapedConnection:
    def __init__(self, proxy: "ShapingProxy", client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.number = number
        self.upstream: Optional[socket.socket] = None
        self.closing = threading.Event()
        self.pipes: List[_Pipe] = []
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False
        self.accepted = time.monotonic()
        self.setup = threading.Thread(target=self._setup, name=f"Shaping-conn-{number}", daemon=True)

    def start(self) -> None:
        self.setup.start()

    def threads(self) -> List[threading.Thread]:
        out = [self.setup]
        for pipe in self.pipes:
            out += [pipe.reader, pipe.writer]
        return out

    def _setup(self) -> None:
        host, port = self.proxy.upstream
        try:
            upstream = socket.create_connection((host, port), timeout=self.proxy.connect_timeout)
        except OSError as exc:
            log.warning("ShapingProxy: cannot connect to %s:%s: %s", host, port, exc)
            with contextlib.suppress(OSError):
                self.client.close()
            self.proxy._forget(self)
            return
        upstream.settimeout(None)
        _set_nodelay(upstream)
        self.upstream = upstream
        # The TCP handshake costs one round trip before the client's first byte leaves.
        not_before = self.accepted + (2 * self.proxy.delay if self.proxy.handshake else 0.0)
        up = _Pipe(self, self.client, upstream, f"{self.number}-up", not_before)
        down = _Pipe(self, upstream, self.client, f"{self.number}-down", 0.0)
        with self._lock:
            self.pipes = [up, down]
            self._running = 4
        if self.closing.is_set() or self.proxy._stopping.is_set():
            self.abort()
        up.start()
        down.start()

    def abort(self) -> None:
        """Wake every thread of this connection; the last one closes the sockets."""
        self.closing.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for pipe in self.pipes:
            pipe.wake()

    def thread_done(self) -> None:
        """Called by each of the four pipe threads as it ends; the last closes the sockets.

        In an orderly end each reader stops at EOF and each writer after
        passing that EOF on (``shutdown(SHUT_WR)``), so all four end once both
        sides have closed; on an error :meth:`abort` ends them all.
        """
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)


class ShapingProxy(LoopbackProxy[_ShapedConnection]):
    """A TCP proxy on 127.0.0.1 adding latency and a per-connection bandwidth cap.

    :param upstream: where to forward: a URL (only host and port are used),
        ``"host:port"``, ``(host, port)``, or an object with a ``url``
        attribute (such as a running server from :mod:`upclient.testing`).
    :param delay: one-way latency in seconds added in each direction
        (default 0.020: 40 ms more round trip). 0 for none.
    :param rate: bytes per second allowed per connection and direction
        (default 20e6 = 20 MB/s); ``None`` or 0 for no cap.
    :param handshake: hold a new connection's first bytes back by one
        round trip (``2 * delay``), as a TCP handshake would.
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one.
    :param connect_timeout: seconds allowed to connect to the upstream.

    :attr:`bytes_up` / :attr:`bytes_down` count the bytes carried and
    :attr:`connections` the connections accepted.
    """

    # Lifecycle (start, stop, use as a context manager), address (port, url,
    # url_for) and the accept loop come from LoopbackProxy.
    _label = "ShapingProxy"
    _accept_thread_name = "Shaping-accept"
    _log = log

    def __init__(
        self,
        upstream: Any,
        *,
        delay: float = 0.020,
        rate: Optional[float] = 20e6,
        handshake: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0 or None")
        super().__init__(upstream, host=host, port=port, connect_timeout=connect_timeout)
        self.delay = float(delay)
        self.rate = float(rate) if rate else None
        self.handshake = handshake
        self._bytes_done = [0, 0]

    def _new_connection(self, client: socket.socket, peer: Any, number: int) -> _ShapedConnection:
        return _ShapedConnection(self, client, number)

    def _log_started(self) -> None:
        log.info(
            "ShapingProxy %s -> %s:%s (delay %.1f ms each way, %s per connection)",
            self.url,
            self.upstream[0],
            self.upstream[1],
            self.delay * 1000,
            f"{self.rate / 1e6:.1f} MB/s" if self.rate else "no bandwidth cap",
        )

    def _bytes(self, index: int) -> int:
        with self._lock:
            total = self._bytes_done[index]
            for conn in self._conns:
                if len(conn.pipes) == 2:
                    total += conn.pipes[index].bytes
            return total

    @property
    def bytes_up(self) -> int:
        """Bytes carried from clients to the upstream."""
        return self._bytes(0)

    @property
    def bytes_down(self) -> int:
        """Bytes carried from the upstream to clients."""
        return self._bytes(1)

    def _repr_details(self) -> str:
        return f" delay={self.delay} rate={self.rate}"

    def _connection_ended(self, conn: _ShapedConnection) -> None:
        if len(conn.pipes) == 2:
            self._bytes_done[0] += conn.pipes[0].bytes
            self._bytes_done[1] += conn.pipes[1].bytes
