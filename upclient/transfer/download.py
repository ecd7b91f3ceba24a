"""The download engine: byte ranges of one stored file into one file descriptor.

A :class:`RangeBook` cuts the bytes wanted (a window of the remote file)
into ranges of a fixed size and says which are on disk.
:meth:`RangeDownloader.run` fetches the missing ones through a
:class:`~upclient.transfer.ranges.RemoteFile`: in parallel, one request per
range and at most ``concurrency`` in flight on the shared executor, or as
one stream per run of missing ranges (a server that ignores ranges, a
concurrency of one).  Each block is written where it belongs with
``os.pwrite``, so ranges land in any order without a shared file position.
A broken request is retried from the last byte written, under the shared
retry policy, with the call's :class:`~upclient.transfer.StopSignal` bound
to the worker; a cancel, a deadline or a failing range stops every range in
flight at once.  The calling thread reports progress and calls ``on_tick``
(the caller saves its resume point there) a few times a second.
"""

from __future__ import annotations

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
from .ranges import RemoteFile

__all__ = ["RangeBook", "RangeDownloader"]

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

        ``parallel``: one request per range, ``concurrency`` at a time;
        otherwise one request per run of missing neighbours, one at a time.
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
            runs = book.runs(split=parallel)
        else:
            missing = book.missing()
            runs = [(missing[0], book.count - 1)] if missing else []
        if not runs:
            return
        width = self.concurrency if parallel else 1
        if width == 1 and len(runs) == 1:
            self._run_inline(remote, fd, book, runs[0], tracker, stop, strict, on_progress, on_tick, on_write)
            return
        pending = iter(runs)
        inflight: Dict[cf.Future, Run] = {}
        exhausted = False
        next_report = time.monotonic() + TICK
        try:
            while True:
                while not exhausted and len(inflight) < width:
                    stop.check()
                    run = next(pending, None)
                    if run is None:
                        exhausted = True
                        break
                    fut = self.executor.submit(self._fetch, remote, fd, book, run, tracker, stop, strict, on_write)
                    inflight[fut] = run
                if not inflight:
                    break
                done, _ = cf.wait(inflight, timeout=TICK, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    del inflight[fut]
                    fut.result()  # a range's final error
                stop.check()
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
        run: Run,
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
    def _drain(inflight: Dict[cf.Future, Run]) -> None:
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
        run: Run,
        tracker: ProgressTracker,
        stop: StopSignal,
        strict: bool,
        on_write: Optional[Callable[[int, int, memoryview], None]] = None,
    ) -> None:
        """Ranges ``run`` in one request, retried from the last byte written; each marked as it fills."""
        first, last = run
        end = book.stop(last)
        pos = book.offset(first)
        since = pos - book.start
        index = first

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
                    if index == last:
                        if view:  # the reader is told the length: more is a broken reader
                            raise NetworkError(f"{len(view)} bytes more than the {end - book.offset(first)} asked for")
                        return
                    index += 1
                    count = counter(index)

        def attempt() -> None:
            stop.check()
            if pos < end:
                remote.read(sink, pos, end - pos, strict)
            if pos < end:  # a clean end of the answer before its last byte
                raise NetworkError(f"the answer ended at byte {pos}, short of {end}")

        seen = [pos]

        def progressed() -> bool:  # a range that advances keeps its retry budget
            advanced, seen[0] = pos > seen[0], pos
            return advanced

        self.retry.call(attempt, cancel=stop, what=f"bytes {book.offset(first)}-{end - 1}", progressed=progressed)
