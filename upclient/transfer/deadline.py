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
import select
import socket
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Set, Tuple, TypeVar

from ..errors import Cancelled, DeadlineExceeded

__all__ = ["StopSignal", "current", "remaining", "settle"]

log = logging.getLogger("upclient.deadline")

T = TypeVar("T")

#: How often the watchdog looks at signals it cannot be told about (parents, deadlines).
TICK = 0.05

_local = threading.local()


class StopSignal:
    """A cancel flag with an optional deadline; see the module docstring.

    ``timeout`` is in seconds from now.  :meth:`error` says why it fired:
    :class:`~upclient.errors.DeadlineExceeded` (also a ``TimeoutError``) for
    the deadline, :class:`~upclient.errors.Cancelled` otherwise.
    """

    _needs_poll: bool

    def __init__(self, *parents: Any, timeout: Optional[float] = None) -> None:
        self._fired = False
        self._event: Optional[threading.Event] = None  # made by the first wait(): most calls never wait
        given = [p for p in parents if p is not None]
        self.deadline = None if timeout is None else time.monotonic() + timeout
        for p in given:  # a child never outlives its parent's deadline
            pd = getattr(p, "deadline", None)
            if pd is not None and (self.deadline is None or pd < self.deadline):
                self.deadline = pd
        self.timeout = timeout
        self.timed_out = False
        self._socks: Set[socket.socket] = set()
        self._lock = threading.Lock()
        #: Signals made with this one as a parent: firing this one fires them at once.
        #: (A set made by the first child: most signals have none.)
        self._children: "Optional[weakref.WeakSet[StopSignal]]" = None
        for p in given:
            if isinstance(p, StopSignal):
                with p._lock:
                    if p._children is None:
                        p._children = weakref.WeakSet()
                    p._children.add(self)
        # What must be looked at to know whether this fired: flags of other kinds (the
        # user's Event) and signals that themselves must be looked at.  A signal that
        # only set() can fire tells its children itself, and needs no watchdog.
        self._polled = [p for p in given if not isinstance(p, StopSignal) or p._needs_poll]
        self._needs_poll = self.deadline is not None or bool(self._polled)

    # -- the flag ----------------------------------------------------------------------

    def set(self) -> None:
        self._fire(False)
        self._abort_all()

    def _fire(self, timed_out: bool) -> None:
        if self._fired:
            return
        self.timed_out = self.timed_out or timed_out
        self._fired = True
        event = self._event
        if event is not None:
            event.set()
        for child in list(self._children or ()):
            child._fire(timed_out)

    def _abort_all(self) -> None:
        self._abort_sockets()
        for child in list(self._children or ()):
            child._abort_all()

    def is_set(self) -> bool:
        if self._fired:
            return True
        for p in self._polled:
            if p.is_set():
                self._fire(bool(getattr(p, "timed_out", False)))
                return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._fire(True)
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
            # No word on resuming: a file's upload keeps its resume point, a stream's cannot.
            return DeadlineExceeded(
                f"timed out: the {self.timeout:g} s deadline passed"
                if self.timeout is not None
                else "timed out: the deadline passed"
            )
        return Cancelled("cancelled")

    def check(self) -> None:
        """Raise :meth:`error` if the signal has fired."""
        if self.is_set():
            raise self.error()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when set; returns is_set()."""
        end = None if timeout is None else time.monotonic() + timeout
        if self._event is None:
            with self._lock:
                if self._event is None:
                    self._event = threading.Event()
        event = self._event
        while not self.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            event.wait(TICK if left is None else min(TICK, left))
        return True

    def wait_for(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)``, run in a thread of its own and waited for: its value, or
        :meth:`error` within a tick of this signal firing.

        For a blocking call no socket shutdown reaches: a read of a pipe whose
        writer has stalled.  A call given up on goes on in its thread (a
        daemon) until it returns by itself; what it returns then is dropped.
        """
        self.check()
        outcome: List[Tuple[bool, Any]] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, call(*args)))
            except BaseException as exc:  # handed to the waiting thread
                outcome.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=run, name="upclient-blocking-call", daemon=True).start()
        while not done.wait(TICK):
            if self.is_set():
                raise self.error()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def wait_readable(self, fd: int) -> None:
        """Return once ``fd`` has bytes (or its end) to read; :meth:`error` within a tick of
        this signal firing first.  (``select.poll``: not on Windows.)"""
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        while True:
            self.check()
            if poller.poll(TICK * 1000):
                return

    # -- binding to a thread ---------------------------------------------------------

    def bound(self) -> "StopSignal":
        """Make this the signal of the requests this thread sends, for the ``with`` block.

        Bindings nest (a stack per thread), and one signal may be bound in
        several threads at once (the workers of one upload).
        """
        return self

    def __enter__(self) -> "StopSignal":
        try:
            _local.stack.append(self)
        except AttributeError:
            _local.stack = [self]
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.stack.pop()

    # -- sockets in flight ----------------------------------------------------------

    def track(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when this signal fires (at once if it has)."""
        with self._lock:
            self._socks.add(sock)
        if self.is_set():
            self._abort_sockets()
        elif self._needs_poll:  # a deadline or a foreign flag: the watchdog looks at it
            _watchdog.watch(self)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.discard(sock)

    def has_sockets(self) -> bool:
        with self._lock:
            return bool(self._socks)

    def busy(self) -> bool:
        """Whether a request of this signal, or of one made under it, is in flight."""
        return self.has_sockets() or any(child.busy() for child in list(self._children or ()))

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
        thread = self._thread
        if thread is not None and signal in self._signals and thread.is_alive():
            return  # already watched: the common case of a call's second request
        with self._lock:
            self._signals.add(signal)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="upclient-watchdog", daemon=True)
                self._thread.start()

    def settle(self, timeout: float) -> None:
        """Let the thread end now if nothing is in flight (``Client.close`` leaves no thread)."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            if any(s.has_sockets() for s in self._signals):
                return  # another call is in flight: the thread stays for it
        self._wake.set()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            with self._lock:
                live: List[StopSignal] = []
                for s in list(self._signals):
                    if s.has_sockets():
                        live.append(s)
                    else:
                        self._signals.discard(s)
                if not live:  # nothing in flight: end now (the next request starts a thread again)
                    self._thread = None
                    return
            for s in live:
                if s.is_set():
                    s._abort_sockets()


_watchdog = _Watchdog()


def current() -> Optional[StopSignal]:
    """The signal bound to this thread, if any (the innermost binding)."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def remaining(limit: Optional[float]) -> Optional[float]:
    """``limit`` (a socket timeout) cut to what is left of this thread's deadline."""
    signal = current()
    left = None if signal is None else signal.remaining()
    if left is None:
        return limit
    if limit is None:
        return max(left, 0.001)
    return max(min(limit, left), 0.001)


def settle(root: Optional[StopSignal] = None, timeout: float = 1.0) -> None:
    """After ``root`` was set: wait (at most ``timeout``) for its requests to
    land, then let the watchdog thread end if nothing else is in flight."""
    end = time.monotonic() + timeout
    while root is not None and root.busy() and time.monotonic() < end:
        time.sleep(0.005)
    _watchdog.settle(max(0.0, end - time.monotonic()))
