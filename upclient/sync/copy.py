"""Backend to backend: a file downloads into the upload that sends it on, through memory only.

:class:`CopySource` is a stream of known size (a
:class:`~upclient.source.StreamSource`) whose bytes come from ``get`` on the
source backend, run in a thread of its own once the upload reads its first
byte.  The two meet in a :class:`Pipe` that holds at most a few MiB: the
download waits while the upload is behind, the upload while the download
is.  No temporary copy of the file is made on disk, and memory stays near
what the upload holds in flight (its parts) plus the pipe.

As the bytes pass, their count is kept, and their MD5 where the source
gives one and the destination does not: a copy is checked against the
source's size, and its MD5 against the source's where both sides know one
(:meth:`CopySource.verify`).

A destination that needs the whole file's MD5 before its first byte (the
community API) would keep a stream in a temporary file to compute it: for
it, :class:`RangeSource` reads the file by byte ranges instead, as a file on
disk is read (seekable, so its parts go in parallel and an interrupted copy
resumes from its resume point), and the MD5 the source gives is handed to
the destination's digest cache, so the file is read once.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import posixpath
import threading
from typing import Any, Deque, Dict, Iterator, Optional, Tuple, Union

from ..client import Client
from ..errors import Cancelled, ChecksumMismatch, SourceChanged
from ..source import Source, StreamSource, _guess_type
from ..transfer.deadline import TICK
from .items import SourceFile

__all__ = ["Pipe", "CopySource", "RangeSource", "PIPE_LIMIT"]

log = logging.getLogger("upclient.sync")

#: Bytes a pipe holds at most before the download waits for the upload.
PIPE_LIMIT = 2 * 1024 * 1024

Bytes = Union[bytes, bytearray, memoryview]


class Pipe:
    """Bytes handed from one writer thread to one reader, at most ``limit`` held at once.

    The writer :meth:`write`\\ s and then :meth:`end`\\ s (with the error that
    stopped it, if any: the reader raises it once the bytes before it are
    read).  The reader may :meth:`abort`: the writer's next ``write`` raises.
    """

    def __init__(self, limit: int = PIPE_LIMIT) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._chunks: Deque[bytes] = collections.deque()
        self._head = 0  # bytes of the first chunk already read
        self._held = 0
        self._ended = False
        self._error: Optional[BaseException] = None
        self._aborted: Optional[BaseException] = None

    def write(self, data: Bytes) -> int:
        block = data if isinstance(data, bytes) else bytes(data)  # a reused buffer is copied
        with self._cond:
            while self._held >= self.limit and self._aborted is None:
                self._cond.wait()
            if self._aborted is not None:
                raise self._aborted
            if block:
                self._chunks.append(block)
                self._held += len(block)
                self._cond.notify_all()
        return len(block)

    def end(self, error: Optional[BaseException] = None) -> None:
        with self._cond:
            self._ended = True
            self._error = error
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            self._aborted = error
            self._chunks.clear()
            self._head = self._held = 0
            self._cond.notify_all()

    def read(self, size: int = -1, stop: Any = None) -> bytes:
        """Up to ``size`` bytes (all that is held if negative); waits for at least one; b"" at the end.

        A whole block the writer gave is handed on as it is, without a copy.
        Under ``stop`` (the upload's :class:`~upclient.transfer.StopSignal`)
        the wait ends with its error once it fires.
        """
        with self._cond:
            while not self._chunks and not self._ended and self._aborted is None:
                if stop is not None:
                    stop.check()
                self._cond.wait(None if stop is None else TICK)
            if self._aborted is not None:
                raise self._aborted
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return b""
            out = []
            got = 0
            while self._chunks and (size < 0 or got < size):
                chunk, head = self._chunks[0], self._head
                left = len(chunk) - head
                take = left if size < 0 else min(left, size - got)
                out.append(chunk if head == 0 and take == len(chunk) else chunk[head:head + take])
                if take == left:
                    self._chunks.popleft()
                    self._head = 0
                else:
                    self._head += take
                got += take
            self._held -= got
            self._cond.notify_all()
        return out[0] if len(out) == 1 else b"".join(out)


class _Download:
    """The stream a :class:`CopySource` reads: ``get`` of one file into a pipe, in its own thread."""

    def __init__(self, client: Client, file_id: str, *, md5: bool, limit: int) -> None:
        self.client = client
        self.file_id = file_id
        self.pipe = Pipe(limit)
        self.received = 0
        self.error: Optional[BaseException] = None
        self._hash = hashlib.md5() if md5 else None
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()

    @property
    def md5(self) -> Optional[str]:
        return self._hash.hexdigest() if self._hash is not None else None

    #: see :class:`upclient.source.StreamSource`
    read_takes_stop = True

    def read(self, size: int = -1, stop: Any = None) -> bytes:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="upclient-sync-get", daemon=True)
                    self._thread.start()
        return self.pipe.read(size, stop)

    def write(self, block: Bytes) -> int:  # the download's sink, in its thread
        if self._hash is not None:
            self._hash.update(block)
        self.received += len(block)
        return self.pipe.write(block)

    def _run(self) -> None:
        try:
            self.client.get(self.file_id, self, cancel=self._cancel)
        except BaseException as exc:  # handed to the reader
            self.error = exc
            self.pipe.end(exc)
        else:
            self.pipe.end()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the download if it still runs, and wait for its thread."""
        self._cancel.set()
        self.pipe.abort(Cancelled("the upload of this copy stopped"))
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


class CopySource(StreamSource):
    """A file on a source backend, as a stream of known size for ``put`` (see the module docstring).

    ``md5``: hash the bytes as they pass (for :meth:`verify`).  Close it
    once the upload is over: a download still running is stopped.
    """

    def __init__(self, client: Client, file: SourceFile, *, md5: bool = False, limit: int = PIPE_LIMIT) -> None:
        if file.size is None:
            raise ValueError(f"{file.ref}: a copy needs the size of its source")
        self.file = file
        self._download = _Download(client, file.ref, md5=md5, limit=limit)
        super().__init__(self._download, name=posixpath.basename(file.key) or "upload", size=file.size)

    @property
    def received(self) -> int:
        return self._download.received

    @property
    def md5(self) -> Optional[str]:
        """The MD5 of the bytes that passed, if it was asked for."""
        return self._download.md5

    def verify(self, destination_md5: Optional[str] = None, *, backend: Optional[str] = None) -> Optional[str]:
        """Check the copy once the upload finished; returns the MD5 it is known by (or None).

        The byte count must be the source's size; the MD5 of the bytes, the
        source's (where it gave one) and ``destination_md5`` (where the
        destination gave one).  A mismatch is :class:`ChecksumMismatch`.
        """
        if self.received != self.file.size:
            raise SourceChanged(f"{self.file.ref}: {self.received} bytes came from the source, "
                                f"{self.file.size} were listed", backend=backend, operation="sync")
        passed = self.md5
        known = [(who, m.lower()) for who, m in (("source", self.file.md5), ("destination", destination_md5)) if m]
        for who, md5 in known:
            if passed is not None and md5 != passed:
                raise ChecksumMismatch(f"{self.file.ref}: the {who} gives MD5 {md5}, the bytes copied have "
                                       f"{passed}", backend=backend, operation="sync")
        if passed is None and len(known) == 2 and known[0][1] != known[1][1]:
            raise ChecksumMismatch(f"{self.file.ref}: MD5 {known[0][1]} on the source, {known[1][1]} on the "
                                   "destination", backend=backend, operation="sync")
        return passed or (known[0][1] if known else None)

    def chunks(self, part_size: int, stop: Any = None) -> Iterator[Tuple[int, bytes, bool]]:
        """Yield ``(offset, data, is_last)``, ``data`` one bytes object a part.

        Each part is the pipe's blocks joined once into bytes, which a
        session that hashes a part before sending it (UPYUN's Content-MD5)
        uses as it is: a part in flight is held once, not twice.  Past the
        size the source listed there must be nothing, or the last part is
        never sent.  ``stop``: a source that stalls holds the upload no
        longer than its signal allows.
        """
        assert self.size is not None
        offset = 0
        while True:
            want = min(part_size, self.size - offset)
            data = self._take(want, stop)
            if len(data) < want:
                raise SourceChanged(f"{self.file.ref}: the source ended after {offset + len(data)} bytes, "
                                    f"{self.size} were listed", operation="sync")
            last = offset + want >= self.size
            if last and self._download.read(1, stop):
                raise SourceChanged(f"{self.file.ref}: the source holds more than the {self.size} bytes listed",
                                    operation="sync")
            yield offset, data, last
            if last:
                return
            offset += want

    def _take(self, n: int, stop: Any) -> bytes:
        pieces = []
        got = 0
        while got < n:
            piece = self._download.read(n - got, stop)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        self._download.close()

    def __repr__(self) -> str:
        return f"<CopySource {self.file.ref!r} ({self.file.size} bytes)>"

    def __enter__(self) -> "CopySource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RangeSource(Source):
    """A file on a source backend, read by byte ranges with ``get`` (see the module docstring).

    ``origin`` names the source backend (its destination string): with the
    file's id, size and mtime it is the identity a resume point and a digest
    are kept under.
    """

    def __init__(self, client: Client, file: SourceFile, origin: str) -> None:
        if file.size is None:
            raise ValueError(f"{file.ref}: a copy needs the size of its source")
        self.client = client
        self.file = file
        self.size = file.size
        self.name = posixpath.basename(file.key) or "upload"
        self.content_type = _guess_type(self.name)
        self._identity = {"path": f"{origin}|{file.ref}", "size": file.size, "mtime_ns": file.mtime_ns,
                          "md5": file.md5}

    def identity(self) -> Dict[str, Any]:
        return dict(self._identity)

    def read(self, offset: int, length: int) -> bytes:
        data = self.client.get(self.file.ref, offset=offset, length=length)
        assert isinstance(data, bytes)
        return data

    def __repr__(self) -> str:
        return f"<RangeSource {self.file.ref!r} ({self.file.size} bytes)>"
