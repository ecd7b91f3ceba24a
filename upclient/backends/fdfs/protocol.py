"""The FastDFS wire format, without sockets.

Every message is a 10-byte header (body length as an 8-byte big-endian
integer, a command byte, a status byte) and a body.  Replies carry command
100 and a status that is 0 or an errno, with an empty body on error.  This
module builds the fixed part of every request (:class:`Request`; a file's
bytes follow it, streamed by the caller), parses every reply, encodes
metadata and decodes file ids.  Facts are from FastDFS 6.x; tracker replies
carry IP fields of 15 or 45 bytes depending on the tracker's
``response_ip_addr_size``, and the parsers tell them apart by length.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import ipaddress
import re
import struct
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ...errors import BadInput, UpClientError

__all__ = [
    "Cmd",
    "HEADER",
    "RESPONSE",
    "Request",
    "StorageAddress",
    "GroupStat",
    "StorageStat",
    "FileStat",
    "FileId",
    "ProtocolError",
    "check_ext",
    "check_group",
    "check_prefix",
    "encode_metadata",
    "decode_metadata",
]

HEADER = struct.Struct(">QBB")
#: The command byte of every reply.
RESPONSE = 100

GROUP_LEN = 16
EXT_LEN = 6
PREFIX_LEN = 16
META_NAME_MAX = 64
META_VALUE_MAX = 256
#: The two IP field sizes a tracker may use (IPv4 and IPv6 address sizes minus one).
IP_SIZES = (15, 45)
_REMOTE_MAX = 128

_INT = struct.Struct(">Q")
_EXT_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_B64 = re.compile(r"^[A-Za-z0-9_-]{27}")
#: ``M00/00/00/<name>``: a name is 27 base64 characters, then what FastDFS adds (random
#: digits, a slave's prefix, ``.ext``), all of ``[A-Za-z0-9._-]``: no separator, escape or control character.
_REMOTE = re.compile(r"^M[0-9A-Fa-f]{2}/[0-9A-Fa-f]{2}/[0-9A-Fa-f]{2}/[A-Za-z0-9._-]+$")
_GROUP = re.compile(r"^[A-Za-z0-9_-]{1,16}$")

_RECORD_SEP = b"\x01"
_FIELD_SEP = b"\x02"

#: Bit flags in the size field of a file id.
APPENDER_FLAG = 1 << 58
TRUNK_FLAG = 1 << 59
_MASKED_SIZE = 1 << 63


class Cmd(enum.IntEnum):
    """Command bytes (tracker commands 82-111, storage commands 11-38)."""

    LIST_ONE_GROUP = 90
    LIST_GROUPS = 91
    LIST_STORAGES = 92
    QUERY_STORE = 101
    QUERY_FETCH = 102
    QUERY_UPDATE = 103
    QUERY_STORE_IN_GROUP = 104
    QUERY_FETCH_ALL = 105
    QUERY_STORE_ALL = 106
    QUERY_STORE_ALL_IN_GROUP = 107
    ACTIVE_TEST = 111
    QUIT = 82

    UPLOAD = 11
    DELETE = 12
    SET_METADATA = 13
    DOWNLOAD = 14
    GET_METADATA = 15
    UPLOAD_SLAVE = 21
    QUERY_FILE_INFO = 22
    UPLOAD_APPENDER = 23
    APPEND = 24
    MODIFY = 34
    TRUNCATE = 36
    REGENERATE = 38


class ProtocolError(UpClientError):
    """A reply that does not parse: wrong length, wrong command byte.

    The connection it came on is out of step and is dropped; the request may
    be tried again (on a new connection).
    """

    retryable = True


def _int(value: int) -> bytes:
    return _INT.pack(value)


def _fixed(text: str, size: int) -> bytes:
    raw = text.encode()
    return raw + b"\0" * (size - len(raw))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def check_group(group: str) -> str:
    if not isinstance(group, str) or not _GROUP.match(group):
        raise BadInput(f"a FastDFS group name is 1-16 letters, digits, '-' or '_', not {group!r}")
    return group


def check_ext(ext: Optional[str]) -> str:
    """A file extension as the storage accepts it: no dot, at most 6 of ``[A-Za-z0-9._-]``."""
    if ext is None:
        return ""
    if not isinstance(ext, str):
        raise BadInput(f"ext must be a string, not {type(ext).__name__}")
    ext = ext[1:] if ext.startswith(".") else ext
    if len(ext.encode()) > EXT_LEN or not _EXT_CHARS.match(ext):
        raise BadInput(
            f"a FastDFS file extension is at most {EXT_LEN} of A-Z a-z 0-9 . _ -, not {ext!r}; "
            "pass ext= to choose one (ext='' for none)"
        )
    return ext


def check_prefix(prefix: str) -> str:
    """A slave file prefix: 1-16 bytes of ``[A-Za-z0-9._-]`` (it becomes part of a file name)."""
    if not isinstance(prefix, str) or not prefix or len(prefix.encode()) > PREFIX_LEN or not _EXT_CHARS.match(prefix):
        raise BadInput(f"a slave prefix is 1-{PREFIX_LEN} of A-Z a-z 0-9 . _ -, not {prefix!r}")
    return prefix


# -- metadata -------------------------------------------------------------------------


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """``name \\x02 value`` records joined by ``\\x01``; names <= 64 bytes, values <= 256."""
    records = []
    for name, value in metadata.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise BadInput(f"metadata must map non-empty str names to str values, not {name!r}: {value!r}")
        raw_name, raw_value = name.encode(), value.encode()
        if len(raw_name) > META_NAME_MAX:
            raise BadInput(
                f"metadata name {name[:20]!r}... is {len(raw_name)} bytes; FastDFS keeps at most {META_NAME_MAX}"
            )
        if len(raw_value) > META_VALUE_MAX:
            raise BadInput(
                f"metadata value of {name!r} is {len(raw_value)} bytes; FastDFS keeps at most {META_VALUE_MAX}"
            )
        for raw in (raw_name, raw_value):
            if _RECORD_SEP in raw or _FIELD_SEP in raw:
                raise BadInput(f"metadata of {name!r} contains a \\x01 or \\x02 byte, FastDFS's separators")
        records.append(raw_name + _FIELD_SEP + raw_value)
    return _RECORD_SEP.join(records)


def decode_metadata(body: bytes) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for record in body.split(_RECORD_SEP):
        if not record:
            continue
        name, _, value = record.partition(_FIELD_SEP)
        out[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


# -- file ids -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileId:
    """A FastDFS file id, ``group/remote``, and what its name encodes.

    The first 27 characters of the file name are 20 bytes in URL-safe base64:
    the source storage's IPv4 address, the creation time, the size (with
    flags for appender and trunk files) and the CRC32 of the content at
    upload.  An appender file's id says size 0: ask the storage for its size.
    """

    group: str
    remote: str

    @classmethod
    def parse(cls, text: str) -> "FileId":
        if not isinstance(text, str):
            raise BadInput(f"a FastDFS file id is a string, not {type(text).__name__}")
        group, sep, remote = text.strip().lstrip("/").partition("/")
        if not sep or not _GROUP.match(group) or not _REMOTE.match(remote) or len(remote.encode()) > _REMOTE_MAX:
            raise BadInput(f"{text!r} is not a FastDFS file id (group1/M00/00/00/<name>)")
        if not _B64.match(remote.rsplit("/", 1)[1]):
            raise BadInput(f"{text!r} is not a FastDFS file id: its name does not start with 27 base64 characters")
        return cls(group, remote)

    def __str__(self) -> str:
        return f"{self.group}/{self.remote}"

    @property
    def name(self) -> str:
        return self.remote.rsplit("/", 1)[1]

    def _fields(self) -> Tuple[bytes, int, int, int]:
        raw = base64.urlsafe_b64decode(self.name[:27] + "=")
        ip, created, size, crc = struct.unpack(">4sIQI", raw)
        return ip, created, size, crc

    @property
    def source_ip(self) -> str:
        return str(ipaddress.IPv4Address(self._fields()[0]))

    @property
    def created(self) -> int:
        """Creation time, epoch seconds."""
        return self._fields()[1]

    @property
    def crc32(self) -> int:
        """The CRC32 of the content at upload (0 for an appender file)."""
        return self._fields()[3]

    @property
    def appender(self) -> bool:
        return bool(self._fields()[2] & APPENDER_FLAG)

    @property
    def trunk(self) -> bool:
        return bool(self._fields()[2] & TRUNK_FLAG)

    @property
    def size(self) -> Optional[int]:
        """The size at upload; None for an appender file (it can grow)."""
        raw = self._fields()[2]
        if raw & APPENDER_FLAG:
            return None
        if raw & _MASKED_SIZE:  # under 4 GiB: random high bits, size in the low 32
            return raw & 0xFFFFFFFF
        return raw & ~(APPENDER_FLAG | TRUNK_FLAG)

    def pack(self) -> bytes:
        """``group16 + remote``, the body of most file commands."""
        return _fixed(self.group, GROUP_LEN) + self.remote.encode()


# -- requests -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    """The fixed part of a request; ``data_len`` bytes of file content follow it."""

    cmd: int
    head: bytes = b""
    data_len: int = 0

    def header(self) -> bytes:
        return HEADER.pack(len(self.head) + self.data_len, self.cmd, 0)

    # tracker -------------------------------------------------------------------------

    @classmethod
    def query_store(cls, group: Optional[str] = None, *, every: bool = False) -> "Request":
        if group:
            cmd = Cmd.QUERY_STORE_ALL_IN_GROUP if every else Cmd.QUERY_STORE_IN_GROUP
            return cls(cmd, _fixed(check_group(group), GROUP_LEN))
        return cls(Cmd.QUERY_STORE_ALL if every else Cmd.QUERY_STORE)

    @classmethod
    def query_fetch(cls, fid: FileId, *, update: bool = False, every: bool = False) -> "Request":
        cmd = Cmd.QUERY_UPDATE if update else (Cmd.QUERY_FETCH_ALL if every else Cmd.QUERY_FETCH)
        return cls(cmd, fid.pack())

    @classmethod
    def list_groups(cls, group: Optional[str] = None) -> "Request":
        if group:
            return cls(Cmd.LIST_ONE_GROUP, _fixed(check_group(group), GROUP_LEN))
        return cls(Cmd.LIST_GROUPS)

    @classmethod
    def list_storages(cls, group: str, storage_id: Optional[str] = None) -> "Request":
        return cls(Cmd.LIST_STORAGES, _fixed(check_group(group), GROUP_LEN) + (storage_id or "").encode())

    # storage -------------------------------------------------------------------------

    @classmethod
    def upload(cls, size: int, ext: str, *, path_index: int = 0, appender: bool = False) -> "Request":
        cmd = Cmd.UPLOAD_APPENDER if appender else Cmd.UPLOAD
        return cls(cmd, bytes([path_index]) + _int(size) + _fixed(ext, EXT_LEN), size)

    @classmethod
    def upload_slave(cls, master: FileId, prefix: str, size: int, ext: str) -> "Request":
        remote = master.remote.encode()
        head = _int(len(remote)) + _int(size) + _fixed(prefix, PREFIX_LEN) + _fixed(ext, EXT_LEN) + remote
        return cls(Cmd.UPLOAD_SLAVE, head, size)

    @classmethod
    def download(cls, fid: FileId, offset: int = 0, length: int = 0) -> "Request":
        return cls(Cmd.DOWNLOAD, _int(offset) + _int(length) + fid.pack())

    @classmethod
    def on_file(cls, cmd: int, fid: FileId) -> "Request":
        """Delete (12), get metadata (15), query file info (22): ``group16 + remote``."""
        return cls(cmd, fid.pack())

    @classmethod
    def set_metadata(cls, fid: FileId, meta: bytes, *, merge: bool) -> "Request":
        remote = fid.remote.encode()
        head = _int(len(remote)) + _int(len(meta)) + (b"M" if merge else b"O") + fid.pack() + meta
        return cls(Cmd.SET_METADATA, head)

    @classmethod
    def append(cls, fid: FileId, size: int) -> "Request":
        remote = fid.remote.encode()
        return cls(Cmd.APPEND, _int(len(remote)) + _int(size) + remote, size)

    @classmethod
    def modify(cls, fid: FileId, offset: int, size: int) -> "Request":
        remote = fid.remote.encode()
        return cls(Cmd.MODIFY, _int(len(remote)) + _int(offset) + _int(size) + remote, size)

    @classmethod
    def truncate(cls, fid: FileId, size: int) -> "Request":
        remote = fid.remote.encode()
        return cls(Cmd.TRUNCATE, _int(len(remote)) + _int(size) + remote)

    @classmethod
    def regenerate(cls, fid: FileId) -> "Request":
        return cls(Cmd.REGENERATE, fid.remote.encode())


# -- replies --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StorageAddress:
    """Where a tracker sends a client: a storage's address, and its group."""

    group: str
    host: str
    port: int
    path_index: int = 0

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _bad(what: str, body: bytes, expected: str) -> ProtocolError:
    return ProtocolError(f"unexpected {what} reply: {len(body)} bytes, expected {expected}")


