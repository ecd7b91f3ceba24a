"""The one retry policy every backend shares, as an immutable value.

Exponential backoff with full jitter and a cap; a server's ``Retry-After``
wins over the backoff; only errors marked ``retryable`` (connection errors,
timeouts, 5xx, 429, a checksum mismatch, an offset conflict) are retried,
never another 4xx and never a cancellation.  The wait between tries wakes up
at once when the transfer is cancelled.  Each retry is logged at WARNING on
``upclient.retry``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from .errors import Cancelled, UpClientError

if TYPE_CHECKING:  # imported by the first retry: a run that retries nothing never loads it
    import tenacity

__all__ = ["RetryPolicy"]

log = logging.getLogger("upclient.retry")

T = TypeVar("T")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpClientError) and exc.retryable and not isinstance(exc, Cancelled)


class _StalledTries:
    """Counts failed tries in a row that made no progress (all of them, without a probe)."""

    def __init__(self, progressed: Optional[Callable[[], bool]]) -> None:
        self.progressed = progressed
        self.count = 0

    def stop_after(self, attempts: int) -> Callable[[tenacity.RetryCallState], bool]:
        def stop(state: tenacity.RetryCallState) -> bool:
            if self.progressed is not None and self.progressed():
                self.count = 0  # the budget starts over
            else:
                self.count += 1
            return self.count >= attempts

        return stop

    def as_state(self, state: tenacity.RetryCallState) -> tenacity.RetryCallState:
        """The retry state with the attempt number the backoff should grow from."""
        if self.progressed is not None:
            state.attempt_number = max(1, self.count)
        return state


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request or part is tried again.

    ``attempts`` counts every try (1 = never retry).  Waits grow as
    ``backoff * 2**n`` with full jitter, at most ``max_backoff`` seconds; a
    ``Retry-After`` from the server is honoured up to ``max_retry_after``.
    ``deadline``, if set, stops retrying once that many seconds have passed
    since the first try.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    deadline: Optional[float] = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff times cannot be negative")

    @classmethod
    def never(cls) -> "RetryPolicy":
        """A policy that tries once."""
        return cls(attempts=1)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return float(min(max(after, 0.0), self.max_retry_after))
        import tenacity

        return tenacity.wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)(state)

    def retrying(
        self,
        cancel: Any = None,
        what: str = "request",
        progressed: Optional[Callable[[], bool]] = None,
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` for one operation; ``cancel`` is an Event-like.

        ``progressed()``, asked after each failed try, says whether the server
        confirmed more of the work since it was last asked; a try that made
        progress does not use up the budget, and the backoff starts over, so
        a long transfer over a flaky link is never given up while it advances.
        """
        import tenacity

        stalled = _StalledTries(progressed)

        def sleep(seconds: float) -> None:
            if cancel is None:
                import time

                time.sleep(seconds)
            elif cancel.wait(seconds):
                raise cancel.error() if hasattr(cancel, "error") else Cancelled("upload cancelled")

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.log(
                logging.DEBUG if getattr(exc, "steered", False) else logging.WARNING,
                "retrying %s in %.1fs (try %d of %d failed: %s)",
                what,
                state.next_action.sleep if state.next_action else 0.0,
                stalled.count,
                self.attempts,
                exc,
            )

        stop: Any = stalled.stop_after(self.attempts)
        if self.deadline is not None:
            stop = stop | tenacity.stop_after_delay(self.deadline)
        return tenacity.Retrying(
            stop=stop,
            wait=lambda state: self._wait(stalled.as_state(state)),
            retry=tenacity.retry_if_exception(_is_retryable),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def call(
        self,
        fn: Callable[[], T],
        *,
        cancel: Any = None,
        what: str = "request",
        before_retry: Optional[Callable[[BaseException], None]] = None,
        progressed: Optional[Callable[[], bool]] = None,
    ) -> T:
        """Run ``fn`` under this policy; ``before_retry(error)`` runs before each new try.

        The first try runs bare; the tenacity machinery is built only once it
        has failed in a way worth retrying, so the common case costs nothing.
        A ``cancel`` that can be bound to a thread (a
        :class:`~upclient.transfer.StopSignal`) is bound for the whole call, so
        every request sent meanwhile is aborted when it fires.
        """
        bound = getattr(cancel, "bound", None)
        if bound is None:
            return self._call(fn, cancel, what, before_retry, progressed)
        with bound():
            return self._call(fn, cancel, what, before_retry, progressed)

    def _call(
        self,
        fn: Callable[[], T],
        cancel: Any,
        what: str,
        before_retry: Optional[Callable[[BaseException], None]],
        progressed: Optional[Callable[[], bool]],
    ) -> T:
        def stopped() -> Optional[BaseException]:
            """The signal's own error once it fired: a request it aborted is not a network error."""
            if cancel is not None and hasattr(cancel, "error") and cancel.is_set():
                return cancel.error()  # type: ignore[no-any-return]
            return None

        try:
            return fn()
        except BaseException as exc:
            why = stopped()
            if why is not None:
                raise why from exc
            if self.attempts == 1 or not _is_retryable(exc):
                raise
            failure = exc
        first: Optional[BaseException] = failure
        last: BaseException = failure
        for attempt in self.retrying(cancel, what, progressed):
            with attempt:
                if first is not None:  # the failure above is the first try
                    err, first = first, None
                    raise err
                try:
                    if before_retry is not None:
                        before_retry(last)
                    return fn()
                except BaseException as exc:
                    why = stopped()
                    if why is not None:
                        raise why from exc
                    last = exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
