"""Conformance: the PyPI client ``fastdfs-client`` 1.3.0 against the FastDFS emulator.

That package hard-codes 46-byte IP fields (``IP_ADDRESS_SIZE = 46``), so it
only talks to a tracker configured with ``response_ip_addr_size = IPv6``
(``ip_size=45`` here); against a 6.16 server with default settings every
upload fails on the tracker's 40-byte store reply, and so it does here.
Every upload is checked byte for byte on the server side.

What fails even with 45-byte IP fields is asserted too, failing the way the
package's code makes it fail against a real server (packing ``str`` where
``bytes`` are needed, 105-byte group records where 6.16 sends 113, ...):
the emulator follows the real layout, not the package's assumptions.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

# fastdfs-client 1.3.0 needs Python 3.10; on 3.9 these comparisons are skipped.
pytest.importorskip("fastdfs_client", reason="fastdfs-client needs Python >= 3.10")
import anyio  # noqa: E402 - fastdfs-client's own dependency
from fastdfs_client import FastdfsClient  # noqa: E402
from fastdfs_client.exceptions import ConnectionError as FdfsConnectionError  # noqa: E402
from fastdfs_client.exceptions import DataError, ResponseError  # noqa: E402

from tests.test_fdfs_emulator import (
    SET_META,
    UPLOAD,
    call,
    file_id_of,
    meta_body,
    upload_body,
)
from upclient.testing import FdfsServer

KiB = 1024
FILE_ID_RE = r"group1/M00/00/00/[A-Za-z0-9_-]{27}"

MakeClient = Callable[..., FastdfsClient]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tracker_port(server: FdfsServer) -> int:
    return int(server.tracker.rsplit(":", 1)[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FdfsServer]:
    with FdfsServer(tmp_path / "fdfs", ip_size=45) as srv:
        yield srv


def new_client(server: FdfsServer, timeout: int = 10) -> FastdfsClient:
    trackers = {"host_tuple": ("127.0.0.1",), "port": tracker_port(server), "timeout": timeout, "name": "Tracker Pool"}
    return FastdfsClient(trackers)


def _clients(server: FdfsServer) -> Iterator[MakeClient]:
    made: List[FastdfsClient] = []

    def make(timeout: int = 10) -> FastdfsClient:
        made.append(new_client(server, timeout))
        return made[-1]

    yield make
    for client in made:  # its storage pools go with their StorageClient objects; close the tracker pool
        client.tracker_pool.destroy()


@pytest.fixture
def make_client(server: FdfsServer) -> Iterator[MakeClient]:
    yield from _clients(server)


@pytest.fixture
def server15(tmp_path: Path) -> Iterator[FdfsServer]:
    with FdfsServer(tmp_path / "fdfs15") as srv:  # ip_size=15, the 6.16 default
        yield srv


@pytest.fixture
def make_client15(server15: FdfsServer) -> Iterator[MakeClient]:
    yield from _clients(server15)


@pytest.fixture
def sdk(make_client: MakeClient) -> FastdfsClient:
    return make_client()


# ----------------------------------------------------------------------------- what works (45-byte IPs)


def test_upload_by_filename_and_download(server: FdfsServer, sdk: FastdfsClient, tmp_path: Path) -> None:
    data = os.urandom(64 * KiB + 7)
    source = tmp_path / "photo.jpg"
    source.write_bytes(data)
    result = sdk.upload_by_filename(source)
    file_id = result["Remote file_id"]
    assert re.fullmatch(FILE_ID_RE + r"[0-9]{3}\.jpg", file_id), file_id
    assert result["Group name"] == "group1" and result["Storage IP"] == "127.0.0.1"
    assert server.stored_sha256(file_id) == sha256(data)

    downloaded = sdk.download_to_buffer(file_id)
    assert downloaded["Content"] == data
    assert downloaded["Remote file_id"] == file_id.encode()
    target = tmp_path / "copy.jpg"
    sdk.download_to_file(str(target), file_id)
    assert target.read_bytes() == data


def test_upload_by_buffer_and_range_download(server: FdfsServer, sdk: FastdfsClient) -> None:
    data = os.urandom(1024 * KiB + 3)
    result = sdk.upload_by_buffer(data, "bin")
    file_id = result["Remote file_id"]
    assert re.fullmatch(FILE_ID_RE + r"[0-9]{3}\.bin", file_id), file_id
    assert server.stored_sha256(file_id) == sha256(data)
    assert sdk.download_to_buffer(file_id)["Content"] == data
    assert sdk.download_to_buffer(file_id, offset=1000, down_bytes=5000)["Content"] == data[1000:6000]
    assert sdk.download_to_buffer(file_id, offset=len(data) - 10, down_bytes=100)["Content"] == data[-10:]
    # a double extension, as the package takes it from a file name
    assert sdk.upload_by_buffer(b"archive", "tar.gz")["Remote file_id"].endswith(".tar.gz")


def test_delete(server: FdfsServer, sdk: FastdfsClient) -> None:
    file_id = sdk.upload_by_buffer(b"short-lived", "txt")["Remote file_id"]
    message, deleted, ip = sdk.delete_file(file_id)
    assert (message, deleted, ip) == ("Delete file successed.", file_id.encode(), b"127.0.0.1")
    assert server.files() == []
    with pytest.raises(DataError, match=r"\b2\b"):
        sdk.download_to_buffer(file_id)


def test_appender_uploads(server: FdfsServer, sdk: FastdfsClient, tmp_path: Path) -> None:
    data = os.urandom(200 * KiB)
    by_buffer = sdk.upload_appender_by_buffer(data, "log")["Remote file_id"]
    assert server.is_appender(by_buffer)
    assert server.stored_sha256(by_buffer) == sha256(data)
    source = tmp_path / "journal.log"
    source.write_bytes(data[:1000])
    by_name = sdk.upload_appender_by_filename(str(source))["Remote file_id"]
    assert server.is_appender(by_name) and by_name.endswith(".log")
    assert sdk.download_to_buffer(by_name)["Content"] == data[:1000]


def test_upload_as_url_and_the_async_client(server: FdfsServer, sdk: FastdfsClient) -> None:
    url = sdk.upload_as_url(b"as a url", "txt")
    assert re.fullmatch(r"http://127\.0\.0\.1/" + FILE_ID_RE + r"[0-9]{3}\.txt", url), url
    assert server.path(url.split("/", 3)[3]).read_bytes() == b"as a url"

    async_url = anyio.run(sdk.upload, b"from the async client", ".bin")
    file_id = async_url.split("/", 3)[3]
    assert server.stored_sha256(file_id) == sha256(b"from the async client")
    message, deleted, _ip = anyio.run(sdk.delete, async_url)
    assert message == "Delete file successed." and deleted == file_id.encode()
    assert not server.path(file_id).exists()


def test_get_metadata(server: FdfsServer, sdk: FastdfsClient) -> None:
    file_id = sdk.upload_by_buffer(b"described", "txt")["Remote file_id"]
    with pytest.raises(DataError, match=r"\b2\b"):  # no metadata: the storage answers 2
        sdk.get_meta_data(file_id)
    assert call(server.storage(), SET_META, meta_body(file_id, b"width\x02160\x01author\x02me")) == (0, b"")
    assert server.metadata(file_id) == {"author": "me", "width": "160"}
    # The reply arrives (status 0, the sorted records), but fastdfs-client 1.3.0 splits those bytes with
    # str separators (fdfs_unpack_metadata), so reading metadata that exists raises in the package itself.
    with pytest.raises(TypeError, match="bytes-like"):
        sdk.get_meta_data(file_id)


# ------------------------------------------------------------- the default 15-byte IPs: nothing uploads


def test_default_ip_size_fails_like_a_real_616_server(
    server15: FdfsServer, make_client15: MakeClient, tmp_path: Path
) -> None:
    sdk = make_client15()
    source = tmp_path / "a.bin"
    source.write_bytes(b"payload")
    uploads = [
        lambda: sdk.upload_by_buffer(b"payload", "bin"),
        lambda: sdk.upload_by_filename(source),
        lambda: sdk.upload_appender_by_buffer(b"payload", "bin"),
        lambda: sdk.upload_appender_by_filename(str(source)),
        lambda: sdk.upload_as_url(b"payload", "bin"),
        lambda: anyio.run(sdk.upload, b"payload", ".bin"),
    ]
    for attempt in uploads:
        with pytest.raises(ResponseError, match="expect: 70, actual: 40"):
            attempt()
    assert server15.files() == []

    # downloads and deletes of a file stored otherwise fail on the 39-byte fetch reply
    status, reply = call(server15.storage(), UPLOAD, upload_body(b"stored", b"txt"))
    assert status == 0
    file_id = file_id_of(reply)
    for attempt in (lambda: sdk.download_to_buffer(file_id), lambda: sdk.delete_file(file_id)):
        with pytest.raises(ResponseError, match="actual: 39"):
            attempt()
    assert server15.files() == [file_id]


# -------------------------------------------------------------------- what fails even with 45-byte IPs


def test_set_metadata_and_upload_with_metadata_fail(server: FdfsServer, make_client: MakeClient) -> None:
    file_id = make_client().upload_by_buffer(b"plain", "txt")["Remote file_id"]
    # the flag goes to struct.pack("c") as a str: the header is already sent, the body never is
    with pytest.raises(struct.error):
        make_client().set_meta_data(file_id, {"width": "160"})
    assert server.metadata(file_id) == {}
    # upload with metadata: the file is stored, then setting its metadata fails the same way, no rollback
    with pytest.raises(struct.error):
        make_client().upload_by_buffer(b"with meta", "txt", {"k": "v"})
    assert len(server.files()) == 2
    assert all(server.metadata(fid) == {} for fid in server.files())


def test_appender_changes_and_slaves_fail(server: FdfsServer, make_client: MakeClient, tmp_path: Path) -> None:
    appender = make_client().upload_appender_by_buffer(b"0123456789", "log")["Remote file_id"]
    master = make_client().upload_by_buffer(b"master", "jpg")["Remote file_id"]
    thumb = tmp_path / "thumb.jpg"
    thumb.write_bytes(b"thumb")
    for attempt in (
        lambda c: c.append_by_buffer(b"more", appender),
        lambda c: c.modify_by_buffer(b"XY", appender, 2),
        lambda c: c.truncate_file(3, appender),
        lambda c: c.upload_slave_by_filename(str(thumb), master, "_small"),
    ):
        with pytest.raises(struct.error):  # the remote name packed as str
            attempt(make_client())
    # by buffer, the package sends a plain upload body under the slave command: the storage says 22
    with pytest.raises(DataError, match=r"\b22\b"):
        make_client().upload_slave_by_buffer(b"thumb", master, None, "jpg")
    assert server.path(appender).read_bytes() == b"0123456789"
    assert sorted(server.files()) == sorted([appender, master])
    with pytest.raises(NotImplementedError):  # upload_by_file stops at its unfinished sendfile
        make_client().upload_by_file(str(thumb))


def test_group_and_storage_listings_fail(server: FdfsServer, make_client: MakeClient) -> None:
    # 6.16 sends 113-byte group records (reserved_mb, readable and writable counts); the package expects 105
    with pytest.raises(ResponseError, match="mismatch"):
        make_client().list_all_groups()
    with pytest.raises(struct.error):  # the group name packed as str
        make_client().list_one_group("group1")
    with pytest.raises(struct.error):
        make_client().list_servers("group1")


def test_a_packing_error_leaves_the_pooled_tracker_connection_out_of_step(
    server: FdfsServer, make_client: MakeClient
) -> None:
    sdk = make_client(timeout=1)
    with pytest.raises(struct.error):
        sdk.list_one_group("group1")  # header (16-byte body announced) sent, body not
    # the tracker waits for the announced body; the next request on the pooled connection times out...
    with pytest.raises(FdfsConnectionError, match="timed out"):
        sdk.upload_by_buffer(b"lost", "txt")
    # ...and the one after gets the answer to a request made of stray header bytes
    with pytest.raises(DataError, match=r"\b2\b"):
        sdk.upload_by_buffer(b"lost", "txt")
    assert server.files() == []
    # a fresh client is fine
    assert make_client().upload_by_buffer(b"fine", "txt")["Remote file_id"] in server.files()
