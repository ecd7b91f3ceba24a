"""FastDFS upload sessions: one request, or an appender file grown part by part.

FastDFS has no multipart upload.  A file of at most ``part_size`` bytes goes
up in one request (:class:`OneShotUpload`: the bytes streamed from the
source, never read whole).  A larger one, or a stream of unknown size, goes
up as an appender file (:class:`AppenderUpload`): the first part creates it,
the next ones are appended in order, and the storage's own record of the
file's size is what a resume (in this process or the next) starts from.  At
the end the appender file is regenerated (FastDFS 6.x) into a normal file
with a new id, so the caller gets the file a plain upload would have made.

Put options: ``resumable=False`` asks for one request whatever the size (a
stream of unknown size still needs the appender file); ``resumable=True``
asks for an appender file whatever the size, and keeps it an appender file
(one that :meth:`~.backend.FdfsBackend.append` can grow) unless
``regenerate=True``.  ``regenerate=False`` keeps the appender file of a
default upload too.

What a resume point can and cannot do here: FastDFS names a file in the
reply of the request that stores it (upload 11 or 23) or renames it
(regenerate 38), and has no way to find a file by anything else.  Once a
reply is in, the name is in the session's state: a one-request file and a
regenerated one are recorded as stored *whole*, so a finish that fails after
it (setting the metadata) or a process killed before its job journaled the
file is completed by the next attempt (:class:`StoredFile`) instead of
being sent again.  An appender file is named by its first part's reply,
before the rest goes.  What no client can close: a process killed (or a
connection lost) after the storage has written a one-request file or
applied a regenerate and before the reply reaches it; the next attempt
knows no name (the old appender name is gone after a regenerate) and stores
the file again, leaving the first copy unreferenced on the storage.
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Dict, Iterator, List, Mapping, Optional, Protocol, Tuple, Union

from ...errors import BadInput, Conflict, NotFound, OffsetConflict, RequestRejected, ServerError
from ...result import UploadResult
from ...settings import Settings
from ...source import Source
from ...transfer import Hint, MoreParts, Part, PartIO, UploadSession
from .connection import Repeat
from .protocol import (
    FileId,
    FileStat,
    Request,
    StorageAddress,
    check_ext,
    check_group,
    decode_metadata,
    encode_metadata,
    ext_of,
)

__all__ = ["Wire", "open_upload", "target", "uploaded", "OneShotUpload", "AppenderUpload", "StoredFile"]

log = logging.getLogger("upclient.fdfs")


class Wire(Protocol):
    """What an upload needs of the backend (:class:`~.backend.FdfsBackend`): the
    tracker's answers and one request at a time to a storage."""

    settings: Settings

    def exchange(self, address: Tuple[str, int], request: Request, what: str, *, repeat: Repeat = ...,
                 body: Any = ..., sink: Any = ..., storage: bool = ...) -> bytes: ...

    def upload(self, address: StorageAddress, request: Request, body: Any, what: str = ..., *,
               repeat: Repeat = ...) -> FileId: ...

    def store_address(self, group: Optional[str], what: str = ...) -> StorageAddress: ...

    def file_address(self, fid: FileId, *, update: bool = ..., what: str = ...) -> StorageAddress: ...

    def file_stat(self, fid: FileId, address: Optional[StorageAddress] = ...) -> FileStat: ...

    def truncate(self, id: str, size: int = ...) -> None: ...

    def regenerate(self, id: str) -> str: ...

    def delete(self, id: str) -> None: ...


