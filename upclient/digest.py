"""Whole-file digests (the MD5 a deduplicating server asks for), fast and remembered.

:func:`file_digest` reads a source once, in large blocks into one reused
buffer, and feeds the hash as it goes (hashlib releases the interpreter lock
on large buffers, so other threads keep working); it reports progress and
stops when cancelled.  :class:`DigestCache` keeps the result in the client's
store, keyed by the file's identity (path, size, mtime_ns, inode), so a
re-run or a resume of a large file does not read it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Callable, Optional

from .errors import Cancelled
from .progress import Progress
from .source import Source
from .store import BaseStore
from .transfer import deadline

__all__ = ["file_digest", "DigestCache"]

log = logging.getLogger("upclient.digest")

#: Bytes read per step: large enough that each read and hash call costs
#: little, small enough to stay in the CPU caches' neighbourhood.
READ_SIZE = 4 * 1024 * 1024


def file_digest(
    source: Source,
    algorithm: str = "md5",
    *,
    on_progress: Optional[Callable[[Progress], Any]] = None,
    cancel: Any = None,
) -> str:
    """The hex digest of all of ``source`` (seekable), in one pass."""
    h = hashlib.new(algorithm)
    size = source.size or 0
    fd = getattr(source, "_fd", None)
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    started = time.monotonic()
    next_report = started + 0.2
    done = 0
    if cancel is None:
        cancel = deadline.current()  # the call's own deadline and cancel token
    while done < size:
        if cancel is not None and cancel.is_set():
            raise cancel.error() if hasattr(cancel, "error") else Cancelled("digest cancelled")
        n = min(READ_SIZE, size - done)
        if fd is not None and hasattr(os, "preadv"):
            got = os.preadv(fd, [view[:n]], done)
            h.update(view[:got])
        else:
            block = source.read(done, n)
            got = len(block)
            h.update(block)
        if got == 0:
            source.check_unchanged()
            break
        done += got
        if on_progress is not None and (time.monotonic() >= next_report or done >= size):
            next_report = time.monotonic() + 0.2
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 else 0.0
            on_progress(Progress(
                name=source.name, bytes_done=done, total=size, rate=rate,
                eta=(size - done) / rate if rate else None, parts_done=0, parts_total=None, elapsed=elapsed,
            ))
    source.check_unchanged()
    return h.hexdigest()


class DigestCache:
    """Digests of files, remembered in a store while the file is unchanged."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    def _key(self, identity: dict, algorithm: str) -> str:
        raw = json.dumps([algorithm, identity], sort_keys=True).encode()
        return "digest-" + hashlib.sha256(raw).hexdigest()[:40]

    def known(self, source: Source, algorithm: str = "md5") -> Optional[str]:
        """The digest of ``source`` if this very file was read before; never reads it."""
        identity = source.identity()
        if identity is None:
            return None
        record = self.store.load(self._key(identity, algorithm))
        if record is not None and record.get("identity") == identity and record.get("digest"):
            return str(record["digest"])
        return None

    def digest(
        self,
        source: Source,
        algorithm: str = "md5",
        *,
        on_progress: Optional[Callable[[Progress], Any]] = None,
        cancel: Any = None,
    ) -> str:
        """The digest of ``source``: from the store if this very file was read before."""
        identity = source.identity()
        if identity is None:
            return file_digest(source, algorithm, on_progress=on_progress, cancel=cancel)
        cached = self.known(source, algorithm)
        if cached is not None:
            log.debug("%s of %s from the cache", algorithm, source.name)
            return cached
        value = file_digest(source, algorithm, on_progress=on_progress, cancel=cancel)
        self.remember(source, algorithm, value)
        return value

    def remember(self, source: Source, algorithm: str, value: str) -> None:
        """Keep a digest computed elsewhere (while uploading, say) for this file."""
        identity = source.identity()
        if identity is not None:
            self.store.save(self._key(identity, algorithm), {"identity": identity, "algorithm": algorithm,
                                                             "digest": value})
