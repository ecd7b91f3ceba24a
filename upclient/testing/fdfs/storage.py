"""The storage (``storage_service.c``): files up and down, appender files, slaves, metadata.

Each group's storage has its own port:

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
* File names: see :mod:`~upclient.testing.fdfs.codec` (the 27 + 7
  characters) and :mod:`~upclient.testing.fdfs.store` (the ``XX/YY``
  directories).
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

Bodies are streamed in 256 KiB blocks both ways (``recv_into`` one buffer;
``socket.sendfile``), so a 1 GiB upload or download never sits in memory.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, Dict, Tuple

from upclient.testing.fdfs.codec import (
    BASE64_LEN,
    BLOCK,
    CMD_ACTIVE_TEST,
    EEXIST,
    EINVAL,
    EXT_LEN,
    EXT_RE,
    GROUP_NAME_LEN,
    HEADER_SIZE,
    LOGIC_PATH_LEN,
    MAX_NAME_LEN,
    NORMAL_NAME_LEN,
    PREFIX_LEN,
    STORAGE_APPEND_FILE,
    STORAGE_DELETE_FILE,
    STORAGE_DOWNLOAD_FILE,
    STORAGE_GET_METADATA,
    STORAGE_MODIFY_FILE,
    STORAGE_QUERY_FILE_INFO,
    STORAGE_REGENERATE_APPENDER_FILENAME,
    STORAGE_SET_METADATA,
    STORAGE_TRUNCATE_FILE,
    STORAGE_UPLOAD_APPENDER_FILE,
    STORAGE_UPLOAD_FILE,
    STORAGE_UPLOAD_SLAVE_FILE,
    FileIdCodec,
    Status,
    check_ext,
    cstr,
    group16,
)
from upclient.testing.fdfs.connection import Disconnected, Handler, Request
from upclient.testing.fdfs.node import StorageNode
from upclient.testing.fdfs.store import FileStore, crc32_of, unlink_quiet, write_all

__all__ = ["StorageHandler"]

LOG = logging.getLogger("upclient.testing.fdfs")


class StorageHandler(Handler):
    """A storage connection (``storage_service.c``): a reply with status 22 closes the connection."""

    role = "storage"
    closes_on_einval = True

    def setup(self) -> None:
        super().setup()
        self.node.stats.connection(+1)

    def finish(self) -> None:
        self.node.stats.connection(-1)

    @property
    def node(self) -> StorageNode:
        node = self.server.node
        assert node is not None
        return node

    @property
    def store(self) -> FileStore:
        return self.node.store

    def dispatch(self, req: Request) -> bool:
        handler = self._COMMANDS.get(req.cmd)
        if handler is None:
            raise Status(EINVAL, f"unknown storage command {req.cmd}")
        handler(self, req)
        return True

    # helpers
    def _check_group(self, raw: bytes) -> None:
        name = cstr(raw).decode("latin-1")
        if name != self.node.group:
            raise Status(EINVAL, f"group {name!r} is not this storage's group {self.node.group!r}")

    def _done(self, req: Request, body: bytes = b"") -> None:
        req.reply(0, body)

    def _file_reply(self, true_name: str) -> bytes:
        return group16(self.node.group) + FileStore.remote(true_name).encode("ascii")

    def _receive_to_temp(self, req: Request, size: int) -> Tuple[Path, int]:
        """Stream ``size`` body bytes into a new temporary file; (path, crc32). Nothing is left on error."""
        tmp = self.store.temp_path()
        crc = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        writes = 0
        try:

            def sink(block: memoryview) -> None:
                nonlocal crc, writes
                crc = zlib.crc32(block, crc)
                write_all(fd, block)
                writes += 1

            req.stream(size, sink)
        except BaseException:
            os.close(fd)
            unlink_quiet(tmp)
            raise
        os.close(fd)
        self.node.stats.file_io(opened=1, writes=writes)
        return tmp, crc

    # 11, 23
    def upload(self, req: Request, appender: bool = False) -> None:
        """Upload a file (11) or an appender file (23): spi1 + size8 + ext6 + data."""
        if req.length < 1 + 8 + EXT_LEN:
            raise Status(EINVAL, f"upload body of {req.length} bytes")
        spi, size, raw_ext = struct.unpack(">BQ6s", req.take(1 + 8 + EXT_LEN))
        if spi not in (0, 255):  # 255 is -1: let the storage choose
            raise Status(EINVAL, f"store path index {spi}")
        if size != req.length - (1 + 8 + EXT_LEN):
            raise Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        ext = check_ext(raw_ext)
        self.store.check_space(size)
        try:
            tmp, crc = self._receive_to_temp(req, size)
            true_name = self.store.commit_upload(tmp, crc, ext, appender)
        except BaseException:
            self.node.stats.record("upload", False, max(req.consumed - 15, 0))
            raise
        self.node.stats.record("upload", True, size, change=True)
        self._done(req, self._file_reply(true_name))

    def upload_appender(self, req: Request) -> None:
        self.upload(req, appender=True)

    # 21
    def upload_slave(self, req: Request) -> None:
        """master_len8 + size8 + prefix16 + ext6 + master name + data."""
        fixed = 8 + 8 + PREFIX_LEN + EXT_LEN
        if req.length <= fixed:
            raise Status(EINVAL, f"slave upload body of {req.length} bytes")
        master_len, size = struct.unpack(">QQ", req.take(16))
        if master_len <= LOGIC_PATH_LEN or master_len >= MAX_NAME_LEN:
            raise Status(EINVAL, f"master file name length {master_len}")
        if size != req.length - (fixed + master_len):
            raise Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        prefix = cstr(req.take(PREFIX_LEN))
        if not prefix:
            raise Status(EINVAL, "empty prefix")
        if not EXT_RE.fullmatch(prefix):
            raise Status(EINVAL, f"invalid prefix {prefix!r}")
        ext = check_ext(req.take(EXT_LEN))
        master = FileStore.true_name(req.take(master_len))
        self.store.check_space(size)
        self.store.require(master)
        try:
            slave = FileIdCodec.slave_name(master, prefix.decode("ascii"), ext)
        except ValueError as exc:
            raise Status(EINVAL, str(exc)) from None
        if self.store.path(slave).exists():
            raise Status(EEXIST, f"slave file {slave} already exists")
        try:
            tmp, _crc = self._receive_to_temp(req, size)
            try:
                self.store.commit_slave(tmp, slave)
            except BaseException:
                unlink_quiet(tmp)
                raise
        except BaseException:
            self.node.stats.record("upload", False, max(req.consumed - fixed - master_len, 0))
            raise
        self.node.stats.record("upload", True, size, change=True)
        self._done(req, self._file_reply(slave))

    # 12
    def delete(self, req: Request) -> None:
        body = req.rest(BLOCK)
        if len(body) <= GROUP_NAME_LEN:
            raise Status(EINVAL, f"delete body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[GROUP_NAME_LEN:])
        try:
            self.store.delete(true_name)
        except Status:
            self.node.stats.record("delete", False)
            raise
        self.node.stats.record("delete", True, change=True)
        self._done(req)

    # 13
    def set_metadata(self, req: Request) -> None:
        """name_len8 + meta_len8 + flag1 + group16 + name + meta."""
        fixed = 8 + 8 + 1 + GROUP_NAME_LEN
        if req.length <= fixed:
            raise Status(EINVAL, f"set metadata body of {req.length} bytes")
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        name_len, meta_len = struct.unpack(">QQ", body[:16])
        flag = body[16:17]
        if name_len <= 0 or name_len >= MAX_NAME_LEN:
            raise Status(EINVAL, f"file name length {name_len}")
        if flag not in (b"O", b"M"):
            raise Status(EINVAL, f"metadata flag {flag!r}")
        if meta_len != len(body) - fixed - name_len:
            raise Status(EINVAL, f"metadata length {meta_len} does not match the body")
        self._check_group(body[17:fixed])
        true_name = FileStore.true_name(body[fixed : fixed + name_len])
        try:
            self.store.set_metadata(true_name, body[fixed + name_len :], flag)
        except Status:
            self.node.stats.record("set_meta", False)
            raise
        self.node.stats.record("set_meta", True, change=True)
        self._done(req)

    # 15
    def get_metadata(self, req: Request) -> None:
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= GROUP_NAME_LEN:
            raise Status(EINVAL, f"get metadata body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[GROUP_NAME_LEN:])
        try:
            meta = self.store.get_metadata(true_name)
        except Status:
            self.node.stats.record("get_meta", False)
            raise
        self.node.stats.record("get_meta", True)
        self._done(req, meta)

    # 14
    def download(self, req: Request) -> None:
        """offset8 + bytes8 + group16 + name; the length is clamped; offset >= size -> 22."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= 16 + GROUP_NAME_LEN:
            raise Status(EINVAL, f"download body of {len(body)} bytes")
        offset, count = struct.unpack(">qq", body[:16])
        if offset < 0 or count < 0:
            raise Status(EINVAL, f"offset {offset}, bytes {count}")
        self._check_group(body[16 : 16 + GROUP_NAME_LEN])
        true_name = FileStore.true_name(body[16 + GROUP_NAME_LEN :])
        stats = self.node.stats
        try:
            f = open(self.store.require(true_name), "rb")
        except Status:
            stats.record("download", False, 0)
            raise
        with f:
            size = os.fstat(f.fileno()).st_size
            if offset >= size:
                stats.record("download", False, 0)
                raise Status(EINVAL, f"offset {offset} >= file size {size}")
            count = size - offset if count == 0 or count > size - offset else count
            req.send_header(count)
            sent = 0
            try:
                sent = self.request.sendfile(f, offset, count)
            finally:
                stats.file_io(opened=1, reads=max(1, -(-sent // BLOCK)))
                stats.record("download", sent == count, sent)
            if sent != count:  # the file shrank under us: the reply cannot be completed
                raise Disconnected(f"sent {sent} of {count} bytes")

    # 22
    def query_file_info(self, req: Request) -> None:
        """size8 + mtime8 + crc32 (a C int widened to 8 bytes) + source ip (16, or 46)."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= GROUP_NAME_LEN or len(body) - GROUP_NAME_LEN >= MAX_NAME_LEN:
            raise Status(EINVAL, f"query file info body of {len(body)} bytes")
        self._check_group(body[:GROUP_NAME_LEN])
        remote = body[GROUP_NAME_LEN:]
        true_name = FileStore.true_name(remote)
        with self.store.lock(true_name):  # waits for an append in progress (or its rollback)
            path = self.store.require(true_name)
            if len(remote) < LOGIC_PATH_LEN + BASE64_LEN:
                raise Status(EINVAL, f"file name {true_name} is too short")
            st = path.stat()
            try:
                decoded = FileIdCodec.decode(true_name)
            except ValueError:
                raise Status(EINVAL, f"file name {true_name} does not decode") from None
            if decoded.is_appender or len(remote) > NORMAL_NAME_LEN:  # appender or slave: computed
                crc = 0 if req.flags & 1 else crc32_of(path)
            else:
                crc = decoded.crc32
        signed_crc = crc - (1 << 32) if crc & 0x80000000 else crc
        ip_len = self.server.emulator.ip_size + 1
        reply = struct.pack(">qqq", st.st_size, int(st.st_mtime), signed_crc)
        self._done(req, reply + decoded.ip.encode("ascii").ljust(ip_len, b"\0"))

    # 24
    def append(self, req: Request) -> None:
        """name_len8 + size8 + name + data; a cut off append is rolled back."""
        if req.length <= 16:
            raise Status(EINVAL, f"append body of {req.length} bytes")
        name_len, size = struct.unpack(">QQ", req.take(16))
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN:
            raise Status(EINVAL, f"appender file name length {name_len}")
        if size != req.length - 16 - name_len:
            raise Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
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
                write_all(fd, block)
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
    def modify(self, req: Request) -> None:
        """name_len8 + offset8 + size8 + name + data, written in place; offset > size -> 22."""
        if req.length <= 24:
            raise Status(EINVAL, f"modify body of {req.length} bytes")
        name_len, offset, size = struct.unpack(">QqQ", req.take(24))
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN:
            raise Status(EINVAL, f"appender file name length {name_len}")
        if offset < 0:
            raise Status(EINVAL, f"offset {offset}")
        if size != req.length - 24 - name_len:
            raise Status(EINVAL, f"file size {size} does not match the body of {req.length} bytes")
        true_name = FileStore.true_name(req.take(name_len))
        path = self.store.require_appender(true_name)
        current = path.stat().st_size
        if offset > current:
            raise Status(EINVAL, f"offset {offset} > appender file size {current}")
        if size == 0:
            self._done(req)
            return
        stats = self.node.stats
        fd = os.open(path, os.O_WRONLY)
        position = offset
        writes = 0

        def sink(block: memoryview) -> None:
            nonlocal position, writes
            write_all(fd, block, position)
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
    def truncate(self, req: Request) -> None:
        """name_len8 + new_size8 + name; a larger size extends the file with zeros."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) <= 16:
            raise Status(EINVAL, f"truncate body of {len(body)} bytes")
        name_len, new_size = struct.unpack(">Qq", body[:16])
        if name_len < NORMAL_NAME_LEN or name_len >= MAX_NAME_LEN or len(body) < 16 + name_len:
            raise Status(EINVAL, f"appender file name length {name_len}")
        if new_size < 0:
            raise Status(EINVAL, f"size {new_size}")
        true_name = FileStore.true_name(body[16 : 16 + name_len])
        stats = self.node.stats
        with self.store.lock(true_name):
            try:
                path = self.store.require_appender(true_name)
            except Status:
                stats.record("truncate", False)
                raise
            if path.stat().st_size != new_size:
                os.truncate(path, new_size)
        stats.record("truncate", True, change=True)
        self._done(req)

    # 38
    def regenerate(self, req: Request) -> None:
        """appender name -> group16 + a new normal name; the old name is gone."""
        body = req.rest(BLOCK - HEADER_SIZE - 1)
        if len(body) < NORMAL_NAME_LEN or len(body) >= MAX_NAME_LEN:
            raise Status(EINVAL, f"regenerate body of {len(body)} bytes")
        new_name = self.store.regenerate(FileStore.true_name(body))
        self._done(req, self._file_reply(new_name))

    # 111
    def active_test(self, req: Request) -> None:
        if req.length:
            raise Status(EINVAL, f"active test with a {req.length}-byte body")
        self._done(req)

    _COMMANDS: Dict[int, Callable[["StorageHandler", Request], None]] = {
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
