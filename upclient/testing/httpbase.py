"""HTTP scaffolding shared by the emulators in :mod:`upclient.testing`.

What every emulator needs and none of them should write twice:

* :class:`Body`: a request body read in blocks of at most 1 MiB, framed by
  ``Content-Length`` or chunked transfer coding, and drained (read and
  dropped, up to a limit) before an answer that did not want it, so the
  client sees the answer rather than a reset.
* :class:`BoundedHTTPServer`: a :class:`~http.server.ThreadingHTTPServer`
  with at most ``max_connections`` handler threads that tracks its
  connections, so a stop cuts idle keep-alive ones too and joins them.
* :class:`RequestHandler`: HTTP/1.1 keep-alive, an idle timeout, every verb
  routed to :meth:`RequestHandler.route`, responses with
  :meth:`~RequestHandler.send` / :meth:`~RequestHandler.send_json` /
  :meth:`~RequestHandler.stream_file`, and one place that turns a client
  gone away, an injected drop (:class:`Drop`) or a bug into the right end
  of the connection.
* :class:`HTTPEmulator`: the life of a server on ``127.0.0.1``: a storage
  directory (temporary unless given), :meth:`~HTTPEmulator.start`,
  :meth:`~HTTPEmulator.stop` (restartable on the same port),
  :meth:`~HTTPEmulator.close`, the context manager, and
  :meth:`~HTTPEmulator.wait_idle`; with ``tls=`` it serves HTTPS (see
  :mod:`upclient.testing.tls`): each connection's handshake runs in its own
  handler thread under a timeout, so a client that never finishes one holds
  up nobody else.
* :func:`parse_range` for a ``Range`` header, :func:`file_digest`.

Nothing here prints; diagnostics go to the logger of the emulator's module
(``upclient.testing.<name>``).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http
import json
import logging
import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import (
    Any,
    BinaryIO,
    ClassVar,
    Counter,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
)

__all__ = [
    "KiB",
    "MiB",
    "GiB",
    "BLOCK",
    "PathLike",
    "Body",
    "BadFraming",
    "ClientGone",
    "Drop",
    "BoundedHTTPServer",
    "RequestHandler",
    "FaultBook",
    "HTTPEmulator",
    "parse_range",
    "file_digest",
    "HANDSHAKE_TIMEOUT",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: The most a body read or a file write handles at once.
BLOCK = 1 * MiB
#: The longest line of a chunked body's framing.
MAX_LINE = 8 * KiB
#: Bodies the server did not want are read and dropped up to this size, so
#: the client sees the answer instead of a reset; beyond it the connection
#: is closed.
DRAIN_LIMIT = 64 * MiB
#: Seconds a client has to finish a TLS handshake before its connection is closed.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds a refused TLS client is read from, so it gets the alert rather than a reset.
HANDSHAKE_LINGER = 1.0

PathLike = Union[str, "os.PathLike[str]"]

_log = logging.getLogger(__name__)


class BadFraming(Exception):
    """The request's body framing is unusable (a bad ``Content-Length``): answer 400 and close."""


class ClientGone(Exception):
    """The client closed its connection or sent an unreadable body."""


class Drop(Exception):
    """Close the connection without answering (an injected fault)."""


# ------------------------------------------------------------- request body


