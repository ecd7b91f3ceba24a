"""Community upload sessions: :class:`CommunityUpload`.

``init`` needs the whole file's MD5 and size; the server answers with the
file itself when it holds those bytes already (an instant upload), or with
its part layout, each part with a presigned URL and a flag saying whether it
is stored, so a resume is the server's own.  Parts go in parallel, streamed
from the source; ``complete`` joins them.

What a re-run does with a stored resume point (``file_id``, how many parts
there are, how many were sent): it asks the server about that file first.
A finished file (the run before was killed while ``complete`` was in
flight, or its answer was lost) is taken as the result; an open upload
whose parts were all sent is completed again; otherwise ``init`` resumes
it.  So a re-run never uploads a file a second time.

Answers that say what to do instead of a part's ETag (:mod:`.protocol`):
a refused or expired URL gets fresh URLs from a new ``init`` (which
resumes); an upload being completed (by another client putting the same
bytes, or by an earlier run) is asked for its outcome by ``complete``; an
upload no longer open is looked up, and taken if it is finished, else
opened afresh.  Two clients putting the same file at once therefore share
one upload and both get the one file.

A non-seekable stream cannot be read twice, and init wants its MD5 first:
its parts are written to a temporary file as the engine reads them, and
hashed on the way; ``finish`` then runs init (an instant upload sends
nothing) and asks the engine for the parts, read back from that file.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import tempfile
import threading
from typing import Any, Dict, IO, List, Mapping, Optional, Set, Union

from ...errors import BadInput, NotFound, UpClientError
from ...result import UploadResult
from ...source import Source
from ...transfer import MoreParts, Part, PartIO, Restart, Resync, UploadSession
from . import protocol
from .protocol import BeingCompleted, CommunityFile, Deduplicated, PartsMissing, ServerPart

__all__ = ["CommunityUpload", "Spool"]

log = logging.getLogger("upclient.community")


class Spool:
    """A stream's bytes in an anonymous temporary file, hashed as they are written.

    Parts arrive in order; one written already (a part tried again) is not
    written or hashed twice.  :meth:`view` reads a range back without
    copying it into memory (a view of a memory map).
    """

    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.md5()
        self._file: Optional[IO[bytes]] = None
        self._map: Optional[mmap.mmap] = None

    def write(self, offset: int, data: Any) -> None:
        if offset < self.size:
            return
        if offset != self.size:
            raise ValueError(f"stream parts must come in order: {offset} after {self.size} bytes")
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="upclient-spool-")
            self._file.seek(offset)
            self._file.write(data)
        except OSError as exc:
            raise UpClientError(f"cannot keep the stream in a temporary file ({tempfile.gettempdir()}): {exc}; "
                                "set TMPDIR to a disk with room, or upload from a file",
                                backend="community", operation="put") from exc
        self._hash.update(data)
        self.size += len(data)

    def md5(self) -> str:
        return self._hash.hexdigest()

    def view(self, start: int, size: int) -> memoryview:
        if self._map is None:
            if self._file is None or self.size == 0:
                return memoryview(b"")
            self._file.flush()
            self._map = mmap.mmap(self._file.fileno(), self.size, access=mmap.ACCESS_READ)
        return memoryview(self._map)[start : start + size]

    def close(self) -> None:
        """Free the file; a view still held keeps the map until it is dropped."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # parts still hold views: the map goes with them
                pass
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


