"""The transfer engine: one thread-pool part uploader for every backend.

:meth:`TransferEngine.run` drives an :class:`~upclient.transfer.UploadSession`:
it keeps at most ``concurrency`` parts in flight (one, in order, when the
session says its parts must go in order), so memory stays near
``concurrency x part_size`` whatever the file size; bodies are read in the
worker as they are sent.  Each part is retried alone under the shared retry
policy, after the session has re-synchronised with the server.  The state is
saved after each finished part.  The calling thread waits in short slices, so
it reports progress and sees Ctrl-C at once; on any failure or cancellation
the parts in flight stop within one block, nothing is left running, and the
resume point keeps every finished part.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from ..errors import OffsetConflict, UpClientError
from ..progress import Progress, ProgressTracker
from ..retry import RetryPolicy
from ..source import Source, StreamSource
from .deadline import StopSignal
from .hints import Hint
from .parts import Part, PartIO
from .session import UploadSession

__all__ = ["TransferEngine", "stream_parts"]

log = logging.getLogger("upclient.engine")

PROGRESS_INTERVAL = 0.2


def stream_parts(source: StreamSource, part_size: int, stop: Optional[StopSignal] = None) -> Iterator[Part]:
    """Parts of a non-seekable stream, each holding its bytes, the last one marked; under
    ``stop``, a stream that stops giving bytes holds the call no longer than the signal allows."""
    for index, (offset, data, last) in enumerate(source.chunks(part_size, stop)):
        yield Part(index=index, offset=offset, size=len(data), data=data, last=last)


class TransferEngine:
    """Schedules the parts of uploads on one shared executor."""

    def __init__(self, executor: cf.Executor, concurrency: int, retry: RetryPolicy) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self.retry = retry

    def run(
        self,
        session: UploadSession,
        source: Source,
        parts: Iterable[Part],
        *,
        tracker: ProgressTracker,
        stop: StopSignal,
        on_progress: Optional[Callable[[Progress], Any]] = None,
        on_part_done: Optional[Callable[[Part], None]] = None,
        parallel: Optional[bool] = None,
    ) -> None:
        """Send ``parts`` through ``session``; returns when all are on the server.

        ``parallel`` overrides the session's own answer (parts a finish asked
        for may have to go in order).
        """
        if isinstance(parts, list) and len(parts) == 1:
            self._run_inline(session, source, parts[0], tracker, stop, on_progress, on_part_done)
            return
        if parallel is None:
            parallel = session.parallel
        width = self.concurrency if parallel else 1
        pending = iter(parts)
        inflight: Dict[cf.Future, Part] = {}
        exhausted = False
        next_report = time.monotonic() + PROGRESS_INTERVAL
        try:
            while True:
                while not exhausted and len(inflight) < width:
                    if stop.is_set():
                        raise stop.error()
                    part = next(pending, None)  # a stream is read here, in order
                    if part is None:
                        exhausted = True
                        if tracker.total is None and source.size is not None:
                            tracker.set_total(source.size)
                        break
                    try:
                        fut = self.executor.submit(self._send, session, source, part, tracker, stop)
                    except RuntimeError:  # close() shut the executor down while the stream was read
                        if stop.is_set():
                            raise stop.error() from None
                        raise
                    inflight[fut] = part
                if not inflight:
                    break
                done, _ = cf.wait(inflight, timeout=PROGRESS_INTERVAL, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    part = inflight.pop(fut)
                    fut.result()  # raises the part's final error
                    if on_part_done is not None:
                        on_part_done(part)
                if stop.is_set():
                    raise stop.error()
                if on_progress is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + PROGRESS_INTERVAL
                    on_progress(tracker.snapshot())
        except BaseException:
            stop.set()
            self._drain(inflight, on_part_done)
            raise
        if on_progress is not None:
            on_progress(tracker.snapshot())

    def _run_inline(
        self,
        session: UploadSession,
        source: Source,
        part: Part,
        tracker: ProgressTracker,
        stop: StopSignal,
        on_progress: Optional[Callable[[Progress], Any]],
        on_part_done: Optional[Callable[[Part], None]],
    ) -> None:
        """A lone part runs in the caller's thread: no hand-over to a worker
        and back, which is most of the cost of a small file."""
        if on_progress is not None:
            next_report = [time.monotonic() + PROGRESS_INTERVAL]

            def report() -> None:
                if time.monotonic() >= next_report[0]:
                    next_report[0] = time.monotonic() + PROGRESS_INTERVAL
                    on_progress(tracker.snapshot())

            tracker.on_block = report
        try:
            self._send(session, source, part, tracker, stop)
        finally:
            tracker.on_block = None
        if on_part_done is not None:
            on_part_done(part)
        if on_progress is not None:
            on_progress(tracker.snapshot())

    def _drain(self, inflight: Dict[cf.Future, Part], on_part_done: Optional[Callable[[Part], None]]) -> None:
        """After a failure: let the parts in flight stop, keep the ones that made it."""
        while inflight:
            try:
                done, _ = cf.wait(inflight, timeout=PROGRESS_INTERVAL)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, threads end on their own
                return
            for fut in done:
                part = inflight.pop(fut)
                if fut.exception() is None and on_part_done is not None:
                    try:
                        on_part_done(part)
                    except Exception as exc:  # already failing: a store error must not mask it
                        log.warning("could not record part %d: %s", part.index, exc)

    def _send(
        self,
        session: UploadSession,
        source: Source,
        part: Part,
        tracker: ProgressTracker,
        stop: StopSignal,
    ) -> None:
        def attempt() -> None:
            if stop.is_set():
                raise stop.error()
            # the bytes of this part the server already holds count as done from the start
            io = PartIO(source, part, tracker.reader(part.index, base=session.confirmed(part)), stop)
            try:
                hint = session.send_part(part, io)
            except BaseException:
                tracker.drop_attempt(part.index)
                raise
            if hint is not None:
                tracker.drop_attempt(part.index)
                raise _Steered(hint)

        def recover(error: BaseException) -> None:
            session.recover(part, error.hint if isinstance(error, _Steered) else error)

        seen = [session.confirmed(part)]

        def progressed() -> bool:
            now = session.confirmed(part)
            advanced, seen[0] = now > seen[0], max(now, seen[0])
            return advanced

        try:  # the policy binds ``stop`` to this thread for every try
            self.retry.call(attempt, cancel=stop, what=f"part {part.index}", before_retry=recover,
                            progressed=progressed)
        except _Steered as exc:  # the server kept steering and the budget ran out
            raise OffsetConflict(f"part {part.index} never settled with the server: {exc.hint.reason}") from exc
        tracker.finish_part(part.index, part.size)


class _Steered(UpClientError):
    """Carries a session's hint through the retry policy to :meth:`UploadSession.recover`."""

    retryable = True
    #: A resend the server asked for is routine: logged at DEBUG, not as a failure.
    steered = True

    def __init__(self, hint: Hint) -> None:
        super().__init__(f"the server asked to {type(hint).__name__.lower()}: {hint.reason}", retry_after=0.0)
        self.hint = hint