class Body:
    """The body of one request, read in blocks of at most 1 MiB.

    Framed by ``Content-Length`` (absent: empty) or chunked transfer coding.
    ``length`` is the declared length (None when chunked or absent),
    ``received`` the bytes read so far, ``done`` whether the end was reached.
    """

    def __init__(self, rfile: Any, headers: Any) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.length: Optional[int] = None
        self.remaining = 0
        if not self.chunked:
            text = headers.get("Content-Length")
            if text is not None:
                try:
                    self.length = int(text)
                except ValueError:
                    raise BadFraming(f"bad Content-Length {text!r}") from None
                if self.length < 0:
                    raise BadFraming("negative Content-Length")
            self.remaining = self.length or 0
        self.done = not self.chunked and self.remaining == 0
        self.received = 0
        self._chunk_left = 0
        self._after_chunk = False

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise ClientGone("EOF or over-long line in a chunked body")
        return line

    def read(self) -> bytes:
        """The next block (at most 1 MiB); ``b""`` at the end of the body."""
        if self.done:
            return b""
        if not self.chunked:
            block = self.rfile.read(min(self.remaining, BLOCK))
            if not block:
                raise ClientGone("EOF inside a request body")
            self.remaining -= len(block)
            self.received += len(block)
            self.done = self.remaining == 0
            return block
        while self._chunk_left == 0:
            if self._after_chunk:
                if self._line().strip():
                    raise ClientGone("no CRLF after a chunk")
                self._after_chunk = False
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ClientGone(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while self._line().strip():  # trailers, then the empty line
                    pass
                self.done = True
                return b""
            self._chunk_left = size
            self._after_chunk = True
        block = self.rfile.read(min(self._chunk_left, BLOCK))
        if not block:
            raise ClientGone("EOF inside a chunk")
        self._chunk_left -= len(block)
        self.received += len(block)
        return block

    def blocks(self) -> Iterator[bytes]:
        """The (rest of the) body, block by block."""
        while True:
            block = self.read()
            if not block:
                return
            yield block

    def read_all(self, limit: int) -> Optional[bytes]:
        """The whole (rest of the) body, or None if it is longer than ``limit`` (then partly read)."""
        if not self.chunked and self.remaining > limit:
            return None
        chunks: List[bytes] = []
        size = 0
        for block in self.blocks():
            size += len(block)
            if size > limit:
                return None
            chunks.append(block)
        return b"".join(chunks)

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        """Read and drop the rest (up to ``limit`` bytes); whether it all came."""
        if self.done:
            return True
        if not self.chunked and self.remaining > limit:
            return False
        start = self.received
        try:
            while not self.done:
                if self.received - start > limit:
                    return False
                self.read()
        except (ClientGone, OSError):
            return False
        return True


# ------------------------------------------------------------------ HTTP server


class BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most ``owner.max_connections`` handler threads.

    Open connections are tracked so :meth:`close_connections` can cut them
    (idle keep-alive ones included) and join their threads.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], owner: "HTTPEmulator", handler: Type["RequestHandler"]) -> None:
        self.owner = owner
        self.name = type(owner).__name__
        self._slots = threading.BoundedSemaphore(owner.max_connections)
        self._conn_lock = threading.Lock()
        self._conns: Dict[socket.socket, threading.Thread] = {}
        self._closing = threading.Event()
        self._seq = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.1):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        self._seq += 1
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.name}-conn-{self._seq}",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            context = self.owner.tls_context
            if context is not None:
                request = self._handshake(request, context, client_address)
            if request is not None:
                super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(request, None)
            self._slots.release()

    def _handshake(self, raw: socket.socket, context: ssl.SSLContext, client_address: Any) -> Optional[ssl.SSLSocket]:
        """The connection wrapped in TLS once its handshake is done, or None (then it is closed).

        Runs in the connection's thread, under :attr:`HTTPEmulator.handshake_timeout`.
        The tracked socket is swapped under the lock, so a stop cuts the TLS one.
        """
        thread = threading.current_thread()
        with self._conn_lock:
            if self._closing.is_set():
                self.shutdown_request(raw)
                return None
            raw.settimeout(self.owner.handshake_timeout)
            conn = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._conns.pop(raw, None)
            self._conns[conn] = thread
        try:
            conn.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset, a cut by stop()
            self.owner._tls_failed(client_address, exc)
            _linger(conn, HANDSHAKE_LINGER)
            with self._conn_lock:
                self._conns.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.close()
            return None
        return conn

    def connection_count(self) -> int:
        with self._conn_lock:
            return len(self._conns)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        self._closing.set()
        with self._conn_lock:
            items = list(self._conns.items())
        for sock, _ in items:
            with contextlib.suppress(OSError):
                # the plain socket's shutdown: a TLS socket's own would drop its
                # state under the thread still reading from it
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in items:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for _, t in items if t.is_alive()]
        if alive:
            self.owner.log.warning("%s: threads still running after stop: %s", self.name, alive)