def parse_store(body: bytes) -> StorageAddress:
    """Reply to 101/104: group16 + ip + port8 + store_path_index1 (40 or 70 bytes)."""
    for ip in IP_SIZES:
        if len(body) == GROUP_LEN + ip + 9:
            port = _INT.unpack_from(body, GROUP_LEN + ip)[0]
            return StorageAddress(_text(body[:GROUP_LEN]), _text(body[GROUP_LEN : GROUP_LEN + ip]), port, body[-1])
    raise _bad("query-store", body, "40 or 70 bytes")


def parse_fetch(body: bytes) -> StorageAddress:
    """Reply to 102/103: group16 + ip + port8 (39 or 69 bytes)."""
    for ip in IP_SIZES:
        if len(body) == GROUP_LEN + ip + 8:
            port = _INT.unpack_from(body, GROUP_LEN + ip)[0]
            return StorageAddress(_text(body[:GROUP_LEN]), _text(body[GROUP_LEN : GROUP_LEN + ip]), port)
    raise _bad("query-fetch", body, "39 or 69 bytes")


def _servers(body: bytes, group: str, tail: int, ip: int) -> List[StorageAddress]:
    out = []
    for pos in range(GROUP_LEN, len(body) - tail, ip + 8):
        port = _INT.unpack_from(body, pos + ip)[0]
        out.append(StorageAddress(group, _text(body[pos : pos + ip]), port, body[-1] if tail else 0))
    return out


