"""The download engine: byte ranges of one stored file into one file descriptor.

A :class:`RangeBook` cuts the bytes wanted (a window of the remote file)
into ranges of a fixed size and says which are on disk.
:meth:`RangeDownloader.run` fetches the missing ones through a
:class:`~upclient.transfer.ranges.RemoteFile`: in parallel, one request per
range and at most ``concurrency`` in flight on the shared executor (as
many as measurably pay: one to start with, doubled while that raises the
bytes per second), or as one stream per run of missing ranges (a server
that ignores ranges, a concurrency of one, a link one stream fills).  Each block is written where it belongs with
``os.pwrite``, so ranges land in any order without a shared file position.
A broken request is retried from the last byte written, under the shared
retry policy, with the call's :class:`~upclient.transfer.StopSignal` bound
to the worker; a cancel, a deadline or a failing range stops every range in
flight at once.  The calling thread reports progress and calls ``on_tick``
(the caller saves its resume point there) a few times a second.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import NetworkError
from ..progress import Progress, ProgressTracker
from ..retry import RetryPolicy
from .deadline import StopSignal
from .demand import cpu_demand
from .ranges import RemoteFile

__all__ = ["RangeBook", "RangeDownloader", "RangeWidth"]

log = logging.getLogger("upclient.download")

#: Seconds between two progress reports (and resume-point saves) of the calling thread.
TICK = 0.2

Run = Tuple[int, int]  # first and last range index, both included


class RangeBook:
    """Ranges ``[start, end)`` of a remote file in pieces of ``range_size``, and which are done.

    Thread-safe: workers :meth:`mark` ranges as they land, the calling thread
    reads :meth:`intervals` for the resume point and :meth:`prefix_end` for
    the digest that follows the download.
    """

    def __init__(self, start: int, end: int, range_size: int, done: Iterable[int] = ()) -> None:
        if range_size < 1 or end < start:
            raise ValueError("a range book needs start <= end and a positive range size")
        self.start, self.end, self.range_size = start, end, range_size
        self.count = -(-(end - start) // range_size)  # 0 for an empty window: complete from the start
        self._done = {i for i in done if 0 <= i < self.count}
        self._lock = threading.Lock()
        self.version = 0  # grows with every range marked: "something new to save"

    @classmethod
    def from_intervals(cls, start: int, end: int, range_size: int, intervals: Sequence[Sequence[int]]) -> "RangeBook":
        done = (i for first, stop in intervals for i in range(int(first), int(stop)))
        return cls(start, end, range_size, done)

    def offset(self, index: int) -> int:
        """Where range ``index`` starts in the remote file."""
        return self.start + index * self.range_size

    def stop(self, index: int) -> int:
        """Where range ``index`` ends (exclusive) in the remote file."""
        return min(self.end, self.offset(index) + self.range_size)

    def length(self, index: int) -> int:
        return self.stop(index) - self.offset(index)

    def mark(self, index: int) -> None:
        with self._lock:
            if index not in self._done:
                self._done.add(index)
                self.version += 1

    def is_done(self, index: int) -> bool:
        with self._lock:
            return index in self._done

    @property
    def complete(self) -> bool:
        with self._lock:
            return len(self._done) == self.count

    @property
    def done_count(self) -> int:
        with self._lock:
            return len(self._done)

    @property
    def done_bytes(self) -> int:
        with self._lock:
            done = list(self._done)
        return sum(self.length(i) for i in done)

    def missing(self) -> List[int]:
        with self._lock:
            return [i for i in range(self.count) if i not in self._done]

    def prefix_end(self) -> int:
        """The end (in the remote file) of the ranges done from the first one on, without a gap."""
        with self._lock:
            i = 0
            while i in self._done:
                i += 1
        return self.offset(i) if i < self.count else self.end

    def intervals(self) -> List[List[int]]:
        """The done ranges as ``[first, stop)`` index intervals: a compact record of any size."""
        with self._lock:
            done = sorted(self._done)
        out: List[List[int]] = []
        for i in done:
            if out and out[-1][1] == i:
                out[-1][1] = i + 1
            else:
                out.append([i, i + 1])
        return out

    def runs(self, *, split: bool) -> List[Run]:
        """The missing ranges as runs of neighbours (one request each), or one run per range."""
        out: List[Run] = []
        for i in self.missing():
            if not split and out and out[-1][1] == i - 1:
                out[-1] = (out[-1][0], i)
            else:
                out.append((i, i))
        return out


class RangeWidth:
    """How many ranges go at once: measured, not guessed, as ``put_many`` does for files.

    Parallel ranges pay where each connection waits on the network (a
    distant server, a per-connection cap); where one stream already takes
    what the machine can (a local server, a client that keeps a core busy)
    they only contend, for the interpreter and the CPU.  So a download
    starts with one range in flight.  If over the first ``WINDOW`` seconds
    this process was busy (its threads ran, or were ready and waited for a
    core, at least ``BUSY`` of the time: :func:`~.demand.cpu_demand`, so a
    machine loaded by others is not taken for a slow link), the rest goes as
    one stream; otherwise the width doubles while each doubling raises the
    bytes per second by more than ``GAIN``, and the first doubling that does
    not goes back, and the width stays.
    """

    GAIN = 0.15
    WINDOW = 0.3
    BUSY = 0.75

    def __init__(self, ceiling: int, now: float, cpu: float) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = 1
        self.settled = self.ceiling == 1
        self._back = 1
        self._rate: Optional[float] = None
        self._mark = (now, 0, cpu)

    def observe(self, now: float, received: int, cpu: float) -> None:
        """Called a few times a second with the bytes received so far and this process's CPU demand
        (seconds run or waiting to run, :func:`~.demand.cpu_demand`)."""
        since, before, cpu_before = self._mark
        if self.settled or now - since < self.WINDOW:
            return
        rate = (received - before) / (now - since)
        self._mark = (now, received, cpu)
        if self._rate is None and (cpu - cpu_before) >= self.BUSY * (now - since):
            self.settled = True  # one stream keeps this process busy: more would only contend
            log.debug("one stream keeps a core busy (%.0f MB/s): no ranges in parallel", rate / 1e6)
            return
        if self._rate is None or rate > self._rate * (1 + self.GAIN):
            if self.limit >= self.ceiling:
                self.settled = True
            else:
                self._back, self.limit = self.limit, min(self.ceiling, 2 * self.limit)
            self._rate = rate
        else:
            self.limit, self.settled = self._back, True
            log.debug("%d ranges at once did no better than %d: keeping %d", 2 * self._back, self._back,
                      self._back)


class _Span:
    """A run of ranges one worker fetches in one request, which the calling thread may cut short.

    A stream over many ranges is cut when more connections would pay: the
    worker keeps the range it writes and the next, and stops reading there;
    the rest goes back to be fetched in parallel.
    """

    def __init__(self, run: Run) -> None:
        self.first, self.last = run
        self.index = self.first  # the range being written
        self._lock = threading.Lock()

    def next(self) -> bool:
        """The worker finished range :attr:`index`: whether it goes on to the next."""
        with self._lock:
            if self.index >= self.last:
                return False
            self.index += 1
            return True

    def cut(self) -> List[int]:
        """Keep the range being written and the next; the ranges given back."""
        with self._lock:
            keep = min(self.last, self.index + 1)
            given = list(range(keep + 1, self.last + 1))
            self.last = keep
            return given


class _Cut(Exception):
    """A span reached its (lowered) last range: stop reading the answer."""


def _merged(runs: Iterable[Run]) -> List[Run]:
    """Runs of neighbouring ranges joined: one request each."""
    out: List[Run] = []
    for first, last in runs:
        if out and out[-1][1] == first - 1:
            out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class RangeDownloader:
    """Fetches the missing ranges of a :class:`RangeBook` on a shared executor."""

    def __init__(self, executor: cf.Executor, concurrency: int, retry: RetryPolicy) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self.retry = retry

    def run(
        self,
        remote: RemoteFile,
        fd: int,
        book: RangeBook,
        *,
        tracker: ProgressTracker,
        stop: StopSignal,
        parallel: bool,
        strict: bool = True,
        on_progress: Optional[Callable[[Progress], Any]] = None,
        on_tick: Optional[Callable[[], None]] = None,
        on_write: Optional[Callable[[int, int, memoryview], None]] = None,
    ) -> None:
        """Fetch every missing range into ``fd``; returns when all are there.

        ``parallel``: one request per range, up to ``concurrency`` at a time,
        as many as measurably pay (:class:`RangeWidth`; at one, the rest goes as
        one stream); otherwise one request per run of missing neighbours, one
        at a time.
        ``strict``: a server that sends the whole file for a range raises
        :class:`~upclient.transfer.ranges.RangeIgnored` (for a caller to fall
        back to a stream); without it, the bytes before the range are skipped
        and a single run covers everything from the first missing byte on.
        ``stop`` is set when a range fails for good, which stops the others.
        ``on_write(since, offset, data)`` is called in the worker after each
        write, while the bytes are still at hand: ``data`` went to ``offset``
        in ``fd``, and this worker wrote every byte from ``since`` up to it.
        """
        if strict:
            runs = book.runs(split=False)
        else:
            missing = book.missing()
            runs = [(missing[0], book.count - 1)] if missing else []
        if not runs:
            return
        if not parallel and len(runs) == 1:
            self._run_inline(remote, fd, book, _Span(runs[0]), tracker, stop, strict, on_progress, on_tick,
                             on_write)
            return
        width = RangeWidth(self.concurrency if parallel else 1, time.monotonic(), cpu_demand())
        pending = collections.deque(runs)
        inflight: Dict[cf.Future, _Span] = {}
        split = False
        next_report = time.monotonic() + TICK
        try:
            while True:
                if width.limit > 1 and not split:
                    # more connections pay: the streams in flight stop after their next range, and
                    # every range left goes on its own
                    given = [i for span in inflight.values() for i in span.cut()]
                    given += [i for first, last in pending for i in range(first, last + 1)]
                    pending, split = collections.deque((i, i) for i in sorted(given)), True
                elif split and width.settled and width.limit == 1:
                    pending, split = collections.deque(_merged(pending)), False  # one stream from here on
                while pending and len(inflight) < width.limit:
                    stop.check()
                    span = _Span(pending.popleft())
                    fut = self.executor.submit(self._fetch, remote, fd, book, span, tracker, stop, strict, on_write)
                    inflight[fut] = span
                if not inflight:
                    break
                done, _ = cf.wait(inflight, timeout=TICK, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    del inflight[fut]
                    fut.result()  # a range's final error
                stop.check()
                if not width.settled:
                    width.observe(time.monotonic(), tracker.sent_bytes, cpu_demand())
                if on_tick is not None:
                    on_tick()
                if on_progress is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + TICK
                    on_progress(tracker.snapshot())
        except BaseException:
            stop.set()
            self._drain(inflight)
            raise

    def _run_inline(
        self,
        remote: RemoteFile,
        fd: int,
        book: RangeBook,
        run: _Span,
        tracker: ProgressTracker,
        stop: StopSignal,
        strict: bool,
        on_progress: Optional[Callable[[Progress], Any]],
        on_tick: Optional[Callable[[], None]],
        on_write: Optional[Callable[[int, int, memoryview], None]],
    ) -> None:
        """One run (a small file, a stream) goes in the caller's thread: ticks come from its blocks."""
        if on_progress is not None or on_tick is not None:
            next_report = [time.monotonic() + TICK]

            def tick() -> None:
                if time.monotonic() >= next_report[0]:
                    next_report[0] = time.monotonic() + TICK
                    if on_tick is not None:
                        on_tick()
                    if on_progress is not None:
                        on_progress(tracker.snapshot())

            tracker.on_block = tick
        try:
            self._fetch(remote, fd, book, run, tracker, stop, strict, on_write)
        finally:
            tracker.on_block = None

    @staticmethod
    def _drain(inflight: Dict[cf.Future, _Span]) -> None:
        """After a failure: let the ranges in flight stop (their sockets are shut down already)."""
        while inflight:
            try:
                done, _ = cf.wait(inflight, timeout=TICK)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, the threads end on their own
                return
            for fut in done:
                del inflight[fut]

    def _fetch(
        self,
        remote: RemoteFile,
        fd: int,
        book: RangeBook,
        run: _Span,
        tracker: ProgressTracker,
        stop: StopSignal,
        strict: bool,
        on_write: Optional[Callable[[int, int, memoryview], None]] = None,
    ) -> None:
        """The ranges of ``run`` in one request, retried from the last byte written; each marked as it
        fills.  The request asks up to the run's last range; a run cut meanwhile stops reading early."""
        pos = book.offset(run.first)
        since = pos - book.start
        index = run.first

        def counter(i: int) -> Optional[Callable[[int], None]]:
            # a range done before (a stream over a server that ignores ranges rewrites it) counts once
            return None if book.is_done(i) else tracker.reader(i)

        count = counter(index)

        def sink(block: bytes) -> None:
            nonlocal pos, index, count
            if stop.is_set():
                raise stop.error()
            view = memoryview(block)
            while view:
                bound = book.stop(index)
                take = min(len(view), bound - pos)
                _pwrite_all(fd, view[:take], pos - book.start)  # the file holds the window only
                if on_write is not None:
                    on_write(since, pos - book.start, view[:take])
                pos += take
                view = view[take:]
                if count is not None:
                    count(take)
                if pos == bound:
                    if count is not None:
                        book.mark(index)
                        tracker.finish_part(index, book.length(index))
                    if not run.next():
                        if pos < asked[0]:
                            raise _Cut()  # cut short: the rest of the answer is another worker's
                        if view:  # the reader is told the length: more is a broken reader
                            raise NetworkError(f"{len(view)} bytes more than asked for")
                        return
                    index = run.index
                    count = counter(index)

        asked = [pos]  # where the answer being read ends

        def attempt() -> None:
            stop.check()
            asked[0] = book.stop(run.last)
            if pos < asked[0]:
                try:
                    remote.read(sink, pos, asked[0] - pos, strict)
                except _Cut:
                    return
            if pos < book.stop(run.last):  # a clean end of the answer before its last byte
                raise NetworkError(f"the answer ended at byte {pos}, short of {book.stop(run.last)}")

        seen = [pos]

        def progressed() -> bool:  # a range that advances keeps its retry budget
            advanced, seen[0] = pos > seen[0], pos
            return advanced

        self.retry.call(attempt, cancel=stop, what=f"bytes {book.offset(run.first)}-{book.stop(run.last) - 1}",
                        progressed=progressed)
