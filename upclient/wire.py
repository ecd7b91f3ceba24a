"""What a request's bytes go through, whatever carries them: the flight and zero-copy sends.

A :class:`Flight` is one request's sockets and read timeout: the
connections of :mod:`upclient.connections` (HTTP) register their socket
with the :class:`~upclient.transfer.StopSignal` bound to the sending thread,
so a cancel, a deadline, ``close()`` or Ctrl-C shuts it down from the
controlling thread whatever the server is doing.

A body that is a region of a file (a :class:`~upclient.source.PartBody` with
``zero_copy``) goes over plain HTTP and to FastDFS storages with
``os.sendfile`` (:func:`send_region`): the kernel moves the bytes from the
page cache to the socket, and the interpreter neither reads nor copies them.
The same rules hold there: the socket still answers to the signal (shut
down, the send fails at once), each wait for room in the socket lasts at
most the read timeout, progress counts what each call sent, and the cancel
event and the source's last check run as with ``read``.

This module imports no HTTP library (FastDFS uses it without urllib3); the
urllib3 connections that use it (``WatchedHTTPConnection``, ``POOL_CLASSES``,
...) live in :mod:`upclient.connections`, which the first HTTP transport imports.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from typing import Any, List, Optional, Tuple

from .source import PartBody
from .transfer.deadline import StopSignal

__all__ = ["Flight", "send_region", "CAN_SENDFILE", "SMALL_BODY"]

#: The most one step of a zero-copy body asks of ``os.sendfile``: between
#: steps the cancel event is looked at (the socket's shutdown stops a step).
SENDFILE_STEP = 8 * 1024 * 1024
#: Whether this system has what :func:`send_region` needs.
CAN_SENDFILE = hasattr(os, "sendfile") and hasattr(select, "poll")
#: A request body up to this size goes in the same send as the request's head.
SMALL_BODY = 64 * 1024

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


def _small_body(body: Any) -> Optional[bytes]:
    """The bytes of a body small enough to go with the request's head, read now; else None.

    Bytes, and part bodies (read here with ``read``, so their progress and
    checks run as always); anything else keeps urllib3's way.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body) if 0 < len(body) <= SMALL_BODY else None
    if not isinstance(body, PartBody) or not 0 < len(body) <= SMALL_BODY:
        return None
    size = len(body)
    data = bytes(body.read(size))
    while len(data) < size:  # PartBody.read gives what is asked, or raises
        data += bytes(body.read(size - len(data)))
    return data


def send_region(sock: socket.socket, body: Any) -> None:
    """Send a zero-copy body (see the module docstring) on a connected plain socket.

    A socket with a timeout is non-blocking underneath: ``os.sendfile``
    sends what fits, and the loop waits for room, at most the timeout each
    time (``TimeoutError``, as ``sendall`` raises).
    """
    out = sock.fileno()
    timeout = sock.gettimeout()
    waiter = None
    while True:
        region = body.next_region(SENDFILE_STEP)
        if region is None:
            return
        fd, offset, count = region
        while count:
            try:
                n = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                if waiter is None:
                    waiter = select.poll()
                    waiter.register(out, select.POLLOUT)
                if not waiter.poll(None if timeout is None else timeout * 1000):
                    raise socket.timeout("timed out") from None
                continue
            if n == 0:
                raise body.short(count)  # the file is shorter than it was
            body.sent(n)
            offset += n
            count -= n