def parse_server_list(body: bytes, *, with_path_index: bool, ip_hint: Optional[int] = None) -> List[StorageAddress]:
    """Reply to 105 (group16 + N x (ip + port8)) or 106/107 (the same + store_path_index1)."""
    tail = 1 if with_path_index else 0
    rest = len(body) - GROUP_LEN - tail
    sizes = [ip_hint] if ip_hint in IP_SIZES else list(IP_SIZES)
    for ip in sizes:
        if rest > 0 and rest % (ip + 8) == 0:
            return _servers(body, _text(body[:GROUP_LEN]), tail, ip)
    raise _bad("server list", body, "group + N x (ip + port)")


#: The 12 integers of a group record (tracker 90/91), in wire order.
_GROUP_FIELDS = (
    "total_mb",
    "free_mb",
    "reserved_mb",
    "trunk_free_mb",
    "storage_count",
    "storage_port",
    "readable_count",
    "writable_count",
    "current_write_server",
    "store_path_count",
    "subdir_count_per_path",
    "current_trunk_file_id",
)


@dataclasses.dataclass(frozen=True)
class GroupStat:
    """One group as the tracker lists it (sizes in MB)."""

    name: str
    total_mb: int
    free_mb: int
    reserved_mb: int
    trunk_free_mb: int
    storage_count: int
    storage_port: int
    readable_count: int
    writable_count: int
    current_write_server: int
    store_path_count: int
    subdir_count_per_path: int
    current_trunk_file_id: int


