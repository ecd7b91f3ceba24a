"""Whole-file digests answer to the call's deadline and cancel token."""

from __future__ import annotations

import hashlib

import pytest

from upclient import errors
from upclient.digest import file_digest
from upclient.source import FileSource
from upclient.transfer import StopSignal

from .conftest import MiB


def test_a_digest_stops_at_the_deadline_of_the_call_that_asked_for_it(make_file):
    path, _ = make_file(64 * MiB)
    signal = StopSignal(timeout=0.0)
    with FileSource(path) as src, signal.bound():
        with pytest.raises(errors.DeadlineExceeded):
            file_digest(src, "md5")


def test_a_digest_stops_when_the_call_is_cancelled(make_file):
    path, _ = make_file(8 * MiB)
    signal = StopSignal()
    signal.set()
    with FileSource(path) as src, signal.bound():
        with pytest.raises(errors.Cancelled) as caught:
            file_digest(src, "md5")
    assert not isinstance(caught.value, errors.DeadlineExceeded)


def test_a_digest_outside_any_call_reads_the_whole_file(make_file):
    path, _ = make_file(3 * MiB + 7)
    with FileSource(path) as src:
        assert file_digest(src, "md5") == hashlib.md5(path.read_bytes()).hexdigest()
