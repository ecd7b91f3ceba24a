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
from typing import Any, Callable, Optional, TypeVar

import tenacity

from .errors import Cancelled, UpClientError

__all__ = ["RetryPolicy"]

log = logging.getLogger("upclient.retry")

T = TypeVar("T")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpClientError) and exc.retryable and not isinstance(exc, Cancelled)


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
        return tenacity.wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)(state)

    def retrying(self, cancel: Any = None, what: str = "request") -> tenacity.Retrying:
        """A tenacity ``Retrying`` for one operation; ``cancel`` is an Event-like."""

        def sleep(seconds: float) -> None:
            if cancel is None:
                import time

                time.sleep(seconds)
            elif cancel.wait(seconds):
                raise cancel.error() if hasattr(cancel, "error") else Cancelled("upload cancelled")

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "retrying %s in %.1fs (try %d of %d failed: %s)",
                what,
                state.next_action.sleep if state.next_action else 0.0,
                state.attempt_number,
                self.attempts,
                exc,
            )

        stop: Any = tenacity.stop_after_attempt(self.attempts)
        if self.deadline is not None:
            stop = stop | tenacity.stop_after_delay(self.deadline)
        return tenacity.Retrying(
            stop=stop,
            wait=self._wait,
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
    ) -> T:
        """Run ``fn`` under this policy; ``before_retry(error)`` runs before each new try."""
        last: Optional[BaseException] = None
        for attempt in self.retrying(cancel, what):
            with attempt:
                try:
                    if last is not None and before_retry is not None:
                        before_retry(last)
                    return fn()
                except BaseException as exc:
                    last = exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
