"""tus 1.0.0 without I/O: the requests to send, and what the answers mean.

Builders return a :class:`TusRequest` (method, URL, headers, the statuses
that are answers rather than errors); parsers read a response (anything with
``status_code`` and ``headers``, such as a ``requests.Response``) and return
plain values, a :mod:`~upclient.transfer.hints` hint (re-synchronise, start
afresh), or the error class an unwanted status maps to.  That mapping lives
in :func:`error_for` and nowhere else.  The backend sends; the sessions
decide; this module only knows the protocol.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import re
import urllib.parse
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple, Type

from ...errors import (
    BadInput,
    ChecksumMismatch,
    Conflict,
    OffsetConflict,
    ServerError,
    Unsupported,
    UpClientError,
    UploadExpired,
    error_for_status,
)
from ...transfer import Hint, Restart, Resync

__all__ = [
    "TUS_VERSION",
    "OCTET_STREAM",
    "GONE",
    "Capabilities",
    "TusRequest",
    "UploadStatus",
    "Created",
    "PatchAnswer",
    "encode_metadata",
    "decode_metadata",
    "http_date",
    "checksum_header",
    "origin",
    "same_origin",
    "error_for",
]

TUS_VERSION = "1.0.0"
OCTET_STREAM = "application/offset+octet-stream"
#: Checksum algorithms we can compute, strongest first (tus names = hashlib names).
CHECKSUM_PREFERENCE = ("sha512", "sha384", "sha256", "sha224", "sha1", "md5")
#: How a server says an upload does not exist (any more).
GONE = (403, 404, 410)
_OK = (200, 201, 204)


# -- header values ------------------------------------------------------------------


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


def http_date(value: Optional[str]) -> Optional[float]:
    """An HTTP date (``Upload-Expires``) as epoch seconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def int_header(headers: Mapping[str, str], name: str) -> Optional[int]:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def checksum_header(algorithm: str, data: bytes) -> str:
    """``Upload-Checksum`` for one request's body."""
    return checksum_value(algorithm, hashlib.new(algorithm, data).digest())


def checksum_value(algorithm: str, digest: bytes) -> str:
    """``Upload-Checksum`` from a digest already made (a part hashed from the file by its worker)."""
    return f"{algorithm} {base64.b64encode(digest).decode()}"


def origin(url: str) -> Tuple[str, Optional[str], Optional[int]]:
    """The scheme, host and port of a URL."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs name the same scheme, host and port."""
    return origin(a) == origin(b)


# -- what the server says about itself and its uploads ------------------------------


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
    def from_response(cls, resp: Any) -> "Capabilities":
        """Read an answer to OPTIONS; a server that does not answer it gets core + creation.

        Unsupported if the server does not speak our version.
        """
        if resp.status_code not in (200, 204):  # a server or proxy without OPTIONS
            return cls(extensions=frozenset({"creation"}))

        def split(name: str) -> Tuple[str, ...]:
            return tuple(v.strip() for v in resp.headers.get(name, "").split(",") if v.strip())

        caps = cls(
            versions=split("Tus-Version") or (TUS_VERSION,),
            extensions=frozenset(split("Tus-Extension")),
            max_size=int_header(resp.headers, "Tus-Max-Size"),
            checksum_algorithms=tuple(a.lower() for a in split("Tus-Checksum-Algorithm")),
        )
        if TUS_VERSION not in caps.versions:
            raise Unsupported(f"server speaks tus {', '.join(caps.versions)}, not {TUS_VERSION}",
                              backend="tus", operation="options")
        return caps

    def __repr__(self) -> str:
        return (
            f"Capabilities(versions={self.versions}, extensions={sorted(self.extensions)}, "
            f"max_size={self.max_size}, checksum={self.checksum_algorithms})"
        )


@dataclasses.dataclass(frozen=True)
class UploadStatus:
    """An upload as HEAD shows it."""

    offset: Optional[int]
    length: Optional[int]
    expires: Optional[float] = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deferred_length: bool = False
    concat: Optional[str] = None

    @classmethod
    def from_response(cls, resp: Any) -> "UploadStatus":
        h = resp.headers
        return cls(
            offset=int_header(h, "Upload-Offset"),
            length=int_header(h, "Upload-Length"),
            expires=http_date(h.get("Upload-Expires")),
            metadata=decode_metadata(h.get("Upload-Metadata")),
            deferred_length=h.get("Upload-Defer-Length") == "1",
            concat=h.get("Upload-Concat"),
        )


#: A ``Location`` that ``urljoin`` would give back as it is: absolute, no dot segments, no empty query.
_PLAIN_ABSOLUTE = re.compile(r"https?://[^/?#\s]+(?:/(?!\.\.?(?:[/?#]|$))[^/?#\s]*)*(?:\?[^#\s]+)?")


def resolve(base: str, location: str) -> str:
    """``location`` made absolute against ``base``, as ``urllib.parse.urljoin`` does; an absolute
    location that it would give back unchanged (the usual answer) is not parsed twice."""
    if _PLAIN_ABSOLUTE.fullmatch(location):
        return location
    return urllib.parse.urljoin(base, location)


@dataclasses.dataclass(frozen=True)
class Created:
    """A new upload: its URL (resolved), the bytes it already holds, its expiry."""

    url: str
    offset: int
    expires: Optional[float]

    @classmethod
    def from_response(cls, resp: Any, base: str) -> "Created":
        location = resp.headers.get("Location")
        if not location:
            raise ServerError("server created an upload but sent no Location", backend="tus",
                              operation="create", status=resp.status_code)
        return cls(
            url=resolve(base, location),
            offset=int_header(resp.headers, "Upload-Offset") or 0,
            expires=http_date(resp.headers.get("Upload-Expires")),
        )


