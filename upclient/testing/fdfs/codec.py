"""The FastDFS wire format and file names, as the emulator speaks them: constants, fields, metadata, ids.

Framing: a 10-byte header (body length, 8 bytes big-endian; command; status)
then the body; replies have command 100 and a status (0 or an errno, with an
empty body on error). Integers are 8-byte big-endian, group names 16 bytes
NUL padded; "remote" is a file id without its group (``M00/XX/YY/name``).

File names (``storage_gen_filename``): ``XX/YY`` are two levels of upper-case
hex subdirectories; then 27 characters of URL-safe base64 (no padding) of 20
bytes: source IPv4, creation time (the file's mtime when the upload ended),
size field (8), CRC32 (4); then always 7 more characters: the extension
padded on the left with random digits to 6 (``316.bin``), or 7 random digits
when there is no extension. The size field of a file under 4 GiB is
``(random23 | 0x80000000) << 32 | size``, of a larger file the size, of an
appender file ``(random23 | 0x80000000) << 32 | 1 << 58`` (size 0).

Written from the 6.16 sources; nothing here is shared with upclient's FastDFS
backend, so the two check each other.
"""

from __future__ import annotations

import base64
import random
import re
import socket
import struct
from typing import Dict, NamedTuple

__all__ = ["DecodedId", "FileIdCodec", "Status", "parse_metadata", "pack_metadata"]

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
SUBDIR_COUNT = 256

BLOCK = 256 * 1024  # streaming block, and the real storage's task buffer

EXT_RE = re.compile(rb"[A-Za-z0-9._-]*")
_BASE64_RE = re.compile(r"[A-Za-z0-9_-]{27}")
_DIGITS = "0123456789"


class Status(Exception):
    """A request answered with an error status (the real server's errno)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"status {status}: {reason}")
        self.status = status
        self.reason = reason


def group16(name: str) -> bytes:
    return name.encode("ascii").ljust(GROUP_NAME_LEN, b"\0")[:GROUP_NAME_LEN]


def cstr(raw: bytes) -> bytes:
    """Bytes up to the first NUL, as C reads a fixed-size field."""
    return raw.split(b"\0", 1)[0]


def check_ext(raw: bytes) -> str:
    ext = cstr(raw)
    if not EXT_RE.fullmatch(ext):
        raise Status(EINVAL, f"invalid file extension {ext!r}")
    return ext.decode("ascii")


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


# -- metadata -------------------------------------------------------------------------------------


def parse_metadata(raw: bytes) -> Dict[bytes, bytes]:
    """``name \\x02 value`` records joined by ``\\x01``; a name over 64 or a value over 256 bytes is 22."""
    items: Dict[bytes, bytes] = {}
    for record in raw.split(b"\x01"):
        if not record:
            continue
        name, _, value = record.partition(b"\x02")
        if len(name) > META_NAME_MAX or len(value) > META_VALUE_MAX:
            raise Status(EINVAL, f"metadata item too long: name {len(name)}, value {len(value)} bytes")
        items[name] = value
    return items


def pack_metadata(items: Dict[bytes, bytes]) -> bytes:
    """Sorted by name, as the storage keeps them; no trailing separator."""
    return b"\x01".join(name + b"\x02" + items[name] for name in sorted(items))
