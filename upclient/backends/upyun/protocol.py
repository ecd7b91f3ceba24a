"""The UPYUN REST and FORM upload protocol, without sockets.

This module builds each request of an upload (:class:`Request`: method,
signed path, headers; a part's bytes are the caller's to stream) and reads
each answer (:class:`Answer`: status, headers, body) into plain values: an
upload's uuid, the parts the server holds, what a part's or a complete's
answer says to do next (a :mod:`upclient.transfer.hints` value), or an
:class:`ErrorAnswer` that the I/O layer raises as a typed error, in one
place (:meth:`.backend.UpyunBackend.error`).  Facts are from UPYUN's REST
and FORM API pages and its error code table.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

from ...errors import (
    AuthError,
    ChecksumMismatch,
    Conflict,
    NotFound,
    OffsetConflict,
    RateLimited,
    RequestRejected,
    ServiceError,
    TooLarge,
    UploadExpired,
    error_for_status,
)
from ...transfer import Restart, Resync
from .names import meta_headers

__all__ = [
    "MIN_PART",
    "MAX_PART",
    "UPLOAD_LIFETIME",
    "WholeFileMismatch",
    "Request",
    "Answer",
    "ErrorAnswer",
    "PartDone",
    "Completed",
    "AlreadyStored",
    "UploadInfo",
    "read_error",
    "check_part_size",
    "put_request",
    "initiate_request",
    "read_initiate",
    "part_request",
    "read_part",
    "complete_request",
    "read_complete",
    "query_request",
    "read_parts",
    "info_request",
    "read_info",
    "cancel_request",
    "read_cancel",
    "form_policy",
    "form_envelope",
    "read_form",
    "listing",
]

MIN_PART = 1024 * 1024
MAX_PART = 50 * MIN_PART
#: Seconds the service keeps an unfinished multipart upload.
UPLOAD_LIFETIME = 24 * 3600

# UPYUN codes an upload meets on its way
UUID_NOT_FOUND = 40011058  # expired after 24 h, cancelled, or never was
FILE_ALREADY_UPLOADED = 40011059  # the upload was completed already
FILE_MD5_MISMATCH = 40011060  # X-Upyun-Multi-MD5 differs from the assembled file
PART_ID_ERROR = 40011061  # X-Upyun-Next-Part-Id says which part the server wants
PART_ALREADY_COMPLETE = 40011062  # every part is in already


class WholeFileMismatch(ChecksumMismatch):
    """The assembled file's MD5 is not ``X-Upyun-Multi-MD5``: the server dropped
    the upload, and sending the same parts again will not help."""

    retryable = False


#: UPYUN error codes whose meaning is sharper than their HTTP status.
CODE_ERRORS: Dict[int, type] = {
    UUID_NOT_FOUND: UploadExpired,
    PART_ID_ERROR: OffsetConflict,
    FILE_MD5_MISMATCH: WholeFileMismatch,
    40300007: ChecksumMismatch,  # content md5 not match
    40001001: ChecksumMismatch,  # wrong content-md5
    40300011: AuthError,  # no permission
    40300005: Conflict,  # directory not empty
    40600002: Conflict,  # folder already exists
    40300030: RequestRejected,  # wrong content-length
}


# ---------------------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class Request:
    """One request: ``path`` is quoted, with its query, exactly as it is signed."""

    method: str
    path: str
    operation: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ok: Tuple[int, ...] = (200,)


@dataclasses.dataclass(frozen=True)
class Answer:
    """One answer.  Header names are matched without regard to case; ``raw`` is
    the transport's own response, kept for the error the I/O layer builds."""

    status: int
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""
    raw: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", {k.lower(): v for k, v in self.headers.items()})

    def header(self, name: str) -> Optional[str]:
        return self._lower.get(name.lower())  # type: ignore[attr-defined, no-any-return]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclasses.dataclass(frozen=True)
class ErrorAnswer:
    """An error answer, read: the error class it maps to, and what the server said."""

    kind: type
    code: Any = None
    message: Optional[str] = None
    request_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PartDone:
    """The server holds the part; ``all_parts``: it holds every part now."""

    all_parts: bool = False


@dataclasses.dataclass(frozen=True)
class Completed:
    """``complete`` joined the parts; ``headers`` is the answer's."""

    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class AlreadyStored:
    """The upload was completed before (an earlier complete's answer was lost)."""


@dataclasses.dataclass(frozen=True)
class UploadInfo:
    """What the server says of an unfinished upload (``X-Upyun-Multi-Info``)."""

    length: Optional[int]
    part_size: Optional[int]
    disorder: Optional[bool]
    next_part: Optional[int]


# ---------------------------------------------------------------------------- errors


def _int(text: Optional[str]) -> Optional[int]:
    return int(text) if text is not None and text.strip().lstrip("-").isdigit() else None


