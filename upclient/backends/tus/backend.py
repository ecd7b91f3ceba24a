"""tus 1.0.0 resumable uploads (``tus+http://`` and ``tus+https://`` URLs).

Speaks the core protocol and the creation, creation-with-upload,
creation-defer-length, termination, checksum, expiration and concatenation
extensions, using what the server advertises (OPTIONS, asked once per
client).  A file of known size goes either as one upload sent in order by
PATCH requests, or, where the server offers concatenation, as partial
uploads sent in parallel and joined by a final POST.  Small files go in the
creating POST itself.  A conflict on the offset (409), a checksum mismatch
(460) or a broken request is re-synchronised by HEAD before the part is sent
again; a stored upload that has expired or vanished (404, 410, 403) is
started afresh.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import mimetypes
import threading
import urllib.parse
from typing import Any, ClassVar, Dict, FrozenSet, Iterator, List, Mapping, Optional, Tuple

import requests

from ...errors import (
    BadInput,
    ChecksumMismatch,
    Conflict,
    NotFound,
    OffsetConflict,
    RequestRejected,
    ServerError,
    TooLarge,
    Unsupported,
    UploadExpired,
)
from ...result import FileInfo, UploadResult
from ...settings import Settings
from ...source import Source
from ...transfer import Part, PartIO, UploadSession
from ..base import Backend, Sink

__all__ = ["TusBackend", "Capabilities", "encode_metadata", "decode_metadata"]

log = logging.getLogger("upclient.tus")

TUS_VERSION = "1.0.0"
OCTET_STREAM = "application/offset+octet-stream"
#: Checksum algorithms we can compute, strongest first (tus names = hashlib names).
CHECKSUM_PREFERENCE = ("sha512", "sha384", "sha256", "sha224", "sha1", "md5")
_GONE = (403, 404, 410)


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """The ``Upload-Metadata`` header value; BadInput for keys a header cannot carry."""
    pairs = []
    for key, value in metadata.items():
        if not key or not key.isascii() or any(c in key for c in " ,") or not key.isprintable():
            raise BadInput(
                f"tus metadata key {key!r} is not allowed: keys must be non-empty ASCII "
                "without spaces or commas",
                backend="tus",
                operation="put",
            )
        encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        pairs.append(f"{key} {encoded}" if encoded else key)
    return ",".join(pairs)


def decode_metadata(header: Optional[str]) -> Dict[str, str]:
    """Parse an ``Upload-Metadata`` header; undecodable values are kept as they came."""
    out: Dict[str, str] = {}
    for item in (header or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            out[key] = value.strip()
    return out


def _http_date(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _int_header(resp: requests.Response, name: str) -> Optional[int]:
    value = resp.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class Capabilities:
    """What a tus server said about itself in answer to OPTIONS."""

    def __init__(
        self,
        versions: Tuple[str, ...] = (TUS_VERSION,),
        extensions: FrozenSet[str] = frozenset(),
        max_size: Optional[int] = None,
        checksum_algorithms: Tuple[str, ...] = (),
    ) -> None:
        self.versions = versions
        self.extensions = extensions
        self.max_size = max_size
        self.checksum_algorithms = checksum_algorithms

    def has(self, extension: str) -> bool:
        return extension in self.extensions

    def checksum_algorithm(self) -> Optional[str]:
        """The strongest algorithm both sides know, if the server checks checksums."""
        if not self.has("checksum"):
            return None
        offered = set(self.checksum_algorithms)
        for name in CHECKSUM_PREFERENCE:
            if name in offered:
                return name
        return None

    @classmethod
    def from_response(cls, resp: requests.Response) -> "Capabilities":
        def split(name: str) -> Tuple[str, ...]:
            return tuple(v.strip() for v in resp.headers.get(name, "").split(",") if v.strip())

        return cls(
            versions=split("Tus-Version") or (TUS_VERSION,),
            extensions=frozenset(split("Tus-Extension")),
            max_size=_int_header(resp, "Tus-Max-Size"),
            checksum_algorithms=tuple(a.lower() for a in split("Tus-Checksum-Algorithm")),
        )

    def __repr__(self) -> str:
        return (
            f"Capabilities(versions={self.versions}, extensions={sorted(self.extensions)}, "
            f"max_size={self.max_size}, checksum={self.checksum_algorithms})"
        )


class TusBackend(Backend):
    """A tus server; the URL is its creation endpoint (``tus+https://host/files/``).

    Client options: ``method_override=True`` sends PATCH and DELETE as POST with
    ``X-HTTP-Method-Override`` (for proxies that block them); ``concat=False``
    never uses concatenation.  Put options: ``upload_url`` continues an upload
    another client started; ``concat`` overrides the client's choice for one
    upload; ``filetype`` sets the announced content type.
    """

    name: ClassVar[str] = "tus"
    client_options: ClassVar[FrozenSet[str]] = frozenset({"method_override", "concat"})
    put_options: ClassVar[FrozenSet[str]] = frozenset({"upload_url", "concat", "filetype"})
    streams: ClassVar[bool] = True

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        inner = scheme.split("+", 1)[1] if "+" in scheme else scheme
        if inner not in ("http", "https") or not rest:
            raise BadInput(f"{url!r}: expected tus+http://host/path or tus+https://host/path")
        self.endpoint = f"{inner}://{rest}"
        self.method_override = bool(options.get("method_override", False))
        self.concat = options.get("concat", True)
        self._caps: Optional[Capabilities] = None
        self._caps_lock = threading.Lock()

    # -- wire ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        headers: Optional[Dict[str, str]] = None,
        body: Any = None,
        ok: Tuple[int, ...] = (200, 201, 204),
        stream: bool = False,
    ) -> requests.Response:
        """One tus request; a status outside ``ok`` raises the matching error."""
        h = dict(headers or {})
        if method != "OPTIONS":
            h["Tus-Resumable"] = TUS_VERSION
        if self.method_override and method in ("PATCH", "DELETE"):
            h["X-HTTP-Method-Override"] = method
            method = "POST"
        resp = self.http.request(
            method, url, backend=self.name, operation=operation, headers=h, body=body, stream=stream
        )
        if resp.status_code not in ok:
            raise self._error(resp, operation)
        return resp

    def _error(self, resp: requests.Response, operation: str) -> ServerError:
        status = resp.status_code
        cls: Optional[type] = None
        if status == 409:
            cls = OffsetConflict if operation == "patch" else Conflict
        elif status == 460:
            cls = ChecksumMismatch
        elif status == 412:
            return self.http.error(
                resp,
                backend=self.name,
                operation=operation,
                cls=Unsupported,
                message=f"server does not speak tus {TUS_VERSION} "
                f"(it speaks {resp.headers.get('Tus-Version', '?')})",
            )
        elif status == 403 and operation == "patch":
            cls = RequestRejected  # e.g. a PATCH to a final concatenated upload
        err = self.http.error(resp, backend=self.name, operation=operation, cls=cls)
        if isinstance(err, (OffsetConflict, ChecksumMismatch)):
            err.retry_after = 0.0  # re-synchronise at once, no backoff
        return err

    def capabilities(self) -> Capabilities:
        """OPTIONS on the endpoint, asked once per backend and then cached."""
        if self._caps is None:
            with self._caps_lock:
                if self._caps is None:
                    self._caps = self._discover()
        return self._caps

    def _discover(self) -> Capabilities:
        resp = self.request("OPTIONS", self.endpoint, "options", ok=(200, 204, 404, 405, 501))
        if resp.status_code in (200, 204):
            caps = Capabilities.from_response(resp)
        else:  # a server or proxy that does not answer OPTIONS: assume the core and creation
            log.info("OPTIONS %s answered %s; assuming tus core + creation", self.endpoint, resp.status_code)
            caps = Capabilities(extensions=frozenset({"creation"}))
        if TUS_VERSION not in caps.versions:
            raise Unsupported(
                f"server speaks tus {', '.join(caps.versions)}, not {TUS_VERSION}",
                backend=self.name,
                operation="options",
            )
        log.debug("tus server %s: %r", self.endpoint, caps)
        return caps

    def resolve(self, location: str, base: Optional[str] = None) -> str:
        return urllib.parse.urljoin(base or self.endpoint, location)

    def head(self, url: str) -> requests.Response:
        """HEAD an upload; NotFound if it is gone (404, 410, 403)."""
        resp = self.request("HEAD", url, "head", ok=tuple(range(200, 300)) + _GONE)
        if resp.status_code in _GONE:
            raise UploadExpired(
                f"upload {url} is gone",
                backend=self.name,
                operation="head",
                status=resp.status_code,
            )
        return resp

    def create(
        self,
        *,
        length: Optional[int],
        metadata: str,
        concat: Optional[str] = None,
        body: Any = None,
    ) -> requests.Response:
        """POST a new upload (optionally with its first bytes, a partial or a final)."""
        headers: Dict[str, str] = {}
        if concat is not None:
            headers["Upload-Concat"] = concat
        if length is not None:
            headers["Upload-Length"] = str(length)
        elif concat is None or concat == "partial":
            headers["Upload-Defer-Length"] = "1"
        if metadata:  # an empty Upload-Metadata header is refused by some servers
            headers["Upload-Metadata"] = metadata
        if body is not None:
            headers["Content-Type"] = OCTET_STREAM
        resp = self.request("POST", self.endpoint, "create", headers=headers, body=body, ok=(200, 201))
        if "Location" not in resp.headers:
            raise ServerError(
                "server created an upload but sent no Location", backend=self.name, operation="create",
                status=resp.status_code,
            )
        return resp

    def patch(self, url: str, io: PartIO, start: int, end: int, *, offset: int,
              checksum: Optional[str], length: Optional[int] = None) -> requests.Response:
        """PATCH the source's bytes ``[start, end)`` at upload offset ``offset``.

        With ``checksum`` the range is read into memory once, digested and sent
        from there, so it is never read twice; ``length`` announces a deferred
        ``Upload-Length``.
        """
        headers = {"Content-Type": OCTET_STREAM, "Upload-Offset": str(offset)}
        if length is not None:
            headers["Upload-Length"] = str(length)
        if checksum:
            data = io.read(start, end)
            digest = hashlib.new(checksum, data).digest()
            headers["Upload-Checksum"] = f"{checksum} {base64.b64encode(digest).decode()}"
            body = io.body(start, end, data=data)
        else:
            body = io.body(start, end)
        return self.request("PATCH", url, "patch", headers=headers, body=body, ok=(200, 204))

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
        filetype = options.get("filetype") or (
            mimetypes.guess_type(key)[0] if key else None
        ) or source.content_type
        meta = {"filename": key or source.name, "filetype": filetype}
        meta.update(metadata)
        header = encode_metadata(meta)  # bad keys fail here, before any request
        caps = self.capabilities()
        size = source.size
        if size is not None and caps.max_size is not None and size > caps.max_size:
            raise TooLarge(
                f"{source.name} is {size} bytes; the server accepts at most {caps.max_size}",
                backend=self.name,
                operation="put",
            )
        if size is None and not caps.has("creation-defer-length"):
            raise Unsupported(
                "the server cannot take uploads of unknown length (no creation-defer-length): pass size=",
                backend=self.name,
                operation="put",
            )
        part_size = self.settings.part_size
        if options.get("upload_url"):
            return SerialUpload.resume_url(self, source, self.resolve(options["upload_url"]), part_size, meta)
        if state:
            try:
                if state.get("mode") == "concat" and caps.has("concatenation"):
                    return ConcatUpload.resume(self, source, state, header, meta)
                if state.get("mode") == "serial" and state.get("url"):
                    return SerialUpload.resume_url(self, source, state["url"], part_size, meta)
            except UploadExpired as exc:
                log.info("stored upload is gone (%s); starting afresh", exc)
        concat = options.get("concat", self.concat)
        # Parallel partial uploads pay off from two parts on; a stream goes
        # that way too, each chunk a partial of known length, so it needs no
        # deferred length (which some servers handle badly).
        if concat and caps.has("concatenation") and (size is None or size > part_size):
            return ConcatUpload(self, source, header, meta, part_size)
        return SerialUpload.new(self, source, header, meta, part_size)

    # -- other verbs -----------------------------------------------------------------

    def info(self, id: str) -> FileInfo:
        resp = self.head(self.resolve(id))
        length = _int_header(resp, "Upload-Length")
        offset = _int_header(resp, "Upload-Offset")
        meta = decode_metadata(resp.headers.get("Upload-Metadata"))
        return FileInfo(
            id=id,
            backend=self.name,
            size=length,
            offset=offset,
            complete=length is not None and (offset is None or offset == length),
            content_type=meta.get("filetype"),
            expires=_http_date(resp.headers.get("Upload-Expires")),
            metadata=meta,
            extra={"deferred_length": resp.headers.get("Upload-Defer-Length") == "1",
                   "concat": resp.headers.get("Upload-Concat")},
        )

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        url = self.resolve(id)
        headers: Dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            if length == 0:
                return 0
            headers["Range"] = f"bytes={offset}-{end}"
        resp = self.request("GET", url, "get", headers=headers, ok=(200, 206), stream=True)
        return int(self.http.copy_body(resp, sink, offset=offset, length=length, backend=self.name))

    def delete(self, id: str) -> None:
        if not self.capabilities().has("termination"):
            raise Unsupported("the server does not offer termination (delete)", backend=self.name,
                              operation="delete")
        self.request("DELETE", self.resolve(id), "delete", ok=(200, 204))

    def abort(self, id: str) -> None:
        try:
            self.delete(id)
        except NotFound:
            pass  # already gone: what abort wanted

    def abort_state(self, state: Dict[str, Any]) -> None:
        if state.get("mode") == "concat":
            urls = [p["url"] for p in state.get("partials", {}).values() if p.get("url")]
        else:
            urls = [state["url"]] if state.get("url") else []
        for url in urls:
            self.abort(url)

    def terminate_quietly(self, url: str) -> None:
        """Best-effort DELETE of an upload that is no longer wanted."""
        if not self.capabilities().has("termination"):
            return
        try:
            self.request("DELETE", url, "delete", ok=(200, 204, 404, 410))
        except Exception as exc:  # cleanup only: the real error is the caller's
            log.debug("could not terminate %s: %s", url, exc)


def _parts(start: int, size: int, part_size: int, first_index: int = 0) -> Iterator[Part]:
    index = first_index
    offset = start
    while offset < size:
        n = min(part_size, size - offset)
        yield Part(index=index, offset=offset, size=n)
        offset += n
        index += 1


class SerialUpload(UploadSession):
    """One tus upload filled in order by PATCH requests.

    Without checksums the rest of a file goes in one streamed PATCH, as the
    protocol recommends: memory does not grow with it, the server keeps what
    arrived if it breaks, and HEAD says where to go on.  A server that
    refuses so large a request (413) gets ``part_size`` requests instead.
    With checksums, each PATCH is one part, digested in memory before it goes.
    """

    parallel = False

    def __init__(self, backend: TusBackend, source: Source, meta: Dict[str, str], part_size: int) -> None:
        self.backend = backend
        self.source = source
        self.meta = meta
        self.part_size = part_size
        self.url: Optional[str] = None
        self.offset = 0
        self.header = ""
        self.length_sent = source.size is not None
        algorithm = backend.capabilities().checksum_algorithm()
        self.checksum = algorithm if backend.settings.checksum else None
        #: Bytes per request; None: all that is left, in one request.
        self.limit: Optional[int] = part_size if self.checksum else None

    @classmethod
    def new(
        cls, backend: TusBackend, source: Source, header: str, meta: Dict[str, str], part_size: int
    ) -> "SerialUpload":
        self = cls(backend, source, meta, part_size)
        self.header = header
        caps = backend.capabilities()
        # A small file rides on the POST where the server allows it: one
        # request in all.  A larger one is created first, so that its URL, the
        # resume point, is known before the bytes go; and bytes that must carry
        # a checksum go by PATCH, where servers check it.
        inline = (
            caps.has("creation-with-upload") and source.seekable and not self.checksum
            and source.size is not None and 0 < source.size <= part_size
        )
        if not inline:
            self._create(body=None)
        return self

    @classmethod
    def resume_url(
        cls, backend: TusBackend, source: Source, url: str, part_size: int, meta: Dict[str, str]
    ) -> "SerialUpload":
        resp = backend.head(url)
        self = cls(backend, source, meta, part_size)
        length = _int_header(resp, "Upload-Length")
        if length is not None and source.size is not None and length != source.size:
            raise UploadExpired(
                f"upload {url} is for {length} bytes, the source has {source.size}",
                backend=backend.name, operation="resume",
            )
        self.url = url
        self.upload_id = url
        self.offset = _int_header(resp, "Upload-Offset") or 0
        self.length_sent = length is not None
        self.expires = _http_date(resp.headers.get("Upload-Expires"))
        self.resumed = True
        self.done_bytes = self.offset
        return self

    def _create(self, body: Any, length: Optional[int] = None) -> requests.Response:
        size = self.source.size if length is None else length
        resp = self.backend.create(length=size, metadata=self.header, body=body)
        self.url = self.backend.resolve(resp.headers["Location"])
        self.upload_id = self.url
        self.offset = _int_header(resp, "Upload-Offset") or 0
        self.expires = _http_date(resp.headers.get("Upload-Expires")) or self.expires
        return resp

    def pending_parts(self) -> List[Part]:
        size = self.source.size
        assert size is not None
        if self.limit is None:  # one part: the rest of the file
            self.parts_total = 1 if size else 0
            return [Part(index=0, offset=self.offset, size=size - self.offset)] if self.offset < size else []
        self.parts_total = -(-size // self.part_size)
        first = self.offset // self.part_size
        return list(_parts(self.offset, size, self.part_size, first))

    def confirmed(self, part: Part) -> int:
        return max(0, min(self.offset, part.end) - part.offset)

    def send_part(self, part: Part, io: PartIO) -> None:
        start = max(self.offset, part.offset)
        if start >= part.end and not (part.last and not self.length_sent):
            return  # the server already has it
        if start < part.offset:
            raise Conflict(
                f"server offset {self.offset} is before part {part.index} at {part.offset}",
                backend=self.backend.name, operation="patch",
            )
        while True:
            end = part.end if self.limit is None else min(part.end, start + self.limit)
            try:
                if self.url is None:  # creation-with-upload: the POST carries the first bytes
                    resp = self._create(body=io.body(start, end))
                else:
                    announce = end if part.last and end == part.end and not self.length_sent else None
                    resp = self.backend.patch(self.url, io, start, end, offset=start, checksum=self.checksum,
                                              length=announce)
                    if announce is not None:
                        self.length_sent = True
            except TooLarge:
                if self.limit is not None or end - start <= self.part_size:
                    raise
                log.info("server refused a %d-byte request; sending %d bytes at a time", end - start,
                         self.part_size)
                self.limit = self.part_size
                continue
            self._check_offset(part, end, resp)
            if self.offset >= part.end:
                return
            start = self.offset

    def _check_offset(self, part: Part, end: int, resp: requests.Response) -> None:
        self.expires = _http_date(resp.headers.get("Upload-Expires")) or self.expires
        offset = _int_header(resp, "Upload-Offset")
        if offset is None:
            raise ServerError("server did not say the new Upload-Offset", backend=self.backend.name,
                              operation="patch", status=resp.status_code)
        self.offset = offset
        if offset < end:  # the server kept only some of it: send the rest
            raise OffsetConflict(
                f"server took {offset - part.offset} of {part.size} bytes of part {part.index}",
                backend=self.backend.name, operation="patch", retry_after=0.0,
            )

    def recover(self, part: Part, error: BaseException) -> None:
        if self.url is None:
            return  # the creating POST failed: it is simply sent again
        resp = self.backend.head(self.url)
        self.offset = _int_header(resp, "Upload-Offset") or 0
        log.info("re-synchronised %s at offset %d", self.url, self.offset)

    def finish(self) -> UploadResult:
        assert self.url is not None
        size = self.source.size if self.source.size is not None else self.offset
        return UploadResult(
            id=self.url, url=self.url, size=size, backend=self.backend.name,
            key=self.meta.get("filename"), expires=self.expires, metadata=self.meta,
        )

    def abort(self) -> None:
        if self.url:
            self.backend.terminate_quietly(self.url)

    def state(self) -> Optional[Dict[str, Any]]:
        if self.url is None or not self.source.seekable:
            return None
        return {"mode": "serial", "url": self.url}


class ConcatUpload(UploadSession):
    """Partial uploads sent in parallel, joined by a final ``Upload-Concat`` POST."""

    parallel = True

    def __init__(self, backend: TusBackend, source: Source, header: str, meta: Dict[str, str], part_size: int) -> None:
        self.backend = backend
        self.source = source
        self.header = header
        self.meta = meta
        self.part_size = part_size
        if source.size is not None:
            self.parts_total = -(-source.size // part_size)
        # per part index: {"url": str | None, "offset": int | None, "done": bool}
        self.partials: Dict[int, Dict[str, Any]] = {}
        self._lock = threading.Lock()
        caps = backend.capabilities()
        algorithm = caps.checksum_algorithm()
        self.checksum = algorithm if backend.settings.checksum else None
        self.inline = caps.has("creation-with-upload") and not self.checksum

    @classmethod
    def resume(
        cls, backend: TusBackend, source: Source, state: Dict[str, Any], header: str, meta: Dict[str, str]
    ) -> "ConcatUpload":
        if state.get("size") != source.size or not state.get("part_size"):
            raise UploadExpired("stored concatenation plan does not fit the source", backend=backend.name,
                                operation="resume")
        self = cls(backend, source, header, meta, int(state["part_size"]))
        for index, p in state.get("partials", {}).items():
            entry = {"url": p.get("url"), "offset": None, "done": bool(p.get("done"))}
            if entry["url"]:
                try:
                    resp = backend.head(entry["url"])
                    entry["offset"] = _int_header(resp, "Upload-Offset") or 0
                except UploadExpired:
                    entry = {"url": None, "offset": None, "done": False}
            if entry["done"] and entry["offset"] is None:
                entry["done"] = False
            self.partials[int(index)] = entry
        self.resumed = True
        self.done_bytes = sum(
            min(p["offset"] or 0, self._part(i).size) for i, p in self.partials.items() if p["url"]
        )
        return self

    def _part(self, index: int) -> Part:
        offset = index * self.part_size
        assert self.source.size is not None
        return Part(index=index, offset=offset, size=min(self.part_size, self.source.size - offset))

    def pending_parts(self) -> List[Part]:
        assert self.parts_total is not None
        return [self._part(i) for i in range(self.parts_total) if not self.partials.get(i, {}).get("done")]

    def send_part(self, part: Part, io: PartIO) -> None:
        with self._lock:
            entry = dict(self.partials.get(part.index) or {"url": None, "offset": None, "done": False})
        if entry["url"] is None:
            body = io.body() if self.inline else None
            resp = self.backend.create(length=part.size, metadata="", concat="partial", body=body)
            entry = {"url": self.backend.resolve(resp.headers["Location"]), "offset": 0, "done": False}
            entry["offset"] = _int_header(resp, "Upload-Offset") or 0
            self._store(part.index, entry)
            if body is not None:
                self._settle(part, entry)
                return
        start = part.offset + (entry["offset"] or 0)
        if start < part.end:
            resp = self.backend.patch(entry["url"], io, start, part.end, offset=start - part.offset,
                                      checksum=self.checksum)
            entry["offset"] = _int_header(resp, "Upload-Offset")
            self.expires = _http_date(resp.headers.get("Upload-Expires")) or self.expires
        self._settle(part, entry)

    def _settle(self, part: Part, entry: Dict[str, Any]) -> None:
        if entry["offset"] is not None and entry["offset"] >= part.size:
            entry["done"] = True
        self._store(part.index, entry)
        if not entry["done"]:
            raise OffsetConflict(
                f"partial upload for part {part.index} is at {entry['offset']} of {part.size}",
                backend=self.backend.name, operation="patch", retry_after=0.0,
            )

    def _store(self, index: int, entry: Dict[str, Any]) -> None:
        with self._lock:
            self.partials[index] = dict(entry)

    def recover(self, part: Part, error: BaseException) -> None:
        with self._lock:
            entry = dict(self.partials.get(part.index) or {})
        if not entry.get("url"):
            return
        try:
            resp = self.backend.head(entry["url"])
            entry["offset"] = _int_header(resp, "Upload-Offset") or 0
        except UploadExpired:
            entry = {"url": None, "offset": None, "done": False}
        self._store(part.index, entry)

    def finish(self) -> UploadResult:
        with self._lock:
            urls = [self.partials[i]["url"] for i in sorted(self.partials)]
        resp = self.backend.create(length=None, metadata=self.header, concat="final;" + " ".join(urls))
        url = self.backend.resolve(resp.headers["Location"])
        self.upload_id = url
        assert self.source.size is not None
        return UploadResult(
            id=url, url=url, size=self.source.size, backend=self.backend.name,
            key=self.meta.get("filename"), metadata=self.meta,
            expires=_http_date(resp.headers.get("Upload-Expires")),
            extra={"partials": len(urls)},
        )

    def abort(self) -> None:
        with self._lock:
            urls = [p["url"] for p in self.partials.values() if p.get("url")]
        for url in urls:
            self.backend.terminate_quietly(url)

    def state(self) -> Optional[Dict[str, Any]]:
        if not self.source.seekable:
            return None
        with self._lock:
            partials = {
                str(i): {"url": p["url"], "done": p["done"]} for i, p in self.partials.items() if p.get("url")
            }
        return {"mode": "concat", "size": self.source.size, "part_size": self.part_size, "partials": partials}