@dataclasses.dataclass(frozen=True)
class PatchAnswer:
    """What a PATCH achieved: the server's new offset, or a hint of what to do instead."""

    offset: Optional[int]
    expires: Optional[float]
    hint: Optional[Hint] = None

    @classmethod
    def from_response(cls, resp: Any, url: str, end: int) -> "PatchAnswer":
        """Read the answer to a PATCH meant to bring the upload at ``url`` to ``end``.

        A 409 (offset conflict), 460 (checksum mismatch) or 403 (refused,
        e.g. already complete) asks for a re-synchronisation, a 404 or 410
        for a new upload; a success that
        kept only some of the bytes re-synchronises at the offset it names.
        """
        status = resp.status_code
        offset = int_header(resp.headers, "Upload-Offset")
        expires = http_date(resp.headers.get("Upload-Expires"))
        if status == 409:
            return cls(offset, expires, Resync("the server's offset differs (409)", offset=offset, upload_id=url))
        if status == 460:
            return cls(None, expires, Resync("the server found the checksum wrong (460)", upload_id=url))
        if status == 403:  # e.g. "upload already completed": a PATCH cut off may still have landed
            return cls(None, expires, Resync("the server refused the bytes (403); asking where it stands",
                                             upload_id=url))
        if status in (404, 410):
            return cls(None, expires, Restart(f"the server no longer has the upload ({status})", upload_id=url))
        if offset is None:
            raise ServerError("server did not say the new Upload-Offset", backend="tus", operation="patch",
                              status=status)
        if offset < end:
            return cls(offset, expires, Resync(f"the server kept the bytes up to {offset}, not {end}",
                                               offset=offset, upload_id=url))
        return cls(offset, expires)


# -- requests -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TusRequest:
    """One request to send; a status outside ``ok`` is an error (see :func:`error_for`)."""

    method: str
    url: str
    operation: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: Any = None
    ok: Tuple[int, ...] = _OK
    stream: bool = False

    def on_the_wire(self, method_override: bool = False) -> "TusRequest":
        """With ``Tus-Resumable`` (everywhere but OPTIONS) and, if asked, PATCH and
        DELETE sent as POST with ``X-HTTP-Method-Override``."""
        headers = dict(self.headers)
        method = self.method
        if method != "OPTIONS":
            headers["Tus-Resumable"] = TUS_VERSION
        if method_override and method in ("PATCH", "DELETE"):
            headers["X-HTTP-Method-Override"] = method
            method = "POST"
        return TusRequest(method, self.url, self.operation, headers, self.body, self.ok, self.stream)

    @classmethod
    def options(cls, endpoint: str) -> "TusRequest":
        return cls("OPTIONS", endpoint, "options", ok=(200, 204, 404, 405, 501))

    @classmethod
    def head(cls, url: str) -> "TusRequest":
        return cls("HEAD", url, "head", ok=tuple(range(200, 300)))  # gone: UploadExpired

    @classmethod
    def create(
        cls,
        endpoint: str,
        *,
        length: Optional[int],
        metadata: str,
        concat: Optional[str] = None,
        body: Any = None,
    ) -> "TusRequest":
        """POST a new upload: optionally with its first bytes, as a partial, or as
        the final of ``concat`` (``"final;url url ..."``)."""
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
        return cls("POST", endpoint, "create", headers, body, ok=(200, 201))

    @classmethod
    def final(cls, endpoint: str, partials: Sequence[str], metadata: str) -> "TusRequest":
        return cls.create(endpoint, length=None, metadata=metadata, concat="final;" + " ".join(partials))

    @classmethod
    def patch(
        cls,
        url: str,
        *,
        offset: int,
        body: Any,
        checksum: Optional[str] = None,
        length: Optional[int] = None,
    ) -> "TusRequest":
        """Bytes at ``offset``; ``checksum`` is an ``Upload-Checksum`` value,
        ``length`` a deferred ``Upload-Length`` announced now.  403, 404, 409,
        410 and 460 are answers here (see :class:`PatchAnswer`)."""
        headers = {"Content-Type": OCTET_STREAM, "Upload-Offset": str(offset)}
        if length is not None:
            headers["Upload-Length"] = str(length)
        if checksum:
            headers["Upload-Checksum"] = checksum
        return cls("PATCH", url, "patch", headers, body, ok=(200, 204, 403, 404, 409, 410, 460))

    @classmethod
    def delete(cls, url: str, *, quiet: bool = False) -> "TusRequest":
        return cls("DELETE", url, "delete", ok=(200, 204, 404, 410) if quiet else (200, 204))

    @classmethod
    def get(cls, url: str, *, offset: int = 0, length: Optional[int] = None) -> "TusRequest":
        headers: Dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        return cls("GET", url, "get", headers, ok=(200, 206), stream=True)


# -- errors ---------------------------------------------------------------------------


def error_for(status: int, operation: str, server_versions: str = "") -> Tuple[Type[UpClientError], Optional[str]]:
    """The error class (and a message, where the server's own would mislead) for a
    status that is not an answer to ``operation``."""
    if status == 412:
        return Unsupported, f"server does not speak tus {TUS_VERSION} (it speaks {server_versions or '?'})"
    if status in GONE and operation == "head":
        return UploadExpired, None
    if status == 409:
        return (OffsetConflict if operation == "patch" else Conflict), None
    if status == 460:
        return ChecksumMismatch, None
    return error_for_status(status), None
