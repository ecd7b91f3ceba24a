"""A download to a path: parallel ranges into a ``.part`` file that resumes, checked before it is put in place.

:class:`PathDownload` is what ``Client.get(id, path)`` runs for a backend
that reads byte ranges (``open_download``, see
:mod:`upclient.transfer.ranges`).  It asks the size first; bytes up to one
part go as one request into a private temporary file.  More go through the
:class:`~upclient.transfer.download.RangeDownloader` into
``<dest>.upclient-<hash>.part``: one stream first, split into ranges of
``part_size``, up to ``concurrency`` at a time, where more connections
measurably pay (a slow or distant link, not a local server), while a
resume point in the client's store (key: backend, server, id, destination
path, size and window; no secret) says which ranges are on disk.  An
interrupted download (cancel, deadline, Ctrl-C, a killed process, a network
failure) keeps both, and the next ``get`` of the same file to the same path
fetches only the missing ranges, unless the file changed on the server
meanwhile (its version moved).  The file is renamed into place only when
every range is there, its size is right and, where the server keeps one, the
whole file's digest (MD5, CRC32) matches; the digest is computed as the
download goes, behind the ranges already written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import threading
import zlib
from typing import Any, Callable, Dict, Optional, Tuple

from .errors import BadInput, Cancelled, ChecksumMismatch, NotFound
from .progress import Progress, ProgressTracker
from .retry import RetryPolicy
from .store import BaseStore
from .transfer.deadline import StopSignal
from .transfer.download import RangeBook, RangeDownloader
from .transfer.ranges import RangeIgnored, RemoteFile

__all__ = ["PathDownload", "download_key"]

log = logging.getLogger("upclient.download")

#: Bytes the calling thread reads back for the digest at most per tick, so ticks stay short.
DIGEST_STEP = 256 * 1024 * 1024
READ_SIZE = 4 * 1024 * 1024


def download_key(backend: str, server: str, id: str, dest: str, size: int, start: int, end: int) -> str:
    """The store key of a download's resume point."""
    raw = json.dumps(["download", backend, server, id, dest, size, start, end])
    return "download-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]


def _shown(id: str) -> str:
    """An id as a record or a log may show it: a URL without user info or query."""
    if "://" not in id:
        return id
    from .transport import redact_url

    return redact_url(id)


class _Digest:
    """The whole file's digest, in order: fed the bytes as they arrive where they are next
    (a stream, the first range in flight), else read back from the ``.part`` file behind
    the ranges written."""

    def __init__(self, algorithm: str, expected: str) -> None:
        self.algorithm = algorithm
        self.expected = expected
        self.pos = 0
        self._md5 = hashlib.md5() if algorithm == "md5" else None
        self._crc = 0
        self._lock = threading.Lock()
        self._buf = memoryview(bytearray(READ_SIZE))  # read-backs reuse it: no fresh pages to fault in

    def _read_back(self, fd: int, upto: int) -> bool:
        """Hash the file from where the digest stands to ``upto`` (lock held); False at its end."""
        n = min(READ_SIZE, upto - self.pos)
        got = os.preadv(fd, [self._buf[:n]], self.pos) if hasattr(os, "preadv") else 0
        if not hasattr(os, "preadv"):
            block = os.pread(fd, n, self.pos)
            got = len(block)
            self._buf[:got] = block
        if not got:
            return False
        self._update(self._buf[:got])
        return True

    def _update(self, data: Any) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)
        self.pos += len(data)

    def feed(self, fd: int, since: int, pos: int, data: memoryview) -> None:
        """Bytes just written at ``pos`` by a worker that wrote all from ``since`` on.

        Hashed now if the digest stands within what this worker wrote: it
        first catches up by reading back its own bytes, which the page cache
        still holds, and goes on from the bytes at hand.  Never waits for
        another thread's hashing.
        """
        if not since <= self.pos <= pos or not self._lock.acquire(blocking=False):
            return
        try:
            while since <= self.pos < pos:
                if not self._read_back(fd, pos):
                    return
            if self.pos == pos:
                self._update(data)
        finally:
            self._lock.release()

    def advance(self, fd: int, upto: int, stop: StopSignal, limit: Optional[int] = None) -> None:
        """Hash from where it stands up to ``upto`` (at most ``limit`` bytes of it), reading the file."""
        if limit is not None:
            upto = min(upto, self.pos + limit)
        while self.pos < upto:
            stop.check()
            with self._lock:
                if self.pos >= upto or not self._read_back(fd, upto):
                    break

    def value(self) -> str:
        return self._md5.hexdigest() if self._md5 is not None else f"{self._crc & 0xFFFFFFFF:08x}"


