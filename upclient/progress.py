"""Byte-level progress of one transfer, merged from every worker thread.

Workers report each block as they read it; a failed attempt takes its bytes
back, a finished part counts exactly its size, so ``bytes_done`` never counts
a byte twice and ends at exactly the size.  The engine turns the counters
into :class:`Progress` snapshots and calls the user's callback from the
thread that called ``put``, a few times a second and once at the end.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable, Deque, Dict, Optional, Tuple

__all__ = ["Progress", "ProgressTracker"]


@dataclasses.dataclass(frozen=True)
class Progress:
    """A snapshot: bytes done of total (None if unknown), rate in bytes/s, ETA in s.

    ``bytes_done`` includes what the server held before this run (a resume);
    ``rate`` counts only bytes sent in this run, over the last few seconds,
    and is 0.0 until it can be measured (see :class:`ProgressTracker`).
    """

    name: str
    bytes_done: int
    total: Optional[int]
    rate: float
    eta: Optional[float]
    parts_done: int
    parts_total: Optional[int]
    elapsed: float

    @property
    def fraction(self) -> Optional[float]:
        if not self.total:
            return None if self.total is None else 1.0
        return self.bytes_done / self.total


class ProgressTracker:
    """Thread-safe counters behind :class:`Progress`.

    The rate is measured on the bytes read for sending in this run only:
    never the bytes a resume found on the server, nor the ones of a part the
    server confirmed before a try (``base``), which count as done but were
    not sent at this speed.  It is measured between snapshots, not from the
    start: the first bytes of a transfer fill the kernel's socket buffers far
    faster than the link drains them, and a rate taken from the start showed
    several times the link's speed.  Until two snapshots lie ``MIN_SPAN``
    apart the rate is 0.0 (unknown), unless nothing is in flight: then every
    byte sent is on the server, and the average since the start holds.
    """

    WINDOW = 3.0  # seconds of history for the rate
    MIN_SPAN = 0.1  # seconds between two snapshots for a rate

    def __init__(
        self,
        name: str,
        total: Optional[int],
        *,
        parts_total: Optional[int] = None,
        done_bytes: int = 0,
        done_parts: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.total = total
        self.parts_total = parts_total
        self._done = done_bytes
        self._parts_done = done_parts
        self._live: Dict[int, int] = {}
        self._sent = 0
        self._lock = threading.Lock()
        self._clock = clock
        self._start = clock()
        self._samples: Deque[Tuple[float, int]] = collections.deque()
        #: Called after each block is counted; set when the part runs in the
        #: caller's thread, so progress can be reported from there.
        self.on_block: Optional[Callable[[], None]] = None

    def reader(self, part: int, base: int = 0) -> Callable[[int], None]:
        """A callback for one attempt at ``part``: counts each block read.

        ``base``: bytes of the part the server already holds (a try after a
        partial one), which count as done from the start.
        """
        with self._lock:
            self._live[part] = base

        def on_read(n: int) -> None:
            with self._lock:
                self._live[part] = self._live.get(part, 0) + n
                self._sent += n
            if self.on_block is not None:
                self.on_block()

        return on_read

    def drop_attempt(self, part: int) -> None:
        """A try at ``part`` failed: its bytes no longer count as done."""
        with self._lock:
            self._live.pop(part, None)

    def finish_part(self, part: int, size: int) -> None:
        with self._lock:
            self._live.pop(part, None)
            self._done += size
            self._parts_done += 1

    def reopen_part(self, part: int, size: int) -> None:
        """A part counted done must be sent again (the server lost it)."""
        with self._lock:
            self._done = max(0, self._done - size)
            self._parts_done = max(0, self._parts_done - 1)

    def set_total(self, total: int) -> None:
        with self._lock:
            self.total = total

    @property
    def sent_bytes(self) -> int:
        """Bytes read for sending, including tries that failed."""
        with self._lock:
            return self._sent

    def snapshot(self) -> Progress:
        now = self._clock()
        with self._lock:
            done = self._done + sum(self._live.values())
            parts_done = self._parts_done
            sent = self._sent
            settled = not self._live
        samples = self._samples
        samples.append((now, sent))
        while len(samples) > 2 and now - samples[0][0] > self.WINDOW:
            samples.popleft()
        t0, sent0 = samples[0]
        if now - t0 >= self.MIN_SPAN:
            rate = (sent - sent0) / (now - t0)
        elif settled and now > self._start:
            rate = sent / (now - self._start)
        else:
            rate = 0.0  # too little history to tell
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0.0, (self.total - done) / rate)
        return Progress(
            name=self.name,
            bytes_done=done,
            total=self.total,
            rate=rate,
            eta=eta,
            parts_done=parts_done,
            parts_total=self.parts_total,
            elapsed=now - self._start,
        )
