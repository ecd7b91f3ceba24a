"""A stream that goes on past its announced ``size=`` never ends as a stored, cut file.

Before, tus, UPYUN and FastDFS silently uploaded the first ``size`` bytes and
reported a success.
"""

from __future__ import annotations

import os
import threading

import pytest

import upclient
from upclient import errors
from upclient.testing import FdfsServer, UpyunServer

from .conftest import MiB


def pipe_of(data: bytes):
    """A real pipe holding ``data``, its writer closed once all is written."""
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=write, daemon=True).start()
    return os.fdopen(r, "rb")


def test_tus_refuses_a_stream_longer_than_announced(node_server):
    data = os.urandom(3 * MiB + 10)
    with upclient.Client("tus+" + node_server.url, store=None, part_size=MiB) as client, pipe_of(data) as stream:
        with pytest.raises(errors.SourceChanged, match="longer"):
            client.put(stream, size=3 * MiB)


def test_upyun_refuses_a_stream_longer_than_announced(tmp_path):
    data = os.urandom(3 * MiB + 10)
    with UpyunServer(tmp_path / "u", service="svc", operator="op", password="pw") as server:
        with upclient.Client("upyun://op@svc", endpoint=server.endpoint, password="pw", store=None,
                             part_size=MiB) as client, pipe_of(data) as stream:
            with pytest.raises(errors.SourceChanged, match="longer"):
                client.put(stream, key="cut.bin", size=3 * MiB)
        assert not server.exists("cut.bin")


def test_fdfs_refuses_a_stream_longer_than_announced(tmp_path):
    data = os.urandom(3 * MiB + 10)
    with FdfsServer(tmp_path / "f") as server:
        with upclient.Client(server.url, store=None, part_size=MiB) as client, pipe_of(data) as stream:
            with pytest.raises(errors.SourceChanged, match="longer"):
                client.put(stream, size=3 * MiB)
        assert not [f for f in server.files() if server.stored_sha256(f)]  # nothing finished was kept
