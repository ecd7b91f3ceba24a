"""The seam between the transfer engine and the backends.

A backend speaks one protocol and nothing else.  For an upload it opens an
:class:`UploadSession` (new, or from the state a store kept), and the session
says which :class:`Part` objects remain and whether they may travel in
parallel, sends one part when asked (one request, or the few its protocol
needs) and raises a typed error when that fails, re-synchronises with the
server before a part is tried again, finishes, aborts, and shows its state as
plain JSON after every part.  The engine owns threads, ordering, retries,
progress, cancellation and the store; a backend never sleeps, retries,
prints or starts a thread.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    Mapping,
    Optional,
)

from ..errors import BadInput, NotFound, Unsupported
from ..result import FileInfo, UploadResult
from ..settings import Settings
from ..source import PartBody, Source

__all__ = ["Part", "PartIO", "UploadSession", "Backend", "Sink"]

#: Where a download goes: called with each block in order.
Sink = Callable[[bytes], Any]


@dataclasses.dataclass(frozen=True)
class Part:
    """One byte range of the source: ``size`` bytes from ``offset``.

    ``data`` holds the bytes of a part read from a non-seekable stream; it is
    None for seekable sources, whose bytes are read as they are sent.
    ``last`` marks the final part of a stream whose size was unknown.
    """

    index: int
    offset: int
    size: int
    data: Optional[bytes] = None
    last: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.size


class PartIO:
    """What a session uses to read one part while sending it.

    ``body()`` streams a byte range straight from the source; ``read()``
    loads a range into memory (for protocols that need a digest of the part
    before sending it), and ``body(data=...)`` then sends those bytes.  Both
    count progress and honour cancellation; nothing is read twice.
    """

    def __init__(
        self,
        source: Source,
        part: Part,
        on_read: Callable[[int], None],
        cancel: Any,
    ) -> None:
        self.source = source
        self.part = part
        self._on_read = on_read
        self._cancel = cancel

    def _range(self, start: Optional[int], end: Optional[int]) -> "tuple[int, int]":
        start = self.part.offset if start is None else start
        end = self.part.end if end is None else end
        if not self.part.offset <= start <= end <= self.part.end:
            raise ValueError(f"range {start}-{end} is outside part {self.part}")
        return start, end

    def read(self, start: Optional[int] = None, end: Optional[int] = None) -> bytes:
        """The bytes ``[start, end)`` (absolute offsets, default the whole part)."""
        start, end = self._range(start, end)
        if self.part.data is not None:
            rel = start - self.part.offset
            return self.part.data[rel : rel + end - start]
        data = bytes(self.source.read(start, end - start))
        if len(data) != end - start:
            self.source.check_unchanged()
        return data

    def body(
        self,
        start: Optional[int] = None,
        end: Optional[int] = None,
        *,
        data: Optional[bytes] = None,
    ) -> PartBody:
        """A sized, streamed request body for ``[start, end)`` or for ``data``."""
        start, end = self._range(start, end)
        if data is None and self.part.data is not None:
            rel = start - self.part.offset
            data = self.part.data[rel : rel + end - start]
        if data is not None:
            view = memoryview(data)
            return PartBody(
                lambda pos, n: view[pos : pos + n],
                0,
                len(view),
                on_read=self._on_read,
                cancel=self._cancel,
            )
        return self.source.body(start, end - start, on_read=self._on_read, cancel=self._cancel)


class UploadSession:
    """One upload in progress on one backend; see the module docstring.

    ``parallel`` says whether :meth:`send_part` may run for several parts at
    once (then it must be thread-safe).  ``done_bytes`` is what the server
    already holds when the session opens (a resume), for progress.
    """

    parallel: bool = False
    resumed: bool = False
    done_bytes: int = 0
    #: When the server will forget this upload (epoch seconds), if it says.
    expires: Optional[float] = None
    #: The server-side handle, once there is one (shown in the resume point).
    upload_id: Optional[str] = None
    #: How many parts the whole upload has, done or not, where known.
    parts_total: Optional[int] = None

    def pending_parts(self) -> Iterable[Part]:
        """The parts still to send, for a source of known size."""
        raise NotImplementedError

    def send_part(self, part: Part, io: PartIO) -> None:
        """Send one part; raise a :mod:`upclient.errors` error on failure."""
        raise NotImplementedError

    def recover(self, part: Part, error: BaseException) -> None:
        """Re-synchronise with the server before ``part`` is tried again."""

    def confirmed(self, part: Part) -> int:
        """Bytes of ``part`` the server is known to hold (a failed try may still
        have advanced it); the engine gives a part that advances more tries."""
        return 0

    def finish(self) -> UploadResult:
        """Complete the upload once every part is sent."""
        raise NotImplementedError

    def abort(self) -> None:
        """Give up: free what the server holds for this upload, if it can."""

    def state(self) -> Optional[Dict[str, Any]]:
        """Plain JSON to resume from in another process; None if not resumable."""
        return None


class Backend:
    """A protocol adapter; subclasses fill in what their service can do.

    ``client_options`` and ``put_options`` name the keyword arguments a backend
    accepts from ``Client(...)`` and from ``put(...)``; anything else is a
    :class:`~upclient.errors.BadInput` before any request.  ``streams`` says
    whether it can upload a source of unknown size.
    """

    name: ClassVar[str] = "backend"
    client_options: ClassVar[FrozenSet[str]] = frozenset()
    put_options: ClassVar[FrozenSet[str]] = frozenset()
    streams: ClassVar[bool] = False
    #: Verbs of this backend beyond the shared ones; ``Client`` offers them
    #: too, under the shared retry policy (``client.purge(...)``...).
    extra_verbs: ClassVar[FrozenSet[str]] = frozenset()

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        unknown = set(options) - set(self.client_options)
        if unknown:
            raise BadInput(
                f"the {self.name} backend does not know option(s) {', '.join(sorted(unknown))}"
                + (f"; it knows {', '.join(sorted(self.client_options))}" if self.client_options else "")
            )
        self.url = url
        self.settings = settings
        self.options = options
        #: Whole-file digests remembered by file identity; the Client gives
        #: its own (kept in its store), so a re-run does not read a file again.
        self.digests: Optional[Any] = None
        self._http: Optional[Any] = None
        self._http_lock = threading.Lock()

    @property
    def http(self) -> Any:
        """The shared HTTP transport, made on first use from the settings."""
        if self._http is None:
            with self._http_lock:
                if self._http is None:
                    from ..transport import HttpTransport

                    s = self.settings
                    self._http = HttpTransport(
                        connect_timeout=s.connect_timeout,
                        read_timeout=s.read_timeout,
                        verify=s.verify,
                        cert=s.cert,
                        headers=s.headers,
                        auth=s.auth,
                        pool_size=max(32, 2 * s.concurrency + s.max_files + 16),
                    )
        return self._http

    def digest(self, source: Source, algorithm: str = "md5", *, on_progress: Any = None) -> str:
        """The whole-file digest of ``source`` (for deduplicating servers), read at most once."""
        if self.digests is None:  # a backend used without a Client remembers for its own life
            from ..digest import DigestCache
            from ..store import MemoryStore

            self.digests = DigestCache(MemoryStore())
        return str(self.digests.digest(source, algorithm, on_progress=on_progress))

    def check_put_options(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - set(self.put_options)
        if unknown:
            known = ", ".join(sorted(self.put_options)) or "none"
            raise BadInput(
                f"the {self.name} backend does not know put option(s) "
                f"{', '.join(sorted(unknown))} (it knows: {known})"
            )

    def destination(self, key: Optional[str], options: Mapping[str, Any]) -> str:
        """Where an upload goes, as a string for the resume key."""
        return f"{self.url}|{key or ''}"

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        raise Unsupported("uploads are not supported", backend=self.name, operation="put")

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        """Write ``length`` bytes (all to the end if None) from ``offset`` to ``sink``; return the count."""
        raise Unsupported("downloads are not supported", backend=self.name, operation="get")

    def info(self, id: str) -> FileInfo:
        raise Unsupported("info is not supported", backend=self.name, operation="info")

    def exists(self, id: str) -> bool:
        try:
            self.info(id)
        except NotFound:
            return False
        return True

    def delete(self, id: str) -> None:
        raise Unsupported("delete is not supported", backend=self.name, operation="delete")

    def abort(self, id: str) -> None:
        raise Unsupported("abort is not supported", backend=self.name, operation="abort")

    def abort_state(self, state: Dict[str, Any]) -> None:
        """Abandon the upload a resume point describes (its session state)."""
        raise Unsupported("abort is not supported", backend=self.name, operation="abort")

    def iter(self, prefix: str = "", **options: Any) -> Iterator[FileInfo]:
        raise Unsupported("listing is not supported", backend=self.name, operation="iter")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __repr__(self) -> str:
        from ..transport import redact_url

        return f"<{type(self).__name__} {redact_url(self.url)}>"
