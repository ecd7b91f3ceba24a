"""A programmable TCP proxy that injects HTTP faults, for tests.

:class:`FaultProxy` listens on ``127.0.0.1`` and forwards every connection to
one upstream ``host:port``. It reads just enough HTTP/1.1 on the request side
(request line, headers, ``Content-Length`` or chunked bodies) to know where
each request on a keep-alive connection begins and ends; responses are
forwarded as raw bytes. A test arms faults while the proxy runs; each fault
applies to the next matching request(s) and is used up after ``times``
matches::

    with FaultProxy(server.url) as proxy:
        proxy.reset_after(64 * 1024, method="PATCH")      # connection reset mid-body
        proxy.respond(503, {"Retry-After": "1"}, times=2)  # two 503s from the "proxy"
        proxy.stall(5, method="HEAD")                      # a response that never comes
        proxy.stop_reading(30, method="PATCH", after=4096) # a server that stops reading the body
        run_client(proxy.url_for(server.url))
        assert proxy.request_count("PATCH") == 3

Faults are :class:`~upclient.testing.faults.Fault` records, matched in the
order they were armed; the first armed fault that matches a request's method
is used. All threads are daemons and end when the proxy stops;
:meth:`FaultProxy.stop` returns within about a second.
"""

from __future__ import annotations

import collections
import contextlib
import http
import logging
import socket
import struct
import threading
import time
from typing import Any, Counter, Dict, List, Mapping, Optional, Tuple, Union

# parse_upstream and proxied_url live in upclient.testing.proxy; they are
# imported here too, where they used to be defined.
from upclient.testing.faults import Fault, FaultBook
from upclient.testing.proxy import LoopbackProxy
from upclient.testing.proxy import parse_upstream as parse_upstream
from upclient.testing.proxy import proxied_url as proxied_url
from upclient.testing.proxy import set_nodelay as _set_nodelay

__all__ = ["FaultProxy"]

log = logging.getLogger(__name__)

Upstream = Union[str, Tuple[str, int]]

_MAX_HEAD = 64 * 1024
_MAX_LINE = 8 * 1024
_RECV_SIZE = 256 * 1024


def _abortive_close(sock: Optional[socket.socket]) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _quiet_shutdown(sock: Optional[socket.socket], how: int) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(how)


class _ProtocolError(Exception):
    """The client sent something this proxy does not parse."""


class _ClientGone(Exception):
    """The client closed its connection in the middle of a request."""


class _ResetNow(Exception):
    """A reset fault's byte budget is used up."""


class _Responded(Exception):
    """The proxy answered a request itself; the connection is to be closed."""


class _StopReading(Exception):
    """A stop_reading fault forwarded what it lets through: read no more from the client."""


class _Reader:
    """A receive buffer over the client socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, terminator: bytes, limit: int) -> Optional[bytes]:
        """Bytes up to and including ``terminator``; ``None`` on EOF before any byte."""
        start = 0
        while True:
            idx = self.buf.find(terminator, start)
            if idx >= 0:
                end = idx + len(terminator)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise _ProtocolError(f"no {terminator!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(terminator) + 1)
            if not self._fill():
                if self.buf:
                    raise _ClientGone("EOF inside a request head")
                return None

    def read_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` (at least one); raises :class:`_ClientGone` on EOF."""
        if not self.buf and not self._fill():
            raise _ClientGone("EOF inside a request body")
        out = bytes(self.buf[:max_bytes])
        del self.buf[: len(out)]
        return out