def _linger(conn: socket.socket, seconds: float) -> None:
    """Close our side and read what the client still sends, for at most ``seconds``.

    After a refused handshake the server's alert is on its way; a close with
    unread bytes (a TLS 1.3 client sends its request before it learns of the
    refusal) would send a reset that can destroy the alert before the client
    reads it, and the client would see a bare EOF instead of the reason.
    """
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_WR)  # the plain socket's: no TLS close_notify
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            conn.settimeout(left)
            if not socket.socket.recv(conn, 64 * KiB):  # raw bytes: the TLS session is over
                return


class RequestHandler(BaseHTTPRequestHandler):
    """One connection: every verb goes to :meth:`route`, with :attr:`body` ready.

    Subclasses implement :meth:`route` (answer with :meth:`send` and friends)
    and :meth:`reply_error` (the emulator's error format, used for a bad
    ``Content-Length`` and for unexpected exceptions).
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    sys_version = ""

    body: Body

    @property
    def owner(self) -> "HTTPEmulator":
        return self.server.owner  # type: ignore[attr-defined, no-any-return]

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.owner.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        self.owner.log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def route(self) -> None:
        """Answer the request (``self.command``, ``self.path``, ``self.headers``, :attr:`body`)."""
        raise NotImplementedError

    def reply_error(self, status: int, message: str) -> None:
        """Answer ``status`` in the emulator's error format."""
        self.send_json(status, {"code": status, "message": message})

    def _dispatch(self) -> None:
        owner = self.owner
        log = owner.log
        owner._request_started()
        try:
            self.__dict__.pop("body", None)  # the handler lives as long as the connection
            try:
                self.body = Body(self.rfile, self.headers)
            except BadFraming as exc:
                self.close_connection = True
                self.reply_error(400, str(exc))
                return
            self.route()
        except Drop:
            log.info("%s %s: closing the connection without an answer (injected)", self.command, self.path)
            self.close_connection = True
        except (ClientGone, ConnectionError, socket.timeout) as exc:
            log.debug("%s %s: client went away: %s", self.command, self.path, exc)
            self.close_connection = True
        except Exception:
            log.exception("%s %s: unexpected error", self.command, self.path)
            self.close_connection = True
            with contextlib.suppress(Exception):
                self.reply_error(500, "internal error")
        finally:
            owner._request_finished()

    # -------------------------------------------------------------- responses

    def finish_body(self) -> None:
        """Before answering: drop what is left of the request body, or plan to close."""
        body = getattr(self, "body", None)
        if body is not None and not body.drain():
            self.close_connection = True

    def send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """Status line, ``headers`` (plus ``Content-Length`` unless given) and ``body``."""
        self.finish_body()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Injected"
        self.send_response(status, phrase)
        names = set()
        for name, value in headers.items():
            self.send_header(name, value)
            names.add(name.lower())
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def stream_file(self, handle: BinaryIO, start: int, end: int) -> None:
        """Write bytes ``start`` to ``end`` (exclusive) of an open file, after :meth:`send` sent the headers."""
        if self.command == "HEAD":
            return
        handle.seek(start)
        left = end - start
        while left > 0:
            block = handle.read(min(left, BLOCK))
            if not block:
                raise ClientGone("stored file shrank while being sent")
            self.wfile.write(block)
            left -= len(block)


def parse_range(header: str, size: int) -> Union[None, str, Tuple[int, int]]:
    """``(start, end_exclusive)``, ``"unsatisfiable"``, or None (ignore the header)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else max(size, start + 1)
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None  # syntactically invalid: ignored
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


def file_digest(path: PathLike, algorithm: str) -> str:
    """The hex digest of a file, read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ lifecycle

from upclient.testing.faults import FaultBook  # noqa: E402 - re-exported for the emulators
from upclient.testing.tls import ServerTLS, server_context_of  # noqa: E402

_E = TypeVar("_E", bound="HTTPEmulator")