def uploaded(wire: Wire, fid: FileId, size: int, meta: bytes, address: StorageAddress) -> UploadResult:
    """The result of a finished upload, once its metadata (if any) is set on ``address``.

    Metadata that cannot be set does not hide the upload: the error names the file.
    """
    if meta:
        try:
            wire.exchange(address.address, Request.set_metadata(fid, meta, merge=False), "set_metadata")
        except ServerError as exc:
            raise type(exc)(f"{fid} was uploaded, but its metadata was not set: {exc.message}",
                            backend="fdfs", operation="set_metadata", code=exc.code) from exc
    return UploadResult(
        id=str(fid),
        size=size,
        backend="fdfs",
        metadata=decode_metadata(meta),
        extra={"group": fid.group, "remote": fid.remote, "storage": str(address), "appender": fid.appender},
    )


def _flag(options: Mapping[str, Any], name: str, default: Optional[bool]) -> Optional[bool]:
    value = options.get(name, default)
    if value is not default and not isinstance(value, bool):
        raise BadInput(f"{name} must be True or False, not {value!r}")
    return value


def target(name: Optional[str], ext: Optional[str], group: Optional[str]) -> Tuple[str, Optional[str]]:
    """(extension, group) of a new file, checked: ``ext``, else the one of ``name``."""
    return check_ext(ext_of(name) if ext is None else ext), (check_group(group) if group else None)


def open_upload(
    backend: Wire,
    source: Source,
    *,
    name: Optional[str],
    metadata: Mapping[str, str],
    options: Mapping[str, Any],
    state: Optional[Dict[str, Any]],
) -> UploadSession:
    """The session for ``source``: one request unless it must be resumable or is a large stream.

    FastDFS names files itself; ``name`` (the ``key`` of ``put``), or else the
    source's file name, only lends the extension, unless ``ext`` is given.
    A state that says the file was stored whole resumes as a :class:`StoredFile`.
    """
    if state and state.get("whole"):
        return StoredFile(backend, source, state=state, afresh=lambda: open_upload(
            backend, source, name=name, metadata=metadata, options=options, state=None))
    ext, group = target(name or source.name, options.get("ext"), options.get("group"))
    meta = encode_metadata(metadata) if metadata else b""  # checked before anything is sent
    resumable = _flag(options, "resumable", None)
    regenerate = _flag(options, "regenerate", None)
    part_size = backend.settings.part_size
    large = source.size is None or source.size > part_size
    if resumable is False and regenerate is not None:
        raise BadInput("regenerate= applies to appender uploads, not to resumable=False", backend="fdfs",
                       operation="put")
    if resumable or regenerate is False or (large and (resumable is None or not source.seekable)):
        session = AppenderUpload(backend, source, ext=ext, group=group, meta=meta, part_size=part_size,
                                 regenerate=not resumable if regenerate is None else regenerate, state=state)
        session.fallback = regenerate is None  # a server without regenerate (before 6.x) may keep it
        return session
    return OneShotUpload(backend, source, ext=ext, group=group, meta=meta)


class _Upload(UploadSession):
    """What both sessions share: the target and the finishing touch."""

    def __init__(self, backend: Wire, source: Source, *, ext: str, group: Optional[str], meta: bytes) -> None:
        self.backend = backend
        self.source = source
        self.ext = ext
        self.group = group
        self.meta = meta
        self.fid: Optional[FileId] = None
        self.address: Optional[StorageAddress] = None
        self.size = 0  # bytes the storage holds

    def _create(self, part: Part, io: PartIO, *, appender: bool) -> None:
        """Create the file with the bytes of ``part``, on the storage a tracker picks."""
        address = self.backend.store_address(self.group, "put")
        request = Request.upload(part.size, self.ext, path_index=address.path_index, appender=appender)
        self.fid = self.backend.upload(address, request, io.body(), "put")
        self.address = address
        self.size = part.end

    def _result(self) -> UploadResult:
        assert self.fid is not None and self.address is not None
        return uploaded(self.backend, self.fid, self.size, self.meta, self.address)