class _PartFile:
    """The file a download is written to, and its resume point if it has one.

    ``key`` None: a private file (a small download, or one whose resume point
    another process holds), removed on any failure.
    """

    def __init__(self, path: str, fd: int, book: RangeBook, store: Optional[BaseStore], key: Optional[str],
                 record: Dict[str, Any]) -> None:
        self.path, self.fd, self.book = path, fd, book
        self.store, self.key, self.record = store, key, record
        self._saved = book.version  # what a resume found is stored already; a fresh start has nothing yet
        self._warned = False

    def save(self) -> None:
        """Record the ranges on disk, if any landed since the last save."""
        if self.store is None or self.key is None or self.book.version == self._saved:
            return
        version = self.book.version
        try:
            self.store.save(self.key, dict(self.record, done=self.book.intervals()))
            self._saved = version
        except Exception as exc:  # a store that fails costs the resume, not the download
            if not self._warned:
                log.warning("cannot record the progress of %s: %s", self.record.get("dest"), exc)
                self._warned = True

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def keep(self) -> None:
        """An interrupted download: keep what is on disk for the next call, if anything is."""
        self.close()
        if self.key is None or not self.book.done_count:
            self.discard()
            return
        self.save()
        log.info("kept %d of %d ranges of %s in %s", self.book.done_count, self.book.count,
                 self.record.get("dest"), self.path)

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        if self.store is not None and self.key is not None:
            self.store.delete(self.key)

    def place(self, dest: str) -> None:
        self.close()
        os.replace(self.path, dest)
        if self.store is not None and self.key is not None:
            self.store.delete(self.key)