class HTTPEmulator(FaultBook):
    """The life of an emulator: a directory, a server thread, start/stop/close.

    Subclasses set :attr:`handler_class` and :attr:`log`, call
    ``super().__init__`` and may override :meth:`_prepare_directory`. State
    a subclass keeps in memory survives :meth:`stop` / :meth:`start` (on the
    same port). :attr:`_lock` guards it; :meth:`wait_idle` waits on it.

    Request counters per route and armed faults come from :class:`FaultBook`.

    ``tls``: serve HTTPS with these certificates
    (:class:`~upclient.testing.tls.TLSCertificates`) or this server
    :class:`ssl.SSLContext` (one that requires client certificates gives
    mutual TLS); :attr:`url` is then ``https://...``. A handshake that fails
    or takes longer than ``handshake_timeout`` seconds closes that
    connection only and is counted in :attr:`tls_failures`.
    """

    handler_class: ClassVar[Type[RequestHandler]] = RequestHandler
    log: ClassVar[logging.Logger] = _log

    def __init__(
        self,
        directory: Optional[PathLike],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        temp_prefix: str = "upclient-emulator-",
        tls: ServerTLS = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._owns_directory = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix=temp_prefix)
        self.directory: Path = Path(directory).resolve()
        self.host = host
        self._requested_port = port
        self._port: Optional[int] = None
        self.max_connections = int(max_connections)
        self.idle_timeout = float(idle_timeout)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._httpd: Optional[BoundedHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._requests: Counter[str] = collections.Counter()
        self._faults: List[Any] = []
        #: The context connections are wrapped in (None: plain HTTP); set it before :meth:`start`.
        self.tls_context: Optional[ssl.SSLContext] = server_context_of(tls)
        self.handshake_timeout = float(handshake_timeout)
        self._tls_failures: List[str] = []

    def _prepare_directory(self) -> None:
        """Create what the storage layout needs (called by :meth:`start`)."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def start(self: _E) -> _E:
        """Bind and start serving; returns ``self``. A restart keeps the port and the state."""
        if self._closed:
            raise RuntimeError(f"{self._name} was closed; create a new one")
        if self._httpd is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._prepare_directory()
        port = self._port if self._port is not None else self._requested_port
        httpd = BoundedHTTPServer((self.host, port), self, self.handler_class)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self._name}-accept", daemon=True
        )
        self._thread.start()
        self.log.info("%s serving %s from %s", self._name, self.url, self.directory)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut every open connection and join the threads. Idempotent.

        The state is kept; :meth:`start` serves it again on the same port.
        """
        httpd = self._httpd
        if httpd is None:
            return
        httpd._closing.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        httpd.close_connections(timeout)
        self._httpd = None
        self._thread = None
        self.log.info("%s %s stopped", self._name, self.url)

    def close(self) -> None:
        """:meth:`stop`, and remove the directory if the server made it. Final."""
        try:
            self.stop()
        finally:
            self._closed = True
            if self._owns_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self: _E) -> _E:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.url if self._port is not None else "(not started)"
        return f"<{self._name} {where} {state} dir={self.directory}>"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        if self._port is None:
            raise RuntimeError(f"{self._name} has not been started")
        return self._port

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "http" if self.tls_context is None else "https"

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (``https://`` with TLS; no path)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def tls_failures(self) -> List[str]:
        """Why each TLS handshake that failed did (a refused certificate, a timeout...), in order."""
        with self._lock:
            return list(self._tls_failures)

    def _tls_failed(self, client_address: Any, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.log.debug("%s: TLS handshake with %s failed: %s", self._name, client_address, reason)
        with self._lock:
            self._tls_failures.append(reason)

    # ------------------------------------------------------------- activity

    def wait_idle(self, timeout: float = 5.0, *, disconnected: bool = False) -> bool:
        """Wait until no request is being handled; whether that happened in time.

        ``disconnected=True``: also wait until every client connection is
        closed, so requests a client sent just before it closed its
        connections (still in the socket buffer) have been handled too.
        Use it after a client was shut down, for instance after an aborted
        SDK upload whose abandoned requests may still arrive.
        """
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        while disconnected and (self.open_connections or self._connection_waiting()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return self.wait_idle(max(0.0, deadline - time.monotonic())) if disconnected else True

    def _connection_waiting(self) -> bool:
        """Whether a connection waits in the listen backlog."""
        httpd = self._httpd
        if httpd is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            return bool(select.select([httpd.socket], [], [], 0)[0])
        return False

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        httpd = self._httpd
        return 0 if httpd is None else httpd.connection_count()

    def _request_started(self) -> None:
        with self._lock:
            self._active += 1

    def _request_finished(self) -> None:
        with self._idle:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