class _Connection:
    """One client connection: a request loop plus a response pump thread."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket, peer: Any, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.peer = peer
        self.number = number
        self.upstream: Optional[socket.socket] = None
        self.pump: Optional[threading.Thread] = None
        self.closing = threading.Event()
        self.hold = threading.Event()
        self.stall_until = 0.0
        self.reset_settle = 0.0
        self.unread_seconds = 0.0
        self.client_send_lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._run, name=f"FaultProxy-conn-{number}", daemon=True
        )

    # -------------------------------------------------------------- control

    def start(self) -> None:
        self.thread.start()

    def threads(self) -> List[threading.Thread]:
        """The request-loop thread and, once it exists, the response pump."""
        return [self.thread] if self.pump is None else [self.thread, self.pump]

    def abort(self) -> None:
        """Wake every thread of this connection (proxy stop)."""
        self.closing.set()
        _quiet_shutdown(self.client, socket.SHUT_RDWR)
        _quiet_shutdown(self.upstream, socket.SHUT_RDWR)

    # ----------------------------------------------------------- main loop

    def _run(self) -> None:
        ending = "finish"
        try:
            self._request_loop()
        except _ResetNow:
            ending = "reset"
        except _Responded:
            ending = "responded"
        except _StopReading:
            ending = "unread"
        except _ClientGone as exc:
            log.debug("connection %d: client went away: %s", self.number, exc)
        except _ProtocolError as exc:
            log.warning("connection %d: cannot parse request: %s", self.number, exc)
        except OSError as exc:
            log.debug("connection %d: %s", self.number, exc)
        except Exception:  # pragma: no cover - a bug here must not go unseen
            log.exception("connection %d: unexpected error", self.number)
        finally:
            if ending == "reset":
                self._reset()
            elif ending == "responded":
                self._close_after_response()
            elif ending == "unread":
                self._close_unread()
            else:
                self._finish()
            self.proxy._forget(self)

    def _request_loop(self) -> None:
        reader = _Reader(self.client)
        while not self.closing.is_set():
            head = reader.read_until(b"\r\n\r\n", _MAX_HEAD)
            if head is None:
                return  # clean EOF between requests
            method, target, headers = self._parse_head(head)
            fault = self.proxy._on_request(method, target)

            te = headers.get("transfer-encoding", "").lower()
            chunked = "chunked" in te
            length = 0
            if not chunked and "content-length" in headers:
                try:
                    length = int(headers["content-length"])
                except ValueError:
                    raise _ProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
                if length < 0:
                    raise _ProtocolError("negative Content-Length")
            expect_continue = headers.get("expect", "").lower() == "100-continue"

            if fault is not None and fault.action == "respond":
                log.info("connection %d: answering %s %s with %s", self.number, method, target, fault.status)
                if not expect_continue:
                    self._body(reader, chunked, length, sink=None)
                self._send_own_response(fault.params)
                raise _Responded()

            if fault is not None and fault.action == "stop_reading":
                self._forward_then_stop_reading(reader, head, chunked, length, fault)

            if fault is not None and fault.action == "stall":
                seconds = fault.seconds
                log.info(
                    "connection %d: stalling the response to %s %s for %.2f s", self.number, method, target, seconds
                )
                self.stall_until = time.monotonic() + seconds

            self._ensure_upstream()
            budget: Optional[List[int]] = None
            if fault is not None and fault.action == "reset":
                budget = [fault.nbytes]
                log.info("connection %d: resetting after %d bytes of %s %s", self.number, fault.nbytes, method, target)
                self.reset_settle = fault.settle

            def forward(data: bytes, budget: Optional[List[int]] = budget) -> None:
                assert self.upstream is not None
                if budget is None:
                    self.upstream.sendall(data)
                    return
                take = data[: budget[0]]
                if take:
                    self.upstream.sendall(take)
                    budget[0] -= len(take)
                if budget[0] <= 0:
                    raise _ResetNow()

            if budget is not None and budget[0] <= 0:
                raise _ResetNow()
            forward(head)
            self._body(reader, chunked, length, sink=forward)
            if budget is not None:
                raise _ResetNow()  # the whole request fitted in the budget

    def _forward_then_stop_reading(
        self, reader: _Reader, head: bytes, chunked: bool, length: int, fault: Fault
    ) -> None:
        """Forward the head and the first ``fault.after`` body bytes, then raise :class:`_StopReading`.

        Nothing the upstream sends is passed on from then on: the client
        meets a server that went silent mid-body.
        """
        log.info(
            "connection %d: forwarding %d body bytes, then reading nothing for %.2f s",
            self.number,
            fault.after,
            fault.seconds,
        )
        self.unread_seconds = fault.seconds
        self.hold.set()  # nothing from the upstream reaches the client any more
        self._ensure_upstream()
        assert self.upstream is not None
        self.upstream.sendall(head)
        budget = [fault.after]

        def forward(data: bytes) -> None:
            assert self.upstream is not None
            take = data[: budget[0]]
            if take:
                self.upstream.sendall(take)
                budget[0] -= len(take)
            if budget[0] <= 0:
                raise _StopReading()

        if budget[0] > 0:
            self._body(reader, chunked, length, sink=forward)
        raise _StopReading()  # the body ended within the budget, or there was none to forward

    @staticmethod
    def _parse_head(head: bytes) -> Tuple[str, str, Dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _ProtocolError(f"bad request line {lines[0]!r}")
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _ProtocolError(f"bad header line {line!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return parts[0], parts[1], headers

    def _body(self, reader: _Reader, chunked: bool, length: int, sink: Any) -> None:
        """Read one request body, passing every byte of it to ``sink`` (or dropping it)."""

        def emit(data: bytes) -> None:
            if sink is not None:
                sink(data)

        def copy(remaining: int) -> None:
            """Pass on exactly ``remaining`` bytes."""
            while remaining > 0:
                if self.closing.is_set():
                    raise _ClientGone("proxy stopping")
                data = reader.read_some(min(remaining, _RECV_SIZE))
                remaining -= len(data)
                emit(data)

        if not chunked:
            copy(length)
            return
        while True:
            line = reader.read_until(b"\r\n", _MAX_LINE)
            if line is None:
                raise _ClientGone("EOF inside a chunked body")
            emit(line)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _ProtocolError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = reader.read_until(b"\r\n", _MAX_LINE)
                    if trailer is None:
                        raise _ClientGone("EOF inside chunked trailers")
                    emit(trailer)
                    if trailer == b"\r\n":
                        return
            copy(size + 2)  # chunk data and its CRLF

    def _send_own_response(self, params: Mapping[str, Any]) -> None:
        status = int(params["status"])
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Injected"
        body: bytes = params["body"]
        lines = [f"HTTP/1.1 {status} {reason}"]
        names = set()
        for name, value in params["headers"].items():
            lines.append(f"{name}: {value}")
            names.add(name.lower())
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        if "connection" not in names:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        with self.client_send_lock:
            self.client.sendall(data)

    def _ensure_upstream(self) -> None:
        if self.upstream is not None:
            return
        host, port = self.proxy.upstream
        try:
            sock = socket.create_connection((host, port), timeout=self.proxy.connect_timeout)
        except OSError as exc:
            # Like a refused connection, as closely as a proxy can: the client gets a reset.
            log.warning("connection %d: cannot connect to upstream %s:%s: %s", self.number, host, port, exc)
            raise _ResetNow() from exc
        sock.settimeout(None)
        _set_nodelay(sock)
        self.upstream = sock
        if self.closing.is_set():  # stop() raced with the connect
            _quiet_shutdown(sock, socket.SHUT_RDWR)
        self.pump = threading.Thread(
            target=self._pump, name=f"FaultProxy-pump-{self.number}", daemon=True
        )
        self.pump.start()

    # ------------------------------------------------------ response side

    def _pump(self) -> None:
        """Copy upstream -> client, honouring stalls and holds."""
        upstream = self.upstream
        assert upstream is not None
        try:
            while True:
                data = upstream.recv(_RECV_SIZE)
                if not data or self.hold.is_set():
                    break
                while True:
                    wait = self.stall_until - time.monotonic()
                    if wait <= 0:
                        break
                    if self.closing.wait(min(wait, 0.1)):
                        return
                if self.hold.is_set():
                    return
                with self.client_send_lock:
                    self.client.sendall(data)
        except OSError as exc:
            log.debug("connection %d: pump: %s", self.number, exc)
            return
        # Upstream closed (or a reset is under way): the client sees EOF.
        if not self.hold.is_set():
            _quiet_shutdown(self.client, socket.SHUT_WR)

    # ------------------------------------------------------------ closing

    def _join_pump(self, timeout: float) -> None:
        pump = self.pump
        if pump is None or pump is threading.current_thread():
            return
        deadline = time.monotonic() + timeout
        while pump.is_alive() and time.monotonic() < deadline:
            pump.join(0.05)

    def _finish(self) -> None:
        """Orderly end: let the upstream finish its response, then close."""
        _quiet_shutdown(self.upstream, socket.SHUT_WR)
        if not self.closing.is_set():
            self._join_pump(self.proxy.drain_timeout)
        self.closing.set()
        _quiet_shutdown(self.upstream, socket.SHUT_RDWR)
        _quiet_shutdown(self.client, socket.SHUT_RDWR)
        self._join_pump(1.0)
        self._close_sockets()

    def _close_after_response(self) -> None:
        """After an injected response: FIN to the client, drop the upstream."""
        self.closing.set()
        _quiet_shutdown(self.client, socket.SHUT_WR)
        self._drain_client(1.0)
        _quiet_shutdown(self.upstream, socket.SHUT_RDWR)
        _quiet_shutdown(self.client, socket.SHUT_RDWR)
        self._join_pump(1.0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _drain_client(self, seconds: float) -> None:
        """Read and drop what the client still sends, so close() sends FIN, not RST."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(OSError):
            self.client.settimeout(0.05)
            while time.monotonic() < deadline and not self.proxy._stopping.is_set():
                try:
                    if not self.client.recv(_RECV_SIZE):
                        break
                except socket.timeout:
                    continue

    def _close_unread(self) -> None:
        """After a stop_reading fault: wait its time reading nothing, then close both sides.

        The wait ends early when the proxy stops. The client's unread bytes
        make the close a reset on its side.
        """
        self.closing.wait(self.unread_seconds)
        self.closing.set()
        _quiet_shutdown(self.upstream, socket.SHUT_RDWR)
        self._join_pump(1.0)
        self._close_sockets()

    def _reset(self) -> None:
        """Abortive end: both the client and the upstream get a RST."""
        self.hold.set()
        settle = self.reset_settle
        if settle > 0:
            # Give the upstream a moment to consume what was forwarded.
            self.closing.wait(settle)
        self.closing.set()
        # SHUT_RD wakes the pump's recv() without sending anything upstream.
        _quiet_shutdown(self.upstream, socket.SHUT_RD)
        self._join_pump(1.0)
        _abortive_close(self.upstream)
        _abortive_close(self.client)


