"""One group's files on disk, laid out as the real storage lays them out.

``<root>/<group>/data/XX/YY/<name>`` (one store path, ``M00``), metadata in
the sidecar ``<name>-m``, bodies being received in ``<root>/<group>/tmp``
and renamed into place. ``XX/YY`` are filled round robin, 100 files per
directory (``file_distribute_path_mode = 0``); the names themselves come
from :class:`~upclient.testing.fdfs.codec.FileIdCodec`.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from upclient.testing.fdfs.codec import (
    BLOCK,
    EBUSY,
    EEXIST,
    EINVAL,
    ENOENT,
    ENOSPC,
    EXT_PART_LEN,
    LOGIC_PATH_LEN,
    SUBDIR_COUNT,
    FileIdCodec,
    Status,
    pack_metadata,
    parse_metadata,
)

__all__ = ["FileStore"]

LOG = logging.getLogger("upclient.testing.fdfs")

ROTATE_COUNT = 100  # files per subdirectory before the next one (file_distribute_rotate_count)


def unlink_quiet(path: Union[str, Path]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        LOG.debug("cannot remove %s", path, exc_info=True)


def write_all(fd: int, data: memoryview, offset: Optional[int] = None) -> None:
    while len(data):
        n = os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
        data = data[n:]
        if offset is not None:
            offset += n


def crc32_of(path: Path) -> int:
    crc = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return crc
            crc = zlib.crc32(view[:n], crc)



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
                raise Status(EINVAL, "file name is not ASCII") from None
        if len(remote) < LOGIC_PATH_LEN or remote[0] != "M" or remote[3] != "/":
            raise Status(EINVAL, f"invalid file name {remote!r}")
        if remote[1:3] != "00":
            raise Status(EINVAL, f"invalid store path in {remote!r}")
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
            raise Status(EINVAL, f"invalid file name {remote!r}")
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
            raise Status(ENOENT, f"file {true_name} does not exist")
        return path

    def require_appender(self, true_name: str) -> Path:
        """As ``storage_server_check_appender_file``: missing -> 2, no appender flag in the name -> 22."""
        path = self.require(true_name)
        try:
            appender = FileIdCodec.decode(true_name).is_appender
        except ValueError:
            appender = False
        if not appender:
            raise Status(EINVAL, f"{true_name} is not an appender file")
        return path

    # space and temporary files
    def check_space(self, size: int) -> None:
        free = shutil.disk_usage(self.data).free
        if size > free:
            raise Status(ENOSPC, f"no space for {size} bytes ({free} free)")

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
        raise Status(EBUSY, "cannot generate a unique file name")

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
                raise Status(EEXIST, f"slave file {true_name} already exists")
            os.rename(tmp, target)

    def regenerate(self, true_name: str) -> str:
        """A normal name for an appender file: new time, current size and CRC32, same directory and
        extension part (``calc_crc32_done_callback_for_regenerate``); metadata follows the file."""
        with self.lock(true_name):
            path = self.require_appender(true_name)
            crc32 = crc32_of(path)
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
            unlink_quiet(self.meta_path(true_name))

    # metadata
    def get_metadata(self, true_name: str) -> bytes:
        self.require(true_name)
        try:
            return self.meta_path(true_name).read_bytes()
        except FileNotFoundError:
            raise Status(ENOENT, f"{true_name} has no metadata") from None

    def set_metadata(self, true_name: str, raw: bytes, flag: bytes) -> None:
        """As ``storage_do_set_metadata``: overwrite or merge, kept sorted; overwrite with nothing deletes."""
        with self.lock(true_name):
            self.require(true_name)
            new = parse_metadata(raw)
            meta = self.meta_path(true_name)
            if flag == b"O":
                if not new:
                    unlink_quiet(meta)
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