class CommunityUpload(UploadSession):
    """One upload: the server's part layout, presigned URLs, the parts it holds.

    The constructor does no I/O: :meth:`start` reads the MD5 (once per file)
    and talks to the server.  See the module docstring.
    """

    def __init__(
        self,
        backend: Any,
        source: Source,
        payload: Dict[str, Any],
        metadata: Mapping[str, str],
        *,
        state: Optional[Dict[str, Any]] = None,
        md5: Optional[str] = None,
        on_md5_progress: Any = None,
    ) -> None:
        self.backend = backend
        self.source = source
        self.payload = payload
        self.metadata = metadata
        self.stored = state if state and state.get("file_id") else None
        self.md5 = md5
        self._on_md5_progress = on_md5_progress
        self.parallel = source.seekable
        self.file: Optional[CommunityFile] = None
        self.deduplicated = False
        self._spool = None if source.seekable else Spool()
        self._layout: Dict[int, ServerPart] = {}
        self._done: Set[int] = set()
        self._generation = 0  # how many times the layout came from the server
        self._tried: Dict[int, int] = {}  # part number -> the generation its last try used
        self._lock = threading.Lock()
        self._recovering = threading.Lock()

    # -- opening -----------------------------------------------------------------------

    def start(self) -> None:
        if self._spool is not None:
            return  # a stream: init once it has been read (finish)
        if self.md5 is None:
            self.md5 = self.backend.digest(self.source, "md5", on_progress=self._on_md5_progress)
        if self.stored is not None and self._settle_stored(str(self.stored["file_id"])):
            return
        self._init()

    def _size(self) -> int:
        return self._spool.size if self._spool is not None else int(self.source.size or 0)

    def _holds(self, f: CommunityFile) -> bool:
        return f.holds(str(self.md5), self._size())

    def _settle_stored(self, file_id: str) -> bool:
        """Ask about the stored upload first; True when that settled it (the file is done)."""
        try:
            f = self.backend.file(file_id)
        except NotFound:
            log.info("%s: the stored upload %s is gone; starting afresh", self.source.name, file_id)
            return False
        if f.file_md5 != self.md5 or f.file_size != self._size():
            return False
        if f.status == "confirmed":
            log.info("%s: the stored upload %s was finished already", self.source.name, file_id)
        elif f.status in ("pending", "uploading") and self._all_sent():
            log.info("%s: every part of %s was sent; completing it again", self.source.name, file_id)
            outcome = self._complete(file_id)
            if not isinstance(outcome, CommunityFile):
                return False
            f = outcome
        if not self._holds(f):
            return False
        self.upload_id = file_id
        self.resumed = True
        self._adopt(f, deduplicated=False)
        return True

    def _all_sent(self) -> bool:
        stored = self.stored or {}
        return isinstance(stored.get("parts"), int) and stored.get("sent") == stored["parts"]

    def _init(self) -> None:
        payload = dict(self.payload, file_size=self._size(), file_md5=self.md5)
        answer = protocol.read_init(self.backend.send(protocol.init_request(payload)))
        if isinstance(answer, Deduplicated):
            self._adopt(answer.file, deduplicated=True)
            return
        with self._lock:
            same = answer.file_id == self.upload_id
            held = {p.number for p in answer.parts if p.uploaded}
            self.upload_id = answer.file_id
            self._layout = {p.number: p for p in answer.parts}
            self._done = (self._done | held) if same else held
            self._generation += 1
            self.parts_total = len(self._layout)
            self.done_bytes = sum(p.size for n, p in self._layout.items() if n in self._done)
            stored_id = (self.stored or {}).get("file_id")
            self.resumed = self.resumed or answer.status == "resuming" or stored_id == answer.file_id

    def _adopt(self, f: CommunityFile, *, deduplicated: bool) -> None:
        with self._lock:
            self.file = f
            self.deduplicated = deduplicated
            self.done_bytes = self._size()
            self.parts_total = len(self._layout)

    def _complete(self, file_id: str) -> Union[CommunityFile, PartsMissing, Restart]:
        user_id = self.payload.get("user_id")
        return protocol.read_complete(self.backend.send(protocol.complete_request(file_id, user_id)))

    # -- parts -------------------------------------------------------------------------

    def pending_parts(self) -> List[Part]:
        with self._lock:
            if self.file is not None:
                return []
            return [self._part(p) for n, p in sorted(self._layout.items()) if n not in self._done]

    def _part(self, p: ServerPart) -> Part:
        data = self._spool.view(p.start, p.size) if self._spool is not None else None
        # a view of the spool, not a copy: PartIO takes any bytes-like object
        return Part(index=p.number - 1, offset=p.start, size=p.size, data=data)  # type: ignore[arg-type]

    def send_part(self, part: Part, io: PartIO) -> Optional[Union[Resync, Restart]]:
        if self._spool is not None and self.upload_id is None and self.file is None:
            self._spool.write(part.offset, part.data if part.data is not None else io.read())
            return None
        with self._lock:
            p = self._layout.get(part.index + 1)
            if self.file is not None or p is None or p.number in self._done:
                return None
            if (p.start, p.size) != (part.offset, part.size):
                return None  # laid out anew since: finish() asks for what the new layout lacks
            self._tried[p.number] = self._generation
            file_id = self.upload_id
        answer = protocol.read_part(self.backend.put_part(p.url, io.body()), file_id)
        if isinstance(answer, (Resync, Restart)):
            return answer
        with self._lock:
            if self.upload_id == file_id:
                self._done.add(p.number)
        return None

    def recover(self, part: Part, cause: Union[BaseException, Resync, Restart]) -> None:
        if not isinstance(cause, (Resync, Restart)):
            return  # a failed request: the part is sent again as it is
        with self._recovering:  # one recovery at a time; the others find it done
            with self._lock:
                if self.file is not None or self._tried.get(part.index + 1, -1) < self._generation:
                    return
                file_id = str(self.upload_id)
            if isinstance(cause, BeingCompleted):
                self._await_completion(file_id)
            elif isinstance(cause, Restart):
                self._reopen(file_id)
            else:
                log.info("%s: %s; asking for fresh part URLs", self.source.name, cause.reason)
                self._init()  # resumes: the same layout, fresh URLs

    def _await_completion(self, file_id: str) -> None:
        outcome = self._complete(file_id)  # the server answers once the running complete is over
        if isinstance(outcome, CommunityFile):
            if self._holds(outcome):
                self._adopt(outcome, deduplicated=False)
            else:
                self._init()
        elif isinstance(outcome, Restart):
            self._reopen(file_id)
        # PartsMissing: the upload is open again; the part is sent again

    def _reopen(self, file_id: str) -> None:
        """The upload is no longer open: take it if it is finished, else open another."""
        try:
            f: Optional[CommunityFile] = self.backend.file(file_id)
        except NotFound:
            f = None
        if f is not None and self._holds(f):
            log.info("%s: upload %s was finished meanwhile; taking it", self.source.name, file_id)
            self._adopt(f, deduplicated=False)
            return
        log.info("%s: upload %s is gone; opening another", self.source.name, file_id)
        self._init()

    # -- the end -----------------------------------------------------------------------

    def finish(self) -> Union[UploadResult, MoreParts]:
        if self._spool is not None and self.upload_id is None and self.file is None:
            self._seal_spool()
        with self._lock:
            f, file_id = self.file, self.upload_id
        if f is not None:
            return self._result(f)
        missing = self.pending_parts()
        if missing:
            return MoreParts(missing, reason="the server lacks them", parallel=True)
        outcome = self._complete(str(file_id))
        if isinstance(outcome, PartsMissing):
            with self._lock:
                self._done -= set(outcome.numbers)
            return MoreParts(self.pending_parts(), reason="complete said they are missing", parallel=True)
        if isinstance(outcome, Restart):
            self._reopen(str(file_id))
        else:
            self._adopt(outcome, deduplicated=False)
        if self.file is not None:
            return self._result(self.file)
        return MoreParts(self.pending_parts(), reason="the upload was opened again", parallel=True)

    def _seal_spool(self) -> None:
        """The stream is read: its MD5 is known, init can run."""
        assert self._spool is not None
        actual = self._spool.md5()
        if self.md5 is not None and self.md5 != actual:
            raise BadInput(f"md5={self.md5} was given, but the stream's MD5 is {actual}",
                           backend=self.backend.name, operation="put")
        self.md5 = actual
        self._init()

    def _result(self, f: CommunityFile) -> UploadResult:
        if self._spool is not None:
            self._spool.close()
        return f.result(self.deduplicated, self.metadata)

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
        with self._lock:
            file_id = None if self.file is not None else self.upload_id
        if file_id:
            self.backend.abort(file_id)

    def state(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            if self._spool is not None or self.upload_id is None or self.file is not None:
                return None
            return {"file_id": self.upload_id, "parts": len(self._layout),
                    "sent": len(self._done & set(self._layout))}
