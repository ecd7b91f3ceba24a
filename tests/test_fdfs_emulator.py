"""The FastDFS emulator (upclient.testing.fdfs) on the wire, with raw sockets.

Every expectation here is written from the protocol facts (FastDFS 6.16.1:
the facts page and its sources), not from the emulator's code: the requests
are packed by hand and the replies taken apart by hand, so the emulator is
checked independently of both its own codec and upclient's client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

from tests.conftest import emulator_process
from upclient.testing import FdfsServer

HEADER = struct.Struct(">QBB")
TIMEOUT = 5.0
KiB = 1024

# commands
QUIT, ACTIVE_TEST = 82, 111
LIST_ONE_GROUP, LIST_ALL_GROUPS, LIST_STORAGE = 90, 91, 92
STORE_ANY, FETCH_ONE, QUERY_UPDATE, STORE_GROUP, FETCH_ALL = 101, 102, 103, 104, 105
STORE_ALL, STORE_ALL_GROUP = 106, 107
UPLOAD, DELETE, SET_META, DOWNLOAD, GET_META, UPLOAD_SLAVE, QUERY_INFO = 11, 12, 13, 14, 15, 21, 22
UPLOAD_APPENDER, APPEND, MODIFY, TRUNCATE, REGENERATE = 23, 24, 34, 36, 38
ENOENT, EEXIST, EINVAL, ENOSPC = 2, 17, 22, 28

NAME_RE = r"M00/[0-9A-F]{2}/[0-9A-F]{2}/[A-Za-z0-9_-]{27}"


# ----------------------------------------------------------------------------------------- helpers


class Conn:
    """One TCP connection speaking the FastDFS framing."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, cmd: int, body: bytes = b"", status: int = 0, length: Optional[int] = None) -> None:
        size = len(body) if length is None else length
        self.sock.sendall(HEADER.pack(size, cmd, status) + body)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self) -> Tuple[int, bytes]:
        length, cmd, status = HEADER.unpack(self.recv_exact(HEADER.size))
        assert cmd == 100
        return status, self.recv_exact(length)

    def call(self, cmd: int, body: bytes = b"", status: int = 0) -> Tuple[int, bytes]:
        self.send(cmd, body, status)
        return self.recv()

    def is_closed(self, wait: float = 3.0) -> bool:
        """True when the server closed the connection (EOF or reset) within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)


def call(address: str, cmd: int, body: bytes = b"", status: int = 0) -> Tuple[int, bytes]:
    with Conn(address) as conn:
        return conn.call(cmd, body, status)


def g16(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


def split_id(file_id: str) -> Tuple[str, bytes]:
    group, remote = file_id.split("/", 1)
    return group, remote.encode()


def upload_body(data: bytes, ext: bytes = b"", spi: int = 0) -> bytes:
    return struct.pack(">BQ6s", spi, len(data), ext) + data


def file_id_of(reply: bytes) -> str:
    return reply[:16].rstrip(b"\0").decode() + "/" + reply[16:].decode()


def upload(server: FdfsServer, data: bytes, ext: str = "", cmd: int = UPLOAD, group: str = "group1") -> str:
    status, body = call(server.storage(group), cmd, upload_body(data, ext.encode()))
    assert status == 0
    return file_id_of(body)


def download_body(file_id: str, offset: int = 0, count: int = 0) -> bytes:
    group, remote = split_id(file_id)
    return struct.pack(">qq", offset, count) + g16(group) + remote


def meta_body(file_id: str, meta: bytes, flag: bytes = b"O") -> bytes:
    group, remote = split_id(file_id)
    return struct.pack(">QQ", len(remote), len(meta)) + flag + g16(group) + remote + meta


def append_body(file_id: str, data: bytes) -> bytes:
    _, remote = split_id(file_id)
    return struct.pack(">QQ", len(remote), len(data)) + remote + data


def modify_body(file_id: str, offset: int, data: bytes) -> bytes:
    _, remote = split_id(file_id)
    return struct.pack(">QQQ", len(remote), offset, len(data)) + remote + data


def truncate_body(file_id: str, size: int) -> bytes:
    _, remote = split_id(file_id)
    return struct.pack(">QQ", len(remote), size) + remote


def slave_body(master_id: str, prefix: bytes, ext: bytes, data: bytes) -> bytes:
    _, master = split_id(master_id)
    return struct.pack(">QQ16s6s", len(master), len(data), prefix, ext) + master + data


def named(file_id: str) -> bytes:
    """group16 + remote."""
    group, remote = split_id(file_id)
    return g16(group) + remote


class Decoded(NamedTuple):
    ip: str
    timestamp: int
    size_field: int
    crc32: int


def decode(file_id: str) -> Decoded:
    """The 27 characters after ``XX/YY/``: URL-safe base64 of ip4 + time4 + size8 + crc4."""
    base = file_id.rsplit("/", 1)[1][:27]
    raw = base64.urlsafe_b64decode(base + "=")
    assert len(raw) == 20
    timestamp, size_field, crc = struct.unpack(">IQI", raw[4:])
    return Decoded(socket.inet_ntoa(raw[:4]), timestamp, size_field, crc)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_query_store(body: bytes, ip_size: int) -> Tuple[str, str, int, int]:
    group = body[:16].rstrip(b"\0").decode()
    ip = body[16 : 16 + ip_size].rstrip(b"\0").decode()
    port, spi = struct.unpack(">QB", body[16 + ip_size :])
    return group, ip, port, spi


def storage_port(server: FdfsServer, group: str = "group1") -> int:
    return int(server.storage(group).rsplit(":", 1)[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FdfsServer]:
    with FdfsServer(tmp_path / "fdfs") as srv:
        yield srv


@pytest.fixture
def server45(tmp_path: Path) -> Iterator[FdfsServer]:
    with FdfsServer(tmp_path / "fdfs45", ip_size=45) as srv:
        yield srv


# ---------------------------------------------------------------------------------- upload, download


def test_upload_download_range_and_clamp(server: FdfsServer) -> None:
    data = os.urandom(700 * KiB + 13)  # several 256 KiB blocks
    with Conn(server.storage()) as conn:
        status, reply = conn.call(UPLOAD, upload_body(data, b"bin"))
        assert status == 0
        assert reply[:16] == g16("group1")
        file_id = file_id_of(reply)
        assert re.fullmatch(r"group1/" + NAME_RE + r"[0-9]{3}\.bin", file_id), file_id
        assert server.stored_sha256(file_id) == sha256(data)
        assert server.files() == [file_id]

        # the same connection serves many requests
        assert conn.call(DOWNLOAD, download_body(file_id)) == (0, data)
        assert conn.call(DOWNLOAD, download_body(file_id, 1000, 5000)) == (0, data[1000:6000])
        assert conn.call(DOWNLOAD, download_body(file_id, len(data) - 10, 10**9)) == (0, data[-10:])  # clamped
        assert conn.call(DOWNLOAD, download_body(file_id, len(data) - 1, 0)) == (0, data[-1:])
        # offset >= size: 22, and the storage closes the connection
        assert conn.call(DOWNLOAD, download_body(file_id, len(data), 0)) == (EINVAL, b"")
        assert conn.is_closed()
    with Conn(server.storage()) as conn:
        assert conn.call(DOWNLOAD, download_body(file_id, -1, 0)) == (EINVAL, b"")
        assert conn.is_closed()


def test_file_names(server: FdfsServer) -> None:
    before = int(time.time())
    data = b"some bytes"
    file_id = upload(server, data, "jpg")
    without_ext = upload(server, data)
    long_ext = upload(server, data, "tar.gz")
    after = int(time.time())

    # 27 characters, then the extension padded with random digits to 6, or 7 digits without one
    assert re.fullmatch(r"group1/M00/00/00/[A-Za-z0-9_-]{27}[0-9]{3}\.jpg", file_id)
    assert re.fullmatch(r"group1/M00/00/00/[A-Za-z0-9_-]{27}[0-9]{7}", without_ext)
    assert re.fullmatch(r"group1/M00/00/00/[A-Za-z0-9_-]{27}\.tar\.gz", long_ext)
    for fid in (file_id, without_ext, long_ext):
        assert len(split_id(fid)[1]) == 44  # every normal name has the same length

    d = decode(file_id)
    assert d.ip == "127.0.0.1"
    assert before - 1 <= d.timestamp <= after + 1
    assert d.size_field >> 63 == 1  # high word: random | 0x80000000
    assert (d.size_field >> 32) & 0x7F800000 == 0  # only 23 random bits
    assert d.size_field & 0xFFFFFFFF == len(data)
    assert d.crc32 == zlib.crc32(data)
    assert not d.size_field & (1 << 58)

    appender = upload(server, data, "log", cmd=UPLOAD_APPENDER)
    a = decode(appender)
    assert a.size_field & (1 << 58)  # the appender flag
    assert a.size_field & 0xFFFFFFFF == 0  # and no size
    assert a.size_field >> 63 == 1
    assert a.crc32 == zlib.crc32(data)
    assert server.is_appender(appender) and not server.is_appender(file_id)

    # where the bytes are, the way the real storage lays them out
    assert server.path(file_id) == server.root / "group1" / "data" / "00" / "00" / file_id.rsplit("/", 1)[1]
    assert server.path(file_id).read_bytes() == data


def test_zero_byte_file_uploads_but_does_not_download(server: FdfsServer) -> None:
    file_id = upload(server, b"", "txt")
    assert decode(file_id).size_field & 0xFFFFFFFF == 0
    assert server.path(file_id).stat().st_size == 0
    with Conn(server.storage()) as conn:
        assert conn.call(DOWNLOAD, download_body(file_id)) == (EINVAL, b"")  # offset 0 >= size 0
        assert conn.is_closed()


def test_upload_checks(server: FdfsServer) -> None:
    storage = server.storage()
    for ext in (b"b@d", b"a b", b"x/y"):
        with Conn(storage) as conn:
            assert conn.call(UPLOAD, upload_body(b"data", ext)) == (EINVAL, b"")
            assert conn.is_closed()
    with Conn(storage) as conn:  # the size must match the body
        conn.send(UPLOAD, struct.pack(">BQ6s", 0, 10, b"") + b"12345")
        assert conn.recv() == (EINVAL, b"")
        assert conn.is_closed()
    with Conn(storage) as conn:  # store path 1 does not exist; 255 (-1) lets the storage choose
        assert conn.call(UPLOAD, upload_body(b"data", spi=1)) == (EINVAL, b"")
    assert call(storage, UPLOAD, upload_body(b"data", spi=255))[0] == 0
    assert call(storage, UPLOAD, upload_body(b"x", b"abcdef"))[0] == 0  # six bytes, no NUL
    assert len(server.files()) == 2


def test_delete_and_missing_files(server: FdfsServer) -> None:
    file_id = upload(server, b"to be deleted", "txt")
    with Conn(server.storage()) as conn:
        assert conn.call(DELETE, named(file_id)) == (0, b"")
        assert not server.path(file_id).exists()
        # a missing file is 2, and 2 does not close the connection
        assert conn.call(DELETE, named(file_id)) == (ENOENT, b"")
        assert conn.call(DOWNLOAD, download_body(file_id)) == (ENOENT, b"")
        assert conn.call(QUERY_INFO, named(file_id)) == (ENOENT, b"")
        assert conn.call(GET_META, named(file_id)) == (ENOENT, b"")
        assert conn.call(ACTIVE_TEST) == (0, b"")
        # a name that is not a storage name at all is 22
        assert conn.call(DELETE, g16("group1") + b"M00/zz/00/name") == (EINVAL, b"")
        assert conn.is_closed()
    with Conn(server.storage()) as conn:  # another group's name: 22
        assert conn.call(DELETE, g16("group2") + split_id(file_id)[1]) == (EINVAL, b"")
        assert conn.is_closed()
    assert server.files() == []


# --------------------------------------------------------------------------------------- metadata


def test_metadata(server: FdfsServer) -> None:
    file_id = upload(server, b"with metadata", "txt")
    with Conn(server.storage()) as conn:
        assert conn.call(GET_META, named(file_id)) == (ENOENT, b"")  # none: 2, never an empty body
        assert conn.call(SET_META, meta_body(file_id, b"width\x02160\x01author\x02me")) == (0, b"")
        assert conn.call(GET_META, named(file_id)) == (0, b"author\x02me\x01width\x02160")  # sorted by name
        assert server.metadata(file_id) == {"author": "me", "width": "160"}
        assert server.path(file_id).with_name(server.path(file_id).name + "-m").is_file()

        assert conn.call(SET_META, meta_body(file_id, b"width\x02200\x01height\x0280", b"M")) == (0, b"")
        assert conn.call(GET_META, named(file_id)) == (0, b"author\x02me\x01height\x0280\x01width\x02200")
        assert conn.call(SET_META, meta_body(file_id, b"", b"M")) == (0, b"")  # merging nothing changes nothing
        assert server.metadata(file_id) == {"author": "me", "height": "80", "width": "200"}

        assert conn.call(SET_META, meta_body(file_id, b"only\x02this")) == (0, b"")  # overwrite replaces all
        assert conn.call(GET_META, named(file_id)) == (0, b"only\x02this")
        assert conn.call(SET_META, meta_body(file_id, b"")) == (0, b"")  # overwrite with nothing deletes
        assert conn.call(GET_META, named(file_id)) == (ENOENT, b"")
        assert server.metadata(file_id) == {}

        limits = b"n" * 64 + b"\x02" + b"v" * 256
        assert conn.call(SET_META, meta_body(file_id, limits)) == (0, b"")
        assert conn.call(SET_META, meta_body(file_id, b"n" * 65 + b"\x02v")) == (EINVAL, b"")
        assert conn.is_closed()
    with Conn(server.storage()) as conn:
        assert conn.call(SET_META, meta_body(file_id, b"n\x02" + b"v" * 257)) == (EINVAL, b"")
        assert conn.is_closed()
    with Conn(server.storage()) as conn:
        assert conn.call(SET_META, meta_body(file_id, b"a\x02b", b"X")) == (EINVAL, b"")  # flag O or M only
    with Conn(server.storage()) as conn:
        missing = file_id[:-5] + "0.txt" if not file_id.endswith("0.txt") else file_id[:-5] + "1.txt"
        assert conn.call(SET_META, meta_body(missing, b"a\x02b")) == (ENOENT, b"")
        assert conn.call(GET_META, named(file_id)) == (0, limits)
    # deleting the file deletes its metadata
    assert call(server.storage(), DELETE, named(file_id)) == (0, b"")
    assert list(server.path(file_id).parent.iterdir()) == []


# ---------------------------------------------------------------------------------------- tracker


@pytest.mark.parametrize("ip_size", [15, 45])
def test_tracker_queries(tmp_path: Path, ip_size: int) -> None:
    with FdfsServer(tmp_path, ip_size=ip_size, groups=("group1", "group2")) as server:
        store_len, fetch_len = 16 + ip_size + 8 + 1, 16 + ip_size + 8
        assert (store_len, fetch_len) == ((40, 39) if ip_size == 15 else (70, 69))
        with Conn(server.tracker) as conn:
            status, body = conn.call(STORE_ANY)
            assert status == 0 and len(body) == store_len
            assert parse_query_store(body, ip_size) == ("group1", "127.0.0.1", storage_port(server), 0)
            status, body = conn.call(STORE_GROUP, g16("group2"))
            assert parse_query_store(body, ip_size) == ("group2", "127.0.0.1", storage_port(server, "group2"), 0)
            # an unknown group is 2, and tracker errors do not close the connection
            assert conn.call(STORE_GROUP, g16("nope")) == (ENOENT, b"")
            assert conn.call(STORE_ALL_GROUP, g16("nope")) == (ENOENT, b"")
            for cmd, body_in in ((STORE_ALL, b""), (STORE_ALL_GROUP, g16("group1"))):
                status, body = conn.call(cmd, body_in)
                assert status == 0 and len(body) == store_len  # group + 1 x (ip + port) + spi
                assert parse_query_store(body, ip_size)[2] == storage_port(server)

            # fetch/update do not check that the file exists
            name = b"M00/00/00/fwAAAWsBleuASNlKAAGGoH_dGuY316.bin"
            for cmd in (FETCH_ONE, QUERY_UPDATE, FETCH_ALL):
                status, body = conn.call(cmd, g16("group2") + name)
                assert status == 0 and len(body) == fetch_len
                assert body[:16] == g16("group2")
                assert body[16 : 16 + ip_size].rstrip(b"\0") == b"127.0.0.1"
                assert struct.unpack(">Q", body[16 + ip_size :])[0] == storage_port(server, "group2")
            assert conn.call(FETCH_ONE, g16("nope") + name) == (ENOENT, b"")
            assert conn.call(FETCH_ONE, g16("group1") + b"short") == (EINVAL, b"")
            assert conn.call(STORE_ANY, b"junk") == (EINVAL, b"")
            assert conn.call(250) == (EINVAL, b"")  # an unknown command
            assert conn.call(ACTIVE_TEST) == (0, b"")


def test_list_groups(tmp_path: Path) -> None:
    with FdfsServer(tmp_path, groups=("group1", "imgs")) as server:
        status, body = call(server.tracker, LIST_ALL_GROUPS)
        assert status == 0 and len(body) == 2 * 113
        stats = [struct.unpack(">17s12q", body[i : i + 113]) for i in (0, 113)]
        assert [s[0].rstrip(b"\0") for s in stats] == [b"group1", b"imgs"]
        name, total_mb, free_mb, reserved, trunk_free, count, port, readable, writable, cur, paths, subdirs, trunk = (
            stats[1]
        )
        assert total_mb >= free_mb > 0
        assert (count, port, readable, writable, paths, subdirs) == (1, storage_port(server, "imgs"), 1, 1, 1, 256)
        status, one = call(server.tracker, LIST_ONE_GROUP, g16("imgs"))
        assert status == 0 and len(one) == 113 and one[:17] == body[113 : 113 + 17]
        assert call(server.tracker, LIST_ONE_GROUP, g16("nope")) == (ENOENT, b"")


STORAGE_RECORD = ">BB16s{ip}s16s8s10q3i42qB"


@pytest.mark.parametrize("ip_size", [15, 45])
def test_list_storages(tmp_path: Path, ip_size: int) -> None:
    with FdfsServer(tmp_path, ip_size=ip_size) as server:
        data = os.urandom(5000)
        file_id = upload(server, data, "bin")
        assert call(server.storage(), DOWNLOAD, download_body(file_id))[1] == data
        call(server.storage(), DELETE, named(file_id))
        status, body = call(server.tracker, LIST_STORAGE, g16("group1"))
        size = 487 if ip_size == 15 else 517
        assert status == 0 and len(body) == size
        fields = struct.unpack(STORAGE_RECORD.format(ip=ip_size + 1), body)
        status_, rw_mode, sid, ip, src_id, version = fields[:6]
        assert status_ == 7  # ACTIVE
        assert ip.rstrip(b"\0") == b"127.0.0.1" and version.rstrip(b"\0") == b"6.16.1"
        join_time, up_time, total_mb, free_mb, _reserved, _prio, paths, subdirs, _cur, port = fields[6:16]
        assert port == storage_port(server) and (paths, subdirs) == (1, 256)
        assert abs(join_time - time.time()) < 60 and total_mb >= free_mb > 0
        alloc, current, peak = fields[16:19]
        assert alloc >= 3 and peak >= 1
        counters = dict(zip(STAT_NAMES, fields[19:61]))
        assert counters["total_upload_count"] == counters["success_upload_count"] == 1
        assert counters["success_upload_bytes"] == 5000
        assert counters["success_download_count"] == 1 and counters["success_download_bytes"] == 5000
        assert counters["success_delete_count"] == 1
        assert abs(counters["last_heart_beat_time"] - time.time()) < 60
        assert fields[61] == 0  # not the trunk server
        # with a storage id (the ip), or one that is not there
        status, by_id = call(server.tracker, LIST_STORAGE, g16("group1") + b"127.0.0.1")
        assert status == 0 and len(by_id) == size and by_id[: 2 + 16 + ip_size + 1] == body[: 2 + 16 + ip_size + 1]
        assert call(server.tracker, LIST_STORAGE, g16("group1") + b"10.0.0.9") == (ENOENT, b"")
        assert call(server.tracker, LIST_STORAGE, g16("nope")) == (ENOENT, b"")


STAT_NAMES = [
    f"{kind}_{what}"
    for pair in [
        ("upload_count",), ("append_count",), ("modify_count",), ("truncate_count",), ("set_meta_count",),
        ("delete_count",), ("download_count",), ("get_meta_count",), ("create_link_count",), ("delete_link_count",),
        ("upload_bytes",), ("append_bytes",), ("modify_bytes",), ("download_bytes",), ("sync_in_bytes",),
        ("sync_out_bytes",), ("file_open_count",), ("file_read_count",), ("file_write_count",),
    ]
    for what in pair
    for kind in ("total", "success")
] + ["last_source_update", "last_sync_update", "last_synced_timestamp", "last_heart_beat_time"]  # fmt: skip
assert len(STAT_NAMES) == 42


# -------------------------------------------------------------------------------- query file info


@pytest.mark.parametrize("ip_size", [15, 45])
def test_query_file_info(tmp_path: Path, ip_size: int) -> None:
    with FdfsServer(tmp_path, ip_size=ip_size) as server:
        found = False
        for _ in range(20):  # until a CRC32 >= 2**31 shows how the real storage sends it
            data = os.urandom(3000)
            file_id = upload(server, data, "bin")
            status, body = call(server.storage(), QUERY_INFO, named(file_id))
            assert status == 0 and len(body) == 24 + ip_size + 1
            size, mtime, crc = struct.unpack(">qqQ", body[:24])
            assert size == 3000
            assert abs(mtime - time.time()) < 60
            # the CRC32 is a C int widened to 8 bytes: sign-extended when >= 2**31
            expected = zlib.crc32(data)
            assert crc & 0xFFFFFFFF == expected
            assert crc >> 32 == (0xFFFFFFFF if expected & 0x80000000 else 0)
            assert body[24:].rstrip(b"\0") == b"127.0.0.1"
            if expected & 0x80000000:
                found = True
                break
        assert found

        # an appender file: size and CRC32 of the current content (flag 1: no CRC32)
        appender = upload(server, b"first", "log", cmd=UPLOAD_APPENDER)
        assert call(server.storage(), APPEND, append_body(appender, b" second")) == (0, b"")
        status, body = call(server.storage(), QUERY_INFO, named(appender))
        size, _mtime, crc = struct.unpack(">qqQ", body[:24])
        assert (size, crc & 0xFFFFFFFF) == (12, zlib.crc32(b"first second"))
        status, body = call(server.storage(), QUERY_INFO, named(appender), status=1)
        assert struct.unpack(">qqQ", body[:24])[2] == 0


# --------------------------------------------------------------------------------- appender files


def test_appender_commands(server: FdfsServer) -> None:
    storage = server.storage()
    appender = upload(server, b"0123456789", "log", cmd=UPLOAD_APPENDER)
    with Conn(storage) as conn:
        assert conn.call(APPEND, append_body(appender, b"abcdef")) == (0, b"")
        assert conn.call(APPEND, append_body(appender, b"")) == (0, b"")  # 0 bytes: nothing
        assert server.path(appender).read_bytes() == b"0123456789abcdef"
        assert conn.call(MODIFY, modify_body(appender, 2, b"XY")) == (0, b"")
        assert conn.call(MODIFY, modify_body(appender, 16, b"END")) == (0, b"")  # offset == size: extends
        assert server.path(appender).read_bytes() == b"01XY456789abcdefEND"
        assert conn.call(TRUNCATE, truncate_body(appender, 10)) == (0, b"")
        assert server.path(appender).read_bytes() == b"01XY456789"
        assert conn.call(TRUNCATE, truncate_body(appender, 12)) == (0, b"")  # larger: zeros
        assert server.path(appender).read_bytes() == b"01XY456789\0\0"
        assert conn.call(TRUNCATE, truncate_body(appender, 10)) == (0, b"")
        assert conn.call(DOWNLOAD, download_body(appender)) == (0, b"01XY456789")
        assert conn.call(MODIFY, modify_body(appender, 11, b"Z")) == (EINVAL, b"")  # offset > size
        assert conn.is_closed()

    with Conn(storage) as conn:  # regenerate: a normal name with the current size and CRC32
        assert conn.call(SET_META, meta_body(appender, b"k\x02v")) == (0, b"")
        status, reply = conn.call(REGENERATE, split_id(appender)[1])
        assert status == 0 and reply[:16] == g16("group1")
        regenerated = file_id_of(reply)
        assert regenerated != appender
        assert regenerated[-7:] == appender[-7:] and regenerated[:23] == appender[:23]  # same dirs, ext part
        d = decode(regenerated)
        assert not d.size_field & (1 << 58)
        assert (d.size_field & 0xFFFFFFFF, d.crc32) == (10, zlib.crc32(b"01XY456789"))
        assert not server.is_appender(regenerated)
        assert server.files() == [regenerated]
        assert server.metadata(regenerated) == {"k": "v"}
        assert conn.call(DOWNLOAD, download_body(appender)) == (ENOENT, b"")
        assert conn.call(DOWNLOAD, download_body(regenerated)) == (0, b"01XY456789")
        assert conn.call(APPEND, append_body(appender, b"x")) == (ENOENT, b"")  # gone: 2, still open

    # on a file that is not an appender file: 22 (and the connection is closed) for each
    for cmd, body in (
        (APPEND, append_body(regenerated, b"more")),
        (MODIFY, modify_body(regenerated, 0, b"x")),
        (TRUNCATE, truncate_body(regenerated, 1)),
        (REGENERATE, split_id(regenerated)[1]),
    ):
        with Conn(storage) as conn:
            assert conn.call(cmd, body) == (EINVAL, b""), cmd
            assert conn.is_closed()
    assert server.path(regenerated).read_bytes() == b"01XY456789"


def test_appender_without_extension(server: FdfsServer) -> None:
    appender = upload(server, b"abc", cmd=UPLOAD_APPENDER)
    assert len(split_id(appender)[1]) == 44  # 7 digits: long enough for the appender commands
    assert call(server.storage(), APPEND, append_body(appender, b"def")) == (0, b"")
    assert server.path(appender).read_bytes() == b"abcdef"


def test_slave_files(server: FdfsServer) -> None:
    master = upload(server, b"master bytes", "jpg")
    slave_data = b"thumbnail"
    status, reply = call(server.storage(), UPLOAD_SLAVE, slave_body(master, b"_150x150", b"jpg", slave_data))
    assert status == 0
    slave = file_id_of(reply)
    assert slave == master[: -len(".jpg")] + "_150x150.jpg"
    assert server.path(slave).read_bytes() == slave_data
    # query info on a slave: size and CRC32 of the slave itself (its name is the master's)
    status, body = call(server.storage(), QUERY_INFO, named(slave))
    size, _, crc = struct.unpack(">qqQ", body[:24])
    assert (size, crc & 0xFFFFFFFF) == (len(slave_data), zlib.crc32(slave_data))

    with Conn(server.storage()) as conn:  # exists: 17, the connection stays usable
        assert conn.call(UPLOAD_SLAVE, slave_body(master, b"_150x150", b"jpg", b"again")) == (EEXIST, b"")
        status, reply = conn.call(UPLOAD_SLAVE, slave_body(master, b"-big", b"", b"no ext"))
        assert status == 0 and file_id_of(reply) == master[: -len(".jpg")] + "-big"
        assert conn.call(UPLOAD_SLAVE, slave_body(master, b"", b"png", b"x")) == (EINVAL, b"")  # empty prefix
        assert conn.is_closed()
    missing = master[:-5] + ("1" if master[-5] != "1" else "2") + ".jpg"
    assert call(server.storage(), UPLOAD_SLAVE, slave_body(missing, b"_s", b"jpg", b"x")) == (ENOENT, b"")
    assert call(server.storage(), UPLOAD_SLAVE, slave_body(master, b"-m", b"", b"x")) == (EINVAL, b"")
    assert sorted(server.files()) == sorted([master, slave, master[: -len(".jpg")] + "-big"])


# ----------------------------------------------------------------------------- connection control


def test_active_test_quit_and_unknown_commands(server: FdfsServer) -> None:
    for address in (server.tracker, server.storage()):
        with Conn(address) as conn:
            assert conn.call(ACTIVE_TEST) == (0, b"")
            assert conn.call(ACTIVE_TEST) == (0, b"")
            conn.send(QUIT)  # no reply: the server closes
            assert conn.is_closed()
    with Conn(server.storage()) as conn:
        assert conn.call(250) == (EINVAL, b"")  # unknown on the storage: 22, closed
        assert conn.is_closed()
    with Conn(server.tracker) as conn:
        assert conn.call(250) == (EINVAL, b"")  # unknown on the tracker: 22, still open
        assert conn.call(ACTIVE_TEST) == (0, b"")


def test_tracker_down_and_up_same_port(tmp_path: Path) -> None:
    with FdfsServer(tmp_path, trackers=2) as server:
        first, second = server.trackers
        assert first != second and server.tracker == first
        assert server.url == f"fdfs://{first},{second}"
        idle = Conn(first)
        try:
            assert idle.call(ACTIVE_TEST) == (0, b"")
            server.stop_tracker(0)
            assert idle.is_closed()  # open connections are closed too
        finally:
            idle.close()
        with pytest.raises(ConnectionRefusedError):
            call(first, ACTIVE_TEST)
        # the other tracker answers from the same state
        assert parse_query_store(call(second, STORE_ANY)[1], 15)[2] == storage_port(server)
        server.start_tracker(0)
        assert server.trackers == [first, second]
        assert call(first, STORE_ANY)[0] == 0


def test_counts_and_connections(server: FdfsServer) -> None:
    server.reset_counts()
    with Conn(server.tracker) as conn:
        conn.call(STORE_ANY)
        conn.call(STORE_ANY)
    file_id = upload(server, b"x", "txt")
    call(server.storage(), DOWNLOAD, download_body(file_id))
    counts = server.counts
    assert counts[STORE_ANY] == 2 and counts[UPLOAD] == 1 and counts[DOWNLOAD] == 1
    assert sum(counts.values()) == 4
    deadline = time.monotonic() + TIMEOUT
    while server.connections < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connections == 3
    server.reset_counts()
    assert server.counts == {} and server.connections == 0


def test_groups_each_have_a_storage(tmp_path: Path) -> None:
    with FdfsServer(tmp_path, groups=("group1", "group2")) as server:
        assert server.storage("group1") != server.storage("group2")
        in2 = upload(server, b"in group2", "txt", group="group2")
        assert in2.startswith("group2/M00/00/00/")
        assert server.path(in2) == server.root / "group2" / "data" / "00" / "00" / in2.rsplit("/", 1)[1]
        with Conn(server.storage("group1")) as conn:  # group1's storage: another group's name is 22
            assert conn.call(DOWNLOAD, download_body(in2)) == (EINVAL, b"")
        assert call(server.storage("group2"), DOWNLOAD, download_body(in2)) == (0, b"in group2")
        with pytest.raises(KeyError):
            server.storage("group3")


# ----------------------------------------------------------------------------------------- faults


def send_quietly(conn: Conn, cmd: int, body: bytes) -> None:
    """Send a request the server may cut off midway (a reset while sending is then expected)."""
    try:
        conn.send(cmd, body)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_fault_drop_mid_upload_stores_nothing(server: FdfsServer) -> None:
    server.fail(UPLOAD, after=1000)
    with Conn(server.storage()) as conn:
        send_quietly(conn, UPLOAD, upload_body(os.urandom(600 * KiB), b"bin"))
        with pytest.raises((EOFError, ConnectionResetError)):
            conn.recv()
    assert server.files() == []
    assert list((server.root / "group1" / "tmp").iterdir()) == []
    assert server.counts[UPLOAD] == 1
    # the fault is used up: the next upload goes through
    file_id = upload(server, b"fine", "txt")
    assert server.files() == [file_id]


def test_client_gone_mid_upload_stores_nothing(server: FdfsServer) -> None:
    with Conn(server.storage()) as conn:
        conn.send(UPLOAD, upload_body(b"x" * 1000, b"bin")[:500], length=15 + 1000)
    deadline = time.monotonic() + TIMEOUT
    while server.counts[UPLOAD] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert server.files() == []
    assert list((server.root / "group1" / "tmp").iterdir()) == []


def test_fault_drop_mid_append_rolls_back(server: FdfsServer) -> None:
    original = os.urandom(5000)
    appender = upload(server, original, "bin", cmd=UPLOAD_APPENDER)
    server.fail(APPEND, after=16 + 44 + 3000)  # name_len8 + size8 + name + 3000 bytes of data
    with Conn(server.storage()) as conn:
        send_quietly(conn, APPEND, append_body(appender, os.urandom(400 * KiB)))
        with pytest.raises((EOFError, ConnectionResetError)):
            conn.recv()
    # rolled back before the connection was closed
    assert server.stored_sha256(appender) == sha256(original)
    assert call(server.storage(), APPEND, append_body(appender, b"tail")) == (0, b"")
    assert server.path(appender).read_bytes() == original + b"tail"


def test_client_gone_mid_append_rolls_back(server: FdfsServer) -> None:
    original = os.urandom(5000)
    appender = upload(server, original, "bin", cmd=UPLOAD_APPENDER)
    body = append_body(appender, os.urandom(100 * KiB))
    with Conn(server.storage()) as conn:
        conn.send(APPEND, body[: 16 + 44 + 20 * KiB], length=len(body))
        deadline = time.monotonic() + TIMEOUT
        while server.path(appender).stat().st_size < 5000 + 20 * KiB and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.path(appender).stat().st_size == 5000 + 20 * KiB  # written so far
    # the size the storage tells after the cut is the size before the append
    status, info = call(server.storage(), QUERY_INFO, named(appender))
    assert status == 0 and struct.unpack(">q", info[:8])[0] == 5000
    assert server.stored_sha256(appender) == sha256(original)


def test_client_gone_mid_modify_keeps_what_was_written(server: FdfsServer) -> None:
    appender = upload(server, b"\0" * (64 * KiB), "bin", cmd=UPLOAD_APPENDER)
    body = modify_body(appender, 0, b"M" * (64 * KiB))
    with Conn(server.storage()) as conn:
        conn.send(MODIFY, body[: 24 + 44 + 10 * KiB], length=len(body))
        deadline = time.monotonic() + TIMEOUT
        while server.path(appender).read_bytes()[: 10 * KiB] != b"M" * (10 * KiB) and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.2)
    content = server.path(appender).read_bytes()
    assert content == b"M" * (10 * KiB) + b"\0" * (54 * KiB)


def test_fault_status(server: FdfsServer) -> None:
    server.fail(UPLOAD, status=ENOSPC)
    with Conn(server.storage()) as conn:
        assert conn.call(UPLOAD, upload_body(b"x" * 1000, b"bin")) == (ENOSPC, b"")
        assert conn.call(UPLOAD, upload_body(b"y", b"bin"))[0] == 0  # not 22: still open
    assert len(server.files()) == 1
    file_id = server.files()[0]
    server.fail(DOWNLOAD, status=EINVAL, times=2)
    for _ in range(2):
        with Conn(server.storage()) as conn:
            assert conn.call(DOWNLOAD, download_body(file_id)) == (EINVAL, b"")
            assert conn.is_closed()  # 22 closes the storage connection
    assert call(server.storage(), DOWNLOAD, download_body(file_id)) == (0, b"y")
    server.fail(STORE_ANY, status=ENOENT)
    with Conn(server.tracker) as conn:  # a tracker fault
        assert conn.call(STORE_ANY) == (ENOENT, b"")
        assert conn.call(STORE_ANY)[0] == 0


def test_fault_drop_after_the_whole_body_loses_the_reply(server: FdfsServer) -> None:
    server.fail(UPLOAD, after=10**9)
    with Conn(server.storage()) as conn:
        conn.send(UPLOAD, upload_body(b"stored anyway", b"txt"))
        with pytest.raises(EOFError):
            conn.recv()
    [file_id] = server.files()
    assert server.path(file_id).read_bytes() == b"stored anyway"
    server.fail(ACTIVE_TEST)  # after=0 on an empty body: dropped before the reply
    with Conn(server.tracker) as conn:
        conn.send(ACTIVE_TEST)
        with pytest.raises(EOFError):
            conn.recv()
    with pytest.raises(ValueError):
        server.fail(UPLOAD, times=0)


# ------------------------------------------------------------------------------------------ stalls


def send_until_blocked(conn: Conn, data: bytes, patience: float = 0.5) -> int:
    """Send ``data`` until the peer stops taking it for ``patience`` seconds; the bytes it took."""
    sent = 0
    conn.sock.settimeout(patience)
    try:
        while sent < len(data):
            sent += conn.sock.send(data[sent : sent + 64 * KiB])
    except socket.timeout:
        pass
    finally:
        conn.sock.settimeout(TIMEOUT)
    return sent


def test_stall_takes_the_request_and_holds_the_reply_for_its_seconds(server: FdfsServer) -> None:
    server.stall(UPLOAD, seconds=1.0)
    with Conn(server.storage()) as conn:
        started = time.monotonic()
        conn.send(UPLOAD, upload_body(b"held", b"txt"))
        conn.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            conn.recv()
        assert len(server.files()) == 1  # the command took effect; only its answer waits
        conn.sock.settimeout(TIMEOUT)
        status, body = conn.recv()  # then it goes on, as after a SIGCONT
        assert 0.9 <= time.monotonic() - started < 4
        assert status == 0 and server.files() == [file_id_of(body)]
        assert conn.call(ACTIVE_TEST) == (0, b"")  # used up: the same connection answers at once
    assert server.pending_faults == []


def test_stall_after_n_body_bytes_stops_reading_then_resumes(server: FdfsServer) -> None:
    data = os.urandom(64 * 1024 * KiB)
    server.stall(UPLOAD, after=1000, seconds=1.5)
    with Conn(server.storage()) as conn:
        started = time.monotonic()
        conn.send(UPLOAD, struct.pack(">BQ6s", 0, len(data), b"bin"), length=15 + len(data))
        sent = send_until_blocked(conn, data)
        assert sent < len(data)  # the storage stopped reading: the socket buffers filled up
        assert server.files() == []
        conn.sock.sendall(data[sent:])  # it reads again once the stall is over
        status, body = conn.recv()
        assert time.monotonic() - started >= 1.4
        assert status == 0
    assert server.stored_sha256(file_id_of(body)) == sha256(data)


def test_a_stall_ends_when_the_server_stops(server: FdfsServer) -> None:
    server.stall(role="storage", after=0, times=None)  # every storage request, as a SIGSTOPped fdfs_storaged
    assert call(server.tracker, STORE_ANY)[0] == 0  # the tracker still answers
    with Conn(server.storage()) as conn:
        conn.send(ACTIVE_TEST)
        conn.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            conn.recv()
        with Conn(server.storage()) as other:  # a new connection is accepted, then hangs as well
            other.send(UPLOAD, upload_body(b"x" * 1000, b"bin"))
            started = time.monotonic()
            server.stop()  # seconds=None: held until the server stops, which ends it at once
            assert time.monotonic() - started < 2
            conn.sock.settimeout(TIMEOUT)
            with pytest.raises((EOFError, ConnectionResetError)):
                conn.recv()
            with pytest.raises((EOFError, ConnectionResetError)):
                other.recv()
    assert server.files() == []


def test_stall_picks_its_requests(tmp_path: Path) -> None:
    with FdfsServer(tmp_path / "fdfs", groups=("group1", "group2")) as server:
        server.stall(group="group2", seconds=30)
        assert call(server.storage("group1"), ACTIVE_TEST) == (0, b"")
        assert call(server.tracker, ACTIVE_TEST) == (0, b"")  # a tracker has no group
        assert server.pending_faults != []
        server.clear_faults()
        assert call(server.storage("group2"), ACTIVE_TEST) == (0, b"")
        for bad in ({"seconds": -1}, {"after": -1}, {"role": "proxy"}, {"group": "group3"}, {"times": 0}):
            with pytest.raises(ValueError):
                server.stall(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ concurrency


def test_many_clients_at_once(server: FdfsServer) -> None:
    results: Dict[int, Tuple[str, bytes]] = {}
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            data = os.urandom(64 * KiB + i)
            with Conn(server.storage()) as conn:
                status, reply = conn.call(UPLOAD, upload_body(data, b"bin"))
                assert status == 0
                file_id = file_id_of(reply)
                assert conn.call(DOWNLOAD, download_body(file_id)) == (0, data)
            results[i] = (file_id, data)
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 16
    assert sorted(server.files()) == sorted(fid for fid, _ in results.values())
    for file_id, data in results.values():
        assert server.stored_sha256(file_id) == sha256(data)


def test_temporary_root_is_removed(tmp_path: Path) -> None:
    server = FdfsServer()
    with server:
        file_id = upload(server, b"temp", "txt")
        root = server.root
        assert server.path(file_id).is_file()
    assert not root.exists()
    with pytest.raises(ValueError):
        FdfsServer(ip_size=16)


# -------------------------------------------------------------------------------------- the CLI


def test_command_line(tmp_path: Path) -> None:
    directory = tmp_path / "cli"
    args = ["fdfs", "--port", "0", "--dir", str(directory), "--ip-size", "45", "--group", "media"]
    with emulator_process(*args) as (proc, printed):
        assert re.fullmatch(r"fdfs://127\.0\.0\.1:\d+", printed["url"]), printed
        tracker = printed["url"].removeprefix("fdfs://")
        status, body = call(tracker, STORE_ANY)
        assert status == 0 and len(body) == 70
        group, ip, port, _ = parse_query_store(body, 45)
        assert group == "media"
        status, reply = call(f"{ip}:{port}", UPLOAD, upload_body(b"over the CLI", b"txt"))
        assert status == 0
        stored = directory / "media" / "data" / "00" / "00" / file_id_of(reply).rsplit("/", 1)[1]
        assert stored.read_bytes() == b"over the CLI"
        proc.terminate()  # SIGTERM
        assert proc.wait(timeout=10) == 0