def parse_groups(body: bytes) -> List[GroupStat]:
    """N x 113-byte group records (105 bytes, without reserved_mb, from servers before 6.x)."""
    for size in (17 + 12 * 8, 17 + 11 * 8):
        if len(body) % size == 0:
            break
    else:
        raise _bad("group list", body, "a multiple of 113 bytes")
    out = []
    for pos in range(0, len(body), size):
        rec = body[pos : pos + size]
        # current_trunk_file_id, the last, is signed: -1 when there is no trunk file
        numbers = list(struct.unpack_from(f">{(size - 17) // 8 - 1}Qq", rec, 17))
        if size != 113:
            numbers.insert(2, 0)
        out.append(GroupStat(_text(rec[:17]), *numbers))
    return out


@dataclasses.dataclass(frozen=True)
class StorageStat:
    """One storage server as the tracker lists it (tracker command 92)."""

    id: str
    ip: str
    status: int
    version: str
    join_time: int
    up_time: int
    total_mb: int
    free_mb: int
    upload_priority: int
    store_path_count: int
    storage_port: int
    total_upload_count: int
    success_upload_count: int
    total_download_count: int
    success_download_count: int

    #: Status numbers of FastDFS (7 is ACTIVE: serving).
    STATUS_NAMES = {0: "INIT", 1: "WAIT_SYNC", 2: "SYNCING", 3: "IP_CHANGED", 4: "DELETED",
                    5: "OFFLINE", 6: "ONLINE", 7: "ACTIVE", 8: "RECOVERY", 9: "RECOVERY", 99: "NONE"}

    @property
    def status_name(self) -> str:
        return self.STATUS_NAMES.get(self.status, str(self.status))