class OneShotUpload(_Upload):
    """The whole source in one upload request (11), streamed."""

    parts_total = 1

    def pending_parts(self) -> Iterator[Part]:
        yield Part(index=0, offset=0, size=self.source.size or 0)

    def send_part(self, part: Part, io: PartIO) -> None:
        if part.offset != 0 or not (part.last or part.end == self.source.size):
            raise BadInput("a one-request upload takes the whole source as one part")
        self._create(part, io, appender=False)

    def finish(self) -> UploadResult:
        return self._result()

    def state(self) -> Optional[Dict[str, Any]]:
        """Once the storage named the file: the file, stored whole (its finish may still fail)."""
        if self.fid is None:
            return None
        return {"id": str(self.fid), "whole": True, "size": self.size}


class StoredFile(_Upload):
    """A file an earlier attempt stored whole (one request, or regenerated) but did not see through
    to its result (its metadata, the caller's journal): finished without sending it again.

    :meth:`start` asks the storage for the file; one that is gone, or not of the source's size,
    starts afresh as the session ``afresh`` makes.
    """

    parts_total = 0

    def __init__(self, backend: Wire, source: Source, *, state: Mapping[str, Any], afresh: Any) -> None:
        super().__init__(backend, source, ext="", group=None, meta=b"")
        self._stored = state
        self._afresh = afresh

    def start(self) -> Optional[UploadSession]:
        fresh = self._afresh()  # no I/O: the metadata and the target are the caller's, checked
        self.meta = getattr(fresh, "meta", b"")
        try:
            fid = FileId.parse(str(self._stored["id"]))
            address = self.backend.file_address(fid, update=True, what="put")
            held = self.backend.file_stat(fid, address).size
        except (KeyError, BadInput):
            log.warning("ignoring an unreadable resume point: %r", dict(self._stored))
            return fresh.start() or fresh
        except NotFound:
            log.info("%s is gone from the storage; starting afresh", self._stored.get("id"))
            return fresh.start() or fresh
        if held != self.source.size:
            log.info("%s holds %d bytes, the source %s; starting afresh", fid, held, self.source.size)
            return fresh.start() or fresh
        self.fid, self.address, self.size = fid, address, held
        self.upload_id = str(fid)
        self.resumed = True
        self.done_bytes = held
        return None

    def pending_parts(self) -> List[Part]:
        return []

    def finish(self) -> UploadResult:
        return self._result()

    def state(self) -> Optional[Dict[str, Any]]:
        return {"id": str(self.fid), "whole": True, "size": self.size} if self.fid is not None else None


