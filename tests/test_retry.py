"""The shared retry policy: what is retried, how long it waits, and cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from upclient import RetryPolicy, errors


def flaky(*errs):
    calls = []

    def fn():
        calls.append(time.monotonic())
        if len(calls) <= len(errs):
            raise errs[len(calls) - 1]
        return "ok"

    return fn, calls


@pytest.mark.parametrize(
    "error",
    [
        errors.NetworkError("reset"),
        errors.Timeout("slow"),
        errors.ServiceError("boom", status=502),
        errors.RateLimited("slow down", status=429),
        errors.ChecksumMismatch("bad", status=460),
    ],
)
def test_transient_errors_are_retried(error):
    fn, calls = flaky(error, error)
    assert RetryPolicy(attempts=3, backoff=0).call(fn) == "ok"
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error",
    [errors.RequestRejected("no", status=400), errors.AuthError("no", status=401),
     errors.NotFound("no", status=404), errors.Cancelled("stop"), ValueError("bug")],
)
def test_other_errors_are_not_retried(error):
    fn, calls = flaky(error)
    with pytest.raises(type(error)):
        RetryPolicy(attempts=5, backoff=0).call(fn)
    assert len(calls) == 1


def test_gives_up_after_the_attempts_with_the_last_error():
    fn, calls = flaky(*[errors.NetworkError(f"n{i}") for i in range(5)])
    with pytest.raises(errors.NetworkError, match="n2"):
        RetryPolicy(attempts=3, backoff=0).call(fn)


def test_retry_after_wins_over_backoff():
    fn, calls = flaky(errors.ServiceError("busy", status=503, retry_after=0.3))
    RetryPolicy(attempts=2, backoff=0).call(fn)
    assert calls[1] - calls[0] >= 0.28


def test_backoff_is_capped():
    policy = RetryPolicy(attempts=4, backoff=10, max_backoff=0.05)
    fn, calls = flaky(*[errors.NetworkError("x")] * 3)
    started = time.monotonic()
    policy.call(fn)
    assert time.monotonic() - started < 1


def test_cancel_wakes_a_backoff_at_once():
    cancel = threading.Event()
    fn, calls = flaky(errors.ServiceError("busy", status=503, retry_after=30))
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(errors.Cancelled):
        RetryPolicy(attempts=3).call(fn, cancel=cancel)
    assert time.monotonic() - started < 5


def test_before_retry_runs_before_each_new_try():
    seen = []
    fn, calls = flaky(errors.OffsetConflict("409"), errors.OffsetConflict("409"))
    RetryPolicy(attempts=3, backoff=0).call(fn, before_retry=lambda e: seen.append(type(e).__name__))
    assert seen == ["OffsetConflict", "OffsetConflict"]


def test_retries_are_logged(caplog):
    fn, _ = flaky(errors.NetworkError("reset"))
    RetryPolicy(attempts=2, backoff=0).call(fn, what="part 3")
    assert "retrying part 3" in caplog.text


def test_policy_is_an_immutable_value():
    p = RetryPolicy()
    with pytest.raises(AttributeError):
        p.attempts = 9  # type: ignore[misc]
    assert RetryPolicy.never().attempts == 1
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_tries_that_advance_do_not_use_up_the_budget():
    fn, calls = flaky(*[errors.NetworkError("reset")] * 10)
    assert RetryPolicy(attempts=3, backoff=0).call(fn, progressed=lambda: True) == "ok"
    assert len(calls) == 11


def test_tries_that_stall_use_up_the_budget_even_after_progress():
    advancing = iter([True, True, False, False, False, False])
    fn, calls = flaky(*[errors.NetworkError("reset")] * 10)
    with pytest.raises(errors.NetworkError):
        RetryPolicy(attempts=3, backoff=0).call(fn, progressed=lambda: next(advancing))
    assert len(calls) == 5  # two advancing failures, then three stalled ones
