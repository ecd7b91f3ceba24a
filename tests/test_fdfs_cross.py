"""upclient and the PyPI ``fastdfs-client`` 1.3.0 on one emulator, both ways.

The package only works with 45-byte IP fields, so the emulator runs that
way here; what one client stores, the other reads back byte for byte, and the
server's own digest agrees.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import pytest

# fastdfs-client 1.3.0 needs Python 3.10; on 3.9 these comparisons are skipped.
pytest.importorskip("fastdfs_client", reason="fastdfs-client needs Python >= 3.10")
from fastdfs_client import FastdfsClient  # noqa: E402

import upclient
from upclient.testing import FdfsServer

KiB = 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FdfsServer]:
    with FdfsServer(tmp_path / "fdfs", ip_size=45) as srv:
        yield srv


@pytest.fixture
def sdk(server: FdfsServer) -> Iterator[FastdfsClient]:
    port = int(server.tracker.rsplit(":", 1)[1])
    client = FastdfsClient({"host_tuple": ("127.0.0.1",), "port": port, "timeout": 10, "name": "Tracker Pool"})
    yield client
    client.tracker_pool.destroy()


@pytest.fixture
def ours(server: FdfsServer) -> Iterator[upclient.Client]:
    with upclient.Client(server.url, store=None, part_size=64 * KiB) as client:
        yield client


def test_the_sdk_uploads_and_upclient_reads(server, sdk, ours, tmp_path):
    data = os.urandom(300 * KiB + 3)
    source = tmp_path / "sdk.bin"
    source.write_bytes(data)
    fid = sdk.upload_by_filename(source)["Remote file_id"]
    assert server.stored_sha256(fid) == sha256(data)
    assert ours.get(fid) == data
    assert ours.get(fid, offset=1000, length=50) == data[1000:1050]
    info = ours.info(fid)
    assert info.size == len(data) and info.extra["crc32"] == __import__("zlib").crc32(data)
    ours.set_metadata(fid, {"by": "upclient"})  # what the package cannot do itself
    assert server.metadata(fid) == {"by": "upclient"}
    ours.delete(fid)
    assert fid not in server.files()


def test_upclient_uploads_and_the_sdk_reads(server, sdk, ours, tmp_path):
    data = os.urandom(200 * KiB + 11)
    plain = ours.put(data, ext="bin")
    resumable = ours.put(data, ext="bin", resumable=True)  # an appender file, grown 64 KiB at a time
    for r in (plain, resumable):
        assert server.stored_sha256(r.id) == sha256(data)
        assert sdk.download_to_buffer(r.id)["Content"] == data
        assert sdk.download_to_buffer(r.id, offset=7, down_bytes=100)["Content"] == data[7:107]
    sdk.delete_file(plain.id)
    assert not ours.exists(plain.id)


def test_an_sdk_appender_file_is_grown_by_upclient(server, sdk, ours):
    fid = sdk.upload_appender_by_buffer(b"started by the sdk; ", "log")["Remote file_id"]
    ours.append(fid, b"continued by upclient")
    ours.modify(fid, 0, b"STARTED")
    expected = b"STARTED by the sdk; continued by upclient"
    assert sdk.download_to_buffer(fid)["Content"] == expected
    assert server.stored_sha256(fid) == sha256(expected)
    normal = ours.regenerate(fid)
    assert sdk.download_to_buffer(normal)["Content"] == expected
