"""The community multipart API, without sockets.

This module builds every request (:class:`Request`: method, path, JSON body
or query) and reads every answer (:class:`Answer`: status, headers, body)
into plain values: the data of the ``{"code", "message", "data"}``
envelope, an init's part layout or its instant-upload file, what a part's
or a complete's answer says to do next (a :mod:`upclient.transfer.hints`
value), or a typed :mod:`upclient.errors` error, raised here and nowhere
else.  Facts are from the published SDK ``community-uploader`` 1.0.1 (see
the protocol notes): 401 is an auth failure, HTTP >= 400 carries
``message``, a 2xx whose ``code`` is not 0 or 1000 is a business error.
Part URLs are presigned for an object store, whose errors are XML.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlencode

from ...errors import AuthError, BadInput, RequestRejected, ServerError, ServiceError, error_for_status
from ...result import FileInfo, UploadResult
from ...transfer import Restart, Resync
from ...transport import parse_retry_after, redact_url
from ..paths import bad_character, segment
from ..urls import split_authority

__all__ = [
    "API",
    "CATEGORIES",
    "CommunityFile",
    "CommunityResult",
    "Request",
    "Answer",
    "Layout",
    "ServerPart",
    "Deduplicated",
    "PartsMissing",
    "BeingCompleted",
    "auth_headers",
    "file_ext",
    "file_path",
    "fetch_url",
    "init_request",
    "read_init",
    "read_part",
    "complete_request",
    "read_complete",
    "abort_request",
    "info_request",
    "by_key_request",
    "list_request",
    "read_list",
    "delete_request",
    "read_envelope",
    "read_file",
]

BACKEND = "community"
API = "/api/community/file"
CATEGORIES = ("general", "video", "image", "document", "avatar", "cover")
#: ``code`` values of a successful answer (1000 is success too; no code at all as well).
OK_CODES = (0, 1000, None)
#: complete: parts are missing (``data.missing_parts``); the upload stays open.
CODE_PARTS_MISSING = 1011
#: complete: the upload failed, or was in the wrong state for the call.
CODE_WRONG_STATE = 1013

_EXT = re.compile(r"^[a-z0-9]{1,16}$")
_REQUEST_ID_HEADERS = ("x-request-id", "x-oss-request-id", "x-amz-request-id")
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


# ------------------------------------------------------------------------ values


@dataclasses.dataclass(frozen=True)
class CommunityFile:
    """A stored file as the server describes it (``raw`` keeps every field)."""

    id: str
    file_key: Optional[str]
    file_size: Optional[int]
    file_md5: Optional[str]
    file_type: Optional[str]
    category: Optional[str]
    status: Optional[str]
    oss_url: Optional[str]
    cdn_url: Optional[str]
    imagekit_url: Optional[str]
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CommunityFile":
        return cls(
            id=str(d.get("id", "")),
            file_key=d.get("file_key"),
            file_size=d.get("file_size"),
            file_md5=d.get("file_md5"),
            file_type=d.get("file_type"),
            category=d.get("category"),
            status=d.get("status"),
            oss_url=d.get("oss_url"),
            cdn_url=d.get("cdn_url"),
            imagekit_url=d.get("imagekit_url"),
            raw=dict(d),
        )

    def info(self, backend: str = BACKEND) -> FileInfo:
        return FileInfo(
            id=self.id, backend=backend, size=self.file_size, complete=self.status == "confirmed",
            content_type=self.file_type, metadata=self.raw.get("extra_metadata") or {},
            extra={"file": self},
        )

    def holds(self, md5: str, size: int) -> bool:
        """Whether this is a finished file with these bytes."""
        return self.status == "confirmed" and self.file_md5 == md5 and self.file_size == size

    def result(self, deduplicated: bool, metadata: Mapping[str, str]) -> "CommunityResult":
        return CommunityResult(
            id=self.id, size=self.file_size or 0, backend=BACKEND, url=self.cdn_url or self.oss_url,
            key=self.file_key, deduplicated=deduplicated, metadata=dict(metadata), file=self,
        )


@dataclasses.dataclass(frozen=True)
class CommunityResult(UploadResult):
    """An :class:`~upclient.UploadResult` with the server's file object in ``file``."""

    file: Optional[CommunityFile] = None


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request: ``path`` below the base URL, a JSON ``body`` or a ``query``."""

    method: str
    path: str
    operation: str
    body: Optional[Mapping[str, Any]] = None
    query: Optional[Mapping[str, Any]] = None

    def url(self, base: str) -> str:
        url = base + self.path
        if self.query:
            url += "?" + urlencode({k: v for k, v in self.query.items() if v is not None})
        return url

    def content(self) -> Optional[bytes]:
        return None if self.body is None else json.dumps(self.body).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One answer: status, headers (any mapping that ignores case, or lower-case
    names), body bytes, and the method and URL it answers (for messages)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str = ""
    url: str = ""

    @classmethod
    def of(cls, resp: Any) -> "Answer":
        """The answer of a transport response (``status_code``, ``headers``, ``content``)."""
        request = getattr(resp, "request", None)
        return cls(resp.status_code, resp.headers, resp.content or b"",
                   getattr(request, "method", "") or "", getattr(resp, "url", "") or "")

    def header(self, name: str) -> Optional[str]:
        value = self.headers.get(name)
        return value if value is not None else self.headers.get(name.lower())


@dataclasses.dataclass(frozen=True)
class ServerPart:
    """One part of the server's layout: ``size`` bytes from ``start``, PUT to ``url``
    (presigned: its query is a signature, so the repr leaves it out)."""

    number: int
    start: int
    size: int
    url: str = dataclasses.field(repr=False)
    uploaded: bool


@dataclasses.dataclass(frozen=True)
class Layout:
    """An init that opened (or resumed) an upload: its id and its parts."""

    file_id: str
    status: str
    parts: Tuple[ServerPart, ...]


@dataclasses.dataclass(frozen=True)
class Deduplicated:
    """An init the server answered from a file it holds already: nothing is sent."""

    file: CommunityFile


@dataclasses.dataclass(frozen=True)
class PartsMissing:
    """A complete refused because the server lacks these parts (numbers from 1)."""

    numbers: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class BeingCompleted(Resync):
    """A part refused because the upload is being completed (by another client,
    or by an earlier run whose answer was lost): ask complete for the outcome."""


# ----------------------------------------------------------------------- requests


def auth_headers(token: Union[str, Callable[[], str], None], api_key: Optional[str]) -> Dict[str, str]:
    """The auth header: ``X-API-Key``, or a bearer token (asked for on every request)."""
    if api_key is not None:
        return {"X-API-Key": api_key}
    value = str((token() if callable(token) else token) or "")
    return {"Authorization": value if value.startswith("Bearer ") else f"Bearer {value}"}


def file_ext(name: str) -> str:
    """The extension init wants (no dot, lower case); BadInput when there is none."""
    base = name.rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[1].lower() if "." in base.lstrip(".") else ""
    if not ext:
        raise BadInput(f"{name!r} has no extension; the community API needs one (give key='x.mp4')",
                       backend=BACKEND, operation="put")
    if not _EXT.match(ext):
        raise BadInput(f"{name!r}: the community API takes extensions of letters and digits (at most 16), "
                       f"not {ext!r}", backend=BACKEND, operation="put")
    return ext


def init_request(payload: Mapping[str, Any]) -> Request:
    return Request("POST", f"{API}/upload/init", "init", body=dict(payload))


def complete_request(file_id: str, user_id: Optional[str] = None) -> Request:
    body: Dict[str, Any] = {"file_id": file_id}
    if user_id:
        body["user_id"] = user_id
    return Request("POST", f"{API}/upload/complete", "complete", body=body)


def abort_request(file_id: str) -> Request:
    return Request("POST", f"{API}/upload/abort", "abort", body={"file_id": file_id})


def file_path(file_id: str, operation: str) -> str:
    """The API path of one file; BadInput for an id that would leave it (``..``, ``/``, ``?``, ``#``...)."""
    return f"{API}/{segment(file_id, what='file id', backend=BACKEND, operation=operation)}"


def info_request(file_id: str) -> Request:
    return Request("GET", file_path(file_id, "info"), "info")


def by_key_request(key: str) -> Request:
    return Request("GET", f"{API}/by-key", "info", query={"file_key": key})


def list_request(page: int, page_size: int, category: Optional[str], status: Optional[str]) -> Request:
    return Request("GET", API, "list",
                   query={"page": page, "page_size": page_size, "category": category, "status": status})


def delete_request(file_id: str) -> Request:
    return Request("DELETE", file_path(file_id, "delete"), "delete")


# ------------------------------------------------------------------------ answers


def _error(cls: type, answer: Answer, operation: str, message: str, code: Any = None) -> ServerError:
    request_id = next((answer.header(h) for h in _REQUEST_ID_HEADERS if answer.header(h)), None)
    where = f"{answer.method} {redact_url(answer.url)}: " if answer.url else ""
    return cls(  # type: ignore[no-any-return]
        f"{where}{message}", backend=BACKEND, operation=operation, status=answer.status, code=code,
        request_id=request_id, retry_after=parse_retry_after(answer.header("Retry-After")),
    )


def fetch_url(url: str, what: str, answer: Optional[Answer] = None, operation: str = "init") -> str:
    """A URL the server handed out (a part's presigned URL, a file's CDN URL), if it
    is an absolute http(s) URL; else a ServiceError.  Such URLs get no credentials."""
    problem = ""
    if not url.lower().startswith(("http://", "https://")):
        problem = "it is not an absolute http(s) URL"
    elif bad_character(url) or any(c.isspace() for c in url):
        problem = "it holds a control character, space or backslash"
    else:
        try:
            split_authority(url)
        except BadInput:
            problem = "its host or port is malformed"
    if problem:
        shown = redact_url(url) if "://" in url else url[:40]
        message = f"the server gave a {what} upclient will not use ({shown!r}): {problem}"
        if answer is not None:
            raise _error(ServiceError, answer, operation, message)
        raise ServiceError(message, backend=BACKEND, operation=operation)
    return url


def _envelope(answer: Answer) -> Dict[str, Any]:
    try:
        envelope = json.loads(answer.body.decode("utf-8")) if answer.body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        envelope = {}
    return envelope if isinstance(envelope, dict) else {"data": envelope}


def _check(answer: Answer, operation: str, envelope: Dict[str, Any]) -> None:
    message = envelope.get("message")
    code = envelope.get("code")
    if answer.status >= 400:
        cls = AuthError if answer.status == 401 else error_for_status(answer.status)
        text = message or answer.body.decode("utf-8", "replace").strip()[:300] or f"HTTP {answer.status}"
        raise _error(cls, answer, operation, str(text), code)
    if code not in OK_CODES:
        raise _error(RequestRejected, answer, operation, str(message or f"business error {code}"), code)


def read_envelope(answer: Answer, operation: str) -> Any:
    """The envelope's ``data`` (or the whole body without one); a typed error otherwise."""
    envelope = _envelope(answer)
    _check(answer, operation, envelope)
    return envelope.get("data", envelope)


def read_file(answer: Answer, operation: str = "info") -> CommunityFile:
    return CommunityFile.from_dict(read_envelope(answer, operation) or {})


def read_init(answer: Answer) -> Union[Layout, Deduplicated]:
    """An init's answer: the part layout of an open upload, or the file it already is."""
    data = read_envelope(answer, "init") or {}
    if data.get("status") == "completed":
        return Deduplicated(CommunityFile.from_dict(data.get("file") or {}))
    if not data.get("file_id"):
        raise _error(ServiceError, answer, "init", "the answer names no file_id and no finished file")
    parts = tuple(
        ServerPart(number=int(p["part_number"]), start=int(p["start"]), size=int(p["size"]),
                   url=fetch_url(str(p["upload_url"]), "part URL", answer), uploaded=bool(p.get("uploaded")))
        for p in data.get("parts") or []
    )
    return Layout(file_id=str(data.get("file_id")), status=str(data.get("status") or "pending"), parts=parts)


def read_part(answer: Answer, file_id: Optional[str] = None) -> Union[Optional[str], Resync, Restart]:
    """A part PUT's answer: the ETag once stored, or what to do instead.

    403: the URL expired or was refused (a new init gives fresh ones); 404:
    the upload is no longer open (completed, aborted, deleted); 409: it is
    being completed.  Other failures raise, with the store's XML code.
    """
    if answer.status in (200, 201):
        return answer.header("ETag")
    fields = dict(_XML_FIELD.findall(answer.body.decode("utf-8", "replace")))
    what = ": ".join(v for v in (fields.get("Code"), fields.get("Message")) if v) or f"HTTP {answer.status}"
    if answer.status == 403:
        return Resync(f"part URL refused ({what})", upload_id=file_id)
    if answer.status == 404:
        return Restart(f"the upload is no longer open ({what})", upload_id=file_id)
    if answer.status == 409:
        return BeingCompleted(f"the upload is being completed ({what})", upload_id=file_id)
    raise _error(error_for_status(answer.status), answer, "part", what, fields.get("Code"))


def read_complete(answer: Answer) -> Union[CommunityFile, PartsMissing, Restart]:
    """A complete's answer: the file, the parts still missing, or Restart when
    the upload is gone (404) or failed (wrong state)."""
    envelope = _envelope(answer)
    code = envelope.get("code")
    if answer.status == 404:
        return Restart(str(envelope.get("message") or "the upload is gone"))
    if answer.status < 400 and code == CODE_PARTS_MISSING:
        missing = (envelope.get("data") or {}).get("missing_parts") or []
        return PartsMissing(tuple(int(n) for n in missing))
    if answer.status < 400 and code == CODE_WRONG_STATE:
        return Restart(str(envelope.get("message") or "the upload failed"))
    _check(answer, "complete", envelope)
    return CommunityFile.from_dict(envelope.get("data", envelope) or {})


def read_list(answer: Answer) -> Tuple[List[CommunityFile], Optional[int]]:
    """One page of the list: its files, and the total the server counts (if it says)."""
    data = read_envelope(answer, "list") or {}
    items = [CommunityFile.from_dict(item) for item in data.get("list") or []]
    total = (data.get("pagination") or {}).get("total")
    return items, None if total is None else int(total)
