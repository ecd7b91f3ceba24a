"""An emulator of a FastDFS tracker and storage (the native TCP protocol), for tests.

:class:`FdfsServer` runs real TCP servers on ``127.0.0.1``: one or more
trackers sharing one state and one storage per group, each on its own port,
answering byte for byte as FastDFS 6.16 (``fdfs_trackerd`` and
``fdfs_storaged``) does, quirks included. It is checked against the protocol
facts in ``tests/test_fdfs_emulator.py`` and against the official PyPI
client ``fastdfs-client`` 1.3.0 in ``tests/test_fdfs_sdk.py``; it shares no
code with upclient's FastDFS backend, so the two check each other::

    with FdfsServer(tmp_path / "fdfs") as server:
        client = make_client(server.url)               # fdfs://127.0.0.1:PORT
        file_id = client.upload(b"hello", ext="txt")   # group1/M00/00/00/fwAAAW...ABC123.txt
        assert server.stored_sha256(file_id) == hashlib.sha256(b"hello").hexdigest()
        server.fail(24, after=1000)    # the next append is cut after 1000 body bytes
        server.stop_tracker(0)         # tracker 0 refuses connections (start_tracker(0): back)

Framing: a 10-byte header (body length, 8 bytes big-endian; command; status)
then the body; replies have command 100 and a status (0 or an errno, with an
empty body on error). Integers are 8-byte big-endian, group names 16 bytes
NUL padded; "remote" is a file id without its group (``M00/XX/YY/name``).

Tracker commands (IP fields are 15 bytes, or 45 with ``ip_size=45`` as a
6.15+ tracker with ``response_ip_addr_size = IPv6``; NUL padded):

====  =========================================  ===========================================
101   query store, any group (the first group)   group16 + ip + port8 + store_path_index1
104   query store in a group: group16            same; an unknown group -> 2
106   query store, all servers                   group16 + N x (ip + port8) + spi1
107   same in a group: group16                   same; unknown group -> 2
102   query fetch: group16 + remote              group16 + ip + port8 (no check that the
103   query update: group16 + remote             file exists; remote 22..127 bytes else 22)
105   query fetch all: group16 + remote          group16 + N x (ip + port8)
91    list all groups                            N x 113-byte group stat
90    list one group: group16                    one 113-byte group stat; unknown -> 2
92    list storages: group16 [+ storage id]      N x 487-byte records (517 with ip_size=45)
111   active test                                status 0
82    quit                                       no reply; the connection is closed
====  =========================================  ===========================================

Anything else answers 22; tracker errors never close the connection.

Storage commands (the storage of each group has its own port):

====  =================================================================  =========================
11    upload: spi1 + size8 + ext6 + data                                 group16 + remote
23    upload appender file: same                                         group16 + remote
21    upload slave: master_len8 + size8 + prefix16 + ext6 + master +     group16 + remote;
      data                                                               exists -> 17
12    delete: group16 + remote                                           -; missing -> 2
13    set metadata: name_len8 + meta_len8 + flag1 (O/M) + group16 +      -
      remote + meta
15    get metadata: group16 + remote                                     meta; none -> 2
14    download: offset8 + bytes8 (0: to the end) + group16 + remote      data (clamped);
                                                                         offset >= size -> 22
22    query file info: group16 + remote (header status = flags: 1 no     size8 + mtime8 + crc8 +
      CRC, 2 quiet)                                                      ip (16, or 46)
24    append: name_len8 + size8 + remote + data                          -
34    modify: name_len8 + offset8 + size8 + remote + data                -; offset > size -> 22
36    truncate: name_len8 + new_size8 + remote                           -
38    regenerate appender file name: remote                              group16 + new remote
111   active test                                                        status 0
82    quit                                                               no reply, closed
====  =================================================================  =========================

Quirks of the real servers reproduced here (from the 6.16 sources):

* The storage closes the connection after every reply with status 22 (any
  header-only EINVAL reply); unknown commands answer 22 too. After any other
  error the connection stays usable when the rest of the request was small
  enough to be read (256 KiB, the real task buffer), else it is closed.
* File names: ``XX/YY`` are two levels of upper-case hex subdirectories,
  filled round robin (100 files per directory, as ``file_distribute_path_mode
  = 0``); then 27 characters of URL-safe base64 (no padding) of 20 bytes:
  source IPv4, creation time (the file's mtime when the upload ended), size
  field (8), CRC32 (4); then always 7 more characters: the extension padded
  on the left with random digits to 6 (``316.bin``), or 7 random digits when
  there is no extension. The size field of a file under 4 GiB is
  ``(random23 | 0x80000000) << 32 | size``, of a larger file the size, of an
  appender file ``(random23 | 0x80000000) << 32 | 1 << 58`` (size 0).
* A zero-byte file uploads, but downloading it answers 22 (offset 0 >= size
  0); a download length past the end is clamped.
* Slave names (21): the master name up to the dot in its last 7 characters,
  then the prefix, then ``.ext`` of the slave if it has one; an empty prefix
  -> 22; prefix ``-m`` without an extension -> 22; an existing slave -> 17.
* Append, modify, truncate and regenerate carry no group name, need a name
  of at least 44 bytes, answer 2 for a missing file and 22 for a file whose
  name does not carry the appender flag. Append or modify of 0 bytes is a
  no-op. Truncating to a larger size extends the file with zeros (the real
  storage only logs a warning). Regenerate (38) gives the appender file a
  normal name (new time, its current size and CRC32, same directory and
  extension part); the old name is gone.
* Query file info: size and mtime from the file; the CRC32 from the name for
  normal files, computed over the content for appender and slave files (0
  with flag 1); the CRC32 travels as a C ``int`` widened to 8 bytes, so a CRC
  of 2**31 or more arrives sign-extended (``0xFFFFFFFF........``); the
  source IP decoded from the name.
* Metadata: records ``name \\x02 value`` joined by ``\\x01``, stored in the
  sidecar ``<name>-m`` sorted by name; merge (``M``) updates and inserts,
  overwrite (``O``) replaces all and with an empty list deletes the sidecar;
  a name over 64 or a value over 256 bytes -> 22; no metadata -> 2.
* ext: up to 6 bytes of ``[A-Za-z0-9._-]`` (else 22).
* A request body cut off (the client goes away, or an injected fault): an
  upload (11/21/23) stores nothing; an append (24) is rolled back to the size
  the file had before it (synchronously, before the connection is closed); a
  modify (34) leaves what was written.

Files: ``<root>/<group>/data/XX/YY/<name>``, metadata in ``<name>-m`` next to
it, bodies being received in ``<root>/<group>/tmp``. Bodies are streamed in
256 KiB blocks both ways (``recv_into`` one buffer; ``socket.sendfile``), so
a 1 GiB upload or download never sits in memory.

Faults: :meth:`FdfsServer.fail` breaks the next requests with a given
command number (storage or tracker): the connection is dropped after
``after`` bytes of the request body were read (when the body is shorter
than that, the command takes effect and the reply is lost), or an error
status is answered (after the body was read; the storage then closes the
connection if the status is 22). Connections end as a process closes a
socket, with a bare ``close()``: a reset when bytes of the request are still
unread (a drop mid-body), a FIN otherwise (a lost reply); after an error
reply the storage sends its FIN first and drains what the client still sends
for up to a second, so the client reads the reply before the connection goes.
:attr:`FdfsServer.counts` counts the requests per command number,
:attr:`FdfsServer.connections` the TCP connections accepted. Nothing prints:
every error is logged at DEBUG on the ``upclient.testing.fdfs`` logger.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import logging
import os
import random
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

__all__ = ["FdfsServer", "FileIdCodec", "DecodedId"]

LOG = logging.getLogger("upclient.testing.fdfs")

# -- protocol constants ---------------------------------------------------------------------------

HEADER = struct.Struct(">QBB")  # body length, command, status
HEADER_SIZE = HEADER.size
CMD_RESP = 100
CMD_QUIT = 82
CMD_ACTIVE_TEST = 111

TRACKER_LIST_ONE_GROUP = 90
TRACKER_LIST_ALL_GROUPS = 91
TRACKER_LIST_STORAGE = 92
TRACKER_QUERY_STORE_WITHOUT_GROUP_ONE = 101
TRACKER_QUERY_FETCH_ONE = 102
TRACKER_QUERY_UPDATE = 103
TRACKER_QUERY_STORE_WITH_GROUP_ONE = 104
TRACKER_QUERY_FETCH_ALL = 105
TRACKER_QUERY_STORE_WITHOUT_GROUP_ALL = 106
TRACKER_QUERY_STORE_WITH_GROUP_ALL = 107

STORAGE_UPLOAD_FILE = 11
STORAGE_DELETE_FILE = 12
STORAGE_SET_METADATA = 13
STORAGE_DOWNLOAD_FILE = 14
STORAGE_GET_METADATA = 15
STORAGE_UPLOAD_SLAVE_FILE = 21
STORAGE_QUERY_FILE_INFO = 22
STORAGE_UPLOAD_APPENDER_FILE = 23
STORAGE_APPEND_FILE = 24
STORAGE_MODIFY_FILE = 34
STORAGE_TRUNCATE_FILE = 36
STORAGE_REGENERATE_APPENDER_FILENAME = 38

ENOENT, EBUSY, EEXIST, EINVAL, ENOSPC = 2, 16, 17, 22, 28

GROUP_NAME_LEN = 16
EXT_LEN = 6
PREFIX_LEN = 16
LOGIC_PATH_LEN = 10  # "M00/XX/YY/"
BASE64_LEN = 27
EXT_PART_LEN = EXT_LEN + 1  # what follows the 27 characters of a normal name
NORMAL_NAME_LEN = LOGIC_PATH_LEN + BASE64_LEN + EXT_PART_LEN  # 44
MAX_NAME_LEN = 128  # the real server's name buffers: a name must be shorter
META_NAME_MAX = 64
META_VALUE_MAX = 256
APPENDER_FLAG = 1 << 58
TRUNK_FLAG = 1 << 59
VERSION = "6.16.1"
STORAGE_STATUS_ACTIVE = 7
STORAGE_RW_MODE = 3  # read and write
SUBDIR_COUNT = 256
ROTATE_COUNT = 100  # files per subdirectory before the next one (file_distribute_rotate_count)
UPLOAD_PRIORITY = 10

BLOCK = 256 * 1024  # streaming block, and the real storage's task buffer
TRACKER_MAX_BODY = 64 * 1024
LINGER_SECONDS = 1.0
MiB = 1024 * 1024

_EXT_RE = re.compile(rb"[A-Za-z0-9._-]*")
_BASE64_RE = re.compile(r"[A-Za-z0-9_-]{27}")
_DIGITS = "0123456789"
_IPS = (15, 45)

# The 42 counters of a storage, in the order of the 92 reply.
STAT_FIELDS = (
    "total_upload_count", "success_upload_count", "total_append_count", "success_append_count",
    "total_modify_count", "success_modify_count", "total_truncate_count", "success_truncate_count",
    "total_set_meta_count", "success_set_meta_count", "total_delete_count", "success_delete_count",
    "total_download_count", "success_download_count", "total_get_meta_count", "success_get_meta_count",
    "total_create_link_count", "success_create_link_count", "total_delete_link_count",
    "success_delete_link_count", "total_upload_bytes", "success_upload_bytes", "total_append_bytes",
    "success_append_bytes", "total_modify_bytes", "success_modify_bytes", "total_download_bytes",
    "success_download_bytes", "total_sync_in_bytes", "success_sync_in_bytes", "total_sync_out_bytes",
    "success_sync_out_bytes", "total_file_open_count", "success_file_open_count", "total_file_read_count",
    "success_file_read_count", "total_file_write_count", "success_file_write_count", "last_source_update",
    "last_sync_update", "last_synced_timestamp", "last_heart_beat_time",
)  # fmt: skip
assert len(STAT_FIELDS) == 42
_BYTE_OPS = ("upload", "append", "modify", "download")


class _Status(Exception):
    """A request answered with an error status (the real server's errno)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"status {status}: {reason}")
        self.status = status
        self.reason = reason


class _Disconnected(Exception):
    """The client went away in the middle of a request."""


class _Dropped(Exception):
    """An injected fault drops the connection."""


def _group16(name: str) -> bytes:
    return name.encode("ascii").ljust(GROUP_NAME_LEN, b"\0")[:GROUP_NAME_LEN]


def _cstr(raw: bytes) -> bytes:
    """Bytes up to the first NUL, as C reads a fixed-size field."""
    return raw.split(b"\0", 1)[0]


def _unlink_quiet(path: Union[str, Path]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        LOG.debug("cannot remove %s", path, exc_info=True)


def _write_all(fd: int, data: memoryview, offset: Optional[int] = None) -> None:
    while len(data):
        n = os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
        data = data[n:]
        if offset is not None:
            offset += n


def _crc32_of(path: Path) -> int:
    crc = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return crc
            crc = zlib.crc32(view[:n], crc)


# -- file names -----------------------------------------------------------------------------------


class DecodedId(NamedTuple):
    """The 20 bytes behind the 27 characters of a FastDFS file name."""

    ip: str
    timestamp: int
    size_field: int
    crc32: int

    @property
    def is_appender(self) -> bool:
        return bool(self.size_field & APPENDER_FLAG)

    @property
    def is_trunk(self) -> bool:
        return bool(self.size_field & TRUNK_FLAG)

    @property
    def size(self) -> int:
        """The size in the name: the low 32 bits when the high word is masked (0 for appender files)."""
        if self.size_field >> 63:
            return self.size_field & 0xFFFFFFFF
        return self.size_field


class FileIdCodec:
    """File names as the real storage makes them (``storage_gen_filename``, ``fdfs_gen_slave_filename``)."""

    @staticmethod
    def encode(ip: str, timestamp: int, size_field: int, crc32: int) -> str:
        """The 27 characters: URL-safe base64, without padding, of ip4 + time4 + size8 + crc4."""
        raw = socket.inet_aton(ip) + struct.pack(
            ">IQI", timestamp & 0xFFFFFFFF, size_field & 0xFFFFFFFFFFFFFFFF, crc32 & 0xFFFFFFFF
        )
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @staticmethod
    def decode(name: str) -> DecodedId:
        """Decode a name (``XX/YY/...``, ``M00/...``, a full id or the bare name); ValueError if it cannot be."""
        base = name.rsplit("/", 1)[-1][:BASE64_LEN]
        if not _BASE64_RE.fullmatch(base):
            raise ValueError(f"not a FastDFS file name: {name!r}")
        raw = base64.urlsafe_b64decode(base + "=")
        ip = socket.inet_ntoa(raw[:4])
        timestamp, size_field, crc32 = struct.unpack(">IQI", raw[4:])
        return DecodedId(ip, timestamp, size_field, crc32)

    @staticmethod
    def size_field(size: int, appender: bool = False) -> int:
        """The size as the name carries it: masked with random high bits under 4 GiB, flagged for appenders."""
        masked = (random.getrandbits(23) | 0x80000000) << 32
        if appender:
            return masked | APPENDER_FLAG
        if size >> 32:
            return size
        return masked | size

    @staticmethod
    def ext_part(ext: str) -> str:
        """The 7 characters after the 27: ``ext`` padded with random digits to 6 plus the dot, or 7 digits."""
        if not ext:
            return "".join(random.choice(_DIGITS) for _ in range(EXT_PART_LEN))
        return "".join(random.choice(_DIGITS) for _ in range(EXT_LEN - len(ext))) + "." + ext

    @staticmethod
    def slave_name(master: str, prefix: str, ext: str) -> str:
        """The slave of ``master`` (``XX/YY/name``): the master up to the dot in its last 7 characters,
        the prefix, then ``.ext`` when the slave has an extension. ValueError where the server says 22."""
        if len(master) < 28 + EXT_LEN:
            raise ValueError(f"master file name {master!r} is too short")
        dot = master.find(".", len(master) - EXT_PART_LEN)
        true_ext = "" if not ext else ext if ext.startswith(".") else "." + ext
        if not true_ext and prefix == "-m":
            raise ValueError("prefix -m without an extension would be a metadata file")
        if not prefix and ((dot < 0 and not true_ext) or (dot >= 0 and master[dot:] == true_ext)):
            raise ValueError("an empty prefix needs another extension")
        return (master if dot < 0 else master[:dot]) + prefix + true_ext


def _check_ext(raw: bytes) -> str:
    ext = _cstr(raw)
    if not _EXT_RE.fullmatch(ext):
        raise _Status(EINVAL, f"invalid file extension {ext!r}")
    return ext.decode("ascii")


# -- metadata -------------------------------------------------------------------------------------


def parse_metadata(raw: bytes) -> Dict[bytes, bytes]:
    """``name \\x02 value`` records joined by ``\\x01``; a name over 64 or a value over 256 bytes is 22."""
    items: Dict[bytes, bytes] = {}
    for record in raw.split(b"\x01"):
        if not record:
            continue
        name, _, value = record.partition(b"\x02")
        if len(name) > META_NAME_MAX or len(value) > META_VALUE_MAX:
            raise _Status(EINVAL, f"metadata item too long: name {len(name)}, value {len(value)} bytes")
        items[name] = value
    return items


def pack_metadata(items: Dict[bytes, bytes]) -> bytes:
    """Sorted by name, as the storage keeps them; no trailing separator."""
    return b"\x01".join(name + b"\x02" + items[name] for name in sorted(items))


# -- storage state --------------------------------------------------------------------------------


class StorageStats:
    """The counters a storage reports to the tracker (list storages, 92), kept for real."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: Dict[str, int] = dict.fromkeys(STAT_FIELDS, 0)
        self.connections_alloc = 0
        self.connections_current = 0
        self.connections_max = 0

    def record(self, op: str, ok: bool, nbytes: Optional[int] = None, change: bool = False) -> None:
        """One ``op`` (upload, append, modify, truncate, set_meta, delete, download, get_meta)."""
        with self._lock:
            v = self.values
            v[f"total_{op}_count"] += 1
            if ok:
                v[f"success_{op}_count"] += 1
            if nbytes is not None and op in _BYTE_OPS:
                v[f"total_{op}_bytes"] += nbytes
                if ok:
                    v[f"success_{op}_bytes"] += nbytes
            if ok and change:
                v["last_source_update"] = int(time.time())

    def file_io(self, opened: int = 0, reads: int = 0, writes: int = 0) -> None:
        with self._lock:
            v = self.values
            for kind, n in (("open", opened), ("read", reads), ("write", writes)):
                v[f"total_file_{kind}_count"] += n
                v[f"success_file_{kind}_count"] += n

    def connection(self, delta: int) -> None:
        with self._lock:
            if delta > 0:
                self.connections_alloc += delta
            self.connections_current += delta
            self.connections_max = max(self.connections_max, self.connections_current)

    def snapshot(self) -> Tuple[Tuple[int, int, int], List[int]]:
        with self._lock:
            self.values["last_heart_beat_time"] = int(time.time())
            conns = (self.connections_alloc, self.connections_current, self.connections_max)
            return conns, [self.values[name] for name in STAT_FIELDS]


class FileStore:
    """One group's files, laid out as the real storage lays them out (one store path, ``M00``).

    ``<root>/<group>/data/XX/YY/<name>``, metadata in ``<name>-m``; bodies are received in
    ``<root>/<group>/tmp`` and renamed into place, so a cut off upload leaves nothing. A striped
    lock per file name keeps appends, truncates, renames, deletes and metadata changes of one file
    in order; modifies write with ``pwrite`` and take no lock (parts may go in parallel).
    """

    def __init__(self, root: Path, group: str, ip: str) -> None:
        self.group = group
        self.ip = ip
        self.data = root / group / "data"
        self.tmp = root / group / "tmp"
        self._names = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(64)]
        self._written = 0
        self._temp_ids = itertools.count()

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    # names
    @staticmethod
    def true_name(remote: Union[str, bytes]) -> str:
        """``M00/XX/YY/name`` -> ``XX/YY/name``; 22 as ``storage_split_filename_ex`` and
        ``fdfs_check_data_filename`` say (store path ``M00`` only, upper-case hex directories)."""
        if isinstance(remote, bytes):
            try:
                remote = remote.decode("ascii")
            except UnicodeDecodeError:
                raise _Status(EINVAL, "file name is not ASCII") from None
        if len(remote) < LOGIC_PATH_LEN or remote[0] != "M" or remote[3] != "/":
            raise _Status(EINVAL, f"invalid file name {remote!r}")
        if remote[1:3] != "00":
            raise _Status(EINVAL, f"invalid store path in {remote!r}")
        true = remote[4:]
        hexdigits = "0123456789ABCDEF"
        if (
            len(true) < 6
            or true[0] not in hexdigits
            or true[1] not in hexdigits
            or true[2] != "/"
            or true[3] not in hexdigits
            or true[4] not in hexdigits
            or true[5] != "/"
            or "/" in true[6:]
            or "\0" in true
        ):
            raise _Status(EINVAL, f"invalid file name {remote!r}")
        return true

    @staticmethod
    def remote(true_name: str) -> str:
        return "M00/" + true_name

    def path(self, true_name: str) -> Path:
        return self.data / true_name

    def meta_path(self, true_name: str) -> Path:
        return self.data / (true_name + "-m")

    def lock(self, true_name: str) -> threading.Lock:
        return self._stripes[zlib.crc32(true_name.encode()) % len(self._stripes)]

    def exists(self, true_name: str) -> bool:
        return self.path(true_name).is_file()

    def require(self, true_name: str) -> Path:
        path = self.path(true_name)
        if not path.is_file():
            raise _Status(ENOENT, f"file {true_name} does not exist")
        return path

    def require_appender(self, true_name: str) -> Path:
        """As ``storage_server_check_appender_file``: missing -> 2, no appender flag in the name -> 22."""
        path = self.require(true_name)
        try:
            appender = FileIdCodec.decode(true_name).is_appender
        except ValueError:
            appender = False
        if not appender:
            raise _Status(EINVAL, f"{true_name} is not an appender file")
        return path

    # space and temporary files
    def check_space(self, size: int) -> None:
        free = shutil.disk_usage(self.data).free
        if size > free:
            raise _Status(ENOSPC, f"no space for {size} bytes ({free} free)")

    def temp_path(self) -> Path:
        return self.tmp / f"upload-{os.getpid()}-{next(self._temp_ids)}"

    def _next_subdir(self) -> str:
        index = self._written // ROTATE_COUNT
        self._written += 1
        return "%02X/%02X" % ((index // SUBDIR_COUNT) % SUBDIR_COUNT, index % SUBDIR_COUNT)

    def _place(self, tmp: Path, make_name: Callable[[], str]) -> str:
        """Rename ``tmp`` to the first free name ``make_name`` gives (10 tries, then 16 EBUSY)."""
        with self._names:
            for _ in range(10):
                name = make_name()
                target = self.path(name)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(tmp, target)
                    return name
        raise _Status(EBUSY, "cannot generate a unique file name")

    def commit_upload(self, tmp: Path, crc32: int, ext: str, appender: bool) -> str:
        """Name a received body as ``storage_service_upload_file_done`` does and move it in place."""
        st = os.stat(tmp)
        created = int(st.st_mtime)
        ext_part = FileIdCodec.ext_part(ext)
        with self._names:
            subdir = self._next_subdir()

        def make_name() -> str:
            field = FileIdCodec.size_field(st.st_size, appender)
            return f"{subdir}/{FileIdCodec.encode(self.ip, created, field, crc32)}{ext_part}"

        return self._place(tmp, make_name)

    def commit_slave(self, tmp: Path, true_name: str) -> None:
        target = self.path(true_name)
        with self._names:
            if target.exists():
                raise _Status(EEXIST, f"slave file {true_name} already exists")
            os.rename(tmp, target)

    def regenerate(self, true_name: str) -> str:
        """A normal name for an appender file: new time, current size and CRC32, same directory and
        extension part (``calc_crc32_done_callback_for_regenerate``); metadata follows the file."""
        with self.lock(true_name):
            path = self.require_appender(true_name)
            crc32 = _crc32_of(path)
            size = path.stat().st_size
            subdir, base = true_name[:5], true_name[6:]
            ext_part = base[len(base) - EXT_PART_LEN :]

            def make_name() -> str:
                field = FileIdCodec.size_field(size)
                return f"{subdir}/{FileIdCodec.encode(self.ip, int(time.time()), field, crc32)}{ext_part}"

            new_name = self._place(path, make_name)
            meta = self.meta_path(true_name)
            if meta.exists():
                os.rename(meta, self.meta_path(new_name))
            return new_name

    def delete(self, true_name: str) -> None:
        with self.lock(true_name):
            path = self.require(true_name)
            os.unlink(path)
            _unlink_quiet(self.meta_path(true_name))

    # metadata
    def get_metadata(self, true_name: str) -> bytes:
        self.require(true_name)
        try:
            return self.meta_path(true_name).read_bytes()
        except FileNotFoundError:
            raise _Status(ENOENT, f"{true_name} has no metadata") from None

    def set_metadata(self, true_name: str, raw: bytes, flag: bytes) -> None:
        """As ``storage_do_set_metadata``: overwrite or merge, kept sorted; overwrite with nothing deletes."""
        with self.lock(true_name):
            self.require(true_name)
            new = parse_metadata(raw)
            meta = self.meta_path(true_name)
            if flag == b"O":
                if not new:
                    _unlink_quiet(meta)
                    return
                items = new
            else:
                if not raw:
                    return
                try:
                    items = parse_metadata(meta.read_bytes())
                except FileNotFoundError:
                    items = {}
                items.update(new)
            tmp = meta.with_name(meta.name + ".tmp")
            tmp.write_bytes(pack_metadata(items))
            os.replace(tmp, meta)

    # listing
    def names(self) -> Iterator[str]:
        if not self.data.is_dir():
            return
        for high in sorted(os.listdir(self.data)):
            for low in sorted(os.listdir(self.data / high)):
                for name in sorted(os.listdir(self.data / high / low)):
                    if not name.endswith("-m") and not name.endswith("-m.tmp"):
                        yield f"{high}/{low}/{name}"


class _StorageNode:
    """The one storage of a group: its files, its counters, its listener."""

    def __init__(self, group: str, store: FileStore) -> None:
        self.group = group
        self.store = store
        self.stats = StorageStats()
        self.listener: Optional[_Listener] = None
        self.port = 0
        self.join_time = int(time.time())
        self.up_time = self.join_time


class _Fault:
    def __init__(self, cmd: int, after: int, times: int, status: Optional[int]) -> None:
        self.cmd = cmd
        self.after = after
        self.remaining = times
        self.status = status

    def __repr__(self) -> str:
        what = f"status={self.status}" if self.status is not None else f"drop after {self.after} body bytes"
        return f"<fault cmd={self.cmd} {what} x{self.remaining}>"


# -- one request on the wire ----------------------------------------------------------------------


class _Request:
    """One request: its header, its body read on demand (with an injected cut), and its reply."""

    def __init__(self, sock: socket.socket, cmd: int, flags: int, length: int, drop_after: Optional[int]) -> None:
        self.sock = sock
        self.cmd = cmd
        self.flags = flags
        self.length = length
        self.remaining = length
        self.consumed = 0
        self.drop_after = drop_after
        self.replied = False

    def _allow(self, wanted: int) -> int:
        if self.drop_after is None:
            return wanted
        left = self.drop_after - self.consumed
        if left <= 0:
            raise _Dropped(f"fault: connection dropped after {self.consumed} body bytes of command {self.cmd}")
        return min(wanted, left)

    def take(self, n: int) -> bytes:
        """Exactly ``n`` more bytes of the body (22 if the body is shorter)."""
        if n > self.remaining:
            raise _Status(EINVAL, f"body of {self.length} bytes is too short")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._allow(n - got)
            r = self.sock.recv_into(view[got : got + k], k)
            if not r:
                raise _Disconnected(f"client closed after {self.consumed} of {self.length} body bytes")
            got += r
            self.consumed += r
            self.remaining -= r
        return bytes(buf)

    def rest(self, limit: int) -> bytes:
        """The rest of a small body (22 if it is longer than ``limit``)."""
        if self.remaining > limit:
            raise _Status(EINVAL, f"body of {self.length} bytes is too long")
        return self.take(self.remaining)

    def stream(self, n: int, sink: Callable[[memoryview], None]) -> None:
        """Pass the next ``n`` body bytes to ``sink`` in blocks of at most 256 KiB, one buffer reused."""
        buf = bytearray(min(BLOCK, max(n, 1)))
        view = memoryview(buf)
        left = n
        while left:
            k = self._allow(min(len(buf), left))
            r = self.sock.recv_into(view[:k], k)
            if not r:
                raise _Disconnected(f"client closed after {self.consumed} of {self.length} body bytes")
            sink(view[:r])
            left -= r
            self.consumed += r
            self.remaining -= r

    def discard(self) -> None:
        self.stream(self.remaining, lambda _block: None)

    def send_header(self, length: int, status: int = 0) -> None:
        if self.drop_after is not None:
            raise _Dropped(f"fault: connection dropped before the reply to command {self.cmd}")
        self.sock.sendall(HEADER.pack(length, CMD_RESP, status))
        self.replied = True

    def reply(self, status: int = 0, body: bytes = b"") -> None:
        if self.drop_after is not None:
            raise _Dropped(f"fault: connection dropped before the reply to command {self.cmd}")
        self.sock.sendall(HEADER.pack(len(body), CMD_RESP, status) + body)
        self.replied = True


# -- connection handlers --------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    """One client connection: many requests in a row (clients pool connections) until EOF or a close."""

    server: "_Listener"
    role = "?"
    closes_on_einval = False

    def setup(self) -> None:
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self) -> None:
        try:
            while self._serve_one():
                pass
        except OSError as exc:
            LOG.debug("%s %s: connection error: %s", self.role, self.client_address, exc)

    def _read_header(self) -> Optional[Tuple[int, int, int]]:
        buf = bytearray(HEADER_SIZE)
        view = memoryview(buf)
        got = 0
        while got < HEADER_SIZE:
            r = self.request.recv_into(view[got:], HEADER_SIZE - got)
            if not r:
                if got:
                    LOG.debug("%s %s: closed inside a header", self.role, self.client_address)
                return None
            got += r
        length, cmd, status = HEADER.unpack(buf)
        return length, cmd, status

    def _serve_one(self) -> bool:
        """Serve one request; False when the connection is to be closed."""
        head = self._read_header()
        if head is None:
            return False
        length, cmd, flags = head
        emulator = self.server.emulator
        fault = emulator._on_request(cmd)
        drop_after = fault.after if fault is not None and fault.status is None else None
        req = _Request(self.request, cmd, flags, length, drop_after)
        try:
            if fault is not None and fault.status is not None:
                LOG.debug("%s: %r answers command %d", self.role, fault, cmd)
                req.discard()
                req.reply(fault.status)
                if self.closes_on_einval and fault.status == EINVAL:
                    self._linger(req)
                    return False
                return True
            if cmd == CMD_QUIT:
                LOG.debug("%s %s: quit", self.role, self.client_address)
                return False
            return self.dispatch(req)
        except _Status as exc:
            LOG.debug("%s %s: command %d -> status %d: %s", self.role, self.client_address, cmd, exc.status, exc.reason)
            try:
                return self._answer_error(req, exc.status)
            except (_Dropped, _Disconnected) as cut:
                LOG.debug("%s %s: %s", self.role, self.client_address, cut)
                return False
        except (_Dropped, _Disconnected) as exc:
            LOG.debug("%s %s: %s", self.role, self.client_address, exc)
            return False

    def _answer_error(self, req: _Request, status: int) -> bool:
        if req.replied:  # an error after part of the reply went out: nothing to do but close
            return False
        if self.closes_on_einval and status == EINVAL:
            req.reply(status)
            self._linger(req)
            return False
        if req.remaining > BLOCK:
            req.reply(status)
            self._linger(req)
            return False
        req.discard()
        req.reply(status)
        return True

    def _linger(self, req: _Request) -> None:
        """Close after an error reply without resetting the connection under the reply: send FIN, then
        read (and drop) what the client still sends for a moment, so the client reads the reply."""
        sock = self.request
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            sock.settimeout(LINGER_SECONDS)
            while time.monotonic() < deadline:
                if not sock.recv(BLOCK):
                    break
        except OSError:
            pass

    def dispatch(self, req: _Request) -> bool:
        raise NotImplementedError


class _TrackerHandler(_Handler):
    """A tracker connection (``tracker_service.c``): small requests, errors never close."""

    role = "tracker"

    def dispatch(self, req: _Request) -> bool:
        if req.length > TRACKER_MAX_BODY:
            LOG.debug("tracker: command %d with a %d-byte body: closing", req.cmd, req.length)
            return False
        body = req.take(req.length)
        handler = self._COMMANDS.get(req.cmd)
        if handler is None:
            raise _Status(EINVAL, f"unknown tracker command {req.cmd}")
        req.reply(0, handler(self, body))
        return True

    @property
    def _emulator(self) -> "FdfsServer":
        return self.server.emulator

    def _ip_field(self) -> bytes:
        return self._emulator.advertised_ip.encode("ascii").ljust(self._emulator.ip_size, b"\0")

    def _node_for(self, raw_group: bytes) -> _StorageNode:
        name = _cstr(raw_group).decode("latin-1")
        node = self._emulator._nodes.get(name)
        if node is None:
            raise _Status(ENOENT, f"group {name!r} does not exist")
        return node

    @staticmethod
    def _expect_length(body: bytes, n: int) -> None:
        if len(body) != n:
            raise _Status(EINVAL, f"body of {len(body)} bytes, expected {n}")

    def _store_reply(self, node: _StorageNode) -> bytes:
        return _group16(node.group) + self._ip_field() + struct.pack(">QB", node.port, 0)

    def query_store_any(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return self._store_reply(self._emulator._first_node())

    def query_store_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._store_reply(self._node_for(body))

    def query_store_all(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return self._store_reply(self._emulator._first_node())

    def query_store_all_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._store_reply(self._node_for(body))

    def query_fetch(self, body: bytes) -> bytes:
        """102/103/105: the tracker only checks the group and the name's length, not that the file exists."""
        if len(body) < GROUP_NAME_LEN + 22 or len(body) >= GROUP_NAME_LEN + MAX_NAME_LEN:
            raise _Status(EINVAL, f"query fetch body of {len(body)} bytes")
        node = self._node_for(body[:GROUP_NAME_LEN])
        return _group16(node.group) + self._ip_field() + struct.pack(">Q", node.port)

    def _group_stat(self, node: _StorageNode) -> bytes:
        usage = shutil.disk_usage(node.store.data)
        return struct.pack(
            ">17s12q",
            node.group.encode("ascii"),
            usage.total // MiB,
            usage.free // MiB,
            0,  # reserved_mb
            0,  # trunk_free_mb
            1,  # storage_count
            node.port,
            1,  # readable_count
            1,  # writable_count
            0,  # current_write_server
            1,  # store_path_count
            SUBDIR_COUNT,
            0,  # current_trunk_file_id
        )

    def list_one_group(self, body: bytes) -> bytes:
        self._expect_length(body, GROUP_NAME_LEN)
        return self._group_stat(self._node_for(body))

    def list_all_groups(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return b"".join(self._group_stat(node) for node in self._emulator._nodes.values())

    def list_storages(self, body: bytes) -> bytes:
        """92: group16 [+ storage id or ip]; a given id that matches no storage -> 2."""
        if len(body) < GROUP_NAME_LEN or len(body) > GROUP_NAME_LEN + 45:
            raise _Status(EINVAL, f"list storages body of {len(body)} bytes")
        node = self._node_for(body[:GROUP_NAME_LEN])
        wanted = _cstr(body[GROUP_NAME_LEN:]).decode("latin-1")
        ip = self._emulator.advertised_ip
        if wanted and wanted != ip:
            raise _Status(ENOENT, f"no storage {wanted!r} in group {node.group!r}")
        usage = shutil.disk_usage(node.store.data)
        conns, stats = node.stats.snapshot()
        ip_len = self._emulator.ip_size + 1
        return struct.pack(
            f">BB16s{ip_len}s16s8s10q3i42qB",
            STORAGE_STATUS_ACTIVE,
            STORAGE_RW_MODE,
            ip.encode("ascii"),  # id: the ip without use_storage_id
            ip.encode("ascii"),
            b"",  # src_id
            VERSION.encode("ascii"),
            node.join_time,
            node.up_time,
            usage.total // MiB,
            usage.free // MiB,
            0,  # reserved_mb
            UPLOAD_PRIORITY,
            1,  # store_path_count
            SUBDIR_COUNT,
            0,  # current_write_path
            node.port,
            *conns,
            *stats,
            0,  # if_trunk_server
        )

    def active_test(self, body: bytes) -> bytes:
        self._expect_length(body, 0)
        return b""

    _COMMANDS: Dict[int, Callable[["_TrackerHandler", bytes], bytes]] = {
        TRACKER_QUERY_STORE_WITHOUT_GROUP_ONE: query_store_any,
        TRACKER_QUERY_STORE_WITH_GROUP_ONE: query_store_group,
        TRACKER_QUERY_STORE_WITHOUT_GROUP_ALL: query_store_all,
        TRACKER_QUERY_STORE_WITH_GROUP_ALL: query_store_all_group,
        TRACKER_QUERY_FETCH_ONE: query_fetch,
        TRACKER_QUERY_UPDATE: query_fetch,
        TRACKER_QUERY_FETCH_ALL: query_fetch,
        TRACKER_LIST_ONE_GROUP: list_one_group,
        TRACKER_LIST_ALL_GROUPS: list_all_groups,
        TRACKER_LIST_STORAGE: list_storages,
        CMD_ACTIVE_TEST: active_test,
    }


class _StorageHandler(_Handler):
    """A storage connection (``storage_service.c``): a reply with status 22 closes the connection."""

    role = "storage"
    closes_on_einval = True

    def setup(self) -> None:
        super().setup()
        self.node.stats.connection(+1)

    def finish(self) -> None:
        self.node.stats.connection(-1)

    @property
    def node(self) -> _StorageNode:
        node = self.server.node
        assert node is not None
        return node

    @property
    def store(self) -> FileStore:
        return self.node.store

    def dispatch(self, req: _Request) -> bool:
        handler = self._COMMANDS.get(req.cmd)
        if handler is None:
            raise _Status(EINVAL, f"unknown storage command {req.cmd}")
        handler(self, req)
        return True

    # helpers
    def _check_group(self, raw: bytes) -> None:
        name = _cstr(raw).decode("latin-1")
        if name != self.node.group:
            raise _Status(EINVAL, f"group {name!r} is not this storage's group {self.node.group!r}")

    def _done(self, req: _Request, body: bytes = b"") -> None:
        req.reply(0, body)

    def _file_reply(self, true_name: str) -> bytes:
        return _group16(self.node.group) + FileStore.remote(true_name).encode("ascii")

    def _receive_to_temp(self, req: _Request, size: int) -> Tuple[Path, int]:
        """Stream ``size`` body bytes into a new temporary file; (path, crc32). Nothing is left on error."""
        tmp = self.store.temp_path()
        crc = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        writes = 0
        try:

            def sink(block: memoryview) -> None:
                nonlocal crc, writes
                crc = zlib.crc32(block, crc)
                _write_all(fd, block)
                writes += 1

            req.stream(size, sink)
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp)
            raise
        os.close(fd)
        self.node.stats.file_io(opened=1, writes=writes)
        return tmp, crc

    # 11, 23
    def upload(self, req: _Request, appender: bool = False) -> None:
        """Upload a file (11) or an appender file (23): spi1 + size8 + ext6 + data."""
        if req.length < 1 + 8 + EXT_LEN:
            raise _Status(EINVAL, f"upload body of {req.length} bytes")
        spi, size, raw_ext = struct.unpack(">BQ6s", req.take(1 + 8 + EXT_LEN))
        if spi not in (0, 255):  # 255 is -1: let the storage choose
            raise _Status(EINVAL, f"store path index {spi}")
        if size != req.length - (1 + 8 + EXT_LEN):
            raise _Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        ext = _check_ext(raw_ext)
        self.store.check_space(size)
        try:
            tmp, crc = self._receive_to_temp(req, size)
            true_name = self.store.commit_upload(tmp, crc, ext, appender)
        except BaseException:
            self.node.stats.record("upload", False, max(req.consumed - 15, 0))
            raise
        self.node.stats.record("upload", True, size, change=True)
        self._done(req, self._file_reply(true_name))

    def upload_appender(self, req: _Request) -> None:
        self.upload(req, appender=True)

    # 21
    def upload_slave(self, req: _Request) -> None:
        """master_len8 + size8 + prefix16 + ext6 + master name + data."""
        fixed = 8 + 8 + PREFIX_LEN + EXT_LEN
        if req.length <= fixed:
            raise _Status(EINVAL, f"slave upload body of {req.length} bytes")
        master_len, size = struct.unpack(">QQ", req.take(16))
        if master_len <= LOGIC_PATH_LEN or master_len >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"master file name length {master_len}")
        if size != req.length - (fixed + master_len):
            raise _Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        prefix = _cstr(req.take(PREFIX_LEN))
        if not prefix:
            raise _Status(EINVAL, "empty prefix")
        if not _EXT_RE.fullmatch(prefix):
            raise _Status(EINVAL, f"invalid prefix {prefix!r}")
        ext = _check_ext(req.take(EXT_LEN))
        master = FileStore.true_name(req.take(master_len))
        self.store.check_space(size)
        self.store.require(master)
        try:
            slave = FileIdCodec.slave_name(master, prefix.decode("ascii"), ext)
        except ValueError as exc:
            raise _Status(EINVAL, str(exc)) from None
        if self.store.path(slave).exists():
            raise _Status(EEXIST, f"slave file {slave} already exists")
        try:
            tmp, _crc = self._receive_to_temp(req, size)
            try:
                self.store.commit_slave(tmp, slave)
            except BaseException:
                _unlink_quiet(tmp)
                raise
        except BaseException:
            self.node.stats.record("upload", False, max(req.consumed - fixed - master_len, 0))
            raise
        self.node.stats.record("upload", True, size, change=True)
        self._done(req, self._file_reply(slave))

    # 12
    def delete(self, req: _Request) -> None:
        body = req.rest(BLOCK)
        if len(body) <= GROUP_NAME_LEN:
            raise _Status(EINVAL, f"delete body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[GROUP_NAME_LEN:])
        try:
            self.store.delete(true_name)
        except _Status:
            self.node.stats.record("delete", False)
            raise
        self.node.stats.record("delete", True, change=True)
        self._done(req)

    # 13
    def set_metadata(self, req: _Request) -> None:
        """name_len8 + meta_len8 + flag1 + group16 + name + meta."""
        fixed = 8 + 8 + 1 + GROUP_NAME_LEN
        if req.length <= fixed:
            raise _Status(EINVAL, f"set metadata body of {req.length} bytes")
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        name_len, meta_len = struct.unpack(">QQ", body[:16])
        flag = body[16:17]
        if name_len <= 0 or name_len >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"file name length {name_len}")
        if flag not in (b"O", b"M"):
            raise _Status(EINVAL, f"metadata flag {flag!r}")
        if meta_len != len(body) - fixed - name_len:
            raise _Status(EINVAL, f"metadata length {meta_len} does not match the body")
        self._check_group(body[17:fixed])
        true_name = FileStore.true_name(body[fixed : fixed + name_len])
        try:
            self.store.set_metadata(true_name, body[fixed + name_len :], flag)
        except _Status:
            self.node.stats.record("set_meta", False)
            raise
        self.node.stats.record("set_meta", True, change=True)
        self._done(req)

    # 15
    def get_metadata(self, req: _Request) -> None:
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= GROUP_NAME_LEN:
            raise _Status(EINVAL, f"get metadata body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[GROUP_NAME_LEN:])
        try:
            meta = self.store.get_metadata(true_name)
        except _Status:
            self.node.stats.record("get_meta", False)
            raise
        self.node.stats.record("get_meta", True)
        self._done(req, meta)

    # 14
    def download(self, req: _Request) -> None:
        """offset8 + bytes8 + group16 + name; the length is clamped; offset >= size -> 22."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= 16 + GROUP_NAME_LEN:
            raise _Status(EINVAL, f"download body of {len(body)} bytes")
        offset, count = struct.unpack(">qq", body[:16])
        if offset < 0 or count < 0:
            raise _Status(EINVAL, f"offset {offset}, bytes {count}")
        self._check_group(body[16 : 16 + GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[16 + GROUP_NAME_LEN :])
        stats = self.node.stats
        try:
            f = open(self.store.require(true_name), "rb")
        except _Status:
            stats.record("download", False, 0)
            raise
        with f:
            size = os.fstat(f.fileno()).st_size
            if offset >= size:
                stats.record("download", False, 0)
                raise _Status(EINVAL, f"offset {offset} >= file size {size}")
            count = size - offset if count == 0 or count > size - offset else count
            req.send_header(count)
            sent = 0
            try:
                sent = self.request.sendfile(f, offset, count)
            finally:
                stats.file_io(opened=1, reads=max(1, -(-sent // BLOCK)))
                stats.record("download", sent == count, sent)
            if sent != count:  # the file shrank under us: the reply cannot be completed
                raise _Disconnected(f"sent {sent} of {count} bytes")

    # 22
    def query_file_info(self, req: _Request) -> None:
        """size8 + mtime8 + crc32 (a C int widened to 8 bytes) + source ip (16, or 46)."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= GROUP_NAME_LEN or len(body) - GROUP_NAME_LEN >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"query file info body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        remote = body[GROUP_NAME_LEN:]
        true_name = FileStore.true_name(remote)
        with self.store.lock(true_name):  # waits for an append in progress (or its rollback)
            path = self.store.require(true_name)
            if len(remote) < LOGIC_PATH_LEN + BASE64_LEN:
                raise _Status(EINVAL, f"file name {true_name} is too short")
            st = path.stat()
            try:
                decoded = FileIdCodec.decode(true_name)
            except ValueError:
                raise _Status(EINVAL, f"file name {true_name} does not decode") from None
            if decoded.is_appender or len(remote) > NORMAL_NAME_LEN:  # appender or slave: computed
                crc = 0 if req.flags & 1 else _crc32_of(path)
            else:
                crc = decoded.crc32
        signed_crc = crc - (1 << 32) if crc & 0x80000000 else crc
        ip_len = self.server.emulator.ip_size + 1
        reply = struct.pack(">qqq", st.st_size, int(st.st_mtime), signed_crc)
        self._done(req, reply + decoded.ip.encode("ascii").ljust(ip_len, b"\0"))

    # 24
    def append(self, req: _Request) -> None:
        """name_len8 + size8 + name + data; a cut off append is rolled back."""
        if req.length <= 16:
            raise _Status(EINVAL, f"append body of {req.length} bytes")
        name_len, size = struct.unpack(">QQ", req.take(16))
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"appender file name length {name_len}")
        if size != req.length - 16 - name_len:
            raise _Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        true_name = FileStore.true_name(req.take(name_len))
        stats = self.node.stats
        with self.store.lock(true_name):
            path = self.store.require_appender(true_name)
            if size == 0:
                self._done(req)
                return
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            before = os.fstat(fd).st_size
            writes = 0

            def sink(block: memoryview) -> None:
                nonlocal writes
                _write_all(fd, block)
                writes += 1

            try:
                req.stream(size, sink)
            except BaseException:
                os.ftruncate(fd, before)  # the real storage's rollback of a partial append
                LOG.debug("storage: append to %s cut off: rolled back to %d bytes", true_name, before)
                stats.record("append", False, req.consumed - 16 - name_len)
                raise
            finally:
                os.close(fd)
                stats.file_io(opened=1, writes=writes)
        stats.record("append", True, size, change=True)
        self._done(req)

    # 34
    def modify(self, req: _Request) -> None:
        """name_len8 + offset8 + size8 + name + data, written in place; offset > size -> 22."""
        if req.length <= 24:
            raise _Status(EINVAL, f"modify body of {req.length} bytes")
        name_len, offset, size = struct.unpack(">QqQ", req.take(24))
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"appender file name length {name_len}")
        if offset < 0:
            raise _Status(EINVAL, f"offset {offset}")
        if size != req.length - 24 - name_len:
            raise _Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        true_name = FileStore.true_name(req.take(name_len))
        path = self.store.require_appender(true_name)
        current = path.stat().st_size
        if offset > current:
            raise _Status(EINVAL, f"offset {offset} > appender file size {current}")
        if size == 0:
            self._done(req)
            return
        stats = self.node.stats
        fd = os.open(path, os.O_WRONLY)
        position = offset
        writes = 0

        def sink(block: memoryview) -> None:
            nonlocal position, writes
            _write_all(fd, block, position)
            position += len(block)
            writes += 1

        try:
            req.stream(size, sink)  # a cut off modify leaves what was written, as the real one does
        except BaseException:
            stats.record("modify", False, position - offset)
            raise
        finally:
            os.close(fd)
            stats.file_io(opened=1, writes=writes)
        stats.record("modify", True, size, change=True)
        self._done(req)

    # 36
    def truncate(self, req: _Request) -> None:
        """name_len8 + new_size8 + name; a larger size extends the file with zeros."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= 16:
            raise _Status(EINVAL, f"truncate body of {len(body)} bytes")
        name_len, new_size = struct.unpack(">Qq", body[:16])
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN or len(body) < 16 + name_len:
            raise _Status(EINVAL, f"appender file name length {name_len}")
        if new_size < 0:
            raise _Status(EINVAL, f"size {new_size}")
        true_name = FileStore.true_name(body[16 : 16 + name_len])
        stats = self.node.stats
        with self.store.lock(true_name):
            try:
                path = self.store.require_appender(true_name)
            except _Status:
                stats.record("truncate", False)
                raise
            if path.stat().st_size != new_size:
                os.truncate(path, new_size)
        stats.record("truncate", True, change=True)
        self._done(req)

    # 38
    def regenerate(self, req: _Request) -> None:
        """appender name -> group16 + a new normal name; the old name is gone."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) < NORMAL_NAME_LEN or len(body) >= MAX_NAME_LEN:
            raise _Status(EINVAL, f"regenerate body of {len(body)} bytes")
        new_name = self.store.regenerate(FileStore.true_name(body))
        self._done(req, self._file_reply(new_name))

    # 111
    def active_test(self, req: _Request) -> None:
        if req.length:
            raise _Status(EINVAL, f"active test with a {req.length}-byte body")
        self._done(req)

    _COMMANDS: Dict[int, Callable[["_StorageHandler", _Request], None]] = {
        STORAGE_UPLOAD_FILE: upload,
        STORAGE_UPLOAD_APPENDER_FILE: upload_appender,
        STORAGE_UPLOAD_SLAVE_FILE: upload_slave,
        STORAGE_DELETE_FILE: delete,
        STORAGE_SET_METADATA: set_metadata,
        STORAGE_GET_METADATA: get_metadata,
        STORAGE_DOWNLOAD_FILE: download,
        STORAGE_QUERY_FILE_INFO: query_file_info,
        STORAGE_APPEND_FILE: append,
        STORAGE_MODIFY_FILE: modify,
        STORAGE_TRUNCATE_FILE: truncate,
        STORAGE_REGENERATE_APPENDER_FILENAME: regenerate,
        CMD_ACTIVE_TEST: active_test,
    }