def read_error(answer: Answer) -> ErrorAnswer:
    """The error an answer means: UPYUN's JSON body (``{"msg", "code", "id"}``),
    its code where that is sharper than the status, else the status."""
    payload: Dict[str, Any] = {}
    try:
        parsed = json.loads(answer.body or b"{}")
        if isinstance(parsed, dict):
            payload = parsed
    except (ValueError, UnicodeDecodeError):
        pass
    code = payload.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        pass
    message = payload.get("msg") or payload.get("message")
    status = answer.status
    kind = CODE_ERRORS.get(code) if isinstance(code, int) else None
    if kind is None:
        if status == 401:
            kind = AuthError
        elif status == 403:
            kind = AuthError if (code is None or code in (40300011, 40300006)) else RequestRejected
        elif status == 429 or (isinstance(code, int) and str(code).startswith("429")):
            kind = RateLimited
        elif status >= 500:
            kind = ServiceError
        elif status == 413:
            kind = TooLarge
        elif status == 404:
            kind = NotFound
        else:
            kind = error_for_status(status)
    rid = payload.get("id")
    return ErrorAnswer(kind, code, str(message) if message else None, str(rid) if rid else None)


def _gone(answer: Answer, error: ErrorAnswer) -> bool:
    """The server does not know the upload (forgotten, cancelled, never was)."""
    return error.code == UUID_NOT_FOUND or (answer.status == 404 and error.code is None)


def check_part_size(part_size: int) -> Optional[str]:
    """Why ``part_size`` cannot be an UPYUN part size, or None if it can."""
    if part_size % MIN_PART or not MIN_PART <= part_size <= MAX_PART:
        return (f"UPYUN multipart parts must be a multiple of 1 MiB from 1 to 50 MiB; part_size={part_size} "
                "is not (give e.g. part_size=16 * 1024 * 1024)")
    return None


# ---------------------------------------------------------------------------- one PUT


def put_request(path: str, file_headers: Mapping[str, str], content_md5: Optional[str]) -> Request:
    headers = dict(file_headers)
    if content_md5:
        headers["Content-MD5"] = content_md5
    return Request("PUT", path, "put", headers)


# ---------------------------------------------------------------------------- multipart


def initiate_request(path: str, file_headers: Mapping[str, str], *, length: int, part_size: int,
                     disorder: bool) -> Request:
    headers = {k: v for k, v in file_headers.items() if k.lower() != "content-type"}
    headers.update({
        "X-Upyun-Multi-Stage": "initiate",
        "X-Upyun-Multi-Length": str(length),
        "X-Upyun-Multi-Type": file_headers.get("Content-Type", "application/octet-stream"),
        "X-Upyun-Multi-Part-Size": str(part_size),
    })
    if disorder:
        headers["X-Upyun-Multi-Disorder"] = "true"
    return Request("PUT", path, "initiate", headers, ok=(200, 201, 204))


def read_initiate(answer: Answer) -> Union[str, ErrorAnswer]:
    """The new upload's uuid."""
    if not answer.ok:
        return read_error(answer)
    uuid = answer.header("x-upyun-multi-uuid")
    if not uuid:
        return ErrorAnswer(RequestRejected, message="initiate: the answer has no x-upyun-multi-uuid")
    return uuid


def part_request(path: str, uuid: str, index: int, content_md5: Optional[str]) -> Request:
    headers = {"X-Upyun-Multi-Stage": "upload", "X-Upyun-Multi-Uuid": uuid, "X-Upyun-Part-Id": str(index)}
    if content_md5:
        headers["Content-MD5"] = content_md5
    return Request("PUT", path, "part", headers, ok=(200, 201, 204))


def read_part(answer: Answer, uuid: str) -> Union[PartDone, AlreadyStored, Resync, Restart, ErrorAnswer]:
    """What a part's answer says: stored, the file is complete already, re-synchronise
    (part id error), start afresh (the upload is gone), or an error."""
    if answer.ok:
        return PartDone(all_parts=answer.header("x-upyun-next-part-id") == "-1")
    error = read_error(answer)
    if error.code == PART_ALREADY_COMPLETE:
        return PartDone(all_parts=True)
    if error.code == FILE_ALREADY_UPLOADED:
        return AlreadyStored()
    if error.code == PART_ID_ERROR:
        return Resync("part id error", next_part=_int(answer.header("x-upyun-next-part-id")), upload_id=uuid)
    if _gone(answer, error):
        return Restart(f"the server does not know upload {uuid} ({error.message or answer.status})",
                       upload_id=uuid)
    return error


def complete_request(path: str, uuid: str, file_md5: Optional[str]) -> Request:
    headers = {"X-Upyun-Multi-Stage": "complete", "X-Upyun-Multi-Uuid": uuid}
    if file_md5:
        headers["X-Upyun-Multi-MD5"] = file_md5
    return Request("PUT", path, "complete", headers, ok=(200, 201, 204))


def read_complete(answer: Answer, uuid: str) -> Union[Completed, AlreadyStored, Resync, Restart, ErrorAnswer]:
    """What complete's answer says: done, done before, parts missing (Resync with the
    first missing part), the upload is gone (Restart), or an error."""
    if answer.ok:
        return Completed(dict(answer.headers))
    outcome = read_part(answer, uuid)
    if isinstance(outcome, PartDone):  # "part already complete" cannot answer a complete
        return read_error(answer)
    if isinstance(outcome, Resync):
        return Resync("the server lacks parts", next_part=outcome.next_part, upload_id=uuid)
    return outcome