class FaultProxy(FaultBook, LoopbackProxy[_Connection]):
    """A threaded TCP proxy on 127.0.0.1 that injects HTTP faults on demand.

    :param upstream: where to forward: a URL (``http://127.0.0.1:8080/files/``;
        only host and port are used), ``"host:port"``, ``(host, port)``, or an
        object with a ``url`` attribute (such as a running
        :class:`~upclient.testing.servers.TusNodeServer`).
    :param host: the address to listen on.
    :param port: the port to listen on; 0 picks a free one (see :attr:`port`).
    :param connect_timeout: seconds allowed to connect to the upstream.
    :param drain_timeout: when a client closes its side, seconds to keep
        forwarding the upstream's response before closing.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    Faults are armed with :meth:`reset_after`, :meth:`respond`,
    :meth:`stall` and :meth:`stop_reading`; counters (:attr:`connections`,
    :meth:`request_count`, :attr:`requests`, :attr:`request_log`,
    :attr:`faults_fired`) tell what the proxy saw. All methods are
    thread-safe.

    The proxy does not rewrite anything: the ``Host`` header stays the
    proxy's, so a server that builds absolute ``Location`` URLs from it (like
    ``@tus/server``) names the proxy and the client keeps going through it.

    The upstream is connected to when a client's first request arrives (a
    request answered by :meth:`respond` never reaches it). If the upstream
    cannot be reached (say a server stopped with ``stop()``), the client's
    connection is reset, as close to "connection refused" as a proxy gets.
    """

    # Lifecycle (start, stop, use as a context manager), address (port, url,
    # url_for) and the accept loop come from LoopbackProxy.
    _label = "FaultProxy"
    _accept_thread_name = "FaultProxy-accept"
    _log = log
    log = log  # where FaultBook says a fault was armed

    def __init__(
        self,
        upstream: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 5.0,
        drain_timeout: float = 2.0,
    ) -> None:
        super().__init__(upstream, host=host, port=port, connect_timeout=connect_timeout)
        self.drain_timeout = drain_timeout
        self._faults: List[Fault] = []
        self._requests: Counter[str] = collections.Counter()
        self._request_log: List[Tuple[str, str]] = []
        self._fired: Counter[str] = collections.Counter()

    def _new_connection(self, client: socket.socket, peer: Any, number: int) -> _Connection:
        return _Connection(self, client, peer, number)

    # ------------------------------------------------------------------ faults

    def reset_after(
        self,
        nbytes: int,
        method: Optional[str] = "PATCH",
        *,
        times: Optional[int] = 1,
        settle: float = 0.05,
    ) -> None:
        """Reset the connection after forwarding ``nbytes`` of a request.

        On the next request whose method is ``method`` (``None``: any),
        forward its first ``nbytes`` bytes (request line, headers and body
        counted together) to the upstream, wait ``settle`` seconds so the
        upstream can consume them, then close both sides with ``SO_LINGER``
        0: the client and the upstream see a connection reset. If the request
        is shorter than ``nbytes`` the whole request is forwarded and the
        reset happens before any response is passed on. ``times``: how many
        requests this applies to (``None``: until :meth:`clear_faults`).
        """
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._arm_kind("reset", method, times, {"nbytes": int(nbytes), "settle": float(settle)})

    def respond(
        self,
        status: int = 503,
        headers: Optional[Mapping[str, str]] = None,
        method: Optional[str] = None,
        *,
        times: Optional[int] = 1,
        body: Union[bytes, str] = b"",
    ) -> None:
        """Answer matching requests from the proxy itself, without forwarding.

        The request's body is read and dropped (by ``Content-Length`` or
        chunked framing; not waited for if the client sent ``Expect:
        100-continue``), then ``status`` with ``headers`` (default
        ``{"Retry-After": "1"}``), ``Content-Length``, ``Connection: close``
        and ``body`` is sent and the connection closed.
        """
        if headers is None:
            headers = {"Retry-After": "1"}
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._arm_kind("respond", method, times, {"status": int(status), "headers": dict(headers), "body": body})

    def stall(self, seconds: float, method: Optional[str] = None, *, times: Optional[int] = 1) -> None:
        """Hold back the response to matching requests for ``seconds``.

        The request is forwarded normally; whatever the upstream answers is
        passed on only ``seconds`` after the request was seen, so a client
        with a shorter read timeout gives up first.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._arm_kind("stall", method, times, {"seconds": float(seconds)})

    def stop_reading(
        self, seconds: float, method: Optional[str] = None, *, after: int = 0, times: Optional[int] = 1
    ) -> None:
        """A server that stops reading the body: matching requests go unread for ``seconds``, then closed.

        The request head and the first ``after`` body bytes (as framed on
        the wire) are forwarded; then the proxy reads nothing more from the
        client for ``seconds`` (less if the proxy stops) and closes both
        sides. A client sending a body larger than the socket buffers sees
        its send block, then fail with a reset. Nothing the upstream answers
        is passed on. A body shorter than ``after`` is forwarded whole, and
        the connection goes silent the same way.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if after < 0:
            raise ValueError("after must be >= 0")
        self._arm_kind("stop_reading", method, times, {"seconds": float(seconds), "after": int(after)})

    def _arm_kind(self, action: str, method: Optional[str], times: Optional[int], params: Dict[str, Any]) -> None:
        match = {"method": method.upper() if method else None}
        self._arm(Fault(action, times=times, match=match, **params))

    # ---------------------------------------------------------------- counters

    @staticmethod
    def _count_key(key: str) -> str:  # requests are counted by method
        return key.upper()

    @property
    def request_log(self) -> List[Tuple[str, str]]:
        """``(method, target)`` of every request seen, in order (a copy)."""
        with self._lock:
            return list(self._request_log)

    @property
    def faults_fired(self) -> Dict[str, int]:
        """How often each kind of fault (``reset``, ``respond``, ``stall``, ``stop_reading``) fired."""
        with self._lock:
            return dict(self._fired)

    def reset_counters(self) -> None:
        """Zero the counters and the request log (faults stay armed)."""
        with self._lock:
            self._connections = 0
            self._requests.clear()
            self._request_log.clear()
            self._fired.clear()

    def wait_for_requests(self, count: int, method: Optional[str] = None, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` requests (of ``method``) were seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request_count(method) >= count:
                return True
            time.sleep(0.01)
        return self.request_count(method) >= count

    # --------------------------------------------------------------- internals

    def _on_request(self, method: str, target: str) -> Optional[Fault]:
        with self._lock:
            self._requests[method] += 1
            self._request_log.append((method, target))
            fault = self._use_fault_locked(lambda f: f.matches(method=method))
            if fault is not None:
                self._fired[fault.action] += 1
            return fault
