"""TCP connections to FastDFS trackers and storages, pooled per address.

A :class:`Pool` keeps up to ``max_conns`` connections to one address, safe to
share between threads.  A connection is handed back only after a clean
exchange; one that failed in the middle of a request, or got status 22 from
a storage (which closes its end), is closed instead.  An idle connection is
checked before reuse: closed by the peer (a cheap peek), too old
(``idle_timeout``) or, after a pause, not answering an active test.

Every socket operation answers to the :class:`~upclient.transfer.StopSignal`
bound to the calling thread: a connect waits at most what is left of the
deadline, a request's socket is registered with the signal while it is in
flight (so a cancel, a deadline, ``close()`` or Ctrl-C shuts it down from the
controlling thread), and a pool checkout waits in slices and gives up when
the signal fires.  Then the error raised is the signal's, never a network
error.  A server that took a request and stayed silent for
``network_timeout`` is :class:`Silent`, which is not retried: a FastDFS
tracker keeps naming the same storage until it notices the storage is gone,
minutes later, so asking again would only multiply the wait.

:class:`Exchange` runs one request on one connection and knows how far it
got, which is what decides whether a failed request may be repeated: one
that never left, or one the server discards when cut short, may; an upload or
an append whose reply was lost may have succeeded and may not
(:class:`~upclient.errors.OutcomeUnknown`).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import select
import selectors
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ...errors import NetworkError, OutcomeUnknown, Timeout, TransportError
from ...transfer import deadline
from ...transfer.deadline import StopSignal
from ...wire import CAN_SENDFILE, send_region
from .protocol import HEADER, RESPONSE, Cmd, ProtocolError, Request

__all__ = ["Pool", "Pools", "Exchange", "Repeat", "Silent"]

log = logging.getLogger("upclient.fdfs")

Address = Tuple[str, int]

#: Blocks a body is streamed in, both ways.
BLOCK = 1024 * 1024
#: What the first read of a reply asks for: the header and a small reply's body, in one call.
READ_AHEAD = 4096
#: A request up to this size goes in one send, its body copied behind the header.
ONE_SEGMENT = 64 * 1024
#: A connection idle for longer than this gets an active test before reuse.
CHECK_AFTER = 2.0
#: How long a wait (a pool checkout, a connect) sleeps before it looks at the signal again.
SLICE = 0.05


_poll = getattr(select, "poll", None)
_READABLE = getattr(select, "POLLIN", 1) | getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)


class Silent(OutcomeUnknown, Timeout):
    """A server took a request, then said nothing (or read nothing) for
    ``network_timeout`` seconds.

    What it did with the request is unknown, and it is not tried again: a
    FastDFS tracker keeps naming a hung storage until it notices, minutes
    later, so each new try would cost another ``network_timeout``.  An
    :class:`~upclient.errors.OutcomeUnknown` (a ``NetworkError``) and a
    :class:`~upclient.errors.Timeout`.
    """


class Repeat(enum.Enum):
    """When a request that failed on the wire may be sent again."""

    #: Reads, and writes that give the same result twice (metadata, truncate, modify).
    ALWAYS = "always"
    #: Uploads: a storage discards a file whose bytes did not all arrive, so
    #: only a lost reply leaves the outcome unknown.
    UNTIL_COMPLETE = "until-complete"
    #: Only if not one byte of it left (a bare append).
    UNTIL_SENT = "until-sent"


def _fmt(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Connection:
    """One TCP connection; a thin layer over a socket with timeouts."""

    def __init__(self, address: Address, connect_timeout: float, network_timeout: float) -> None:
        self.address = address
        signal = deadline.current()
        limit = deadline.remaining(connect_timeout)
        try:
            self.sock = _connect(address, limit, signal)
        except socket.timeout:
            raise Timeout(f"connecting to {_fmt(address)} timed out after {connect_timeout:g} s") from None
        except OSError as exc:
            raise NetworkError(f"cannot connect to {_fmt(address)}: {exc.strerror or exc}") from None
        self.network_timeout = network_timeout
        self.sock.settimeout(network_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.used = time.monotonic()
        #: Set when the connection must not be reused (an error, a status 22 from a storage).
        self.discard = False

    def closed_by_peer(self) -> bool:
        """True if the peer closed its end (or sent something unasked) while idle.

        An idle connection has nothing to read: anything there (an end of
        file, bytes nobody asked for, an error) means it cannot be used.  One
        ``poll`` that does not wait, the common answer being "nothing".
        """
        if _poll is None:  # pragma: no cover - systems without poll: peek without waiting
            try:
                self.sock.setblocking(False)
                try:
                    self.sock.recv(1, socket.MSG_PEEK)
                    return True
                finally:
                    self.sock.settimeout(self.network_timeout)
            except BlockingIOError:
                return False
            except OSError:
                return True
        try:
            waiter = _poll()
            waiter.register(self.sock, _READABLE)
            return bool(waiter.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _connect(address: Address, limit: Optional[float], signal: Optional[StopSignal]) -> socket.socket:
    """A connected socket, waiting at most ``limit`` seconds, and no longer than ``signal`` allows.

    The connect is non-blocking and watched in slices, so a cancel ends it at
    once whatever the network does with the SYN; the signal's error is raised.
    """
    end = None if limit is None else time.monotonic() + limit
    last: Optional[OSError] = None
    for family, kind, proto, _, where in socket.getaddrinfo(*address, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(where)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                raise OSError(code, os.strerror(code))
            with selectors.DefaultSelector() as sel:
                sel.register(sock, selectors.EVENT_WRITE)
                while code and not sel.select(SLICE if end is None else max(0.0, min(SLICE, end - time.monotonic()))):
                    if signal is not None and signal.is_set():
                        raise signal.error()
                    if end is not None and time.monotonic() >= end:
                        raise socket.timeout("connect timed out")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            return sock
        except OSError as exc:  # socket.timeout too: the next address, if any, is tried
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last if last is not None else OSError(f"no address for {_fmt(address)}")


class Pool:
    """Connections to one address: at most ``max_conns`` open, idle ones reused."""

    def __init__(
        self,
        address: Address,
        *,
        max_conns: int,
        connect_timeout: float,
        network_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.network_timeout = network_timeout
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_conns)
        self._idle: List[Connection] = []
        self._lock = threading.Lock()
        self.opened = 0

    def _take_idle(self, signal: Optional[StopSignal], what: str) -> Optional[Connection]:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            idle = time.monotonic() - conn.used
            if idle > self.idle_timeout or conn.closed_by_peer():
                conn.close()
                continue
            if idle > CHECK_AFTER:
                if signal is not None:
                    signal.track(conn.sock)
                try:
                    alive = self._answers(conn, what)
                except Silent:
                    if signal is not None and signal.is_set():
                        raise signal.error() from None
                    raise
                finally:
                    if signal is not None:
                        signal.untrack(conn.sock)
                if signal is not None and signal.is_set():
                    conn.close()
                    raise signal.error()
                if not alive:
                    conn.close()
                    continue
            return conn

    def _answers(self, conn: Connection, what: str) -> bool:
        """An active test (111): header only, both ways, within a connect's time.

        A connection the server closed or broke is replaced by a new one.  A
        server that does not answer at all is :class:`Silent`: the request on
        a new connection would wait for it once more.
        """
        limit = min(self.connect_timeout, self.network_timeout)
        conn.sock.settimeout(limit)
        try:
            conn.sock.sendall(Request(Cmd.ACTIVE_TEST).header())
            length, cmd, status = HEADER.unpack(_recv_exact(conn.sock, HEADER.size))
            return cmd == RESPONSE and status == 0 and length == 0
        except socket.timeout:
            conn.close()
            raise Silent(f"no answer to an active test from {_fmt(self.address)} in {limit:g} s; not tried again",
                         backend="fdfs", operation=what) from None
        except (OSError, EOFError):
            return False
        finally:
            with contextlib.suppress(OSError):
                conn.sock.settimeout(self.network_timeout)

    def _checkout(self, signal: Optional[StopSignal]) -> None:
        """Take one of the ``max_conns`` slots, waiting in slices while the signal allows."""
        if signal is None:
            self._slots.acquire()
            return
        while not self._slots.acquire(timeout=SLICE):
            signal.check()

    @contextlib.contextmanager
    def connection(self, what: str = "request") -> Iterator[Connection]:
        """A connection for one exchange; closed instead of kept if anything fails.

        Its socket answers to the thread's signal from checkout to return.
        """
        signal = deadline.current()
        if signal is not None:
            signal.check()
        self._checkout(signal)
        try:
            conn = self._take_idle(signal, what)
            if conn is None:
                conn = Connection(self.address, self.connect_timeout, self.network_timeout)
                self.opened += 1
            keep = False
            if signal is not None:
                signal.track(conn.sock)
            try:
                yield conn
                keep = not conn.discard
            finally:
                if signal is not None:
                    signal.untrack(conn.sock)
                    keep = keep and not signal.is_set()  # it may have been shut down just now
                if keep:
                    conn.used = time.monotonic()
                    with self._lock:
                        self._idle.append(conn)
                else:
                    conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Pools:
    """One :class:`Pool` per address, made on first use."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._pools: Dict[Address, Pool] = {}
        self._lock = threading.Lock()

    def __getitem__(self, address: Address) -> Pool:
        pool = self._pools.get(address)
        if pool is None:
            with self._lock:
                pool = self._pools.get(address)
                if pool is None:
                    pool = self._pools[address] = Pool(address, **self._settings)
        return pool

    @property
    def opened(self) -> int:
        return sum(p.opened for p in list(self._pools.values()))

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