def query_request(path: str, uuid: str) -> Request:
    """The parts the server holds of an unfinished upload."""
    return Request("GET", path, "query", {"X-Upyun-Multi-Uuid": uuid})


def read_parts(answer: Answer, uuid: str) -> Union[Set[int], Restart, None]:
    """The part ids the server holds; Restart if it forgot the upload; None when the
    server cannot tell (no such query there, a failure): trust what is known."""
    if not answer.ok:
        error = read_error(answer)
        if _gone(answer, error):
            return Restart(f"the server does not know upload {uuid}", upload_id=uuid)
        return None
    try:
        listed = json.loads(answer.body or b"{}").get("parts")
        return {int(p["id"]) for p in listed or []}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def info_request(path: str, uuid: str) -> Request:
    """What the server knows of an unfinished upload: its length, part size, order."""
    return Request("GET", path, "query", {"X-Upyun-Multi-Info": "true", "X-Upyun-Multi-Uuid": uuid})


def read_info(answer: Answer, uuid: str, key: str) -> Union[UploadInfo, ErrorAnswer]:
    if not answer.ok:
        error = read_error(answer)
        if _gone(answer, error):
            return dataclasses.replace(error, kind=UploadExpired,
                                       message=f"no unfinished upload {uuid} of {key}: {error.message}")
        return error
    disorder = answer.header("x-upyun-multi-disorder")
    return UploadInfo(
        length=_int(answer.header("x-upyun-multi-length")),
        part_size=_int(answer.header("x-upyun-multi-part-size")),
        disorder=None if disorder is None else disorder.strip().lower() == "true",
        next_part=_int(answer.header("x-upyun-next-part-id")),
    )


def cancel_request(path: str, uuid: str) -> Request:
    return Request("DELETE", path, "abort", {"X-Upyun-Multi-Uuid": uuid}, ok=(200, 204))


def read_cancel(answer: Answer) -> Optional[ErrorAnswer]:
    """None once the upload is gone, whoever dropped it."""
    if answer.status in (200, 204):
        return None
    error = read_error(answer)
    return None if issubclass(error.kind, NotFound) else error


# ---------------------------------------------------------------------------- FORM


def form_policy(
    *,
    service: str,
    key: str,
    expiration: int,
    date: str,
    content_type: Optional[str],
    secret: Optional[str],
    metadata: Mapping[str, str],
    user_headers: Mapping[str, str],
    extra: Mapping[str, Any],
    content_md5: Optional[str],
) -> Dict[str, Any]:
    """The policy of a FORM upload; the caller's ``extra`` fields win, the MD5 goes last."""
    policy: Dict[str, Any] = {"service": service, "save-key": "/" + key, "expiration": expiration, "date": date}
    if content_type:
        policy["content-type"] = content_type
    if secret:
        policy["content-secret"] = secret
    policy.update(meta_headers(metadata))
    policy.update({k.lower(): v for k, v in user_headers.items()})
    policy.update(extra)
    if content_md5:
        policy["content-md5"] = content_md5
    return policy


def _field(boundary: str, name: str, value: str) -> bytes:
    return f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode("utf-8")


def form_envelope(boundary: str, policy: str, authorization: str, filename: str,
                  content_type: str) -> Tuple[bytes, bytes]:
    """The ``multipart/form-data`` bytes before and after the file's own."""
    filename = filename.replace('"', "%22")
    head = (
        _field(boundary, "policy", policy) + _field(boundary, "authorization", authorization)
        + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
           f"Content-Type: {content_type}\r\n\r\n").encode("utf-8")
    )
    return head, f"\r\n--{boundary}--\r\n".encode("ascii")


def read_form(answer: Answer) -> Union[Dict[str, Any], ErrorAnswer]:
    """The outcome of a FORM upload: JSON, or the query of a ``return-url`` redirect."""
    location = answer.header("location")
    if 300 <= answer.status < 400 and location:
        out: Dict[str, Any] = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        out["return_url"] = location
    elif answer.status == 200:
        try:
            parsed = json.loads(answer.body or b"{}")
        except ValueError:
            parsed = {}
        out = parsed if isinstance(parsed, dict) else {}
    else:
        return read_error(answer)
    code = out.get("code")
    if code is not None and str(code) != "200":
        return ErrorAnswer(RequestRejected, code, f"form upload refused: {out.get('message')}")
    return out


def listing(text: str) -> List[Tuple[str, bool, Optional[int], Optional[float]]]:
    """Entries of a folder listing page: (name, is folder, size, mtime)."""
    out = []
    for line in text.split("\n"):
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        name, kind, size, mtime = fields[:4]
        folder = kind.upper() == "F"
        out.append((name, folder, None if folder or not size.isdigit() else int(size),
                    float(mtime) if mtime.isdigit() else None))
    return out
