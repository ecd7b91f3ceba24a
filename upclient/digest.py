"""Whole-file digests (the MD5 a deduplicating server asks for), fast and remembered; source identities.

:func:`file_digest` reads a source once, in large blocks into one reused
buffer, and feeds the hash as it goes (hashlib releases the interpreter lock
on large buffers, so other threads keep working); it reports progress and
stops when cancelled.  :class:`DigestCache` keeps the result in the client's
store, keyed by the file's identity, so a re-run or a resume of a large file
does not read it again; with a store a fleet shares
(:class:`~upclient.RedisStore`) and an identity that survives a move
between hosts, one worker reads a file for its digest and the others wait
for its answer.

:func:`source_identity` is what a resume point and a digest are kept under,
one of :data:`IDENTITIES`:

``"local"`` (the default)
    the file's real path, size, mtime and inode: exact and free, but only
    this host (with the same mount) finds the record again.
``"content"``
    the file's name, size, mtime and a SHA-256 of three 1 MiB samples (the
    first, the middle and the last MiB: the whole file when it is at most
    3 MiB).  It reads 3 MiB, and another host that sees the same file (NFS,
    a mounted bucket) computes the same identity and resumes the upload.
    The trade-off: two files of the same name, size and mtime that differ
    only outside the samples look the same.  A file rewritten in place keeps
    its size but gets a new mtime, unless its writer sets the old one back
    (``rsync -t``, ``tar x``, ``touch -r``): then a resume would mix old and
    new bytes, and a cached MD5 would be the old file's.
``"digest"``
    the name, size and SHA-256 of the whole file: exact whatever wrote it,
    and host-independent, at the price of reading all of the file once on
    each host before uploading (the SHA-256 is cached per host, under the
    local identity).  Use it for files that may be rewritten in place with
    the same size and mtime (disk images, databases, files restored with
    their times).

Sources that have no local identity (bytes, streams, ranges of a remote
file) keep their own, whatever the kind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional

from .errors import Cancelled
from .progress import Progress
from .source import Source
from .store import BaseStore
from .transfer import deadline

__all__ = ["file_digest", "DigestCache", "source_identity", "IDENTITIES", "SAMPLE_SIZE"]

log = logging.getLogger("upclient.digest")

#: Bytes read per step: large enough that each read and hash call costs
#: little, small enough to stay in the CPU caches' neighbourhood.
READ_SIZE = 4 * 1024 * 1024

#: The kinds of source identity (see the module docstring).
IDENTITIES = ("local", "content", "digest")

#: Bytes of each of the three samples of a ``"content"`` identity.
SAMPLE_SIZE = 1024 * 1024

#: How often a worker waiting for another's digest looks whether it is there, in seconds.
DIGEST_POLL = 0.2


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


def content_sample(source: Source) -> str:
    """SHA-256 of the first, middle and last :data:`SAMPLE_SIZE` bytes (all of a small source), with its size."""
    size = source.size or 0
    h = hashlib.sha256(b"%d:" % size)
    if size <= 3 * SAMPLE_SIZE:
        spans = [(0, size)]
    else:
        spans = [(0, SAMPLE_SIZE), (size // 2 - SAMPLE_SIZE // 2, SAMPLE_SIZE), (size - SAMPLE_SIZE, SAMPLE_SIZE)]
    for offset, length in spans:
        block = source.read(offset, length)
        if len(block) != length:
            source.check_unchanged()
        h.update(block)
    return h.hexdigest()


#: Identities computed for each open source: a put, its digest and its done record read the samples once.
_computed: "weakref.WeakKeyDictionary[Source, Dict[str, Dict[str, Any]]]" = weakref.WeakKeyDictionary()
_computed_lock = threading.Lock()


def source_identity(
    source: Source, kind: str = "local", digests: Optional["DigestCache"] = None
) -> Optional[Dict[str, Any]]:
    """The identity ``source`` is known by, of ``kind`` (one of :data:`IDENTITIES`; module docstring).

    None for a source that can never be resumed.  ``digests`` (``"digest"``
    only) remembers the whole-file SHA-256 under the local identity.
    """
    if kind not in IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(IDENTITIES)}, not {kind!r}")
    local = source.identity()
    if kind == "local" or local is None or "inode" not in local:
        return local
    with _computed_lock:
        known = _computed.get(source, {}).get(kind)
    if known is not None:
        return dict(known)
    ident: Dict[str, Any] = {"name": source.name, "size": local["size"]}
    if kind == "content":
        ident.update(mtime_ns=local["mtime_ns"], sample=content_sample(source))
    else:
        cache = digests if digests is not None else DigestCache(_memory_store())
        ident["sha256"] = cache.digest(source, "sha256", identity=local)
    if "offset" in local:
        ident["offset"] = local["offset"]
    with _computed_lock:
        _computed.setdefault(source, {})[kind] = ident
    return dict(ident)


def _memory_store() -> BaseStore:
    from .store import MemoryStore

    return MemoryStore()


class DigestCache:
    """Digests of files, remembered in a store while the file is unchanged.

    ``identity`` is the kind of :func:`source_identity` digests are kept
    under (without the file's name: two names of the same bytes share a
    digest).  When two threads or workers want the digest of the same file
    at once, the first reads it while the store's lock is held, and the
    others wait for its answer instead of reading the file too.
    """

    def __init__(self, store: BaseStore, identity: str = "local") -> None:
        if identity not in IDENTITIES:
            raise ValueError(f"identity must be one of {', '.join(IDENTITIES)}, not {identity!r}")
        self.store = store
        self.identity = identity

    def _key(self, identity: dict, algorithm: str) -> str:
        raw = json.dumps([algorithm, identity], sort_keys=True).encode()
        return "digest-" + hashlib.sha256(raw).hexdigest()[:40]

    def _identity_of(self, source: Source) -> Optional[Dict[str, Any]]:
        ident = source_identity(source, self.identity, self)
        if ident is not None and self.identity != "local":
            ident.pop("name", None)
        return ident

    def _lookup(self, identity: Dict[str, Any], algorithm: str) -> Optional[str]:
        record = self.store.load(self._key(identity, algorithm))
        if record is not None and record.get("identity") == identity and record.get("digest"):
            return str(record["digest"])
        return None

    def known(self, source: Source, algorithm: str = "md5") -> Optional[str]:
        """The digest of ``source`` if this very file was read before; never reads it."""
        identity = self._identity_of(source)
        if identity is None:
            return None
        return self._lookup(identity, algorithm)

    def digest(
        self,
        source: Source,
        algorithm: str = "md5",
        *,
        on_progress: Optional[Callable[[Progress], Any]] = None,
        cancel: Any = None,
        identity: Optional[Dict[str, Any]] = None,
    ) -> str:
        """The digest of ``source``: from the store if this very file was read before.

        ``identity``: the one to keep it under, instead of the cache's kind.
        """
        if identity is None:
            identity = self._identity_of(source)
        if identity is None:
            return file_digest(source, algorithm, on_progress=on_progress, cancel=cancel)
        key = self._key(identity, algorithm)
        if cancel is None:
            cancel = deadline.current()
        while True:
            cached = self._lookup(identity, algorithm)
            if cached is not None:
                log.debug("%s of %s from the cache", algorithm, source.name)
                return cached
            with self.store.lock(key) as free:
                if free:
                    cached = self._lookup(identity, algorithm)  # finished while we looked
                    if cached is not None:
                        return cached
                    value = file_digest(source, algorithm, on_progress=on_progress, cancel=cancel)
                    self._save(identity, algorithm, value)
                    return value
            # another thread or worker is reading this file: wait for its answer
            log.debug("%s of %s is being computed elsewhere; waiting for it", algorithm, source.name)
            if cancel is not None and hasattr(cancel, "wait"):
                if cancel.wait(DIGEST_POLL):
                    raise cancel.error() if hasattr(cancel, "error") else Cancelled("digest cancelled")
            else:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("digest cancelled")
                time.sleep(DIGEST_POLL)

    def remember(self, source: Source, algorithm: str, value: str) -> None:
        """Keep a digest computed elsewhere (while uploading, say) for this file."""
        identity = self._identity_of(source)
        if identity is not None:
            self._save(identity, algorithm, value)

    def _save(self, identity: Dict[str, Any], algorithm: str, value: str) -> None:
        self.store.save(self._key(identity, algorithm), {"identity": identity, "algorithm": algorithm,
                                                         "digest": value})