class PathDownload:
    """``get(id, path)`` through ranges: see the module docstring.

    ``server`` names the backend's server (its URL without credentials) in
    resume points; ``executor`` is the client's worker pool.
    """

    def __init__(
        self,
        backend: Any,
        *,
        server: str,
        store: BaseStore,
        executor: Any,
        concurrency: int,
        part_size: int,
        retry: RetryPolicy,
    ) -> None:
        self.backend = backend
        self.server = server
        self.store = store
        self.part_size = part_size
        self.concurrency = concurrency
        self.retry = retry
        self.downloader = RangeDownloader(executor, concurrency, retry)

    @staticmethod
    def supported(backend: Any) -> bool:
        return hasattr(os, "pwrite")  # a backend that cannot read ranges says so: open_download gives None

    def run(
        self,
        id: str,
        dest: str,
        *,
        offset: int,
        length: Optional[int],
        on_progress: Optional[Callable[[Progress], Any]],
        stop: StopSignal,
    ) -> Optional[int]:
        """Download into ``dest``; the byte count, or None if the backend cannot say the size first."""
        name = _shown(id).rsplit("/", 1)[-1] or _shown(id)  # for progress and messages: no query, no user
        remote: Optional[RemoteFile] = self.retry.call(
            lambda: self.backend.open_download(id), cancel=stop, what=f"looking up {_shown(id)}")
        if remote is None:
            return None
        size = remote.size
        if offset > size:
            raise BadInput(f"offset {offset} is past the end of {_shown(id)} ({size} bytes)",
                           backend=self.backend.name, operation="get")
        end = size if length is None else min(size, offset + length)
        total = end - offset
        digest = remote.digest if (offset, end) == (0, size) else None
        dest = os.path.abspath(dest)
        if total <= self.part_size:
            part = self._private(dest, offset, end, total)
            return self._fetch(remote, part, dest, name, total, digest, parallel=False,
                               on_progress=on_progress, stop=stop)
        key = download_key(self.backend.name, self.server, id, dest, size, offset, end)
        with self.store.lock(key) as free:
            if free:
                part = self._resumable(key, id, dest, remote, offset, end)
            else:
                log.info("%s is being downloaded to %s by another process; not resuming here", name, dest)
                part = self._private(dest, offset, end, self.part_size)
            parallel = self.concurrency > 1 and remote.ranges
            return self._fetch(remote, part, dest, name, total, digest, parallel=parallel,
                               on_progress=on_progress, stop=stop)

    # -- the part file -----------------------------------------------------------------

    def _private(self, dest: str, start: int, end: int, range_size: int) -> _PartFile:
        path = f"{dest}.upclient-{secrets.token_hex(4)}.part"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.ftruncate(fd, end - start)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return _PartFile(path, fd, RangeBook(start, end, max(1, range_size)), None, None, {"dest": dest})

    def _resumable(self, key: str, id: str, dest: str, remote: RemoteFile, start: int, end: int) -> _PartFile:
        tag = hashlib.sha256(json.dumps([self.server, id, dest, start, end]).encode("utf-8")).hexdigest()[:8]
        path = f"{dest}.upclient-{tag}.part"
        version = json.loads(json.dumps(dict(remote.version)))
        record: Dict[str, Any] = {
            "kind": "download", "backend": self.backend.name, "server": self.server, "file": _shown(id),
            "dest": dest, "part": path, "size": remote.size, "start": start, "end": end, "version": version,
        }
        found = self._resume(key, record, path, end - start)
        if found is not None:
            fd, book, inode = found
            log.info("resuming %s: %d of %d ranges are on disk", dest, book.done_count, book.count)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                os.ftruncate(fd, end - start)
                inode = os.fstat(fd).st_ino
            except BaseException:
                os.close(fd)
                raise
            book = RangeBook(start, end, self.part_size)
        record.update(inode=inode, range_size=book.range_size)
        return _PartFile(path, fd, book, self.store, key, record)

    def _resume(self, key: str, record: Dict[str, Any], path: str, total: int) -> Optional[Tuple[int, RangeBook, int]]:
        """The open part file and its ranges, if the stored record is of this very download."""
        old = self.store.load(key)
        if old is None:
            return None
        same = all(old.get(k) == record[k] for k in ("kind", "part", "size", "start", "end", "version"))
        range_size = old.get("range_size")
        if not same or not isinstance(range_size, int) or range_size < 1:
            log.info("%s changed on the server since the download to %s was interrupted; starting afresh",
                     record["file"], record["dest"])
            self.store.delete(key)
            return None
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            self.store.delete(key)
            return None
        st = os.fstat(fd)
        try:
            book = RangeBook.from_intervals(record["start"], record["end"], range_size, old.get("done") or [])
        except (TypeError, ValueError):
            book = None
        if book is None or st.st_ino != old.get("inode") or st.st_size != total:
            os.close(fd)
            self.store.delete(key)
            return None
        return fd, book, st.st_ino

    # -- the transfer ------------------------------------------------------------------

    def _fetch(
        self,
        remote: RemoteFile,
        part: _PartFile,
        dest: str,
        name: str,
        total: int,
        digest: Optional[Tuple[str, str]],
        *,
        parallel: bool,
        on_progress: Optional[Callable[[Progress], Any]],
        stop: StopSignal,
    ) -> int:
        book = part.book
        tracker = ProgressTracker(name, total, parts_total=book.count, done_bytes=book.done_bytes,
                                  done_parts=book.done_count)
        check = _Digest(*digest) if digest is not None else None

        def tick() -> None:
            part.save()
            if check is not None:
                check.advance(part.fd, book.prefix_end() - book.start, stop, DIGEST_STEP)

        try:
            try:
                self._ranges(remote, part, tracker, stop, parallel, True, on_progress, tick, check)
            except RangeIgnored as exc:
                log.info("%s: %s; reading it as one stream", name, exc)
                self._ranges(remote, part, tracker, stop, False, False, on_progress, tick, check)
            if os.fstat(part.fd).st_size != total or not book.complete:
                raise ChecksumMismatch(f"{name}: the download holds {os.fstat(part.fd).st_size} bytes, not {total}",
                                       backend=self.backend.name, operation="get")
            if check is not None:
                check.advance(part.fd, total, stop)
                if check.value() != check.expected:
                    raise ChecksumMismatch(
                        f"{name}: the downloaded bytes have {check.algorithm} {check.value()}, the server says "
                        f"{check.expected}; the download is discarded", backend=self.backend.name, operation="get")
        except (NotFound, ChecksumMismatch, BadInput):
            part.discard()  # nothing worth resuming: the file is gone, changed or never matched
            raise
        except BaseException:
            part.keep()
            raise
        part.place(dest)
        if on_progress is not None:
            on_progress(tracker.snapshot())
        return total

    def _ranges(
        self,
        remote: RemoteFile,
        part: _PartFile,
        tracker: ProgressTracker,
        stop: StopSignal,
        parallel: bool,
        strict: bool,
        on_progress: Optional[Callable[[Progress], Any]],
        tick: Callable[[], None],
        check: Optional[_Digest],
    ) -> None:
        # A signal of this pass's own: a range that fails for good stops the others, and
        # the call's signal stays unset for a second pass (a stream after a RangeIgnored).
        own = StopSignal(stop)
        try:
            self.downloader.run(remote, part.fd, part.book, tracker=tracker, stop=own, parallel=parallel,
                                strict=strict, on_progress=on_progress, on_tick=tick,
                                on_write=functools.partial(check.feed, part.fd) if check is not None else None)
        except Cancelled:
            if stop.is_set():
                raise stop.error() from None  # the call's own words (the deadline it was given)
            raise
