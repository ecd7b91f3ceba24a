"""abort(path) gives up only the interrupted upload of that file to this client's own server."""

from __future__ import annotations

import threading

import pytest

import upclient
from upclient import errors
from upclient.testing import ResumableUploadServer

from .conftest import MiB
from .contract import HookedFileSource


def interrupt(client: upclient.Client, path) -> None:
    """Start a put of ``path`` and cancel it once a third is read."""
    cancel = threading.Event()

    def hook(offset: int) -> None:
        if offset >= 2 * MiB:
            cancel.set()

    with HookedFileSource(path, hook) as source, pytest.raises(errors.Cancelled):
        client.put(source, cancel=cancel)


def test_abort_of_a_file_leaves_the_same_file_s_upload_to_another_server(tmp_path, make_file):
    path, digest = make_file(6 * MiB)
    store = upclient.FileStore(tmp_path / "resume")
    with ResumableUploadServer(tmp_path / "a") as a, ResumableUploadServer(tmp_path / "b") as b:
        settings = dict(store=store, part_size=MiB, concurrency=1, concat=False)
        with upclient.Client("tus+" + a.url, **settings) as to_a, upclient.Client("tus+" + b.url, **settings) as to_b:
            interrupt(to_a, path)
            assert to_b.abort(path) == 0          # nothing of B's: A's upload is not touched
            result = to_a.put(path)
            assert result.resumed and a.stored_sha256(result.id) == digest
            interrupt(to_b, path)
            assert to_b.abort(path) == 1
            assert list(store.keys()) == []
