"""One deadline and cancel token per call, reaching every blocking wait.

A :class:`StopSignal` is set by its own :meth:`~StopSignal.set`, by any
parent flag (the user's ``cancel`` event, the client's closed flag, the
``put_many`` that runs the call) or by its deadline.  Work done for the call
binds the signal to its thread (:meth:`StopSignal.bound`); the wire layers
(HTTP connections, FastDFS sockets) register each socket they use with the
bound signal while a request is in flight.  When the signal fires, those
sockets are shut down from the controlling thread, or within one tick of the
:class:`_Watchdog` for a parent's flag or a deadline, so a server that never
answers, or never reads, cannot hold a call past its promise.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from typing import Any, Iterator, List, Optional, Set

from ..errors import Cancelled, DeadlineExceeded

__all__ = ["StopSignal", "current", "track", "untrack", "remaining", "settle"]

log = logging.getLogger("upclient.deadline")

#: How often the watchdog looks at signals it cannot be told about (parents, deadlines).
TICK = 0.05

_local = threading.local()


class StopSignal:
    """A cancel flag with an optional deadline; see the module docstring.

    ``timeout`` is in seconds from now.  :meth:`error` says why it fired:
    :class:`~upclient.errors.DeadlineExceeded` (also a ``TimeoutError``) for
    the deadline, :class:`~upclient.errors.Cancelled` otherwise.
    """

    def __init__(self, *parents: Any, timeout: Optional[float] = None) -> None:
        self._own = threading.Event()
        self._parents = [p for p in parents if p is not None]
        self.deadline = None if timeout is None else time.monotonic() + timeout
        for p in self._parents:  # a child never outlives its parent's deadline
            pd = getattr(p, "deadline", None)
            if pd is not None and (self.deadline is None or pd < self.deadline):
                self.deadline = pd
        self.timeout = timeout
        self.timed_out = False
        self._socks: Set[socket.socket] = set()
        self._lock = threading.Lock()

    # -- the flag ----------------------------------------------------------------------

    def set(self) -> None:
        self._own.set()
        self._abort_sockets()

    def is_set(self) -> bool:
        if self._own.is_set():
            return True
        for p in self._parents:
            if p.is_set():
                if getattr(p, "timed_out", False):
                    self.timed_out = True
                self._own.set()
                return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
            self._own.set()
            return True
        return False

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (never below 0); None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def error(self) -> Cancelled:
        """The error that says why this signal fired."""
        if self.timed_out:
            return DeadlineExceeded(
                f"timed out: the {self.timeout:g} s deadline passed; the resume point is kept"
                if self.timeout is not None
                else "timed out: the deadline passed; the resume point is kept"
            )
        return Cancelled("cancelled; the resume point is kept")

    def check(self) -> None:
        """Raise :meth:`error` if the signal has fired."""
        if self.is_set():
            raise self.error()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when set; returns is_set()."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._own.wait(TICK if left is None else min(TICK, left))
        return True

    # -- binding to a thread ---------------------------------------------------------

    @contextlib.contextmanager
    def bound(self) -> Iterator["StopSignal"]:
        """Make this the signal of the requests this thread sends, for the block."""
        previous = getattr(_local, "signal", None)
        _local.signal = self
        try:
            yield self
        finally:
            _local.signal = previous

    # -- sockets in flight ----------------------------------------------------------

    def track(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when this signal fires (at once if it has)."""
        with self._lock:
            self._socks.add(sock)
        if self.is_set():
            self._abort_sockets()
        else:
            _watchdog.watch(self)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def has_sockets(self) -> bool:
        with self._lock:
            return bool(self._socks)

    def _abort_sockets(self) -> None:
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if socks:
            log.debug("aborted %d request(s) in flight", len(socks))


class _Watchdog:
    """One daemon thread that fires the sockets of signals set from afar."""

    def __init__(self) -> None:
        self._signals: "weakref.WeakSet[StopSignal]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()

    def watch(self, signal: StopSignal) -> None:
        with self._lock:
            self._signals.add(signal)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="upclient-watchdog", daemon=True)
                self._thread.start()

    def settle(self, timeout: float = 1.0) -> None:
        """Let the thread end now if nothing is in flight (``Client.close`` leaves no thread)."""
        thread = self._thread
        if thread is None:
            return
        self._wake.set()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            with self._lock:
                signals: List[StopSignal] = list(self._signals)
                if not signals:
                    self._thread = None
                    return
            for s in signals:
                if not s.has_sockets():
                    with self._lock:
                        self._signals.discard(s)
                elif s.is_set():
                    s._abort_sockets()


_watchdog = _Watchdog()


def current() -> Optional[StopSignal]:
    """The signal bound to this thread, if any."""
    return getattr(_local, "signal", None)


def track(sock: socket.socket) -> Optional[StopSignal]:
    """Register ``sock`` with this thread's signal; raise at once if it has fired."""
    signal = current()
    if signal is not None:
        signal.check()
        signal.track(sock)
    return signal


def untrack(sock: socket.socket, signal: Optional[StopSignal] = None) -> None:
    signal = signal or current()
    if signal is not None:
        signal.untrack(sock)


def remaining(limit: Optional[float]) -> Optional[float]:
    """``limit`` (a socket timeout) cut to what is left of this thread's deadline."""
    signal = current()
    left = None if signal is None else signal.remaining()
    if left is None:
        return limit
    if limit is None:
        return max(left, 0.001)
    return max(min(limit, left), 0.001)


def settle(timeout: float = 1.0) -> None:
    """Wait (briefly) for the watchdog thread to end once no request is in flight."""
    _watchdog.settle(timeout)
