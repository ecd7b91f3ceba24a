"""What comes in and goes out of the UPYUN emulator: the request as it sees it, answers, error answers.

Also the readers of the arguments every handler shares: storage keys,
integer headers, content types guessed from a name.
"""

from __future__ import annotations

import json
import mimetypes
import re
import uuid as uuidlib
from typing import Any, BinaryIO, Dict, Mapping, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from upclient.testing.faults import Fault
from upclient.testing.httpbase import Body, RequestHandler

__all__ = [
    "CODE_BAD_ARGUMENT",
    "Refusal",
    "bad",
    "not_found",
    "dir_conflict",
    "multi_error",
    "Answer",
    "json_answer",
    "Call",
    "normalise_key",
    "content_type_for",
    "int_header",
    "SECRET_RE",
    "content_secret",
    "MAX_SMALL_BODY",
    "urlencoded_fields",
]

#: This emulator's code for a malformed argument without a documented code.
CODE_BAD_ARGUMENT = 40000015

_MULTI_MESSAGES = {
    40011058: "x-upyun-multi-uuid not found",
    40011059: "file already upload",
    40011060: "file md5 not match",
    40011061: "part id error",
    40011062: "part already complete",
}


class Refusal(Exception):
    """An UPYUN error answer: HTTP status, code, message, extra headers."""

    def __init__(self, status: int, code: int, msg: str, headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})


def bad(msg: str) -> Refusal:
    """A malformed argument the documentation gives no code for."""
    return Refusal(400, CODE_BAD_ARGUMENT, msg)


def not_found() -> Refusal:
    return Refusal(404, 40400001, "file or directory not found")


def dir_conflict() -> Refusal:
    """A file where a folder is, or the reverse."""
    return Refusal(406, 40600001, "dir not acceptable")


def multi_error(code: int, next_part_id: Optional[int] = None) -> Refusal:
    """A multipart error, with the part to resume from when there is one."""
    headers = {} if next_part_id is None else {"X-Upyun-Next-Part-Id": str(next_part_id)}
    return Refusal(400, code, _MULTI_MESSAGES[code], headers)


class Answer:
    """What to send: status, headers, a body or an open file range to stream."""

    __slots__ = ("status", "headers", "body", "stream")

    def __init__(
        self,
        status: int,
        headers: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        stream: Optional[Tuple[BinaryIO, int, int]] = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.body = body
        self.stream = stream


def json_answer(status: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> Answer:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Answer(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


class Call:
    """One request as the emulator sees it, and what its handling learnt along the way."""

    def __init__(self, handler: RequestHandler) -> None:
        self.method = handler.command
        self.headers = handler.headers
        self.body: Body = handler.body
        self.request_id = uuidlib.uuid4().hex
        target = handler.path
        if "://" in target.split("?", 1)[0]:  # absolute form, as sent to a proxy
            split = urlsplit(target)
            self.raw_path, self.query = split.path or "/", split.query
        else:
            self.raw_path, _, self.query = target.partition("?")
        #: A ``commit`` fault taken: the request is carried out, then its answer replaced.
        self.commit_fault: Optional[Fault] = None
        #: (uuid, part id, expected size) of a multipart part being received.
        self.part: Optional[Tuple[str, int, int]] = None
        #: The uuid an initiate in this request created (its errors carry it).
        self.created_uuid: Optional[str] = None

    def header(self, name: str) -> Optional[str]:
        value = self.headers.get(name)
        return None if value is None else str(value).strip()

    def flag(self, name: str) -> bool:
        return (self.header(name) or "").lower() == "true"

    def meta_headers(self) -> Dict[str, str]:
        return {k.lower(): str(v).strip() for k, v in self.headers.items() if k.lower().startswith("x-upyun-meta-")}

    def query_fields(self) -> Dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    @property
    def uri(self) -> str:
        """The path with its query, as sent."""
        return self.raw_path + ("?" + self.query if self.query else "")


def normalise_key(text: str) -> str:
    """A storage key from the path after the service: segments checked, empty ones dropped."""
    if "\x00" in text:
        raise bad("invalid path: NUL")
    segments = [s for s in text.split("/") if s]
    for segment in segments:
        if segment in (".", ".."):
            raise bad(f"invalid path: a {segment!r} segment")
        if any(c in segment for c in "\r\n\t"):
            raise Refusal(403, 40300001, "file name contains invalid chars (\\r\\n\\t)")
        if len(segment.encode("utf-8", "surrogateescape")) > 255:
            raise Refusal(403, 40300003, "file name too long")
    return "/".join(segments)


def content_type_for(key: str) -> str:
    """The content type the service gives a file of this name when none is sent."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def int_header(value: Optional[str], name: str, *, default: Optional[int] = None) -> int:
    """An integer header's value; 400 if it is not one (or is missing without a default)."""
    if value is None or value == "":
        if default is None:
            raise bad(f"{name} required")
        return default
    try:
        return int(value)
    except ValueError:
        raise bad(f"{name} must be an integer") from None


#: What a ``Content-Secret`` may hold.
SECRET_RE = re.compile(r"^[a-zA-Z0-9]+$")


def content_secret(call: Call) -> Optional[str]:
    """The request's ``Content-Secret`` header, checked (403 40300016)."""
    secret = call.header("Content-Secret")
    if secret is not None and not SECRET_RE.match(secret):
        raise Refusal(403, 40300016, "content-secret only accept [a-zA-Z0-9]")
    return secret


#: The most a purge or task request's urlencoded body may hold.
MAX_SMALL_BODY = 1024 * 1024


def urlencoded_fields(raw: bytes) -> Dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (the last of a repeated name)."""
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
