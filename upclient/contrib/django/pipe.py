"""A bounded hand-over of bytes from one thread to another: :class:`BytePipe`.

The request thread (Django's multipart parser) writes each chunk of an
uploaded file; the thread running ``Client.put`` reads them as a
non-seekable stream.  At most ``capacity`` bytes wait in between: a writer
blocks while the pipe is full, so a fast browser and a slow storage server
keep memory bounded, and a reader blocks while it is empty.

Either side can end it: :meth:`BytePipe.close` is the end of the file (the
reader then sees ``b""``), :meth:`BytePipe.fail` stops both sides with an
error (the browser went away, the put failed).  Every wait also ends at the
pipe's ``deadline``, with :class:`~upclient.errors.DeadlineExceeded`, so
neither thread can hang on the other.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Deque, Optional

from ...errors import DeadlineExceeded
from ...transfer.deadline import TICK

__all__ = ["BytePipe"]


class BytePipe:
    """See the module docstring.  ``deadline`` is a ``time.monotonic()`` value or None."""

    def __init__(self, capacity: int, *, deadline: Optional[float] = None, name: str = "upload") -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least one byte")
        self.capacity = capacity
        self.deadline = deadline
        self.name = name
        self._chunks: Deque[memoryview] = collections.deque()
        self._held = 0
        self._closed = False
        self._error: Optional[BaseException] = None
        self._cond = threading.Condition()
        #: Bytes written in all, and the most that ever waited in the pipe at once.
        self.written = 0
        self.peak = 0

    # -- both sides ------------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        """Stop both sides: every wait, now or later, raises ``error`` (the first one given)."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._chunks.clear()
            self._held = 0
            self._cond.notify_all()

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    def _wait(self, tick: Optional[float] = None) -> None:
        """Wait for a change, at most ``tick`` seconds; DeadlineExceeded once the deadline has
        passed (the lock is held)."""
        if self.deadline is None:
            self._cond.wait(tick)
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._error = self._error or DeadlineExceeded(f"{self.name}: the upload's time ran out")
            self._cond.notify_all()
            raise self._error
        self._cond.wait(left if tick is None else min(left, tick))

    # -- the writer ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Hand ``data`` over; blocks while the pipe is full.  Raises the pipe's error, if any."""
        if not data:
            return
        view = memoryview(data).cast("B")
        with self._cond:
            if self._closed:
                raise ValueError("write to a closed pipe")
            while True:
                if self._error is not None:
                    raise self._error
                # a chunk larger than the whole capacity goes in once the pipe is empty
                if self._held == 0 or self._held + len(view) <= self.capacity:
                    break
                self._wait()
            self._chunks.append(view)
            self._held += len(view)
            self.written += len(view)
            self.peak = max(self.peak, self._held)
            self._cond.notify_all()

    def close(self) -> None:
        """The end of the bytes: the reader gets ``b""`` once it has read what waits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the reader ------------------------------------------------------------------

    #: :meth:`read` takes the upload's signal and waits no longer than it allows
    #: (see :class:`upclient.source.StreamSource`): no thread is needed to read it.
    read_takes_stop = True

    def read(self, size: int = -1, stop: Any = None) -> bytes:
        """Up to ``size`` bytes (at least one unless at the end); blocks while the pipe is empty,
        until ``stop`` (a :class:`~upclient.transfer.StopSignal`) fires if one is given."""
        with self._cond:
            while not self._chunks:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return b""
                if stop is not None:
                    stop.check()
                self._wait(None if stop is None else TICK)
            if self._error is not None:
                raise self._error
            want = self._held if size is None or size < 0 else size
            out = []
            got = 0
            while self._chunks and got < want:
                head = self._chunks[0]
                take = min(len(head), want - got)
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
                out.append(head[:take])
                got += take
            self._held -= got
            self._cond.notify_all()
        return out[0].tobytes() if len(out) == 1 else b"".join(out)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
