"""StopSignal: one deadline and cancel token per call, and how it reaches sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from upclient import errors
from upclient.transfer import StopSignal
from upclient.transfer import deadline as deadline_module


def test_setting_a_parent_fires_its_children_and_shuts_their_sockets_at_once():
    root = StopSignal()
    child = StopSignal(None, root)
    a, b = socket.socketpair()
    try:
        child.track(a)
        root.set()
        assert child.is_set() and not child.timed_out
        assert a.recv(1) == b""  # shut down: the read returns at once
        assert isinstance(child.error(), errors.Cancelled)
    finally:
        a.close()
        b.close()


def test_a_parents_deadline_is_the_childs_and_says_timed_out():
    parent = StopSignal(timeout=0.05)
    child = StopSignal(parent)
    assert child.deadline == parent.deadline
    time.sleep(0.08)
    assert parent.is_set() and child.is_set()
    assert isinstance(child.error(), errors.DeadlineExceeded) and isinstance(child.error(), TimeoutError)


def test_a_foreign_flag_is_looked_at_and_a_plain_signal_needs_no_watchdog():
    user = threading.Event()
    watched = StopSignal(user, StopSignal())
    plain = StopSignal(None, StopSignal())
    assert watched._needs_poll and not plain._needs_poll
    assert not watched.is_set()
    user.set()
    assert watched.is_set() and not plain.is_set()


def test_the_watchdog_shuts_the_sockets_of_a_signal_whose_user_flag_was_set():
    user = threading.Event()
    signal = StopSignal(user)
    a, b = socket.socketpair()
    try:
        signal.track(a)
        a.settimeout(5)
        threading.Timer(0.1, user.set).start()
        started = time.monotonic()
        assert a.recv(1) == b""
        assert time.monotonic() - started < 2
    finally:
        signal.untrack(a)
        a.close()
        b.close()
    deadline_module.settle(signal)


def test_wait_wakes_at_the_set_and_returns_false_at_its_own_timeout():
    signal = StopSignal()
    assert signal.wait(0.01) is False
    threading.Timer(0.05, signal.set).start()
    assert signal.wait(5) is True


def test_bound_makes_it_the_threads_signal_for_the_block():
    signal = StopSignal()
    assert deadline_module.current() is None
    with signal.bound():
        assert deadline_module.current() is signal
        with pytest.raises(errors.Cancelled):
            signal.set()
            deadline_module.current().check()
    assert deadline_module.current() is None