def _storage_record_size(ip: int) -> int:
    # status, rw_mode, id16, ip, src_id16, version8, 10 x int64, 3 x int32, 42 x int64, if_trunk_server
    return 2 + 16 + (ip + 1) + 16 + 8 + 80 + 12 + 42 * 8 + 1


def parse_storages(body: bytes) -> List[StorageStat]:
    """N storage records of 487 bytes (517 when the tracker answers with IPv6-sized fields)."""
    for ip in IP_SIZES:
        size = _storage_record_size(ip)
        if len(body) % size == 0:
            break
    else:
        raise _bad("storage list", body, "a multiple of 487 or 517 bytes")
    out = []
    ip_field = ip + 1
    for pos in range(0, len(body), size):
        rec = body[pos : pos + size]
        at = 2
        sid = _text(rec[at : at + 16])
        at += 16
        addr = _text(rec[at : at + ip_field])
        at += ip_field + 16  # skip src_id
        version = _text(rec[at : at + 8])
        at += 8
        join, up, total, free, _reserved, prio, paths, _subdirs, _write_path, port = struct.unpack_from(">10Q", rec, at)
        at += 80 + 12
        counts = struct.unpack_from(">42Q", rec, at)
        out.append(
            StorageStat(
                id=sid, ip=addr, status=rec[0], version=version, join_time=join, up_time=up,
                total_mb=total, free_mb=free, upload_priority=prio, store_path_count=paths, storage_port=port,
                total_upload_count=counts[0], success_upload_count=counts[1],
                total_download_count=counts[12], success_download_count=counts[13],
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class FileStat:
    """The storage's answer to query-file-info (22)."""

    size: int
    created: int
    crc32: int
    source_ip: str


def parse_file_info(body: bytes) -> FileStat:
    """size8 + create_time8 + crc32 (8) + source ip (16 or 46 bytes)."""
    if len(body) not in (24 + 16, 24 + 46):
        raise _bad("query-file-info", body, "40 or 70 bytes")
    size, created, crc = struct.unpack_from(">3Q", body)
    return FileStat(size, created, crc & 0xFFFFFFFF, _text(body[24:]))


def parse_file_name(body: bytes) -> FileId:
    """Reply to the upload commands and to regenerate: group16 + remote."""
    if len(body) <= GROUP_LEN:
        raise _bad("file name", body, "group + remote name")
    return FileId.parse(f"{_text(body[:GROUP_LEN])}/{body[GROUP_LEN:].decode('utf-8', 'replace')}")


def ext_of(name: Optional[str]) -> str:
    """The extension FastDFS would keep for a file called ``name`` ('' if none)."""
    if not name or "." not in name.lstrip("."):
        return ""
    return name.rsplit(".", 1)[1]


def split_addresses(text: str, default_port: int = 22122) -> Sequence[Tuple[str, int]]:
    """``host[:port],host[:port]`` (IPv6 hosts in brackets) as a list of addresses."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest.lstrip(":")
        else:
            host, _, port_text = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise BadInput(f"{item!r} is not host:port") from None
        if not host or not 0 < port < 65536:
            raise BadInput(f"{item!r} is not host:port")
        out.append((host, port))
    if not out:
        raise BadInput("give at least one tracker: fdfs://host:22122[,host:22122]")
    return out
