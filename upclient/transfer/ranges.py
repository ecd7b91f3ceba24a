"""The seam of ranged downloads: what a backend tells the download engine about one file.

A backend that can read a stored file by byte ranges offers
``open_download(id) -> Optional[RemoteFile]``: one request (a HEAD, a file
info, a FastDFS stat) that learns the size, a version to tell a changed
file from the one a resume point describes, and the whole-file digest where
the server keeps one.  :attr:`RemoteFile.read` then sends one ranged request
per call; it never retries, sleeps or owns a thread (the engine does).  A
server that answers a ranged request with the whole file (200, not 206) makes
a strict read raise :class:`RangeIgnored`, so the engine falls back to one
stream instead of downloading the file once per range.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Optional, Tuple

from ..errors import ServiceError, Unsupported

__all__ = ["RemoteFile", "RangeIgnored", "RangeReader", "check_range_answer", "digest_of"]

#: ``read(sink, offset, length, strict)``: one request for ``length`` bytes from
#: ``offset``, each block given to ``sink`` in order; returns the count.  With
#: ``strict`` a server that ignores the range raises :class:`RangeIgnored`;
#: without it the bytes before ``offset`` are skipped.
RangeReader = Callable[[Callable[[bytes], Any], int, int, bool], int]

_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "crc32": re.compile(r"^[0-9a-f]{8}$")}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class RangeIgnored(Unsupported):
    """The server answered a ranged request with the whole file: read it as one stream."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One stored file, as a ranged download needs it before its first byte.

    ``version``: plain JSON that changes when the file's content does (an
    MD5, a CRC32, a modification time); a resume point keeps it, and a file
    whose version moved is downloaded afresh.  ``digest``: ``(algorithm,
    lower-case hex)`` of the whole file (``md5`` or ``crc32``), checked
    before the download is put in place; None where the server keeps none.
    ``ranges``: False when the server is known to ignore ranges.
    """

    size: int
    read: RangeReader
    version: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    digest: Optional[Tuple[str, str]] = None
    ranges: bool = True


def digest_of(algorithm: str, value: Any) -> Optional[Tuple[str, str]]:
    """``(algorithm, hex)`` if ``value`` is a well-formed digest of that kind, else None.

    A server's digest of another form (a multipart ETag, an empty header) is
    not a digest of the content, and checking against it would refuse good
    downloads.
    """
    if isinstance(value, int) and algorithm == "crc32":
        value = f"{value & 0xFFFFFFFF:08x}"
    if not isinstance(value, str):
        return None
    text = value.strip().strip('"').lower()
    pattern = _HEX.get(algorithm)
    return (algorithm, text) if pattern is not None and pattern.match(text) else None


def check_range_answer(
    status: int,
    content_range: Optional[str],
    offset: int,
    length: int,
    size: int,
    *,
    strict: bool,
    backend: str,
) -> None:
    """Whether an answer to ``Range: bytes=offset-(offset+length-1)`` carries those bytes.

    A 200 is the whole file: fine when that is what was asked (or the read is
    not strict), else :class:`RangeIgnored`.  A 206 must say it starts at
    ``offset`` and ends where asked (or at the end of a shorter file, which
    the engine then finds short); anything else is a
    :class:`~upclient.errors.ServiceError`.
    """
    if status == 200:
        if strict and not (offset == 0 and length >= size):
            raise RangeIgnored(f"the server sent the whole file for bytes {offset}-{offset + length - 1}",
                               backend=backend, operation="get", status=status)
        return
    if status != 206:
        return  # the backend maps other statuses to errors itself
    match = _CONTENT_RANGE.match(content_range or "")
    if match is None:
        if content_range is None:
            return  # no header: the count of bytes received is checked by the engine
        raise ServiceError(f"a ranged answer with an unreadable Content-Range {content_range[:60]!r}",
                           backend=backend, operation="get", status=status)
    first, last = int(match.group(1)), int(match.group(2))
    if first != offset or last > offset + length - 1:
        raise ServiceError(f"asked for bytes {offset}-{offset + length - 1}, the server sent {first}-{last}",
                           backend=backend, operation="get", status=status)