# -- listeners ------------------------------------------------------------------------------------


class _Listener(socketserver.ThreadingTCPServer):
    """A listening socket with one daemon thread per connection; :meth:`close` ends them all."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: Tuple[str, int],
        handler: type,
        emulator: "FdfsServer",
        node: Optional[_StorageNode],
        name: str,
    ) -> None:
        self.emulator = emulator
        self.node = node
        self.name = name
        self._lock = threading.Lock()
        self._open_socks: Set[socket.socket] = set()
        self._conn_threads: Set[threading.Thread] = set()
        super().__init__(address, handler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fdfs-{name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.emulator._on_connection()
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name=f"fdfs-{self.name}-conn", daemon=True
        )
        with self._lock:
            self._open_socks.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._open_socks.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        """Close as the real servers do, with a bare ``close()`` (no ``shutdown(SHUT_WR)`` first): the
        kernel sends a reset when bytes of the request are still unread (a connection dropped mid-body),
        a FIN otherwise (a dropped reply after the whole request was read)."""
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("%s: error serving %s", self.name, client_address, exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the listening socket, end every open connection, join the threads."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout)
        self.server_close()
        with self._lock:
            sockets = list(self._open_socks)
            threads = list(self._conn_threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# -- the emulator ---------------------------------------------------------------------------------


class FdfsServer:
    """FastDFS trackers and storages on ``127.0.0.1``, as a context manager (see the module docstring).

    ``root_dir`` holds the files (``None``: a temporary directory removed at :meth:`stop`); ``port``
    is the first tracker's (0: a free one; the other trackers and every storage take free ports);
    ``ip_size`` is 15 (the 6.16 default) or 45 (``response_ip_addr_size = IPv6``); one storage per
    name in ``groups``; ``trackers`` trackers that share one state.

    Addresses: :attr:`tracker`, :attr:`trackers`, :attr:`url` (``fdfs://host:port,...``),
    :meth:`storage`. Files: :meth:`path`, :meth:`stored_sha256`, :meth:`metadata`, :meth:`files`,
    :meth:`is_appender`. Faults and outages: :meth:`fail`, :meth:`clear_faults`,
    :meth:`stop_tracker`, :meth:`start_tracker`. Counters: :attr:`counts`, :attr:`connections`,
    :meth:`reset_counts`.
    """

    def __init__(
        self,
        root_dir: Union[str, os.PathLike, None] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ip_size: int = 15,
        groups: Sequence[str] = ("group1",),
        trackers: int = 1,
    ) -> None:
        if ip_size not in _IPS:
            raise ValueError("ip_size must be 15 or 45")
        if trackers < 1:
            raise ValueError("trackers must be >= 1")
        groups = tuple(groups)
        if not groups or len(set(groups)) != len(groups):
            raise ValueError("groups must be distinct names, at least one")
        for group in groups:
            if not group or len(group.encode("ascii")) > GROUP_NAME_LEN or not re.fullmatch(r"[A-Za-z0-9_]+", group):
                raise ValueError(f"invalid group name {group!r}")
        self.host = host
        self.ip_size = ip_size
        self.advertised_ip = host if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host) and host != "0.0.0.0" else "127.0.0.1"
        self._own_root = root_dir is None
        self.root = Path(tempfile.mkdtemp(prefix="fdfs-emulator-")) if root_dir is None else Path(root_dir)
        if self._own_root:  # removed at stop(), or when the server is garbage collected unstarted
            weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self._lock = threading.Lock()
        self._counts: "collections.Counter[int]" = collections.Counter()
        self._connections = 0
        self._faults: List[_Fault] = []
        self._nodes: Dict[str, _StorageNode] = {
            group: _StorageNode(group, FileStore(self.root, group, self.advertised_ip)) for group in groups
        }
        self._tracker_ports: List[int] = [port] + [0] * (trackers - 1)
        self._trackers: List[Optional[_Listener]] = [None] * trackers
        self._running = False

    # life
    def start(self) -> "FdfsServer":
        if self._running:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for node in self._nodes.values():
                node.store.prepare()
                node.listener = _Listener(
                    (self.host, node.port), _StorageHandler, self, node, f"storage-{node.group}"
                )
                node.port = node.listener.port
                node.up_time = int(time.time())
                node.listener.start()
            for i in range(len(self._trackers)):
                self.start_tracker(i)
        except BaseException:
            self._close_listeners()
            raise
        self._running = True
        LOG.debug("fdfs emulator: trackers %s, storages %s", self.trackers, {g: self.storage(g) for g in self._nodes})
        return self

    def stop(self) -> None:
        """Close every listening socket and client connection, join the threads; remove a temporary root."""
        self._close_listeners()
        self._running = False
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _close_listeners(self) -> None:
        for i in range(len(self._trackers)):
            self.stop_tracker(i)
        for node in self._nodes.values():
            if node.listener is not None:
                node.listener.close()
                node.listener = None

    def __enter__(self) -> "FdfsServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop_tracker(self, i: int) -> None:
        """Take tracker ``i`` down: its port refuses connections and its open connections are closed."""
        listener = self._trackers[i]
        if listener is not None:
            self._trackers[i] = None
            listener.close()

    def start_tracker(self, i: int) -> None:
        """Bring tracker ``i`` (back) up, on the same port as before."""
        if self._trackers[i] is not None:
            return
        listener = _Listener((self.host, self._tracker_ports[i]), _TrackerHandler, self, None, f"tracker-{i}")
        self._tracker_ports[i] = listener.port
        self._trackers[i] = listener
        listener.start()

    # addresses
    @property
    def trackers(self) -> List[str]:
        """``host:port`` of every tracker (all share the same state)."""
        return [f"{self.advertised_ip}:{port}" for port in self._tracker_ports]

    @property
    def tracker(self) -> str:
        return self.trackers[0]

    @property
    def url(self) -> str:
        return "fdfs://" + ",".join(self.trackers)

    def storage(self, group: str = "group1") -> str:
        """``host:port`` of the storage of ``group``."""
        try:
            node = self._nodes[group]
        except KeyError:
            raise KeyError(f"no group {group!r}; groups: {list(self._nodes)}") from None
        return f"{self.advertised_ip}:{node.port}"

    def _first_node(self) -> _StorageNode:
        """The group a store query without a group gets: all groups share one disk, so the real
        default (``store_lookup = 2``, the most free space) is a tie and the first one wins."""
        return next(iter(self._nodes.values()))

    # files
    def _locate(self, file_id: str) -> Tuple[FileStore, str]:
        group, sep, remote = file_id.partition("/")
        if re.fullmatch(r"M[0-9A-F]{2}", group):
            group, remote = self._first_node().group, file_id
        elif not sep:
            raise ValueError(f"not a file id: {file_id!r}")
        node = self._nodes.get(group)
        if node is None:
            raise ValueError(f"no group {group!r} in {file_id!r}")
        try:
            return node.store, FileStore.true_name(remote)
        except _Status as exc:
            raise ValueError(f"not a file id: {file_id!r} ({exc.reason})") from None

    def path(self, file_id: str) -> Path:
        """Where the bytes of ``file_id`` (``group1/M00/...``) are (or would be) on disk."""
        store, true_name = self._locate(file_id)
        return store.path(true_name)

    def stored_sha256(self, file_id: str) -> str:
        h = hashlib.sha256()
        with open(self.path(file_id), "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                h.update(block)
        return h.hexdigest()

    def metadata(self, file_id: str) -> Dict[str, str]:
        """The metadata of ``file_id`` ({} when it has none)."""
        store, true_name = self._locate(file_id)
        try:
            raw = store.meta_path(true_name).read_bytes()
        except FileNotFoundError:
            return {}
        return {
            k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in parse_metadata(raw).items()
        }

    def files(self) -> List[str]:
        """Every stored file id."""
        return [
            f"{group}/{FileStore.remote(name)}" for group, node in self._nodes.items() for name in node.store.names()
        ]

    def is_appender(self, file_id: str) -> bool:
        """Whether the name of ``file_id`` carries the appender flag."""
        return FileIdCodec.decode(file_id).is_appender

    # faults and counters
    def fail(self, cmd: int, *, after: int = 0, times: int = 1, status: Optional[int] = None) -> None:
        """Break the next ``times`` requests with command ``cmd``: drop the connection after ``after``
        body bytes (``status=None``), or answer ``status`` (the storage closes after a 22)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        if after < 0:
            raise ValueError("after must be >= 0")
        if status is not None and not 1 <= status <= 255:
            raise ValueError("status must be an errno, 1..255")
        fault = _Fault(cmd, after, times, status)
        with self._lock:
            self._faults.append(fault)
        LOG.debug("fdfs emulator: armed %r", fault)

    def clear_faults(self) -> None:
        """Disarm every fault not used up yet."""
        with self._lock:
            self._faults.clear()

    def _on_request(self, cmd: int) -> Optional[_Fault]:
        with self._lock:
            self._counts[cmd] += 1
            for i, fault in enumerate(self._faults):
                if fault.cmd == cmd:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[i]
                    return fault
        return None

    def _on_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def counts(self) -> "collections.Counter[int]":
        """Requests seen per command number, trackers and storages together (a copy)."""
        with self._lock:
            return collections.Counter(self._counts)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far, trackers and storages together."""
        with self._lock:
            return self._connections

    def reset_counts(self) -> None:
        """Zero :attr:`counts` and :attr:`connections`."""
        with self._lock:
            self._counts.clear()
            self._connections = 0

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<FdfsServer {state} trackers={self.trackers} groups={list(self._nodes)} root={str(self.root)!r}>"
