"""The tus backend: :class:`TusBackend`, its verbs, and the one place requests go out.

Speaks the core protocol and the creation, creation-with-upload,
creation-defer-length, termination, checksum, expiration and concatenation
extensions, using what the server advertises (OPTIONS, asked once per
backend, on first need: making a backend or an upload sends nothing).  The
requests and what their answers mean are in :mod:`.protocol`; the upload
sessions in :mod:`.uploads`.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from typing import Any, ClassVar, Dict, FrozenSet, Iterable, Mapping, Optional, Set

from ...errors import BadInput, NotFound, TransportError, Unsupported, UploadExpired
from ...result import FileInfo
from ...settings import Settings
from ...source import Source
from ...transfer import UploadSession
from ...transport import redact_url
from ...transfer.ranges import RangeIgnored, RemoteFile
from ..base import Backend, Sink
from ..urls import shown, userinfo_auth
from .ids import stored_url_ok, upload_url
from .protocol import Capabilities, TusRequest, UploadStatus, encode_metadata, error_for, origin, same_origin
from .uploads import TusUpload, stored_urls

__all__ = ["TusBackend"]

log = logging.getLogger("upclient.tus")


class TusBackend(Backend):
    """A tus server; the URL is its creation endpoint (``tus+https://host/files/``).

    Client options: ``method_override=True`` sends PATCH and DELETE as POST with
    ``X-HTTP-Method-Override`` (for proxies that block them); ``concat=False``
    never uses concatenation.  Put options: ``upload_url`` continues an upload
    another client started; ``concat`` overrides the client's choice for one
    upload; ``filetype`` sets the announced content type.

    A resume record whose upload the server no longer has starts afresh; so
    does one whose upload URL cannot be reached: at once when the URL names
    another host or port than the endpoint and the endpoint answers, and
    otherwise once the retries are spent (logged at WARNING).
    """

    name: ClassVar[str] = "tus"
    client_options: ClassVar[FrozenSet[str]] = frozenset({"method_override", "concat"})
    put_options: ClassVar[FrozenSet[str]] = frozenset({"upload_url", "concat", "filetype"})
    streams: ClassVar[bool] = True
    names_uploads: ClassVar[bool] = True

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        # A password in the URL goes to the transport (for the endpoint's origin
        # only) and nowhere else: no URL of this backend carries it.
        url, self._auth = userinfo_auth(url, settings.auth, backend=self.name)
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        inner = scheme.split("+", 1)[1] if "+" in scheme else scheme
        if inner not in ("http", "https") or not rest:
            raise BadInput(f"{shown(url)!r}: expected tus+http://host/path or tus+https://host/path")
        if "#" in rest:
            raise BadInput(f"{shown(url)!r}: a tus endpoint has no fragment (#...)", backend=self.name)
        self.endpoint = f"{inner}://{rest}"
        self.method_override = bool(options.get("method_override", False))
        self.concat = options.get("concat", True)
        self._caps: Optional[Capabilities] = None
        self._caps_lock = threading.Lock()
        #: Hosts of stored upload URLs whose HEAD failed on the wire, and how often in a row.
        self._unreachable: Dict[Any, int] = {}
        self._unreachable_lock = threading.Lock()
        #: Origins whose GET ignored a Range header: their downloads go as one stream.
        self._whole_only: Set[Any] = set()

    def transport_auth(self) -> Any:
        """The client's ``auth``, or HTTP Basic from a user and password given in the URL."""
        return self._auth

    # -- the wire --------------------------------------------------------------------

    def send(self, request: TusRequest) -> Any:
        """Send one request; a status that is not an answer to it raises the mapped error."""
        wire = request.on_the_wire(self.method_override)
        resp = self.http.request(wire.method, wire.url, backend=self.name, operation=wire.operation,
                                 headers=dict(wire.headers), body=wire.body, stream=wire.stream)
        if resp.status_code in wire.ok:
            return resp
        if wire.stream:
            resp.close()
        cls, message = error_for(resp.status_code, wire.operation, resp.headers.get("Tus-Version", ""))
        err = self.http.error(resp, backend=self.name, operation=wire.operation, cls=cls, message=message)
        raise err

    def capabilities(self) -> Capabilities:
        """OPTIONS on the endpoint, asked once per backend and then cached."""
        if self._caps is None:
            with self._caps_lock:
                if self._caps is None:
                    self._caps = self._discover()
        return self._caps

    def _discover(self) -> Capabilities:
        resp = self.send(TusRequest.options(self.endpoint))
        caps = Capabilities.from_response(resp)
        if resp.status_code not in (200, 204):
            log.info("OPTIONS %s answered %s; assuming tus core + creation", redact_url(self.endpoint),
                     resp.status_code)
        log.debug("tus server %s: %r", redact_url(self.endpoint), caps)
        return caps

    def resolve(self, id: str, operation: str) -> str:
        """The upload URL of a caller's ``id``; BadInput unless it stays where it belongs.

        An id is an upload URL on the endpoint's origin (or a trusted one), or
        a path joined to the endpoint; never ``.`` or ``..`` segments (urllib3
        would remove them, so ``../admin`` climbs out), a fragment, a
        backslash, a control character or a user and password.  A query is
        kept on a whole URL only: a bare name has none.
        """
        return upload_url(id, self.endpoint, self.home_origins(), backend=self.name, operation=operation)

    def status(self, url: str) -> UploadStatus:
        """HEAD an upload; UploadExpired if the server no longer has it (404, 410, 403)."""
        return UploadStatus.from_response(self.send(TusRequest.head(url)))

    def stored_status(self, url: str) -> Optional[UploadStatus]:
        """HEAD an upload a resume record names; None when it is to be started afresh.

        That is when the server no longer has it, or when its URL cannot be
        reached: at once if it names another host or port than the endpoint
        and the endpoint answers (the server moved), else on the last of the
        retries (this backend counts the failures in a row per host and port).
        """
        try:
            status = self.status(url)
        except UploadExpired as exc:
            log.info("stored upload %s is gone (HTTP %s); starting a new upload in its place", redact_url(url),
                     exc.status)
            return None
        except TransportError as exc:
            why = self._unreachable_for_good(url)
            if why is None:
                raise
            log.warning("the resume record's upload %s cannot be reached (%s) %s; starting a new upload "
                        "in its place", redact_url(url), exc.message, why)
            return None
        with self._unreachable_lock:
            self._unreachable.pop(origin(url), None)
        return status

    def _unreachable_for_good(self, url: str) -> Optional[str]:
        """Why to give up on a stored URL that just failed on the wire, or None to retry."""
        if not same_origin(url, self.endpoint):
            try:
                self._discover()  # asked afresh: does the server answer where it lives now?
            except TransportError:
                return None  # the server itself is unreachable: nothing to start afresh on
            return f"while the server answers at {redact_url(self.endpoint)}"
        # The count stays once it is reached, so the other stored URLs of that
        # host (the partials of one upload) are given up at once too; it is
        # cleared when the upload has started (see forget_failures).
        with self._unreachable_lock:
            failures = self._unreachable[origin(url)] = self._unreachable.get(origin(url), 0) + 1
        if failures < self.settings.retry.attempts:
            return None
        return f"after {failures} tries"

    def forget_failures(self, urls: Iterable[str]) -> None:
        """An upload has started: the failures of the stored URLs it gave up no longer count."""
        with self._unreachable_lock:
            for url in urls:
                self._unreachable.pop(origin(url), None)

    def terminate_quietly(self, url: str) -> None:
        """Best-effort DELETE of an upload that is no longer wanted."""
        if not self.capabilities().has("termination"):
            return
        try:
            self.send(TusRequest.delete(url, quiet=True))
        except Exception as exc:  # cleanup only: the real error is the caller's
            log.debug("could not terminate %s: %s", redact_url(url), exc)

    # -- uploads ---------------------------------------------------------------------

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        """The session of one upload; no request is sent before the engine starts it."""
        filetype = options.get("filetype") or (mimetypes.guess_type(key)[0] if key else None) or source.content_type
        meta = {"filename": key or source.name, "filetype": filetype}
        meta.update(metadata)
        header = encode_metadata(meta)  # bad keys fail here, before any request
        upload_url = options.get("upload_url")
        return TusUpload(self, source, meta=meta, header=header, part_size=self.settings.part_size, state=state,
                         upload_url=self.resolve(upload_url, "put") if upload_url is not None else None,
                         concat=bool(options.get("concat", self.concat)))

    # -- other verbs -----------------------------------------------------------------

    def info(self, id: str) -> FileInfo:
        status = self.status(self.resolve(id, "info"))
        length, offset = status.length, status.offset
        return FileInfo(
            id=id,
            backend=self.name,
            size=length,
            offset=offset,
            complete=length is not None and (offset is None or offset == length),
            content_type=status.metadata.get("filetype"),
            expires=status.expires,
            metadata=dict(status.metadata),
            extra={"deferred_length": status.deferred_length, "concat": status.concat},
        )

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        url = self.resolve(id, "get")
        if length == 0:
            return 0
        resp = self.send(TusRequest.get(url, offset=offset, length=length))
        return int(self.http.copy_body(resp, sink, offset=offset, length=length, backend=self.name))

    def open_download(self, id: str) -> Optional[RemoteFile]:
        """A finished upload to read by ranges, its size from a HEAD; None for an unfinished one.

        GET is no part of the tus protocol and servers differ: @tus/server
        (2.x) and resumable-upload answer every GET with the whole file.  A
        server seen doing so is read as one stream from then on.
        """
        url = self.resolve(id, "get")
        status = self.status(url)
        size = status.length
        if size is None or status.offset != size:
            return None
        where = origin(url)

        def read(sink: Sink, offset: int, length: int, strict: bool) -> int:
            resp = self.send(TusRequest.get(url, offset=offset, length=length))
            try:
                return int(self.http.copy_range(resp, sink, offset=offset, length=length, size=size,
                                                strict=strict, backend=self.name))
            except RangeIgnored:
                self._whole_only.add(where)  # this server sends whole files: read it as one stream from now on
                raise

        return RemoteFile(size=size, read=read, ranges=where not in self._whole_only)

    def delete(self, id: str) -> None:
        self._terminate(self.resolve(id, "delete"))

    def _terminate(self, url: str) -> None:
        if not self.capabilities().has("termination"):
            raise Unsupported("the server does not offer termination (delete)", backend=self.name,
                              operation="delete")
        self.send(TusRequest.delete(url))

    def abort(self, id: str) -> None:
        self._abort(self.resolve(id, "abort"))

    def _abort(self, url: str) -> None:
        try:
            self._terminate(url)
        except NotFound:
            pass  # already gone: what abort wanted

    def abort_state(self, state: Dict[str, Any]) -> None:
        # URLs the server handed out: they may be on another origin (the
        # transport sends them no credentials), but they are URLs all the same
        for url in stored_urls(state):
            if stored_url_ok(url):
                self._abort(url)
            else:
                log.warning("a resume record names an upload URL upclient will not use; not aborting it")