class Exchange:
    """One request and its reply on one pooled connection.

    ``stage`` records how far the request got (``"connect"``, ``"send"``,
    ``"body"``, ``"reply"``); :meth:`failure` turns a socket error into the
    error the caller should see, retryable or not, given ``repeat``.
    """

    def __init__(self, conn: Connection, request: Request, repeat: Repeat, what: str, *, storage: bool) -> None:
        self.conn = conn
        self.request = request
        self.repeat = repeat
        self.what = what
        self.storage = storage
        self.stage = "send"
        self.body_sent = 0
        self._ahead = b""  # reply bytes read with the header

    def send(self, body: Any = None) -> None:
        """The header and fixed part, then ``data_len`` bytes read from ``body`` (``.read(n)``).

        A body that is a region of a file (``zero_copy``) goes with
        ``os.sendfile`` (:func:`upclient.wire.send_region`), unless it is
        small enough to ride in the header's segment.
        """
        sock = self.conn.sock
        first = self.request.header() + self.request.head
        want = self.request.data_len
        if want == 0:
            sock.sendall(first)
        elif want > ONE_SEGMENT and getattr(body, "zero_copy", False) and len(body) == want and CAN_SENDFILE:
            sock.sendall(first)
            self.stage = "body"
            try:
                send_region(sock, body)
            finally:
                self.body_sent = body.tell()
        else:
            chunk = body.read(min(BLOCK, want))
            if len(first) + len(chunk) <= ONE_SEGMENT:  # small request: one segment
                sock.sendall(first + bytes(chunk))
            else:
                sock.sendall(first)
                self.stage = "body"
                sock.sendall(chunk)
            self.stage = "body"
            self.body_sent = len(chunk)
            while self.body_sent < want:
                chunk = body.read(min(BLOCK, want - self.body_sent))
                if not chunk:
                    raise ProtocolError(f"the body of {self.what} ended {want - self.body_sent} bytes early")
                sock.sendall(chunk)
                self.body_sent += len(chunk)
        self.stage = "reply"

    def reply_header(self) -> Tuple[int, int]:
        """(body length, status) of the reply.

        One ``recv`` of up to :data:`READ_AHEAD` bytes takes the header and,
        for a small reply, its body too; :meth:`read` and :meth:`stream`
        start from what it took.
        """
        sock = self.conn.sock
        buf = bytearray(READ_AHEAD)
        view = memoryview(buf)
        got = 0
        while got < HEADER.size:
            k = sock.recv_into(view[got:], READ_AHEAD - got)
            if not k:
                raise EOFError(f"connection closed after {got} of {HEADER.size} bytes")
            got += k
        length, cmd, status = HEADER.unpack_from(buf)
        self._ahead = bytes(view[HEADER.size:got])
        if cmd != RESPONSE:
            raise ProtocolError(f"{self.what}: reply with command {cmd}, expected {RESPONSE}")
        if status != 0 and length != 0:
            raise ProtocolError(f"{self.what}: an error reply (status {status}) with a {length}-byte body")
        if len(self._ahead) > length:
            raise ProtocolError(f"{self.what}: {len(self._ahead) - length} bytes more than the reply")
        if status != 0 and (status == 22 and self.storage):
            self.conn.discard = True  # the storage closes its end after a 22
        return length, status

    def read(self, length: int, limit: int = 64 * 1024 * 1024) -> bytes:
        if length > limit:
            raise ProtocolError(f"{self.what}: a {length}-byte reply is larger than expected")
        ahead, self._ahead = self._ahead, b""
        if len(ahead) >= length:
            return ahead[:length]
        return ahead + _recv_exact(self.conn.sock, length - len(ahead))

    def stream(self, length: int, sink: Callable[[bytes], Any]) -> int:
        """Copy a ``length``-byte reply body to ``sink`` in blocks; returns the count."""
        sock = self.conn.sock
        ahead, self._ahead = self._ahead, b""
        got = min(len(ahead), length)
        if got:
            self.stage = "streaming"
            sink(ahead[:got])
        buf = bytearray(min(BLOCK, max(length - got, 1)))
        view = memoryview(buf)
        while got < length:
            k = sock.recv_into(view, min(len(buf), length - got))
            if not k:
                raise EOFError(f"connection closed after {got} of {length} bytes")
            got += k
            self.stage = "streaming"
            sink(bytes(view[:k]))
        return got

    def failure(self, exc: BaseException) -> TransportError:
        """The error to raise for a socket failure, by how far the request got."""
        self.conn.discard = True
        peer = _fmt(self.conn.address)
        if isinstance(exc, socket.timeout):
            reason = "timed out"
        elif isinstance(exc, EOFError):
            reason = f"the server closed the connection ({exc})"
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        # A reset while waiting for the reply means the server closed with bytes of
        # this request still unread (a clean close would be a FIN): it never had the
        # whole upload, so it kept nothing of it.
        unread = isinstance(exc, ConnectionResetError)
        unknown = (
            self.stage == "reply" and (self.repeat is Repeat.UNTIL_SENT
                                       or (self.repeat is Repeat.UNTIL_COMPLETE and not unread))
        ) or (self.stage == "body" and self.repeat is Repeat.UNTIL_SENT)
        if isinstance(exc, socket.timeout):
            return Silent(f"{reason} at {peer} ({self.stage}): silent for {self.conn.network_timeout:g} s "
                          "(network_timeout); not tried again" + ("; the server may have done it" if unknown else ""),
                          backend="fdfs", operation=self.what)
        if unknown:
            return OutcomeUnknown(
                f"{self.what}: {reason} at {peer} after the request was "
                + ("sent; the server may have done it, so it is not repeated" if self.stage == "reply"
                   else f"partly sent ({self.body_sent} bytes); it is not repeated"),
                operation=self.what,
            )
        return NetworkError(f"{self.what}: {reason} at {peer} ({self.stage})", operation=self.what)
