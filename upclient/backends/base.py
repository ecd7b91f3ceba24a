"""What every backend is: :class:`Backend`, the verbs a protocol adapter fills in.

Uploads go through the seam in :mod:`upclient.transfer` (sessions, parts,
hints), which backends import and which never imports them.
"""

from __future__ import annotations

import threading
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Mapping,
    Optional,
)

from ..errors import BadInput, NotFound, Unsupported
from ..result import FileInfo
from ..settings import Settings
from ..source import Source
from ..transfer import Part, PartIO, UploadSession
from ..transfer.ranges import RemoteFile

__all__ = ["Backend", "Sink", "Part", "PartIO", "UploadSession"]

#: Where a download goes: called with each block in order.
Sink = Callable[[bytes], Any]


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
    #: Whether the server names each upload (a tus URL, a FastDFS file id), so that
    #: sending a file again stores a second copy.  A journaled put (``upclient
    #: sync``) then gives even a file of one part a resume point before its bytes
    #: go; where a key (UPYUN) or the content (community) names the file, a
    #: second send replaces or finds the first, and small files keep none.
    names_uploads: ClassVar[bool] = False
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
                        auth=self.transport_auth(),
                        pool_size=max(32, 2 * s.concurrency + s.max_files + 16),
                        origins=self.home_origins(),
                    )
        return self._http

    def transport_auth(self) -> Any:
        """The auth the transport adds to requests to :meth:`home_origins` (the client's ``auth``)."""
        return self.settings.auth

    def home_origins(self) -> Optional[List[str]]:
        """The origins that may receive the client's credentials: this backend's server and the trusted.

        None sends them everywhere; a backend whose URL names no HTTP server
        overrides this with the endpoints it talks to.
        """
        from ..origins import origin_of

        own = origin_of(self.url)
        if own is None:
            return None
        return [own, *self.settings.trusted_origins]

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

    def open_download(self, id: str) -> Optional[RemoteFile]:
        """What a ranged download of ``id`` needs first: its size, version and digest (one request).

        None (the default) when this backend cannot say the size first or
        read byte ranges: ``get`` then reads one stream with :meth:`download`.
        """
        return None

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
