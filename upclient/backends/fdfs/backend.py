"""The FastDFS backend: trackers, storages and every verb but the upload sessions.

A request goes to a tracker first (which storage stores, which holds a
file), then to that storage, each over a pooled connection
(:mod:`.connection`).  Trackers are tried in turn: one that cannot be reached
is passed over and the next one asked, and the one that answered is asked
first next time.  A storage's error status becomes an error of the shared
tree once, in :func:`status_error`.  Uploads live in :mod:`.uploads`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import Any, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from ...errors import (
    BadInput,
    Conflict,
    NetworkError,
    NoStorageAvailable,
    NotFound,
    OutcomeUnknown,
    RequestRejected,
    ServerError,
    ServiceError,
    TooLarge,
    TransportError,
)
from ...result import FileInfo, UploadResult
from ...settings import Settings
from ...source import Source, open_source
from ...transfer import deadline
from ...transfer.ranges import RemoteFile, digest_of
from ..base import Backend, Sink, UploadSession
from ..urls import shown
from .connection import Exchange, Pools, Repeat, Silent
from .protocol import (
    Cmd,
    FileId,
    FileStat,
    GroupStat,
    ProtocolError,
    Request,
    StorageAddress,
    StorageStat,
    check_prefix,
    decode_metadata,
    encode_metadata,
    ext_of,
    parse_fetch,
    parse_file_info,
    parse_file_name,
    parse_groups,
    parse_storages,
    parse_store,
    split_addresses,
)
from .uploads import open_upload, target, uploaded

__all__ = ["FdfsBackend", "status_error"]

log = logging.getLogger("upclient.fdfs")

#: Errnos a tracker or storage answers with, and what they mean to a caller.
_STATUS: Dict[int, Tuple[type, str]] = {
    errno.ENOENT: (NotFound, "no such file (or group, or metadata)"),
    errno.EEXIST: (Conflict, "the file already exists"),
    errno.EINVAL: (RequestRejected, "invalid argument"),
    errno.ENOSPC: (TooLarge, "no space left on the storage"),
    errno.EBUSY: (ServiceError, "the server is busy"),
    errno.EISDIR: (RequestRejected, "is a directory"),
    errno.EIO: (ServiceError, "I/O error on the server"),
    errno.EAGAIN: (ServiceError, "try again"),
}


def status_error(status: int, what: str, where: str) -> ServerError:
    """The error for a reply whose status is ``status`` (an errno)."""
    cls, meaning = _STATUS.get(status, (RequestRejected, os.strerror(status)))
    name = errno.errorcode.get(status, str(status))
    return cls(f"{what}: {meaning} ({name}) from {where}", backend="fdfs", operation=what, code=status)



#: Seconds the storage a tracker picked is used again for new files without asking.
STORE_REUSE = 1.0


class FdfsBackend(Backend):
    """FastDFS over its native TCP protocol (``fdfs://tracker:22122[,tracker2:22122]``).

    Options: ``network_timeout`` (seconds a read or write on a connection
    may wait; default the client's ``read_timeout``: a server silent that
    long fails the call with :class:`~.connection.Silent`, a
    :class:`~upclient.errors.Timeout` that is not retried), ``max_conns``
    (open connections per tracker or storage, default 10), ``idle_timeout``
    (seconds an unused connection is kept, default 60).  ``connect_timeout``
    is the client's.  A call's ``timeout``, ``cancel``, ``close()`` and
    Ctrl-C end its requests at once, whatever the server does.  Put options:
    ``ext``, ``group``, ``resumable``, ``regenerate``; see :mod:`.uploads`.
    """

    name: ClassVar[str] = "fdfs"
    client_options: ClassVar[FrozenSet[str]] = frozenset({"network_timeout", "max_conns", "idle_timeout"})
    put_options: ClassVar[FrozenSet[str]] = frozenset({"ext", "group", "resumable", "regenerate"})
    streams: ClassVar[bool] = True
    names_uploads: ClassVar[bool] = True
    extra_verbs: ClassVar[FrozenSet[str]] = frozenset(
        {
            "put_slave",
            "put_appender",
            "append",
            "modify",
            "truncate",
            "regenerate",
            "set_metadata",
            "get_metadata",
            "groups",
            "storages",
        }
    )

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        if scheme.lower() != "fdfs" or not rest:
            raise BadInput(f"{shown(url)!r} is not a FastDFS URL: fdfs://tracker:22122[,tracker2:22122]")
        if "@" in rest.split("/", 1)[0]:
            raise BadInput(f"{shown(url)!r}: FastDFS has no users or passwords; "
                           "give fdfs://tracker:22122[,tracker2:22122]", backend=self.name)
        self.trackers: Sequence[Tuple[str, int]] = split_addresses(rest.split("/", 1)[0])
        network_timeout = options.get("network_timeout", settings.read_timeout)
        max_conns = options.get("max_conns", 10)
        idle_timeout = options.get("idle_timeout", 60.0)
        for label, value in (("network_timeout", network_timeout), ("idle_timeout", idle_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise BadInput(f"{label} must be a positive number of seconds, not {value!r}")
        if not isinstance(max_conns, int) or isinstance(max_conns, bool) or max_conns < 1:
            raise BadInput(f"max_conns must be a positive integer, not {max_conns!r}")
        self.pools = Pools(
            max_conns=max_conns,
            connect_timeout=settings.connect_timeout,
            network_timeout=float(network_timeout),
            idle_timeout=float(idle_timeout),
        )
        self._tracker_at = 0
        self._tracker_lock = threading.Lock()
        #: The storage a tracker last picked for new files, per group, and when.
        self._picked: Dict[Optional[str], Tuple[StorageAddress, float]] = {}

    # -- the wire ------------------------------------------------------------------

    def exchange(
        self,
        address: Tuple[str, int],
        request: Request,
        what: str,
        *,
        repeat: Repeat = Repeat.ALWAYS,
        body: Any = None,
        sink: Optional[Sink] = None,
        storage: bool = True,
    ) -> bytes:
        """Send ``request`` (and ``request.data_len`` bytes of ``body``) to ``address``; the reply body.

        With ``sink`` the reply body is streamed there instead (and b"" returned).
        """
        error: Optional[ServerError] = None
        out = b""
        with self.pools[address].connection(what) as conn:
            ex = Exchange(conn, request, repeat, what, storage=storage)
            try:
                ex.send(body)
                length, status = ex.reply_header()
                if status:
                    error = status_error(status, what, f"{address[0]}:{address[1]}")
                elif sink is not None:
                    ex.stream(length, sink)
                else:
                    out = ex.read(length)
            except (OSError, EOFError) as exc:
                signal = deadline.current()
                if signal is not None and signal.is_set():  # its socket was shut down on purpose
                    conn.discard = True
                    raise signal.error() from None
                raise ex.failure(exc) from None
            except BaseException:
                conn.discard = True  # out of step: a parse error, a cancel, a failing sink
                raise
        if error is not None:
            raise error
        return out

    def ask_tracker(self, request: Request, what: str) -> bytes:
        """The reply of the first tracker that answers, starting with the last one that did."""
        failures: List[str] = []
        silent = 0
        start = self._tracker_at
        n = len(self.trackers)
        for i in range(n):
            at = (start + i) % n
            try:
                body = self.exchange(self.trackers[at], request, what, storage=False)
            except (TransportError, ProtocolError) as exc:
                failures.append(str(exc))
                silent += isinstance(exc, Silent)
                log.info("tracker %s:%d did not answer (%s); trying the next", *self.trackers[at], exc)
                continue
            if at != start:
                with self._tracker_lock:
                    self._tracker_at = at
            return body
        # Trackers that all stayed silent would stay silent on a retry too.
        cls = Silent if silent == n else NetworkError
        raise cls(f"{what}: no tracker answered ({'; '.join(failures)})", backend=self.name, operation=what)

    def locate(self, request: Request, group: Optional[str], what: str) -> bytes:
        """A tracker's answer to a query for a storage (to store in ``group``, or to reach a file in it).

        A tracker says ENOENT both for a group it does not know and for a
        group none of whose storages is active just now; only the first is
        :class:`~upclient.errors.NotFound`, the second is
        :class:`~upclient.errors.NoStorageAvailable` (retried).
        """
        try:
            return self.ask_tracker(request, what)
        except NotFound as exc:
            if exc.code != errno.ENOENT:
                raise
            if group is not None:
                try:
                    self.ask_tracker(Request.list_groups(group), what)
                except NotFound:
                    raise NotFound(f"{what}: the tracker knows no group {group!r}", backend=self.name,
                                   operation=what, code=errno.ENOENT) from None
            raise NoStorageAvailable(
                f"{what}: no storage server is active in " + (f"group {group!r}" if group else "any group")
                + " just now (the tracker said ENOENT)", backend=self.name, operation=what, code=errno.ENOENT,
            ) from None

    def store_address(self, group: Optional[str], what: str = "put") -> StorageAddress:
        """The storage a tracker picks for a new file (in ``group``, if given).

        The answer is used again for :data:`STORE_REUSE` seconds: a burst of
        small files costs one round trip each (to the storage), not two.  A
        failed upload forgets it (:meth:`upload`), so a retry asks again.
        """
        now = time.monotonic()
        found = self._picked.get(group)
        if found is not None and now - found[1] < STORE_REUSE:
            return found[0]
        address = parse_store(self.locate(Request.query_store(group), group, what))
        self._picked[group] = (address, now)
        return address

    def forget_store(self, address: StorageAddress) -> None:
        """Ask a tracker again next time instead of reusing ``address`` (an upload to it failed)."""
        for group, (picked, _) in list(self._picked.items()):
            if picked.address == address.address:
                self._picked.pop(group, None)

    def file_address(self, fid: FileId, *, update: bool = False, what: str = "info") -> StorageAddress:
        """The storage to read ``fid`` from (or, with ``update``, to change it on)."""
        return parse_fetch(self.locate(Request.query_fetch(fid, update=update), fid.group, what))

    def file_stat(self, fid: FileId, address: Optional[StorageAddress] = None, what: str = "info") -> FileStat:
        address = address or self.file_address(fid, what=what)
        return parse_file_info(self.exchange(address.address, Request.on_file(Cmd.QUERY_FILE_INFO, fid), what))

    def upload(
        self,
        address: StorageAddress,
        request: Request,
        body: Any,
        what: str = "upload",
        *,
        repeat: Repeat = Repeat.UNTIL_COMPLETE,
    ) -> FileId:
        """Send an upload request and its bytes; the new file's id."""
        try:
            return parse_file_name(self.exchange(address.address, request, what, repeat=repeat, body=body))
        except (TransportError, ServerError):
            self.forget_store(address)
            raise

    # -- uploads -------------------------------------------------------------------

    def destination(self, key: Optional[str], options: Mapping[str, Any]) -> str:
        ext = options.get("ext", ext_of(key) if key else None)
        modes = (options.get("resumable"), options.get("regenerate"))  # each makes a different file
        return "|".join(str(x) for x in (self.url, options.get("group") or "", ext, *modes))

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        return open_upload(self, source, name=key, metadata=metadata, options=options, state=state)

    def _sized(self, data: Any) -> Tuple[Source, bool]:
        src = data if isinstance(data, Source) else open_source(data)
        if src.size is None or not src.seekable:
            raise BadInput("this verb needs a path, bytes or a seekable file object", backend=self.name)
        return src, src is not data

    def put_appender(
        self,
        source: Any,
        *,
        ext: Optional[str] = None,
        group: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> UploadResult:
        """Upload ``source`` as an appender file (one request), which
        :meth:`append`, :meth:`modify` and :meth:`truncate` can change later."""
        src, owned = self._sized(source)
        try:
            ext, group = target(src.name, ext, group)
            meta = encode_metadata(metadata) if metadata else b""
            address = self.store_address(group, "put_appender")
            request = Request.upload(src.size or 0, ext, path_index=address.path_index, appender=True)
            fid = self.upload(address, request, src.body(0, src.size or 0), "put_appender")
            return uploaded(self, fid, src.size or 0, meta, address)
        finally:
            if owned:
                src.close()

    def put_slave(
        self,
        master: str,
        source: Any,
        *,
        prefix: str,
        ext: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> UploadResult:
        """Upload ``source`` as a slave of ``master`` (a thumbnail, say): on the
        master's storage, named after it with ``prefix`` before the extension
        (``ext``, else the source's, else the master's)."""
        fid = FileId.parse(master)
        check_prefix(prefix)
        src, owned = self._sized(source)
        try:
            ext, _ = target(src.name if ext_of(src.name) else fid.name, ext, None)
            meta = encode_metadata(metadata) if metadata else b""
            address = self.file_address(fid, update=True, what="put_slave")
            request = Request.upload_slave(fid, prefix, src.size or 0, ext)
            new = self.upload(address, request, src.body(0, src.size or 0), "put_slave")
            return uploaded(self, new, src.size or 0, meta, address)
        finally:
            if owned:
                src.close()

    # -- verbs ---------------------------------------------------------------------

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        fid = FileId.parse(id)
        address = self.file_address(fid, what="download")
        counted = [0]

        def count(block: bytes) -> None:
            counted[0] += len(block)
            sink(block)

        try:
            self.exchange(address.address, Request.download(fid, offset, length or 0), "download", sink=count)
        except RequestRejected as exc:
            if exc.code != errno.EINVAL:
                raise
            size = self.file_stat(fid, address, "download").size  # 22: offset at or past the end
            if offset == size:
                return 0  # nothing to read there (an empty file answers 22 too)
            raise BadInput(f"offset {offset} is past the end of {id} ({size} bytes)",
                           backend=self.name, operation="get") from None
        return counted[0]

    def open_download(self, id: str) -> Optional[RemoteFile]:
        """A file to read by ranges from the storage that holds it, found once; size and CRC32 from its stat."""
        fid = FileId.parse(id)
        address = self.file_address(fid, what="download")
        stat = self.file_stat(fid, address, "download")

        def read(sink: Sink, offset: int, length: int, strict: bool) -> int:
            counted = [0]

            def count(block: bytes) -> None:
                counted[0] += len(block)
                sink(block)

            self.exchange(address.address, Request.download(fid, offset, length), "download", sink=count)
            return counted[0]

        # a CRC32 of 0 is what a storage says when it did not compute one
        crc = digest_of("crc32", stat.crc32) if stat.crc32 else None
        return RemoteFile(size=stat.size, read=read, version={"crc32": stat.crc32, "created": stat.created},
                          digest=crc)

    def info(self, id: str) -> FileInfo:
        fid = FileId.parse(id)
        address = self.file_address(fid)
        stat = self.file_stat(fid, address)
        return FileInfo(
            id=str(fid),
            backend=self.name,
            size=stat.size,
            modified=float(stat.created),
            extra={
                "group": fid.group,
                "remote": fid.remote,
                "crc32": stat.crc32,
                "source_ip": stat.source_ip,
                "created": fid.created,  # from the id; the storage's own time is ``modified``
                "appender": fid.appender,
                "storage": str(address),
            },
        )

    def delete(self, id: str) -> None:
        """Delete ``id``.

        When the answer is lost the storage is asked whether the file is
        still there: gone means deleted (a retry would only say "no such
        file"); still there means the delete did not happen, and it is tried
        again.
        """
        fid = FileId.parse(id)
        address = self.file_address(fid, update=True, what="delete")
        try:
            self.exchange(address.address, Request.on_file(Cmd.DELETE, fid), "delete", repeat=Repeat.UNTIL_COMPLETE)
        except Silent:
            raise  # asking a silent storage again would cost another network_timeout
        except OutcomeUnknown as lost:
            try:
                self.file_stat(fid, address, "delete")
            except NotFound:
                return
            except (TransportError, ProtocolError):
                raise lost from None
            raise NetworkError(f"delete: the answer was lost and {id} is still there; trying again",
                               backend=self.name, operation="delete") from None

    def abort(self, id: str) -> None:
        """Delete an unfinished (appender) upload."""
        self.delete(id)

    def abort_state(self, state: Dict[str, Any]) -> None:
        if state.get("id"):
            try:
                self.delete(state["id"])
            except NotFound:
                pass

    def set_metadata(self, id: str, metadata: Mapping[str, str], *, mode: str = "merge") -> None:
        """Set metadata: ``mode="merge"`` adds and replaces names, ``"overwrite"``
        replaces all (an empty mapping then removes all)."""
        if mode not in ("merge", "overwrite"):
            raise BadInput(f"mode must be 'merge' or 'overwrite', not {mode!r}")
        if not isinstance(metadata, Mapping):
            raise BadInput("metadata must be a mapping of str to str")
        fid = FileId.parse(id)
        meta = encode_metadata(metadata)
        address = self.file_address(fid, update=True, what="set_metadata")
        self.exchange(address.address, Request.set_metadata(fid, meta, merge=mode == "merge"), "set_metadata")

    def get_metadata(self, id: str) -> Dict[str, str]:
        """The file's metadata, ``{}`` if it has none."""
        fid = FileId.parse(id)
        address = self.file_address(fid, what="get_metadata")
        try:
            return decode_metadata(self.exchange(address.address, Request.on_file(Cmd.GET_METADATA, fid),
                                                 "get_metadata"))
        except NotFound:
            self.file_stat(fid, address, "get_metadata")  # the storage says ENOENT for "no metadata" too
            return {}

    def append(self, id: str, data: Any) -> int:
        """Append ``data`` (bytes, a path, a file object) to an appender file; returns the bytes appended.

        Not repeated once sent: if the answer is lost,
        :class:`~upclient.errors.OutcomeUnknown` says so; look at ``info(id).size``.
        """
        fid = FileId.parse(id)
        src, owned = self._sized(data)
        try:
            address = self.file_address(fid, update=True, what="append")
            n = src.size or 0
            self.exchange(address.address, Request.append(fid, n), "append", repeat=Repeat.UNTIL_SENT,
                          body=src.body(0, n))
            return n
        finally:
            if owned:
                src.close()

    def modify(self, id: str, offset: int, data: Any) -> int:
        """Write ``data`` over an appender file from ``offset`` (at most its size); returns the bytes written."""
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise BadInput(f"offset must be a non-negative integer, not {offset!r}")
        fid = FileId.parse(id)
        src, owned = self._sized(data)
        try:
            address = self.file_address(fid, update=True, what="modify")
            n = src.size or 0
            self.exchange(address.address, Request.modify(fid, offset, n), "modify", body=src.body(0, n))
            return n
        finally:
            if owned:
                src.close()

    def truncate(self, id: str, size: int = 0) -> None:
        """Cut (or extend with zeros) an appender file to ``size`` bytes."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadInput(f"size must be a non-negative integer, not {size!r}")
        fid = FileId.parse(id)
        address = self.file_address(fid, update=True, what="truncate")
        self.exchange(address.address, Request.truncate(fid, size), "truncate")

    def regenerate(self, id: str) -> str:
        """Turn an appender file into a normal one; its new id (the old one is gone)."""
        fid = FileId.parse(id)
        address = self.file_address(fid, update=True, what="regenerate")
        return str(self.upload(address, Request.regenerate(fid), None, "regenerate"))

    def groups(self) -> List[GroupStat]:
        """Every group the tracker knows, with space and server counts."""
        return parse_groups(self.ask_tracker(Request.list_groups(), "groups"))

    def storages(self, group: str) -> List[StorageStat]:
        """The storage servers of ``group``."""
        return parse_storages(self.ask_tracker(Request.list_storages(group), "storages"))

    def close(self) -> None:
        self.pools.close()
        super().close()

    def __repr__(self) -> str:
        return f"<FdfsBackend {','.join(f'{h}:{p}' for h, p in self.trackers)}>"
