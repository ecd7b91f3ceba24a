"""Connections and requests on the wire: a listener, the per-connection request loop, one request.

A :class:`Listener` accepts on one port with a thread per connection; a
:class:`Handler` serves the requests of one connection in a row (clients pool
connections) and applies the emulator's faults; a :class:`Request` reads its
body on demand, cut off, held back or answered as a fault says. The tracker
and the storage handlers (:mod:`.tracker`, :mod:`.storage`) only say what
each command does. What all of them need from the server is the
:class:`Emulator` Protocol: the server passes itself in, nothing here
imports it.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Dict, Optional, Protocol, Set, Tuple

from upclient.testing.faults import Fault
from upclient.testing.fdfs.codec import BLOCK, CMD_QUIT, CMD_RESP, EINVAL, HEADER, HEADER_SIZE, Status
from upclient.testing.fdfs.node import StorageNode

__all__ = ["Disconnected", "Dropped", "Emulator", "Handler", "Listener", "Request"]

LOG = logging.getLogger("upclient.testing.fdfs")

LINGER_SECONDS = 1.0


class Disconnected(Exception):
    """The client went away in the middle of a request."""


class Dropped(Exception):
    """An injected fault drops the connection."""


class Request:
    """One request: its header, its body read on demand, and its reply; a fault cuts it off (``drop``)
    or holds it (``stall``). ``stopping`` is set when the listener closes: a stall ends with it."""

    def __init__(
        self,
        sock: socket.socket,
        cmd: int,
        flags: int,
        length: int,
        fault: Optional[Fault] = None,
        stopping: Optional[threading.Event] = None,
    ) -> None:
        self.sock = sock
        self.cmd = cmd
        self.flags = flags
        self.length = length
        self.remaining = length
        self.consumed = 0
        self.drop_after: Optional[int] = fault.after if fault is not None and fault.action == "drop" else None
        self.stall: Optional[Fault] = fault if fault is not None and fault.action == "stall" else None
        self.stopping = stopping if stopping is not None else threading.Event()
        self.replied = False

    def _allow(self, wanted: int) -> int:
        if self.stall is not None and self.stall.after is not None:
            if self.consumed >= self.stall.after:
                self._hold()
            else:
                wanted = min(wanted, self.stall.after - self.consumed)
        if self.drop_after is None:
            return wanted
        left = self.drop_after - self.consumed
        if left <= 0:
            raise Dropped(f"fault: connection dropped after {self.consumed} body bytes of command {self.cmd}")
        return min(wanted, left)

    def take(self, n: int) -> bytes:
        """Exactly ``n`` more bytes of the body (22 if the body is shorter)."""
        if n > self.remaining:
            raise Status(EINVAL, f"body of {self.length} bytes is too short")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._allow(n - got)
            r = self.sock.recv_into(view[got : got + k], k)
            if not r:
                raise Disconnected(f"client closed after {self.consumed} of {self.length} body bytes")
            got += r
            self.consumed += r
            self.remaining -= r
        return bytes(buf)

    def rest(self, limit: int) -> bytes:
        """The rest of a small body (22 if it is longer than ``limit``)."""
        if self.remaining > limit:
            raise Status(EINVAL, f"body of {self.length} bytes is too long")
        return self.take(self.remaining)

    def stream(self, n: int, sink: Callable[[memoryview], None]) -> None:
        """Pass the next ``n`` body bytes to ``sink`` in blocks of at most 256 KiB, one buffer reused."""
        buf = bytearray(min(BLOCK, max(n, 1)))
        view = memoryview(buf)
        left = n
        while left:
            k = self._allow(min(len(buf), left))
            r = self.sock.recv_into(view[:k], k)
            if not r:
                raise Disconnected(f"client closed after {self.consumed} of {self.length} body bytes")
            sink(view[:r])
            left -= r
            self.consumed += r
            self.remaining -= r

    def discard(self) -> None:
        self.stream(self.remaining, lambda _block: None)

    def _hold(self) -> None:
        """The stall: read nothing more and answer nothing until its time has passed, then go on as a
        process woken by SIGCONT would; when the listener closes first, drop the connection."""
        stall, self.stall = self.stall, None
        if stall is None:
            return
        LOG.debug("%r holds command %d after %d body bytes", stall, self.cmd, self.consumed)
        if self.stopping.wait(stall.seconds):
            raise Dropped(f"fault: the server stopped while command {self.cmd} was stalled")

    def send_header(self, length: int, status: int = 0) -> None:
        self._hold()
        if self.drop_after is not None:
            raise Dropped(f"fault: connection dropped before the reply to command {self.cmd}")
        self.sock.sendall(HEADER.pack(length, CMD_RESP, status))
        self.replied = True

    def reply(self, status: int = 0, body: bytes = b"") -> None:
        self._hold()
        if self.drop_after is not None:
            raise Dropped(f"fault: connection dropped before the reply to command {self.cmd}")
        self.sock.sendall(HEADER.pack(len(body), CMD_RESP, status) + body)
        self.replied = True


# -- what the connections need from the emulator -------------------------------------------------


class Emulator(Protocol):
    """What a :class:`Listener` and the handlers on it need from the emulator (an
    :class:`~upclient.testing.fdfs.FdfsServer`): the listener counts connections, a handler counts
    each request and takes the fault it meets; the tracker answers with the storages and the
    address it advertises, the storage with IP fields of ``ip_size`` bytes."""

    advertised_ip: str
    ip_size: int
    _nodes: Dict[str, StorageNode]

    def _first_node(self) -> StorageNode:
        """The storage a store query without a group gets."""

    def _on_request(self, cmd: int, **facts: Any) -> Optional[Fault]:
        """Count a request and take the fault it meets, if one is armed for it."""

    def _on_connection(self) -> None:
        """Count an accepted connection."""


# -- connection handlers --------------------------------------------------------------------------


class Handler(socketserver.BaseRequestHandler):
    """One client connection: many requests in a row (clients pool connections) until EOF or a close."""

    server: "Listener"
    role = "?"
    closes_on_einval = False

    def setup(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self) -> None:
        try:
            while self._serve_one():
                pass
        except OSError as exc:
            LOG.debug("%s %s: connection error: %s", self.role, self.client_address, exc)

    def _read_header(self) -> Optional[Tuple[int, int, int]]:
        buf = bytearray(HEADER_SIZE)
        view = memoryview(buf)
        got = 0
        while got < HEADER_SIZE:
            r = self.request.recv_into(view[got:], HEADER_SIZE - got)
            if not r:
                if got:
                    LOG.debug("%s %s: closed inside a header", self.role, self.client_address)
                return None
            got += r
        length, cmd, status = HEADER.unpack(buf)
        return length, cmd, status

    def _serve_one(self) -> bool:
        """Serve one request; False when the connection is to be closed."""
        head = self._read_header()
        if head is None:
            return False
        length, cmd, flags = head
        node = self.server.node
        fault = self.server.emulator._on_request(cmd, role=self.role, group=None if node is None else node.group)
        req = Request(self.request, cmd, flags, length, fault, self.server.stopping)
        try:
            if fault is not None and fault.action == "status":
                LOG.debug("%s: %r answers command %d", self.role, fault, cmd)
                req.discard()
                req.reply(fault.errno)
                if self.closes_on_einval and fault.errno == EINVAL:
                    self._linger(req)
                    return False
                return True
            if cmd == CMD_QUIT:
                LOG.debug("%s %s: quit", self.role, self.client_address)
                return False
            return self.dispatch(req)
        except Status as exc:
            LOG.debug("%s %s: command %d -> status %d: %s", self.role, self.client_address, cmd, exc.status, exc.reason)
            try:
                return self._answer_error(req, exc.status)
            except (Dropped, Disconnected) as cut:
                LOG.debug("%s %s: %s", self.role, self.client_address, cut)
                return False
        except (Dropped, Disconnected) as exc:
            LOG.debug("%s %s: %s", self.role, self.client_address, exc)
            return False

    def _answer_error(self, req: Request, status: int) -> bool:
        if req.replied:  # an error after part of the reply went out: nothing to do but close
            return False
        if self.closes_on_einval and status == EINVAL:
            req.reply(status)
            self._linger(req)
            return False
        if req.remaining > BLOCK:
            req.reply(status)
            self._linger(req)
            return False
        req.discard()
        req.reply(status)
        return True

    def _linger(self, req: Request) -> None:
        """Close after an error reply without resetting the connection under the reply: send FIN, then
        read (and drop) what the client still sends for a moment, so the client reads the reply."""
        sock = self.request
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            sock.settimeout(LINGER_SECONDS)
            while time.monotonic() < deadline:
                if not sock.recv(BLOCK):
                    break
        except OSError:
            pass

    def dispatch(self, req: Request) -> bool:
        raise NotImplementedError


class Listener(socketserver.ThreadingTCPServer):
    """A listening socket with one daemon thread per connection; :meth:`close` ends them all."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: Tuple[str, int],
        handler: type,
        emulator: Emulator,
        node: Optional[StorageNode],
        name: str,
    ) -> None:
        self.emulator = emulator
        self.node = node
        self.name = name
        self.stopping = threading.Event()  # set by close(): stalled requests give up
        self._lock = threading.Lock()
        self._open_socks: Set[socket.socket] = set()
        self._conn_threads: Set[threading.Thread] = set()
        super().__init__(address, handler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fdfs-{name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.emulator._on_connection()
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name=f"fdfs-{self.name}-conn", daemon=True
        )
        with self._lock:
            self._open_socks.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._open_socks.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        """Close as the real servers do, with a bare ``close()`` (no ``shutdown(SHUT_WR)`` first): the
        kernel sends a reset when bytes of the request are still unread (a connection dropped mid-body),
        a FIN otherwise (a dropped reply after the whole request was read)."""
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("%s: error serving %s", self.name, client_address, exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the listening socket, end every open connection, join the threads."""
        self.stopping.set()
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout)
        self.server_close()
        with self._lock:
            sockets = list(self._open_socks)
            threads = list(self._conn_threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