class AppenderUpload(_Upload):
    """An appender file (23) grown by appends (24) in order; resumable.

    The stored state is the file's id and the part size.  On resume the
    storage says how many bytes it holds; a tail that is not a whole part
    (an append cut short that the storage has not rolled back yet) is
    truncated away, so the file only ever holds whole parts in order.
    """

    parallel = False
    #: When the storage cannot regenerate (FastDFS before 6.x): keep the
    #: appender file (True, for a regenerate nobody asked for) or fail.
    fallback = False

    def __init__(
        self,
        backend: Wire,
        source: Source,
        *,
        ext: str,
        group: Optional[str],
        meta: bytes,
        part_size: int,
        regenerate: bool,
        state: Optional[Dict[str, Any]],
    ) -> None:
        super().__init__(backend, source, ext=ext, group=group, meta=meta)
        self.part_size = part_size
        self.regenerate = regenerate
        self._regenerated = False
        self._state = state
        self._count_parts()

    def _count_parts(self) -> None:
        if self.source.size is not None:
            self.parts_total = max(1, -(-self.source.size // self.part_size))

    def start(self) -> None:
        """Resume from the stored state, if any: ask the storage what it holds."""
        if self._state and self._state.get("id") and self.fid is None:
            self._resume(self._state)
            self._count_parts()

    def _resume(self, state: Dict[str, Any]) -> None:
        try:
            fid = FileId.parse(state["id"])
            part_size = int(state["part_size"])
        except (KeyError, ValueError, BadInput):
            log.warning("ignoring an unreadable resume point: %r", state)
            return
        try:
            address = self.backend.file_address(fid, update=True, what="put")
            held = self.backend.file_stat(fid, address).size
        except NotFound:
            log.info("%s is gone from the storage; starting afresh", fid)
            return
        size = self.source.size
        if size is not None and held > size:
            log.warning("%s holds %d bytes, more than the %d of the source; starting afresh", fid, held, size)
            return
        whole = held - held % part_size if held != size else held
        if whole != held:
            self.backend.truncate(str(fid), whole)
        self.fid, self.address, self.part_size, self.size = fid, address, part_size, whole
        self.upload_id = str(fid)
        self.resumed = whole > 0
        self.done_bytes = whole

    def pending_parts(self) -> Iterator[Part]:
        total = self.source.size or 0
        if total == 0 and self.fid is None:
            yield Part(index=0, offset=0, size=0)
            return
        offset = self.size
        while offset < total:
            n = min(self.part_size, total - offset)
            yield Part(index=offset // self.part_size, offset=offset, size=n)
            offset += n

    def send_part(self, part: Part, io: PartIO) -> None:
        if self.size >= part.end and self.fid is not None:
            return  # a lost answer: the storage had it (see recover)
        if part.offset != self.size:
            raise OffsetConflict(f"part at {part.offset}, but the storage holds {self.size} bytes",
                                 backend="fdfs", operation="append")
        if self.fid is None:
            # A stream that fits in one part needs no appender file at all.
            alone = part.index == 0 and (part.last or part.end == self.source.size)
            self._create(part, io, appender=not (alone and self.regenerate))
            self._regenerated = not self.fid.appender if self.fid else False
            self.upload_id = str(self.fid)
            return
        assert self.address is not None
        self.backend.exchange(self.address.address, Request.append(self.fid, part.size), "append",
                              repeat=Repeat.ALWAYS, body=io.body())
        self.size = part.end

    def recover(self, part: Part, cause: Union[BaseException, Hint]) -> None:
        """After a failed append, make the storage hold exactly the parts before ``part``, or all of it."""
        if self.fid is None:
            return
        held = self.backend.file_stat(self.fid, self.address).size
        if held == part.end:
            self.size = part.end  # it arrived; only the answer was lost
        elif part.offset < held < part.end:
            self.backend.truncate(str(self.fid), part.offset)  # what the storage would roll back itself
            self.size = part.offset
        elif held == part.offset:
            self.size = held
        else:
            raise Conflict(
                f"{self.fid} holds {held} bytes, expected {part.offset} to {part.end}: it was changed by "
                "someone else; upload again with resume=False",
                backend="fdfs", operation="append",
            )

    def confirmed(self, part: Part) -> int:
        return max(0, min(self.size, part.end) - part.offset)

    def finish(self) -> Union[UploadResult, MoreParts]:
        assert self.fid is not None
        if self.regenerate and not self._regenerated:  # not twice when finish is tried again
            try:
                self.fid = FileId.parse(self.backend.regenerate(str(self.fid)))
            except RequestRejected as exc:
                if not (self.fallback and exc.code == errno.EINVAL):
                    raise
                log.warning("%s stays an appender file: the storage cannot regenerate its name (%s)",
                            self.fid, exc)
            self._regenerated = True
            if self.meta and not self.fid.appender:
                # renamed: the engine records the new name before the metadata's round trip
                return MoreParts((), reason=f"renamed to {self.fid}; its metadata next")
        return self._result()

    def abort(self) -> None:
        if self.fid is not None and not self._regenerated:
            self.backend.delete(str(self.fid))

    def state(self) -> Optional[Dict[str, Any]]:
        if self.fid is None:
            return None
        if self._regenerated and not self.fid.appender:  # renamed: the old name is gone
            return {"id": str(self.fid), "whole": True, "size": self.size}
        return {"id": str(self.fid), "part_size": self.part_size, "size": self.size}
