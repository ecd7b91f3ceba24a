"""What a backend holds, as a sync sees it: as a source, and as a destination.

- As a source: the files under a prefix of a backend that lists (UPYUN
  folders, walked down; the community API's files, by ``file_key``), or the
  ids named in a list file (FastDFS file ids, tus upload URLs), each asked
  for its size with ``info``.
- As a destination: one listing of the prefix, so a re-run checks that the
  server still holds what the journal says without a request per file.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import urllib.parse
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from ..backends.base import Backend
from ..client import Client
from ..errors import NotFound, UpClientError
from ..result import FileInfo
from .items import Skipped, SourceFile

__all__ = [
    "keyed",
    "lists",
    "info_md5",
    "remote_files",
    "backend_files",
    "read_id_list",
    "listed_files",
    "Holdings",
    "destination_holdings",
]

log = logging.getLogger("upclient.sync")

#: Backends where the key names the file: an upload to a key replaces what is there,
#: and a listing names files by their keys.  Elsewhere the server makes the id.
KEYED = frozenset({"upyun"})

Found = Union[SourceFile, Skipped]


def keyed(client: Client) -> bool:
    """Whether uploads to ``client`` land under the key given (UPYUN), not under an id the server makes."""
    return client.backend.name in KEYED


def lists(client: Client) -> bool:
    """Whether ``client``'s backend can list what it stores."""
    return type(client.backend).iter is not Backend.iter


def info_md5(info: FileInfo) -> Optional[str]:
    """The MD5 (hex, lower case) the server gives for a file, where it gives one."""
    md5 = info.extra.get("md5")
    if md5 is None:
        stored = info.extra.get("file")  # the community API's file object
        md5 = getattr(stored, "file_md5", None)
    return str(md5).lower() if md5 else None


def _file_key(info: FileInfo) -> str:
    stored = info.extra.get("file")
    key = getattr(stored, "file_key", None)
    return str(key) if key else info.id


def remote_files(client: Client, prefix: str = "", *, workers: int = 8) -> Iterator[FileInfo]:
    """Every finished file under ``prefix``: UPYUN's folders are walked down (``workers`` listed at
    once, a level at a time), others listed as they list."""
    if client.backend.name != "upyun":
        for info in client.iter(prefix):
            if info.complete:
                yield info
        return

    def folder_entries(folder: str) -> List[FileInfo]:
        try:
            return list(client.iter(folder))
        except NotFound:  # no such folder: nothing under it
            return []

    level = [prefix]
    with cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="upclient-sync-list") as pool:
        while level:
            below: List[str] = []
            for entries in pool.map(folder_entries, level):
                for entry in entries:
                    if entry.extra.get("type") == "folder":
                        below.append(entry.id)
                    else:
                        yield entry
            level = below


def backend_files(client: Client, prefix: str = "") -> Iterator[Found]:
    """The files under ``prefix`` of a listing backend, keyed by their path below it."""
    for info in remote_files(client, prefix):
        name = _file_key(info)
        key = name[len(prefix):] if prefix and name.startswith(prefix) else name
        if info.size is None:  # a copy streams a known number of bytes
            yield Skipped(name, "its size is not listed", error=UpClientError(
                f"{name}: the listing gives no size", backend=client.backend.name, operation="list"))
            continue
        modified = int(info.modified * 1e9) if info.modified is not None else 0
        yield SourceFile(key=key.lstrip("/"), ref=info.id, size=info.size, mtime_ns=modified, md5=info_md5(info))


def default_key(file_id: str) -> str:
    """The destination key of an id given without one: a URL's last path segment, else the id as a path."""
    if "://" in file_id:
        path = urllib.parse.urlsplit(file_id).path.rstrip("/")
        return urllib.parse.unquote(path.rsplit("/", 1)[-1])
    return file_id.lstrip("/")


def read_id_list(stream: IO[str]) -> List[Tuple[str, str]]:
    """``(id, key)`` of each line of a list file: ``ID`` or ``ID<TAB>KEY``; blank lines and ``#`` comments skipped."""
    items = []
    for line in stream:
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        file_id, tab, key = line.partition("\t")
        file_id = file_id.strip()
        key = key.strip() if tab else ""
        items.append((file_id, key or default_key(file_id)))
    return items


def listed_files(client: Client, ids: Iterable[Tuple[str, str]], *, workers: int = 8) -> Iterator[Found]:
    """The files a list names, each asked for its size (several at once), in the list's order."""

    def look(item: Tuple[str, str]) -> Found:
        file_id, key = item
        try:
            info = client.info(file_id)
        except NotFound as exc:
            return Skipped(file_id, "not found on the source", error=exc)
        except UpClientError as exc:
            return Skipped(file_id, "cannot be looked up on the source", error=exc)
        if not info.complete or info.size is None:
            return Skipped(file_id, "an unfinished upload on the source", error=NotFound(
                f"{file_id} is not a finished file", backend=client.backend.name, operation="info"))
        modified = int(info.modified * 1e9) if info.modified is not None else 0
        return SourceFile(key=key, ref=file_id, size=info.size, mtime_ns=modified, md5=info_md5(info))

    with cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="upclient-sync-info") as pool:
        yield from pool.map(look, list(ids))


@dataclasses.dataclass(frozen=True)
class Holdings:
    """What a destination held when the sync began, from one listing of its prefix.

    ``by_key`` for backends where keys name files (UPYUN); ``by_id`` for those
    that list files under ids they made (community).  Both None: the backend
    cannot list, and each file the journal names is asked for with ``info``.
    """

    by_key: Optional[Dict[str, FileInfo]] = None
    by_id: Optional[Dict[str, FileInfo]] = None


def destination_holdings(client: Client, prefix: str) -> Holdings:
    """List the destination once (see :class:`Holdings`)."""
    if not lists(client):
        return Holdings()
    if keyed(client):
        return Holdings(by_key={info.id: info for info in remote_files(client, prefix)})
    return Holdings(by_id={info.id: info for info in remote_files(client, "")})
