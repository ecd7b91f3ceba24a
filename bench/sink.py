"""A minimal, fast tus 1.0.0 server that counts the bytes it is sent and discards them.

The benchmark points clients at it so that what is measured is the client's
own cost, not the server's: one thread per connection, HTTP/1.1 keep-alive,
request bodies read with ``recv_into`` into one large buffer per connection
and dropped (with ``MSG_TRUNC`` on Linux, so the kernel does not even copy
them out).  It speaks the tus core protocol (HEAD, PATCH) and the creation,
creation-with-upload, creation-defer-length and termination extensions, and
concatenation when asked (``concat=True``), so parallel clients can use it.
Uploads live in a dict (offset, length, partial or final); nothing touches
the disk.

Given a certificate (``certfile``, with its key in ``keyfile`` or in the
same file), it serves HTTPS: its listening socket is wrapped by Python's
:mod:`ssl` and each connection's handshake runs in that connection's own
thread.  Over TLS the bytes must be decrypted, so they are read (in TLS
records of up to 16 KiB) and dropped, without ``MSG_TRUNC``.

Run alone (prints the creation URL, serves until Ctrl-C)::

    python bench/sink.py [--port 0] [--concat] [--cert server.pem [--key server.key]]

or from Python, in this process (:class:`Sink`) or in a child process
(:class:`SinkProcess`, which the benchmark uses so the sink never shares a
GIL with anything else)::

    with SinkProcess(concat=True) as sink:
        upload_to(sink.url)          # http://127.0.0.1:PORT/files/
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Dict, List, Optional, Set, Tuple

__all__ = ["Sink", "SinkProcess"]

#: The receive buffer of each connection: large reads keep Python's per-call
#: cost negligible next to the kernel's copy.
RECV_BUFFER = 4 * 1024 * 1024
#: On Linux, ``recv_into(..., MSG_TRUNC)`` on a TCP socket drops the bytes in
#: the kernel without copying them out: the sink then costs the sender
#: nothing but the transfer itself.  Elsewhere the bytes are copied and dropped.
DISCARD_FLAGS = socket.MSG_TRUNC if sys.platform.startswith("linux") else 0
#: Request line and headers may not exceed this.
MAX_HEAD = 64 * 1024
BASE_PATH = "/files/"

_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
}


class _Upload:
    __slots__ = ("length", "offset", "concat", "received")

    def __init__(self, length: Optional[int], concat: Optional[str] = None) -> None:
        self.length = length  # None: deferred
        self.offset = 0
        self.concat = concat  # None, "partial" or "final;..."
        self.received = 0


class _BadRequest(Exception):
    """Answer ``status`` with ``message`` as the body."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Connection:
    """Reads requests from one socket; leftover bytes carry over between requests."""

    def __init__(self, sink: "Sink", sock: socket.socket) -> None:
        self.sink = sink
        self.sock = sock
        # recv_into of an SSLSocket takes no flags: decrypted bytes are copied out
        self.flags = 0 if isinstance(sock, ssl.SSLSocket) else DISCARD_FLAGS
        self.buffer = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buffer)
        self.pending = bytearray()  # bytes received but not yet consumed

    # -- reading ---------------------------------------------------------------

    def _fill(self) -> bool:
        n = self.sock.recv_into(self.buffer, 65536)
        if n == 0:
            return False
        self.pending += self.view[:n]
        return True

    def read_head(self) -> Optional[bytes]:
        """The request line and headers, without the blank line; None at a clean EOF."""
        while True:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.pending[:end])
                del self.pending[: end + 4]
                return head
            if len(self.pending) > MAX_HEAD:
                raise _BadRequest(431)
            if not self._fill():
                if self.pending.strip():
                    raise ConnectionError("connection closed inside a request head")
                return None

    def readline(self) -> bytes:
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                line = bytes(self.pending[:end])
                del self.pending[: end + 2]
                return line
            if len(self.pending) > MAX_HEAD:
                raise _BadRequest(400, "line too long")
            if not self._fill():
                raise ConnectionError("connection closed inside a chunked body")

    def discard(self, count: int) -> int:
        """Read and drop exactly ``count`` body bytes; returns ``count``."""
        left = count
        if self.pending:
            take = min(left, len(self.pending))
            del self.pending[:take]
            left -= take
        sock, view, size, flags = self.sock, self.view, RECV_BUFFER, self.flags
        while left:
            n = sock.recv_into(view, left if left < size else size, flags)
            if n == 0:
                raise ConnectionError(f"connection closed with {left} body bytes missing")
            left -= n
        return count

    def discard_chunked(self) -> int:
        total = 0
        while True:
            line = self.readline()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "bad chunk size") from None
            if size == 0:
                while self.readline():  # trailers up to the blank line
                    pass
                return total
            total += self.discard(size)
            if self.readline():
                raise _BadRequest(400, "chunk not followed by CRLF")

    # -- writing ---------------------------------------------------------------

    def respond(self, status: int, headers: Dict[str, str], body: bytes = b"", close: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", "Tus-Resumable: 1.0.0"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if status != 204 and status >= 200:
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self.sock.sendall(data)

    # -- serving ---------------------------------------------------------------

    def serve(self) -> None:
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.do_handshake()  # here, not in the accept loop: a slow client holds up no other
            while not self.sink.stopping.is_set():
                try:
                    head = self.read_head()
                except _BadRequest as exc:
                    self.respond(exc.status, {}, exc.message.encode(), close=True)
                    return
                if head is None:
                    return
                if not self._one(head):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sink._forget(self.sock)

    def _one(self, head: bytes) -> bool:
        """Handle one request; False when the connection must close."""
        text = head.decode("latin-1")
        request_line, _, rest = text.partition("\r\n")
        parts = request_line.split()
        if len(parts) != 3:
            self.respond(400, {}, b"bad request line", close=True)
            return False
        method, target, version = parts
        headers: Dict[str, str] = {}
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        method = headers.get("x-http-method-override", method).upper()

        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            body_length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            self.respond(400, {}, b"bad Content-Length", close=True)
            return False
        has_body = chunked or body_length > 0
        if has_body and headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        body_state = "unread"  # -> "reading" -> "read"

        def read_body() -> int:
            nonlocal body_state
            body_state = "reading"
            n = self.discard_chunked() if chunked else self.discard(body_length)
            body_state = "read"
            return n

        try:
            status, out = self.sink.handle(method, target, headers, has_body, read_body)
        except _BadRequest as exc:
            if body_state == "reading":  # the body itself was malformed: the stream is lost
                keep_alive = False
            elif has_body and body_state == "unread":
                read_body()  # drop it, so the connection stays usable
            self.respond(exc.status, {}, exc.message.encode(), close=not keep_alive)
            return keep_alive
        self.respond(status, out, close=not keep_alive)
        return keep_alive


class Sink:
    """The server, in this process: ``start()``/``stop()`` or a ``with`` block.

    :param concat: advertise and serve the concatenation extension.
    :param host, port: where to listen (port 0: a free one).
    :param certfile, keyfile: serve HTTPS with this certificate (chain) and
        key (``keyfile`` None: the key is in ``certfile``).

    :attr:`bytes_received` counts every body byte taken; :attr:`requests`
    the requests answered.
    """

    def __init__(self, *, concat: bool = False, host: str = "127.0.0.1", port: int = 0,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None) -> None:
        self.concat = concat
        self.tls: Optional[ssl.SSLContext] = None
        if certfile:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(certfile, keyfile)
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self.uploads: Dict[str, _Upload] = {}
        self.lock = threading.Lock()
        self.bytes_received = 0
        self.requests = 0
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: Set[socket.socket] = set()
        extensions = ["creation", "creation-with-upload", "creation-defer-length", "termination"]
        if concat:
            extensions.append("concatenation")
        self.extensions = ",".join(extensions)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{BASE_PATH}"

    def start(self) -> "Sink":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(256)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        if self.tls is not None:  # accept() then hands out TLS sockets, their handshake not yet done
            listener = self.tls.wrap_socket(listener, server_side=True, do_handshake_on_connect=False)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="sink-accept", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self.lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                time.sleep(0.01)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self._conns.add(sock)
            conn = _Connection(self, sock)
            threading.Thread(target=conn.serve, name="sink-conn", daemon=True).start()

    def _forget(self, sock: socket.socket) -> None:
        with self.lock:
            self._conns.discard(sock)

    # -- the protocol ------------------------------------------------------------

    def _upload_id(self, target: str) -> str:
        path = urllib.parse.urlsplit(target).path
        if not path.startswith(BASE_PATH) or len(path) <= len(BASE_PATH):
            raise _BadRequest(404, "no such upload")
        return path[len(BASE_PATH):].strip("/")

    def _get(self, upload_id: str) -> _Upload:
        with self.lock:
            upload = self.uploads.get(upload_id)
        if upload is None:
            raise _BadRequest(404, "no such upload")
        return upload

    def _location(self, headers: Dict[str, str], upload_id: str) -> str:
        host = headers.get("host") or f"{self.host}:{self.port}"
        return f"{self.scheme}://{host}{BASE_PATH}{upload_id}"

    def handle(self, method, target, headers, has_body, read_body) -> Tuple[int, Dict[str, str]]:
        with self.lock:
            self.requests += 1
        if method == "OPTIONS":
            if has_body:
                read_body()
            return 204, {"Tus-Version": "1.0.0", "Tus-Extension": self.extensions}
        if method == "POST":
            return self._create(target, headers, has_body, read_body)
        if method == "PATCH":
            return self._patch(target, headers, has_body, read_body)
        if method == "HEAD":
            upload = self._get(self._upload_id(target))
            out = {"Upload-Offset": str(upload.offset), "Cache-Control": "no-store"}
            if upload.length is None:
                out["Upload-Defer-Length"] = "1"
            else:
                out["Upload-Length"] = str(upload.length)
            if upload.concat:
                out["Upload-Concat"] = upload.concat
            return 200, out
        if method == "DELETE":
            upload_id = self._upload_id(target)
            with self.lock:
                gone = self.uploads.pop(upload_id, None)
            if gone is None:
                raise _BadRequest(404, "no such upload")
            return 204, {}
        raise _BadRequest(405, f"{method} not allowed")

    def _create(self, target, headers, has_body, read_body) -> Tuple[int, Dict[str, str]]:
        concat = headers.get("upload-concat")
        upload_id = uuid.uuid4().hex
        if concat and concat.startswith("final;"):
            if not self.concat:
                raise _BadRequest(400, "concatenation is not enabled")
            partial_ids = [self._upload_id(urllib.parse.urlsplit(u).path) for u in concat[6:].split()]
            total = 0
            for pid in partial_ids:
                part = self._get(pid)
                if part.concat != "partial" or part.length is None or part.offset != part.length:
                    raise _BadRequest(400, f"partial upload {pid} is not complete")
                total += part.length
            upload = _Upload(total, concat)
            upload.offset = total
            with self.lock:
                self.uploads[upload_id] = upload
            return 201, {"Location": self._location(headers, upload_id), "Upload-Offset": str(total)}
        if concat is not None and concat != "partial":
            raise _BadRequest(400, "bad Upload-Concat")
        if concat == "partial" and not self.concat:
            raise _BadRequest(400, "concatenation is not enabled")
        if "upload-length" in headers:
            try:
                length: Optional[int] = int(headers["upload-length"])
            except ValueError:
                raise _BadRequest(400, "bad Upload-Length") from None
            if length is None or length < 0:
                raise _BadRequest(400, "bad Upload-Length")
        elif headers.get("upload-defer-length") == "1":
            length = None
        else:
            raise _BadRequest(400, "Upload-Length or Upload-Defer-Length: 1 is required")
        upload = _Upload(length, concat)
        with self.lock:
            self.uploads[upload_id] = upload
        out = {"Location": self._location(headers, upload_id)}
        if has_body:
            n = read_body()
            self._advance(upload, n)
            out["Upload-Offset"] = str(upload.offset)
        return 201, out

    def _patch(self, target, headers, has_body, read_body) -> Tuple[int, Dict[str, str]]:
        upload = self._get(self._upload_id(target))
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/offset+octet-stream":
            raise _BadRequest(415, "Content-Type must be application/offset+octet-stream")
        try:
            offset = int(headers["upload-offset"])
        except (KeyError, ValueError):
            raise _BadRequest(400, "Upload-Offset is required") from None
        if upload.concat and upload.concat.startswith("final"):
            raise _BadRequest(403, "a final upload cannot be patched")
        if offset != upload.offset:
            raise _BadRequest(409, f"offset is {upload.offset}, not {offset}")
        if "upload-length" in headers and upload.length is None:
            upload.length = int(headers["upload-length"])
        n = read_body() if has_body else 0
        self._advance(upload, n)
        return 204, {"Upload-Offset": str(upload.offset)}

    def _advance(self, upload: _Upload, n: int) -> None:
        with self.lock:
            self.bytes_received += n
            upload.received += n
            upload.offset += n
        if upload.length is not None and upload.offset > upload.length:
            raise _BadRequest(413, "more bytes than Upload-Length")


class SinkProcess:
    """:class:`Sink` in a child process (``python bench/sink.py``), as a context manager.

    ``certfile`` (and ``keyfile``): the sink serves HTTPS with them.
    """

    def __init__(
        self, *, concat: bool = False, python: Optional[str] = None, startup_timeout: float = 15.0,
        certfile: Optional[str] = None, keyfile: Optional[str] = None,
    ) -> None:
        self.concat = concat
        self.certfile = certfile
        self.keyfile = keyfile
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""

    def start(self) -> "SinkProcess":
        cmd = [self.python, os.path.abspath(__file__), "--port", "0"]
        if self.concat:
            cmd.append("--concat")
        if self.certfile:
            cmd += ["--cert", self.certfile]
        if self.keyfile:
            cmd += ["--key", self.keyfile]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line: List[str] = []

        def read_first_line() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            line.append(self.proc.stdout.readline())

        reader = threading.Thread(target=read_first_line, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not line or not line[0].startswith(("http://", "https://")):
            self.stop()
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.url = line[0].strip()
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> "SinkProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--concat", action="store_true", help="offer the concatenation extension")
    parser.add_argument("--cert", help="serve HTTPS with this certificate chain (PEM; may hold the key too)")
    parser.add_argument("--key", help="the certificate's private key (PEM), if not in --cert")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Sink(concat=args.concat, host=args.host, port=args.port, certfile=args.cert, keyfile=args.key) as sink:
        print(sink.url, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
