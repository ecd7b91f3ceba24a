"""urllib3 connections that answer to the call's deadline and cancel token.

A connection used by :class:`~upclient.transport.HttpTransport` registers its
socket with the :class:`~upclient.transfer.StopSignal` bound to the sending
thread (its :class:`~upclient.wire.Flight`), so a cancel, a deadline,
``close()`` or Ctrl-C shuts the socket down from the controlling thread
whatever the server is doing.  Its connect waits at most what is left of the
deadline, and a request body is sent under the read timeout (urllib3 would
use the connect timeout), so a server that stops reading the body is a
:class:`~upclient.errors.Timeout` after ``read_timeout``, not after
``connect_timeout``.  A small body goes in the same send as the request's
head, a file region over plain HTTP with :func:`~upclient.wire.send_region`
(HTTPS keeps urllib3's own path: TLS encrypts in user space), and an
answer's header block is read without the email package.

This module imports urllib3: only the HTTP backends load it, on their first
request.
"""

from __future__ import annotations

import email.parser
import http.client
import logging
import re
import socket
import threading
from typing import Any, List, Optional, Set

import urllib3
import urllib3.connection
import urllib3.connectionpool

from .transfer import deadline
from .wire import CAN_SENDFILE, Flight, _current_flight, _small_body, send_region

__all__ = ["WatchedHTTPConnection", "WatchedHTTPSConnection", "WatchedHTTPConnectionPool",
           "WatchedHTTPSConnectionPool", "POOL_CLASSES"]

log = logging.getLogger("upclient.http")


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

    #: Whether a file region may go with ``os.sendfile`` (plain TCP only).
    zero_copy = False
    #: While a request's head is being built: what http.client would send, held back.
    _held: Optional[List[bytes]] = None

    def send(self, data: Any) -> None:
        held = self._held
        if held is not None:
            held.append(bytes(data))
            return
        super().send(data)  # type: ignore[misc]

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:
        f = _current_flight()
        if f is not None:
            if self.sock is None:
                self.connect()
            else:
                self._watch(f)
            if f.read_timeout is not None:
                self.timeout = f.read_timeout  # urllib3 applies it to the socket before sending
        if body is None or kw.get("chunked"):
            super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]
            return
        framed = dict(headers or {})
        names = {k.lower() for k in framed}
        if "transfer-encoding" in names:  # the caller frames the body: urllib3's way
            super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]
            return
        small = _small_body(body)
        if small is not None:  # the head and the body in one send: one segment, one call
            if "content-length" not in names:
                framed["Content-Length"] = str(len(small))
            self._held = []
            try:
                super().request(method, url, body=None, headers=framed, **kw)  # type: ignore[misc]
                head = b"".join(self._held)
            finally:
                self._held = None
            super().send(head + small)  # type: ignore[misc]
            return
        if self.zero_copy and getattr(body, "zero_copy", False) and CAN_SENDFILE:
            if self.sock is None:
                self.connect()
            if type(self.sock) is socket.socket:  # a plain socket: no TLS, no tunnel
                if "content-length" not in names:
                    framed["Content-Length"] = str(len(body))
                super().request(method, url, body=None, headers=framed, **kw)  # type: ignore[misc]
                send_region(self.sock, body)
                return
        super().request(method, url, body=body, headers=headers, **kw)  # type: ignore[misc]


#: A header name as HTTP defines it (a token); any other line goes to the stdlib's parser.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LINE_LIMIT = 65536
_HEADER_LIMIT = 100


def _header_lines(fp: Any) -> List[bytes]:
    """The lines of a header block, up to and without the empty line that ends it."""
    lines: List[bytes] = []
    while True:
        line = fp.readline(_LINE_LIMIT + 1)
        if len(line) > _LINE_LIMIT:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > _HEADER_LIMIT:
            raise http.client.HTTPException(f"got more than {_HEADER_LIMIT} headers")


def _header_message(lines: List[bytes]) -> http.client.HTTPMessage:
    """The header block as http.client's message: plain ``Name: value`` lines are read here; a block
    with anything else (a folded line, a line without a name) is given to the email parser, as
    http.client does with every block."""
    msg = http.client.HTTPMessage()
    for raw in lines:
        name, colon, value = raw.decode("iso-8859-1").partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            text = b"".join(lines).decode("iso-8859-1") + "\r\n"
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)  # type: ignore[return-value]
        msg.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    return msg


class _Answer(http.client.HTTPResponse):
    """http.client's response, its header block read without the email package.

    http.client hands every header block to the email parser, about 30 us of
    an answer's client CPU, a tenth of what a small upload costs.  Here the
    status line is read as http.client reads it and a block of plain
    ``Name: value`` lines is read directly (any other goes to that parser);
    what the answer's framing is then follows HTTP/1.1: a chunked body, a
    ``Content-Length``, no body at all (HEAD, 1xx, 204, 304), or a body
    that ends when the connection closes.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        version, status, reason = self._read_status()  # type: ignore[attr-defined]
        while status == http.client.CONTINUE:  # an interim answer: its headers are dropped
            _header_lines(self.fp)
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _header_message(_header_lines(self.fp))
        coding = self.headers.get("transfer-encoding")
        self.chunked = bool(coding) and coding.lower() == "chunked"  # type: ignore[union-attr]
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        length: Optional[int] = None
        declared = self.headers.get("content-length")
        if declared and not self.chunked:
            try:
                length = int(declared)
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":  # type: ignore[attr-defined]
            length = 0
        self.length = length
        if self.length is None and not self.chunked:
            self.will_close = True  # the body ends where the connection does


class WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    zero_copy = True
    response_class = _Answer


class WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    response_class = _Answer


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
