"""An emulator of the UPYUN storage APIs (REST, FORM, purge, processing tasks), for tests.

:class:`UpyunServer` is a real HTTP/1.1 server (stdlib :mod:`http.server`,
keep-alive, a bounded number of connection threads) on ``127.0.0.1`` that
answers as the UPYUN service does (as its API documentation and the
official SDK ``upyun`` 2.5.5 show it; every call of that SDK runs against it
unchanged: ``tests/test_upyun_sdk.py``), and stores files on disk::

    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password="pw") as server:
        up = upyun.UpYun("svc", username="op", password="pw", endpoint=server.endpoint)
        server.fail("part", status=503, retry_after=1, part_id=3)   # the next part 3 answers 503
        server.advance(25 * 3600)                                   # unfinished uploads expire
        assert server.stored_sha256("a/b.bin") == hashlib.sha256(data).hexdigest()

Routes (``<key>`` may be empty: the service's root folder). Every answer
carries ``X-Request-Id``; errors are JSON ``{"msg", "code", "id"}``. The
counter of each route (:attr:`UpyunServer.requests`) is the name on the right.

================================================  ======================================  ============
``PUT /<svc>/<key>``                              upload (streamed to a temporary file,   ``put``
                                                  renamed into place: a cut off
                                                  upload stores nothing)
``PUT`` + ``X-Upyun-Move-Source`` / ``-Copy-``    move / copy                             ``move`` ``copy``
``PUT`` + ``X-Upyun-Multi-Stage``                 multipart stages, comma-joined          ``initiate``
                                                                                          ``part``
                                                                                          ``complete``
``GET`` + ``X-Upyun-Multi-Uuid``                  multipart query (``parts`` JSON, or     ``query``
                                                  headers with
                                                  ``X-Upyun-Multi-Info: true``)
``DELETE`` + ``X-Upyun-Multi-Uuid``               cancel a multipart upload               ``cancel``
``GET /<svc>/<key>`` on a file / a folder         download (one ``Range``) / list         ``get`` ``list``
``GET /<svc>/?usage``                             bytes stored, as text                   ``usage``
``HEAD /<svc>/<key>``                             ``x-upyun-file-type|size|date``         ``head``
``DELETE /<svc>/<key>``                           delete a file or an empty folder        ``delete``
``POST /<svc>/<key>`` + ``Folder: true``          mkdir (``x-upyun-folder`` too)          ``mkdir``
``PATCH /<svc>/<key>?metadata=``                  merge, replace or delete                ``metadata``
                                                  ``x-upyun-meta-*``
``POST /<svc>`` or ``/<svc>/`` multipart/form     FORM upload                             ``form``
``POST /purge/``                                  purge CDN URLs                          ``purge``
``POST /pretreatment/``                           submit processing tasks                 ``pretreat``
``GET /status/?service=&task_ids=``               task progress                           ``status``
``GET /result/?service=&task_ids=``               task results                            ``result``
================================================  ======================================  ============

So ``purge``, ``pretreatment``, ``status`` and ``result`` cannot be service
names. Requests in absolute form (``POST http://purge.upyun.com/purge/
HTTP/1.1``, as sent to an HTTP proxy) are served by their path whatever the
host: point a client's proxy at :attr:`UpyunServer.url` and the SDK's
hard-coded ``purge.upyun.com`` and ``p0.api.upyun.com`` land here too.

Storage: files in ``<directory>/files/<service>/<key>`` (folders are real
directories; uploading a file creates its missing parent folders), parts of
unfinished uploads in ``<directory>/multipart/<uuid>/<part id>``, bodies
being received in ``<directory>/tmp``. Keys with a ``.`` or ``..`` segment
or a NUL are refused (400 40000015), ``\\r \\n \\t`` in a name 403
40300001, a segment over 255 bytes 403 40300003; empty segments (``a//b``)
are dropped. Metadata (content type, MD5, time, ``x-upyun-meta-*``,
``Content-Secret``) is kept in memory: it survives
:meth:`~UpyunServer.stop` / :meth:`~UpyunServer.start` (same port), not a
new instance. ``directory=None``: a temporary directory removed by
:meth:`~UpyunServer.close`.

Auth (REST, multipart, tasks): ``Authorization: UPYUN <operator>:<sig>``
(scheme word in any case) and ``Date`` (or ``X-Date``, preferred when both
are sent), checked with :mod:`upclient.backends.upyun.signing`. ``sig`` must
match ``METHOD&URI&DATE[&CONTENT-MD5]`` for one of the URIs: the path as
sent with its query, the path alone, or either re-encoded with
:func:`~upclient.backends.upyun.signing.quote_path`. A ``Content-MD5``
header must be signed, be 32 hex digits (else 400 40001001 wrong
content-md5) and match the body where there is one (403 40300007 content md5
not match). All 401: 40100004 need authorization header, 40100003 unknown
realm (a scheme word other than UPYUN), 40100001 need date header, 40100016
invalid date value in header, 40100002 date offset error (more than 30
minutes from :meth:`~UpyunServer.clock`), 40100012 bucket not exist (an
unknown service), 40100006 user not exists, 40100017 user need permission
(``permissions`` does not let the operator use the service), 40100005
signature error.

REST codes: 404 40400001 file or directory not found; 406 40600001 dir not
acceptable (a file where a folder is, or the reverse); 406 40600002 folder
already exists; 403 40300005 directory not empty, 40300011 no permission to
delete (the root), 40300014 order must be asc or desc, 40300015 path is not
a file, 40300016 content-secret only accept [a-zA-Z0-9]; 400 40001161 wrong
range (anything but one satisfiable ``bytes=`` range); 400 40000041 source
equals target, 40000042 bad source (malformed, another service, a folder);
405 40500000 for a verb the path does not take. 400 40000015 is this
emulator's code for a malformed argument the service's documentation gives
no code for (``X-Upyun-Multi-Length``, part size, list limit, iter token,
stage names, metadata directive).

Lists: ``X-List-Limit`` (default 100, at most 10000), ``X-List-Order``
(asc by name, or desc), ``X-List-Iter``; body ``name\\tN|F\\tsize\\tmtime``
lines joined by ``\\n`` (empty for an empty folder), header
``x-upyun-list-iter`` (an opaque token, or ``g2gCZAAEbmV4dGQAA2VvZg`` on the
last page). ``Accept: application/json``: ``{"files": [{"type", "length",
"name", "last_modified"}], "iter"}`` where ``type`` is ``folder`` or the
file's content type.

Multipart (all stages PUT to the target path, combinable with commas as the
SDK does: ``initiate,upload``, ``upload,complete``,
``initiate,upload,complete``): initiate needs ``X-Upyun-Multi-Length``;
``X-Upyun-Multi-Part-Size`` a multiple of 1 MiB up to 50 MiB (default 1
MiB); ``X-Upyun-Multi-Type`` (default from the extension);
``X-Upyun-Multi-Disorder: true`` lets parts come in any order (else part
``n`` must be the ``next-part-id``); ``x-upyun-meta-*`` and
``Content-Secret`` go to the final file. Every part is exactly the part size
but the last, which is the rest (403 40300030 wrong content-length); a 0-byte
file has one empty part 0. Answers 204 with ``x-upyun-multi-uuid`` and
``x-upyun-next-part-id`` (the lowest missing part, -1 when all are in);
complete answers 201 (new file) or 204 (replaced one) with
``x-upyun-multi-uuid``, ``-type``, ``-length``. Errors (400, messages as the
SDK matches them): 40011058 ``x-upyun-multi-uuid not found`` (unknown,
cancelled, another path, or 24 hours after initiate by the server clock),
40011059 ``file already upload`` (a completed uuid, until it expires),
40011060 ``file md5 not match`` (``X-Upyun-Multi-MD5`` of complete; the upload
is dropped), 40011061 ``part id error`` with ``X-Upyun-Next-Part-Id`` (a part
out of turn or out of range, or complete with a part missing: the header
names the first missing one), 40011062 ``part already complete`` (serial, all
parts in). An error after an initiate in the same request carries the new
``x-upyun-multi-uuid``.

FORM: ``policy`` (base64 JSON), ``authorization`` (or an ``Authorization``
header), ``file`` (streamed to disk, in any position); signature over
``POST&/<svc>[/]&<policy date or Date header>&<policy>[&<content-md5>]``.
Policy: ``bucket`` or ``service`` = the path's service (else 400 40000003),
``save-key`` (400 40000001) with ``{year} {mon} {day} {hour} {min} {sec}``
(UTC, server clock) ``{filemd5} {random} {random32} {filename} {suffix}
{.suffix}``, ``expiration`` (400 40000004; 403 40300006 once past), and the
optional ``content-md5`` (403 40300007), ``content-length-range`` (403
40300008 / 40300009), ``allow-file-type`` (of the sent file name's
extension, 403 40300010), ``content-type``, ``content-secret``,
``x-upyun-meta-*``, ``ext-param`` (echoed), ``return-url``, ``notify-url``.
400 40000009 decode policy error, 40000007 need policy, 40000005 need file,
415 41500001 not multipart/form-data. Answer 200 ``{"code": 200, "message":
"ok", "url", "time"}`` plus ``image-width``, ``image-height``,
``image-frames``, ``image-type`` for PNG, GIF and JPEG files. ``return-url``:
302 to it with the result (or a policy error's code and message) in the
query. ``notify-url``: the same fields, urlencoded, POSTed from a background
thread as UPYUN signs callbacks (``Date``, ``Content-MD5`` = MD5 hex of the
body, ``Authorization: UPYUN <operator>:<sig>`` over ``POST&<path[?query]>&
<Date>&<Content-MD5>`` with the uploading operator's password), only to
``127.0.0.1``, ``localhost`` or ``::1`` (any other URL is recorded, never
called): :attr:`~UpyunServer.callbacks`, :meth:`~UpyunServer.wait_callbacks`.

Purge: ``POST /purge/`` urlencoded ``purge`` (URLs joined by ``\\n``),
``Authorization: UpYun <svc>:<operator>:<md5>`` checked with
:func:`~upclient.backends.upyun.signing.purge_authorization` and the Date
rules above -> ``{"invalid_domain_of_url": [...]}`` (valid: the host
``<svc>.b0.upaiyun.com`` or one of ``domains``); 406 40600003 past 600 URLs
a minute per service. Valid URLs are recorded: :attr:`~UpyunServer.purged`.

Processing tasks: ``POST /pretreatment/`` (urlencoded ``service``,
``notify_url``, ``source``, ``tasks`` = base64 JSON list of 1 to 10, ``accept``,
``app_name``; signed, with ``Content-MD5`` of the body when sent) -> JSON
list of 32-hex task ids. ``GET /status/?service=&task_ids=a,b`` (at most 20)
-> ``{"tasks": {id: progress}}``, progress growing linearly with the server
clock to 100 over ``task_duration`` seconds, ``null`` for an unknown id;
``GET /result/`` -> ``{"tasks": {id: result or null}}``. A finished task
with a loopback ``notify_url`` gets a signed callback (JSON with
``accept=json``, else urlencoded).

Faults (thread-safe; after auth, so a refused request does not use one up):
:meth:`~UpyunServer.fail` arms ``status`` (503 -> code 50300000, 429 ->
42900001, else ``status * 100000``; ``Retry-After`` when asked; 0 closes the
connection without an answer, after reading the body) for the next ``times``
requests of a route (``part_id=`` and ``key=`` narrow it; ``commit=True``
carries the request out first and loses its answer). A combined multipart
request matches a fault of any of its stages.

Counters: :attr:`~UpyunServer.requests` (per route; a combined request
counts once per stage), :attr:`~UpyunServer.part_log`,
:meth:`~UpyunServer.part_receipts` (how many times each part's body arrived
in full), :meth:`~UpyunServer.wait_idle`.

``python -m upclient.testing upyun --port 0 --dir DIR --service SVC
--operator OP --password PW`` runs one from the command line (first stdout
line: ``127.0.0.1:PORT``, the SDK's ``endpoint``).

Nothing here prints; diagnostics go to the ``upclient.testing.upyun`` logger.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import (
    Any,
    BinaryIO,
    Callable,
    Counter,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    cast,
)
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from upclient.backends.upyun import signing
from upclient.testing.httpbase import (
    BLOCK,
    Body,
    Drop,
    HTTPEmulator,
    KiB,
    MiB,
    PathLike,
    RequestHandler,
    file_digest,
    parse_range,
)

__all__ = [
    "UpyunServer",
    "ROUTES",
    "RESERVED",
    "LIST_END",
    "MULTI_LIFETIME",
    "MAX_PART_SIZE",
    "CODE_BAD_ARGUMENT",
]

log = logging.getLogger(__name__)

#: Counter and fault names of :class:`UpyunServer`.
ROUTES = (
    "put", "get", "head", "list", "usage", "delete", "mkdir", "move", "copy", "metadata",
    "initiate", "part", "complete", "query", "cancel",
    "form", "purge", "pretreat", "status", "result",
)  # fmt: skip
#: First path segments that are APIs, not services.
RESERVED = ("purge", "pretreatment", "status", "result")
#: The ``x-upyun-list-iter`` of a listing's last page.
LIST_END = "g2gCZAAEbmV4dGQAA2VvZg"
#: Seconds an unfinished multipart upload lives after its initiate.
MULTI_LIFETIME = 24 * 3600
MAX_PART_SIZE = 50 * MiB
#: This emulator's code for a malformed argument without a documented code.
CODE_BAD_ARGUMENT = 40000015

_MAX_LIST = 10000
_MAX_TASKS = 10
_MAX_STATUS_IDS = 20
_PURGE_PER_MINUTE = 600
_MAX_FIELD = 64 * KiB
_MAX_SMALL_BODY = 1 * MiB
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_SECRET_RE = re.compile(r"^[a-zA-Z0-9]+$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_STAGES = ("initiate", "upload", "complete")


# ------------------------------------------------------------------ answers


class _Refusal(Exception):
    """An UPYUN error answer: HTTP status, code, message, extra headers."""

    def __init__(self, status: int, code: int, msg: str, headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})


def _bad(msg: str) -> _Refusal:
    return _Refusal(400, CODE_BAD_ARGUMENT, msg)


def _not_found() -> _Refusal:
    return _Refusal(404, 40400001, "file or directory not found")


def _dir_conflict() -> _Refusal:
    return _Refusal(406, 40600001, "dir not acceptable")


def _multi_error(code: int, next_part_id: Optional[int] = None) -> _Refusal:
    messages = {
        40011058: "x-upyun-multi-uuid not found",
        40011059: "file already upload",
        40011060: "file md5 not match",
        40011061: "part id error",
        40011062: "part already complete",
    }
    headers = {} if next_part_id is None else {"X-Upyun-Next-Part-Id": str(next_part_id)}
    return _Refusal(400, code, messages[code], headers)


class _Injected(Exception):
    def __init__(self, fault: "_Fault") -> None:
        super().__init__(fault.route)
        self.fault = fault


class _Answer:
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


def _json_answer(status: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> _Answer:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return _Answer(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


# ------------------------------------------------------------------ records


class _File:
    """What the service knows of a stored file besides its bytes."""

    __slots__ = ("content_type", "size", "md5", "mtime", "meta", "secret")

    def __init__(
        self, content_type: str, size: int, md5: str, mtime: float, meta: Mapping[str, str], secret: Optional[str]
    ) -> None:
        self.content_type = content_type
        self.size = size
        self.md5 = md5
        self.mtime = mtime
        self.meta = dict(meta)
        self.secret = secret

    def copy(self) -> "_File":
        return _File(self.content_type, self.size, self.md5, self.mtime, self.meta, self.secret)


class _Multi:
    """One multipart upload."""

    def __init__(
        self,
        *,
        uuid: str,
        service: str,
        key: str,
        length: int,
        part_size: int,
        content_type: str,
        disorder: bool,
        meta: Mapping[str, str],
        secret: Optional[str],
        created: float,
    ) -> None:
        self.uuid = uuid
        self.service = service
        self.key = key
        self.length = length
        self.part_size = part_size
        self.total = max(1, -(-length // part_size))
        self.content_type = content_type
        self.disorder = disorder
        self.meta = dict(meta)
        self.secret = secret
        self.created = created
        self.parts: Dict[int, Tuple[int, str]] = {}  # part id -> (size, md5 hex)
        self.completed = False
        self.gone = False  # cancelled, expired or dropped after an MD5 mismatch
        #: Held while a part is put in place or the parts are joined (before the server lock).
        self.lock = threading.Lock()

    def part_length(self, part_id: int) -> int:
        return min(self.part_size, self.length - part_id * self.part_size)

    def next_part_id(self) -> int:
        for part_id in range(self.total):
            if part_id not in self.parts:
                return part_id
        return -1


class _Task:
    def __init__(
        self, task_id: str, service: str, operator: str, spec: Any, fields: Mapping[str, str], created: float
    ) -> None:
        self.id = task_id
        self.service = service
        self.operator = operator
        self.spec = spec
        self.source = fields.get("source", "")
        self.notify_url = fields.get("notify_url", "")
        self.accept = fields.get("accept", "")
        self.app_name = fields.get("app_name") or None
        self.created = created
        self.notified = False


class _Fault:
    __slots__ = ("route", "status", "code", "msg", "retry_after", "part_id", "key", "commit", "remaining")

    def __init__(
        self,
        route: str,
        status: int,
        times: Optional[int],
        *,
        code: Optional[int],
        msg: Optional[str],
        retry_after: Optional[float],
        part_id: Optional[int],
        key: Optional[str],
        commit: bool,
    ) -> None:
        self.route = route
        self.status = status
        if code is None:
            code = {503: 50300000, 429: 42900001}.get(status, status * 100000)
        self.code = code
        self.msg = msg or {503: "unknown error", 429: "too many requests"}.get(status, f"injected failure of {route}")
        self.retry_after = retry_after
        self.part_id = part_id
        self.key = key
        self.commit = commit
        self.remaining = times

    def __repr__(self) -> str:
        times = "forever" if self.remaining is None else f"{self.remaining}x"
        where = self.route if self.part_id is None else f"{self.route} {self.part_id}"
        return f"<fault {where} status={self.status} {times}{' commit' if self.commit else ''}>"


class _Call:
    """One request as the emulator sees it."""

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
        self.commit_fault: Optional[_Fault] = None
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
        return self.raw_path + ("?" + self.query if self.query else "")


# ------------------------------------------------------------------ helpers


def _normalise_key(text: str) -> str:
    """A storage key from the path after the service: segments checked, empty ones dropped."""
    if "\x00" in text:
        raise _bad("invalid path: NUL")
    segments = [s for s in text.split("/") if s]
    for segment in segments:
        if segment in (".", ".."):
            raise _bad(f"invalid path: a {segment!r} segment")
        if any(c in segment for c in "\r\n\t"):
            raise _Refusal(403, 40300001, "file name contains invalid chars (\\r\\n\\t)")
        if len(segment.encode("utf-8", "surrogateescape")) > 255:
            raise _Refusal(403, 40300003, "file name too long")
    return "/".join(segments)


def _content_type_for(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _int_header(value: Optional[str], name: str, *, default: Optional[int] = None) -> int:
    if value is None or value == "":
        if default is None:
            raise _bad(f"{name} required")
        return default
    try:
        return int(value)
    except ValueError:
        raise _bad(f"{name} must be an integer") from None


def _image_info(path: Path) -> Optional[Tuple[int, int, int, str]]:
    """(width, height, frames, type) of a PNG, GIF or JPEG file, else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * KiB)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), 1, "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        frames = max(1, head.count(b"\x00\x2c"))  # image separators, roughly
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"), frames, "GIF"
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(head[i + 5 : i + 7], "big")
                width = int.from_bytes(head[i + 7 : i + 9], "big")
                return width, height, 1, "JPEG"
            i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _encode_iter(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8", "surrogateescape")).decode("ascii").rstrip("=")


def _decode_iter(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return raw.decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        raise _bad("invalid x-list-iter") from None


def _save_key(template: str, *, now: float, filename: str, md5: str) -> str:
    moment = time.gmtime(now)
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    values = {
        "year": f"{moment.tm_year:04d}",
        "mon": f"{moment.tm_mon:02d}",
        "day": f"{moment.tm_mday:02d}",
        "hour": f"{moment.tm_hour:02d}",
        "min": f"{moment.tm_min:02d}",
        "sec": f"{moment.tm_sec:02d}",
        "filemd5": md5,
        "filename": stem,
        "suffix": suffix,
        ".suffix": f".{suffix}" if suffix else "",
    }

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name == "random":
            return secrets.token_hex(8)
        if name == "random32":
            return secrets.token_hex(16)
        return values.get(name, match.group(0))

    return re.sub(r"\{(\.?[a-z0-9]+)\}", fill, template)


# ------------------------------------------------------------ multipart/form


class _FormError(Exception):
    pass


class _FormPart:
    def __init__(self, name: str, filename: Optional[str], content_type: Optional[str]) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type


class _FormReader:
    """A multipart/form-data body, part by part, each part's content streamed in blocks."""

    def __init__(self, body: Body, boundary: str) -> None:
        self._body = body
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._separator = b"\r\n" + self._delimiter
        self._buf = b""
        self._pending: Optional[Iterator[bytes]] = None

    def _fill(self) -> bool:
        block = self._body.read()
        if not block:
            return False
        self._buf += block
        return True

    def parts(self) -> Iterator[Tuple[_FormPart, Iterator[bytes]]]:
        """``(part, content blocks)`` in order; a part's content not read is skipped."""
        while True:
            at = self._buf.find(self._delimiter)
            if at >= 0:
                self._buf = self._buf[at + len(self._delimiter) :]
                break
            self._buf = self._buf[-len(self._delimiter) :]
            if not self._fill():
                raise _FormError("no multipart boundary in the body")
        while True:
            while len(self._buf) < 2:
                if not self._fill():
                    raise _FormError("the body ends after a boundary")
            if self._buf.startswith(b"--"):
                return
            if not self._buf.startswith(b"\r\n"):
                raise _FormError("no CRLF after a boundary")
            self._buf = self._buf[2:]
            while b"\r\n\r\n" not in self._buf:
                if len(self._buf) > 16 * KiB or not self._fill():
                    raise _FormError("unterminated part headers")
            head, self._buf = self._buf.split(b"\r\n\r\n", 1)
            part = self._part_headers(head.decode("utf-8", "replace"))
            content = self._content()
            yield part, content
            for _ in content:  # whatever the consumer left
                pass

    @staticmethod
    def _part_headers(text: str) -> _FormPart:
        name: Optional[str] = None
        filename: Optional[str] = None
        content_type: Optional[str] = None
        for line in text.split("\r\n"):
            field, _, value = line.partition(":")
            field = field.strip().lower()
            if field == "content-type":
                content_type = value.strip()
            elif field == "content-disposition":
                params = dict(
                    (k.lower(), v[1:-1].replace('\\"', '"') if v.startswith('"') else v.strip())
                    for k, v in re.findall(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', value)
                )
                name = params.get("name")
                filename = params.get("filename")
                if "filename*" in params:
                    _, _, encoded = params["filename*"].partition("''")
                    filename = unquote(encoded)
        if name is None:
            raise _FormError("a part without a name")
        return _FormPart(name, filename, content_type)

    def _content(self) -> Iterator[bytes]:
        separator = self._separator
        keep = len(separator) - 1
        while True:
            at = self._buf.find(separator)
            if at >= 0:
                data, self._buf = self._buf[:at], self._buf[at + len(separator) :]
                if data:
                    yield data
                return
            if len(self._buf) > keep:
                data, self._buf = self._buf[:-keep], self._buf[-keep:]
                yield data
            if not self._fill():
                raise _FormError("the body ends inside a part")


# ------------------------------------------------------------------ handler


class _Handler(RequestHandler):
    server_version = "UpyunEmulator/1.0"

    @property
    def owner(self) -> "UpyunServer":
        return cast("UpyunServer", super().owner)

    def reply_error(self, status: int, message: str) -> None:
        request_id = uuidlib.uuid4().hex
        payload = {"msg": message, "code": status * 100000, "id": request_id}
        self.send_json(status, payload, {"X-Request-Id": request_id})

    def route(self) -> None:
        owner = self.owner
        call = _Call(self)
        try:
            answer = owner._answer(call)
        except BaseException:
            owner._finished(call, 0)  # no answer
            raise
        try:
            self.finish_body()
            owner._finished(call, answer.status)  # before the client can see the answer
            self.send(answer.status, answer.body, {"X-Request-Id": call.request_id, **answer.headers})
            if answer.stream is not None:
                self.stream_file(*answer.stream)
        finally:
            if answer.stream is not None:
                answer.stream[0].close()


# ------------------------------------------------------------------ the server


class UpyunServer(HTTPEmulator):
    """An emulator of the UPYUN storage APIs on ``127.0.0.1`` (see the module docstring).

    :param directory: where files are stored (created if needed); ``None``
        makes a temporary directory that :meth:`close` removes.
    :param service: the service (bucket) name.
    :param operator, password: an operator allowed on every service.
    :param operators: more operators, ``{operator: password}``.
    :param services: more service names.
    :param permissions: ``{service: operators}``: who may use a service
        (others get 401 40100017); a service not listed lets every operator in.
    :param domains: more domains the purge API accepts (besides
        ``<service>.b0.upaiyun.com``).
    :param host, port: where to listen; port 0 picks a free one (kept across
        :meth:`stop` / :meth:`start`).
    :param clock: returns the time in epoch seconds (default
        :func:`time.time`); :meth:`advance` adds to it.
    :param task_duration: seconds a processing task takes to reach 100.
    :param max_connections: the most connections served at once (one thread each).
    :param idle_timeout: seconds a connection may stay silent before it is closed.
    :param callback_timeout: seconds a notify callback may take.

    All methods are thread-safe.
    """

    log = log
    handler_class = _Handler

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        service: str = "svc",
        operator: str = "op",
        password: str = "pw",
        operators: Optional[Mapping[str, str]] = None,
        services: Optional[Iterable[str]] = None,
        permissions: Optional[Mapping[str, Iterable[str]]] = None,
        domains: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Optional[Callable[[], float]] = None,
        task_duration: float = 2.0,
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        callback_timeout: float = 5.0,
    ) -> None:
        names = [service, *(services or ())]
        for name in names:
            if not _SERVICE_RE.match(name) or name in RESERVED:
                raise ValueError(f"{name!r} cannot be a service name (letters, digits, - and _; not {RESERVED})")
        self.service = service
        self.operator = operator
        self._services: Set[str] = set(names)
        self._operators: Dict[str, str] = {operator: password, **dict(operators or {})}
        self._permissions: Dict[str, Set[str]] = {s: set(ops) for s, ops in (permissions or {}).items()}
        self.domains = tuple(domains)
        self._base_clock: Callable[[], float] = clock or time.time
        self._offset = 0.0
        self.task_duration = float(task_duration)
        self.callback_timeout = float(callback_timeout)
        super().__init__(
            directory,
            temp_prefix="upclient-upyun-",
            idle_timeout=idle_timeout,
            host=host,
            port=port,
            max_connections=max_connections,
        )
        self._files: Dict[Tuple[str, str], _File] = {}
        self._folder_times: Dict[Tuple[str, str], float] = {}
        self._multis: Dict[str, _Multi] = {}
        self._tasks: Dict[str, _Task] = {}
        self._part_log: List[Tuple[str, int, int, int]] = []
        self._receipts: Dict[str, Counter[int]] = {}
        self._purged: List[str] = []
        self._purge_times: Dict[str, List[Tuple[float, int]]] = {}
        self._callbacks: List[Dict[str, Any]] = []
        self._callback_threads: List[threading.Thread] = []
        self._callbacks_done = threading.Condition(self._lock)
        self._ticker: Optional[threading.Thread] = None
        self._ticker_stop = threading.Event()

    # ------------------------------------------------------------- lifecycle

    def _prepare_directory(self) -> None:
        for sub in ("tmp", "multipart"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        for service in self._services:
            (self.directory / "files" / service).mkdir(parents=True, exist_ok=True)

    def start(self) -> "UpyunServer":
        """Bind and start serving; returns ``self``. A restart keeps the port and every file."""
        super().start()
        self._ticker_stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="UpyunServer-tasks", daemon=True)
        self._ticker.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut open connections, wait for callbacks in flight. Idempotent."""
        super().stop(timeout)
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout)
            self._ticker = None
        with self._lock:
            threads = list(self._callback_threads)
        deadline = time.monotonic() + self.callback_timeout + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: what the official SDK takes as ``endpoint=``."""
        return f"{self.host}:{self.port}"

    # ----------------------------------------------------------------- clock

    def clock(self) -> float:
        """The server's time, epoch seconds (the clock given, plus :meth:`advance`)."""
        return self._base_clock() + self._offset  # no lock: callers may hold the server's

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward (or back, if negative)."""
        with self._lock:
            self._offset += float(seconds)

    # ------------------------------------------------------------- inspection

    def _locate(self, key: str, service: Optional[str]) -> Tuple[str, str]:
        service = service or self.service
        if service not in self._services:
            raise KeyError(f"no service {service!r}")
        try:
            return service, _normalise_key(key)
        except _Refusal as exc:
            raise ValueError(f"bad key {key!r}: {exc.msg}") from None

    def _path(self, service: str, key: str) -> Path:
        root = self.directory / "files" / service
        return root.joinpath(*key.split("/")) if key else root

    def stored_path(self, key: str, service: Optional[str] = None) -> Path:
        """Where the file ``key`` is (or would be) stored."""
        return self._path(*self._locate(key, service))

    def stored_bytes(self, key: str, service: Optional[str] = None) -> bytes:
        """The bytes of a stored file; :class:`FileNotFoundError` if there is none."""
        path = self.stored_path(key, service)
        if not path.is_file():
            raise FileNotFoundError(f"no file {key!r}")
        return path.read_bytes()

    def stored_sha256(self, key: str, service: Optional[str] = None) -> str:
        """Hex SHA-256 of a stored file; :class:`FileNotFoundError` if there is none."""
        path = self.stored_path(key, service)
        if not path.is_file():
            raise FileNotFoundError(f"no file {key!r}")
        return file_digest(path, "sha256")

    def exists(self, key: str, service: Optional[str] = None) -> bool:
        """Whether a file or folder ``key`` exists."""
        return self.stored_path(key, service).exists()

    def metadata(self, key: str, service: Optional[str] = None) -> Dict[str, Any]:
        """``{"content_type", "size", "md5", "mtime", "meta", "secret"}`` of a stored file (KeyError if none)."""
        located = self._locate(key, service)
        with self._lock:
            record = self._files.get(located)
            if record is None:
                raise KeyError(f"no file {key!r}")
            return {
                "content_type": record.content_type,
                "size": record.size,
                "md5": record.md5,
                "mtime": record.mtime,
                "meta": dict(record.meta),
                "secret": record.secret,
            }

    def uploads(self) -> Dict[str, Dict[str, Any]]:
        """Unfinished multipart uploads: uuid -> ``{"service", "key", "length", "part_size",
        "parts" (ids received, sorted), "next_part_id", "disorder", "type", "created"}``."""
        now = self.clock()
        with self._lock:
            return {
                m.uuid: {
                    "service": m.service,
                    "key": m.key,
                    "length": m.length,
                    "part_size": m.part_size,
                    "parts": sorted(m.parts),
                    "next_part_id": m.next_part_id(),
                    "disorder": m.disorder,
                    "type": m.content_type,
                    "created": m.created,
                }
                for m in self._multis.values()
                if not m.completed and not m.gone and now - m.created <= MULTI_LIFETIME
            }

    def tasks(self) -> Dict[str, Dict[str, Any]]:
        """Processing tasks: id -> ``{"service", "source", "task", "app_name", "notify_url", "progress"}``."""
        now = self.clock()
        with self._lock:
            return {
                t.id: {
                    "service": t.service,
                    "source": t.source,
                    "task": t.spec,
                    "app_name": t.app_name,
                    "notify_url": t.notify_url,
                    "progress": self._progress(t, now),
                }
                for t in self._tasks.values()
            }

    @property
    def purged(self) -> List[str]:
        """Every URL a purge request accepted, in order."""
        with self._lock:
            return list(self._purged)

    @property
    def callbacks(self) -> List[Dict[str, Any]]:
        """Notify callbacks: ``{"kind": "form"|"task", "url", "body", "headers", "done", "status",
        "error"}`` each (``status`` the receiver's HTTP status; ``error`` why it failed or was not sent)."""
        with self._lock:
            return [dict(c, headers=dict(c["headers"])) for c in self._callbacks]

    def wait_callbacks(self, timeout: float = 5.0) -> bool:
        """Wait until every callback so far is done; whether that happened in time."""
        with self._callbacks_done:
            return self._callbacks_done.wait_for(lambda: all(c["done"] for c in self._callbacks), timeout)

    # ------------------------------------------------------------------- faults

    def fail(
        self,
        route: str,
        status: int = 503,
        *,
        times: Optional[int] = 1,
        code: Optional[int] = None,
        msg: Optional[str] = None,
        retry_after: Optional[float] = None,
        part_id: Optional[int] = None,
        key: Optional[str] = None,
        commit: bool = False,
    ) -> None:
        """The next ``times`` requests of ``route`` (a name of :data:`ROUTES`, or ``"*"``) fail.

        ``status`` 0 closes the connection without an answer (the body is
        read first); otherwise the answer is ``status`` with ``code`` (503:
        50300000, 429: 42900001, else ``status * 100000``), ``msg`` and
        ``Retry-After: retry_after``. ``part_id`` / ``key`` match only that
        part / path. ``commit=True``: the request is carried out, then its
        answer is replaced (a lost response). ``times=None``: until
        :meth:`clear_faults`. Nothing is stored unless ``commit``.
        """
        if route != "*" and route not in ROUTES:
            raise ValueError(f"route must be '*' or one of {ROUTES}")
        fault = _Fault(
            route,
            int(status),
            times,
            code=code,
            msg=msg,
            retry_after=retry_after,
            part_id=None if part_id is None else int(part_id),
            key=None if key is None else self._locate(key, None)[1],
            commit=commit,
        )
        self._arm(fault)

    def _fault_point(self, call: _Call, routes: Sequence[str], key: str, part_id: Optional[int] = None) -> None:
        """Raise :class:`_Injected` for a matching fault (or note a commit one on ``call``)."""
        with self._lock:
            fault: Optional[_Fault] = self._use_fault_locked(
                lambda f: (
                    (f.route == "*" or f.route in routes)
                    and (f.part_id is None or (f.part_id == part_id and "part" in routes))
                    and (f.key is None or f.key == key)
                )
            )
        if fault is None:
            return
        log.info("%s %s: injected %r", call.method, call.uri, fault)
        if not fault.commit:
            raise _Injected(fault)
        if call.commit_fault is None:
            call.commit_fault = fault

    # ----------------------------------------------------------------- counters

    @property
    def part_log(self) -> List[Tuple[str, int, int, int]]:
        """``(uuid, part id, status, body bytes received)`` of every request with a part, in order
        (status 0: no answer, the connection was dropped or cut off)."""
        with self._lock:
            return list(self._part_log)

    def part_receipts(self, uuid: Optional[str] = None) -> Dict[int, int]:
        """Part id -> how many times a body for it arrived in full (whatever the answer),
        for one upload or summed over all."""
        with self._lock:
            total: Counter[int] = collections.Counter()
            for upload, counts in self._receipts.items():
                if uuid is None or upload == uuid:
                    total.update(counts)
            return dict(total)

    def reset_counters(self) -> None:
        """Zero the request counters and the part log."""
        with self._lock:
            self._requests.clear()
            self._part_log.clear()
            self._receipts.clear()

    def _finished(self, call: _Call, status: int) -> None:
        if call.part is None:
            return
        upload, part_id, expected = call.part
        received = call.body.received
        with self._lock:
            self._part_log.append((upload, part_id, status, received))
            if call.body.done and received == expected:
                self._receipts.setdefault(upload, collections.Counter())[part_id] += 1

    # --------------------------------------------------------------------- auth

    def _check_access(self, service: str, operator: str) -> str:
        """The operator's password, if it may use the service."""
        if service not in self._services:
            raise _Refusal(401, 40100012, "bucket not exist")
        password = self._operators.get(operator)
        if password is None:
            raise _Refusal(401, 40100006, "user not exists")
        allowed = self._permissions.get(service)
        if allowed is not None and operator not in allowed:
            raise _Refusal(401, 40100017, "user need permission")
        return password

    def _signed_date(self, call: _Call) -> str:
        date = call.header("X-Date") or call.header("Date")
        if not date:
            raise _Refusal(401, 40100001, "need date header")
        when = signing.parse_http_date(date)
        if when is None:
            raise _Refusal(401, 40100016, "invalid date value in header")
        if abs(self.clock() - when) > signing.DATE_WINDOW:
            raise _Refusal(401, 40100002, "date offset error")
        return date

    @staticmethod
    def _credentials(value: Optional[str]) -> Tuple[str, str]:
        if not value:
            raise _Refusal(401, 40100004, "need authorization header")
        if value.strip().split(" ", 1)[0].lower() != "upyun":
            raise _Refusal(401, 40100003, "unknown realm in authorization header")
        parsed = signing.parse_authorization(value)
        if parsed is None:
            raise _Refusal(401, 40100005, "signature error")
        return parsed

    def _authenticate(self, call: _Call, service: str) -> Tuple[str, str]:
        """Check a REST signature; ``(operator, password)``."""
        operator, sig = self._credentials(call.header("Authorization"))
        date = self._signed_date(call)
        password = self._check_access(service, operator)
        content_md5 = call.header("Content-MD5")
        if content_md5 is not None and not _MD5_RE.match(content_md5):
            raise _Refusal(400, 40001001, "wrong content-md5")
        canonical = signing.quote_path(unquote(call.raw_path))
        uris = {call.uri, call.raw_path, canonical, canonical + ("?" + call.query if call.query else "")}
        key_md5 = signing.password_md5(password)
        for uri in uris:
            expected = signing.signature(key_md5, call.method, uri, date, None, content_md5)
            if hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii", "replace")):
                return operator, password
        raise _Refusal(401, 40100005, "signature error")

    # --------------------------------------------------------------- dispatch

    def _answer(self, call: _Call) -> _Answer:
        """The answer to a request, faults applied (raises Drop for a dropped connection)."""
        answer: Optional[_Answer] = None
        try:
            answer = self._serve(call)
            fault = call.commit_fault
        except _Refusal as exc:
            if call.created_uuid is not None:
                exc.headers.setdefault("x-upyun-multi-uuid", call.created_uuid)
            answer = self._refusal(call, exc)
            fault = call.commit_fault
        except _Injected as injected:
            fault = injected.fault
        if fault is None and answer is not None:
            return answer
        assert fault is not None
        if answer is not None and answer.stream is not None:
            answer.stream[0].close()
        if fault.status == 0:
            call.body.drain()
            raise Drop()
        refusal = _Refusal(fault.status, fault.code, fault.msg)
        if fault.retry_after is not None:
            refusal.headers["Retry-After"] = f"{fault.retry_after:g}"
        return self._refusal(call, refusal)

    @staticmethod
    def _refusal(call: _Call, exc: _Refusal) -> _Answer:
        log.debug("%s %s -> %s %s %s", call.method, call.uri, exc.status, exc.code, exc.msg)
        return _json_answer(exc.status, {"msg": exc.msg, "code": exc.code, "id": call.request_id}, exc.headers)

    def _serve(self, call: _Call) -> _Answer:
        try:
            path = unquote(call.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise _bad("the path is not UTF-8") from None
        first, _, rest = path.lstrip("/").partition("/")
        if first in RESERVED:
            return self._api(call, first)
        if not first:
            raise _Refusal(400, 40000003, "need bucket name")
        service = first
        key = _normalise_key(rest)
        method = call.method
        if method == "PUT":
            if call.header("X-Upyun-Multi-Stage") is not None:
                return self._multipart(call, service, key)
            if call.header("X-Upyun-Move-Source") is not None or call.header("X-Upyun-Copy-Source") is not None:
                return self._move_copy(call, service, key)
            return self._put(call, service, key)
        if method == "GET" and call.header("X-Upyun-Multi-Uuid") is not None:
            return self._multi_query(call, service, key)
        if method == "GET" and "usage" in call.query_fields():
            return self._usage(call, service)
        if method == "GET":
            return self._get(call, service, key)
        if method == "HEAD":
            return self._head(call, service, key)
        if method == "DELETE":
            if call.header("X-Upyun-Multi-Uuid") is not None:
                return self._multi_cancel(call, service, key)
            return self._delete(call, service, key)
        if method == "POST":
            if call.flag("Folder") or call.flag("x-upyun-folder"):
                return self._mkdir(call, service, key)
            if not key:
                return self._form(call, service)
        if method == "PATCH":
            return self._metadata(call, service, key)
        raise _Refusal(405, 40500000, f"{method} is not allowed here")

    def _api(self, call: _Call, name: str) -> _Answer:
        wanted = {"purge": "POST", "pretreatment": "POST", "status": "GET", "result": "GET"}[name]
        if call.method != wanted:
            raise _Refusal(405, 40500000, f"/{name}/ takes {wanted}")
        if name == "purge":
            return self._purge(call)
        if name == "pretreatment":
            return self._pretreat(call)
        return self._task_query(call, name)

    # ----------------------------------------------------------------- storage

    def _tmp_path(self) -> Path:
        return self.directory / "tmp" / f"{uuidlib.uuid4().hex}.tmp"

    def _receive(self, body: Body, target: Path, limit: Optional[int] = None) -> Tuple[int, str]:
        """Stream the body to ``target``: (size, md5 hex); stops reading past ``limit`` bytes."""
        digest = hashlib.md5()
        size = 0
        with open(target, "wb") as out:
            for block in body.blocks():
                size += len(block)
                if limit is not None and size > limit:
                    break
                digest.update(block)
                out.write(block)
        return size, digest.hexdigest()

    def _check_body_md5(self, call: _Call, md5: str) -> None:
        declared = call.header("Content-MD5")
        if declared is not None and declared.lower() != md5:
            raise _Refusal(403, 40300007, "content md5 not match")

    def _ensure_parents_locked(self, service: str, key: str, now: float) -> None:
        segments = key.split("/")[:-1]
        for i in range(len(segments)):
            folder = "/".join(segments[: i + 1])
            path = self._path(service, folder)
            if path.is_dir():
                continue
            if path.exists():
                raise _dir_conflict()
            path.mkdir()
            self._folder_times[(service, folder)] = now

    def _place(self, service: str, key: str, source: Path, record: _File) -> bool:
        """Move a received file to ``key``; whether it replaced one."""
        with self._lock:
            target = self._path(service, key)
            if target.is_dir():
                raise _dir_conflict()
            self._ensure_parents_locked(service, key, record.mtime)
            existed = target.is_file()
            os.replace(source, target)
            self._files[(service, key)] = record
        return existed

    def _file_headers(self, record: _File) -> Dict[str, str]:
        headers = {
            "Content-Type": record.content_type,
            "Content-MD5": record.md5,
            "ETag": f'"{record.md5}"',
            "Last-Modified": signing.http_date(record.mtime),
        }
        headers.update(record.meta)
        return headers

    @staticmethod
    def _secret(call: _Call) -> Optional[str]:
        secret = call.header("Content-Secret")
        if secret is not None and not _SECRET_RE.match(secret):
            raise _Refusal(403, 40300016, "content-secret only accept [a-zA-Z0-9]")
        return secret

    # ---------------------------------------------------------------- REST verbs

    def _put(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("put")
        self._authenticate(call, service)
        if not key:
            raise _dir_conflict()
        secret = self._secret(call)
        self._fault_point(call, ("put",), key)
        tmp = self._tmp_path()
        try:
            size, md5 = self._receive(call.body, tmp)
            self._check_body_md5(call, md5)
            record = _File(
                call.header("Content-Type") or _content_type_for(key),
                size,
                md5,
                self.clock(),
                call.meta_headers(),
                secret,
            )
            image = _image_info(tmp)
            self._place(service, key, tmp, record)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.debug("put %s/%s: %d bytes", service, key, size)
        headers = {"ETag": f'"{md5}"'}
        if image is not None:
            width, height, frames, kind = image
            headers.update(
                {
                    "x-upyun-width": str(width),
                    "x-upyun-height": str(height),
                    "x-upyun-frames": str(frames),
                    "x-upyun-file-type": kind,
                }
            )
        return _Answer(200, headers)

    def _get(self, call: _Call, service: str, key: str) -> _Answer:
        path = self._path(service, key) if service in self._services else None
        route = "list" if path is not None and path.is_dir() else "get"
        self._count(route)
        self._authenticate(call, service)
        self._fault_point(call, (route,), key)
        if route == "list":
            return self._list(call, service, key)
        with self._lock:
            record = self._files.get((service, key))
            if record is None or path is None or not path.is_file():
                raise _not_found()
            record = record.copy()
            handle = open(path, "rb")
        try:
            size = record.size
            start, end = 0, size
            headers = self._file_headers(record)
            headers["Accept-Ranges"] = "bytes"
            status = 200
            range_header = call.header("Range")
            if range_header:
                parsed = parse_range(range_header, size)
                if not isinstance(parsed, tuple):
                    raise _Refusal(400, 40001161, "wrong range")
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            headers["Content-Length"] = str(end - start)
        except BaseException:
            handle.close()
            raise
        return _Answer(status, headers, stream=(cast(BinaryIO, handle), start, end))

    def _list(self, call: _Call, service: str, key: str) -> _Answer:
        limit = min(_int_header(call.header("X-List-Limit"), "x-list-limit", default=100), _MAX_LIST)
        if limit < 1:
            raise _bad("x-list-limit must be >= 1")
        order = (call.header("X-List-Order") or "asc").lower()
        if order not in ("asc", "desc"):
            raise _Refusal(403, 40300014, "order must be asc or desc")
        token = call.header("X-List-Iter") or ""
        entries: List[Tuple[str, bool, int, int, str]] = []  # name, folder?, size, mtime, type
        if token != LIST_END:
            after = _decode_iter(token) if token else None
            with self._lock:
                folder = self._path(service, key)
                if not folder.is_dir():
                    raise _not_found()
                with os.scandir(folder) as scan:
                    names = [entry.name for entry in scan]
                for name in names:
                    child = f"{key}/{name}" if key else name
                    path = folder / name
                    if path.is_dir():
                        mtime = self._folder_times.get((service, child), path.stat().st_mtime)
                        entries.append((name, True, 0, int(mtime), "folder"))
                        continue
                    record = self._files.get((service, child))
                    if record is not None:
                        entries.append((name, False, record.size, int(record.mtime), record.content_type))
            entries.sort(key=lambda e: e[0], reverse=order == "desc")
            if after is not None:
                entries = [e for e in entries if (e[0] > after if order == "asc" else e[0] < after)]
        page, more = entries[:limit], len(entries) > limit
        next_token = _encode_iter(page[-1][0]) if more else LIST_END
        if "application/json" in (call.header("Accept") or "").lower():
            files = [{"type": e[4], "length": e[2], "name": e[0], "last_modified": e[3]} for e in page]
            return _json_answer(200, {"files": files, "iter": next_token}, {"x-upyun-list-iter": next_token})
        text = "\n".join(f"{e[0]}\t{'F' if e[1] else 'N'}\t{e[2]}\t{e[3]}" for e in page)
        return _Answer(
            200,
            {"Content-Type": "text/plain; charset=utf-8", "x-upyun-list-iter": next_token},
            text.encode("utf-8", "surrogateescape"),
        )

    def _usage(self, call: _Call, service: str) -> _Answer:
        self._count("usage")
        self._authenticate(call, service)
        self._fault_point(call, ("usage",), "")
        with self._lock:
            total = sum(r.size for (s, _), r in self._files.items() if s == service)
        return _Answer(200, {"Content-Type": "text/plain; charset=utf-8"}, str(total).encode("ascii"))

    def _head(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("head")
        self._authenticate(call, service)
        self._fault_point(call, ("head",), key)
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                mtime = self._folder_times.get((service, key), path.stat().st_mtime)
                return _Answer(
                    200,
                    {"x-upyun-file-type": "folder", "x-upyun-file-size": "0", "x-upyun-file-date": str(int(mtime))},
                )
            record = self._files.get((service, key))
            if record is None or not path.is_file():
                raise _not_found()
            headers = self._file_headers(record)
        headers.update(
            {
                "x-upyun-file-type": "file",
                "x-upyun-file-size": str(record.size),
                "x-upyun-file-date": str(int(record.mtime)),
            }
        )
        return _Answer(200, headers)

    def _delete(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("delete")
        self._authenticate(call, service)
        self._fault_point(call, ("delete",), key)
        if not key:
            raise _Refusal(403, 40300011, "has no permission to delete")
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    raise _Refusal(403, 40300005, "directory not empty") from None
                self._folder_times.pop((service, key), None)
            elif path.is_file():
                path.unlink()
                self._files.pop((service, key), None)
            else:
                raise _not_found()
        log.debug("delete %s/%s", service, key)
        return _Answer(200)

    def _mkdir(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("mkdir")
        self._authenticate(call, service)
        self._fault_point(call, ("mkdir",), key)
        now = self.clock()
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                raise _Refusal(406, 40600002, "folder already exists")
            if path.exists():
                raise _dir_conflict()
            self._ensure_parents_locked(service, key, now)
            path.mkdir()
            self._folder_times[(service, key)] = now
        return _Answer(200)

    def _move_copy(self, call: _Call, service: str, key: str) -> _Answer:
        moving = call.header("X-Upyun-Move-Source") is not None
        route = "move" if moving else "copy"
        self._count(route)
        self._authenticate(call, service)
        source = call.header("X-Upyun-Move-Source" if moving else "X-Upyun-Copy-Source") or ""
        directive = (call.header("X-Upyun-Metadata-Directive") or "copy").lower()
        if directive not in ("copy", "replace"):
            raise _bad("x-upyun-metadata-directive must be copy or replace")
        source_service, _, source_rest = source.lstrip("/").partition("/")
        if not source.startswith("/") or source_service != service:
            raise _Refusal(400, 40000042, "bad source")
        try:
            source_key = _normalise_key(source_rest)
            if not self._path(service, source_key).exists() and unquote(source_rest) != source_rest:
                source_key = _normalise_key(unquote(source_rest))
        except _Refusal:
            raise _Refusal(400, 40000042, "bad source") from None
        if not source_key or not key:
            raise _Refusal(400, 40000042, "bad source")
        if source_key == key:
            raise _Refusal(400, 40000041, "source equals target")
        self._fault_point(call, (route,), key)
        tmp = self._tmp_path()
        try:
            with self._lock:
                path = self._path(service, source_key)
                if path.is_dir():
                    raise _Refusal(400, 40000042, "bad source")
                found = self._files.get((service, source_key))
                if found is None or not path.is_file():
                    raise _not_found()
                record = found.copy()
                if moving:
                    os.replace(path, tmp)
                    del self._files[(service, source_key)]
                else:
                    handle = open(path, "rb")
            if not moving:
                with handle, open(tmp, "wb") as out:
                    shutil.copyfileobj(handle, out, BLOCK)
            if directive == "replace":
                record.meta = call.meta_headers()
                record.content_type = call.header("Content-Type") or record.content_type
            record.mtime = self.clock()
            try:
                self._place(service, key, tmp, record)
            except _Refusal:
                if moving:  # put the source back
                    with self._lock:
                        os.replace(tmp, path)
                        self._files[(service, source_key)] = found
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return _Answer(200)

    def _metadata(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("metadata")
        self._authenticate(call, service)
        how = call.query_fields().get("metadata", "")
        if how not in ("merge", "replace", "delete"):
            raise _bad("?metadata= must be merge, replace or delete")
        self._fault_point(call, ("metadata",), key)
        given = call.meta_headers()
        with self._lock:
            if self._path(service, key).is_dir():
                raise _Refusal(403, 40300015, "path is not a file, maybe a directory")
            record = self._files.get((service, key))
            if record is None:
                raise _not_found()
            if how == "merge":
                record.meta.update(given)
            elif how == "replace":
                record.meta = given
            else:
                for name in given:
                    record.meta.pop(name, None)
        return _Answer(200)

    # ---------------------------------------------------------------- multipart

    def _lookup(self, call: _Call, service: str, key: str, *, completed: bool = False) -> _Multi:
        """The upload of the request's uuid (a completed one only if ``completed``)."""
        upload_id = call.header("X-Upyun-Multi-Uuid") or ""
        now = self.clock()
        with self._lock:
            record = self._multis.get(upload_id)
            if record is not None and now - record.created > MULTI_LIFETIME:
                self._forget_locked(record)
                record = None
            if record is None or record.gone or record.service != service or record.key != key:
                raise _multi_error(40011058)
            if record.completed and not completed:
                raise _multi_error(40011059)
            return record

    def _forget_locked(self, record: _Multi) -> None:
        record.gone = True
        self._multis.pop(record.uuid, None)
        shutil.rmtree(self.directory / "multipart" / record.uuid, ignore_errors=True)

    def _multipart(self, call: _Call, service: str, key: str) -> _Answer:
        stages = [s.strip().lower() for s in (call.header("X-Upyun-Multi-Stage") or "").split(",") if s.strip()]
        if not stages or any(s not in _STAGES for s in stages) or stages != sorted(set(stages), key=_STAGES.index):
            raise _bad("x-upyun-multi-stage must be initiate, upload and/or complete, in that order")
        routes = tuple({"initiate": "initiate", "upload": "part", "complete": "complete"}[s] for s in stages)
        self._count(*routes)
        self._authenticate(call, service)
        part_id: Optional[int] = None
        if "upload" in stages:
            text = call.header("X-Upyun-Part-Id")
            part_id = int(text) if text is not None and text.lstrip("-").isdigit() else None
        if "initiate" in stages:
            self._fault_point(call, routes, key, part_id)
            record = self._initiate(call, service, key)
        else:
            record = self._lookup(call, service, key, completed=True)
            if part_id is not None and 0 <= part_id < record.total:
                call.part = (record.uuid, part_id, record.part_length(part_id))  # logged, whatever comes
            self._fault_point(call, routes, key, part_id)
            if record.completed:
                raise _multi_error(40011059)
        headers = {"x-upyun-multi-uuid": record.uuid}
        if "upload" in stages:
            self._upload_part(call, record, part_id)
        if "complete" in stages:
            status, done = self._complete(call, record)
            headers.update(done)
            return _Answer(status, headers)
        with self._lock:
            headers["x-upyun-next-part-id"] = str(record.next_part_id())
        return _Answer(204, headers)

    def _initiate(self, call: _Call, service: str, key: str) -> _Multi:
        length = _int_header(call.header("X-Upyun-Multi-Length"), "x-upyun-multi-length")
        part_size = _int_header(call.header("X-Upyun-Multi-Part-Size"), "x-upyun-multi-part-size", default=MiB)
        if length < 0:
            raise _bad("x-upyun-multi-length must be >= 0")
        if part_size < MiB or part_size > MAX_PART_SIZE or part_size % MiB:
            raise _bad("x-upyun-multi-part-size must be a multiple of 1 MiB, at most 50 MiB")
        if not key or self._path(service, key).is_dir():
            raise _dir_conflict()
        record = _Multi(
            uuid=str(uuidlib.uuid4()),
            service=service,
            key=key,
            length=length,
            part_size=part_size,
            content_type=call.header("X-Upyun-Multi-Type") or _content_type_for(key),
            disorder=call.flag("X-Upyun-Multi-Disorder"),
            meta=call.meta_headers(),
            secret=self._secret(call),
            created=self.clock(),
        )
        (self.directory / "multipart" / record.uuid).mkdir(parents=True)
        with self._lock:
            self._multis[record.uuid] = record
        call.created_uuid = record.uuid
        log.debug("initiate %s for %s/%s: %d bytes, parts of %d", record.uuid, service, key, length, part_size)
        return record

    def _upload_part(self, call: _Call, record: _Multi, part_id: Optional[int]) -> None:
        with self._lock:
            following = record.next_part_id()
            if part_id is None or not 0 <= part_id < record.total:
                raise _multi_error(40011061, following)
            if not record.disorder:
                if following == -1:
                    raise _multi_error(40011062)
                if part_id != following:
                    raise _multi_error(40011061, following)
        expected = record.part_length(part_id)
        call.part = (record.uuid, part_id, expected)
        if call.body.length is not None and call.body.length != expected:
            raise _Refusal(403, 40300030, "wrong content-length")
        tmp = self._tmp_path()
        try:
            size, md5 = self._receive(call.body, tmp, expected)
            if size != expected:
                raise _Refusal(403, 40300030, "wrong content-length")
            self._check_body_md5(call, md5)
            with record.lock, self._lock:
                if record.gone:
                    raise _multi_error(40011058)
                if record.completed:
                    raise _multi_error(40011059)
                os.replace(tmp, self.directory / "multipart" / record.uuid / str(part_id))
                record.parts[part_id] = (size, md5)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _complete(self, call: _Call, record: _Multi) -> Tuple[int, Dict[str, str]]:
        with record.lock:
            with self._lock:
                if record.gone:
                    raise _multi_error(40011058)
                if record.completed:
                    raise _multi_error(40011059)
                missing = record.next_part_id()
                if missing != -1:
                    raise _multi_error(40011061, missing)
            parts = self.directory / "multipart" / record.uuid
            tmp = self._tmp_path()
            digest = hashlib.md5()
            try:
                with open(tmp, "wb") as out:
                    for part_id in range(record.total):
                        with open(parts / str(part_id), "rb") as handle:
                            for block in iter(lambda: handle.read(BLOCK), b""):  # noqa: B023 - used at once
                                digest.update(block)
                                out.write(block)
                md5 = digest.hexdigest()
                declared = call.header("X-Upyun-Multi-MD5")
                if declared and declared.lower() != md5:
                    with self._lock:
                        self._forget_locked(record)
                    raise _multi_error(40011060)
                file = _File(record.content_type, record.length, md5, self.clock(), record.meta, record.secret)
                replaced = self._place(record.service, record.key, tmp, file)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            with self._lock:
                record.completed = True
                shutil.rmtree(parts, ignore_errors=True)
        log.debug("complete %s: %s/%s, %d bytes", record.uuid, record.service, record.key, record.length)
        return (204 if replaced else 201), {
            "x-upyun-multi-type": record.content_type,
            "x-upyun-multi-length": str(record.length),
            "Content-MD5": md5,
        }

    def _multi_query(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("query")
        self._authenticate(call, service)
        self._fault_point(call, ("query",), key)
        record = self._lookup(call, service, key)
        with self._lock:
            parts = sorted(record.parts.items())
            following = record.next_part_id()
        if call.flag("X-Upyun-Multi-Info"):
            return _Answer(
                200,
                {
                    "X-Upyun-Multi-Uuid": record.uuid,
                    "X-Upyun-Next-Part-Id": str(following),
                    "X-Upyun-Multi-Length": str(record.length),
                    "X-Upyun-Multi-Part-Size": str(record.part_size),
                    "X-Upyun-Multi-Type": record.content_type,
                    "X-Upyun-Multi-Disorder": "true" if record.disorder else "false",
                },
            )
        return _json_answer(200, {"parts": [{"id": i, "size": size, "etag": md5} for i, (size, md5) in parts]})

    def _multi_cancel(self, call: _Call, service: str, key: str) -> _Answer:
        self._count("cancel")
        self._authenticate(call, service)
        self._fault_point(call, ("cancel",), key)
        record = self._lookup(call, service, key)
        with record.lock, self._lock:
            if record.completed:
                raise _multi_error(40011059)
            self._forget_locked(record)
        return _Answer(204)

    # --------------------------------------------------------------------- FORM

    def _form(self, call: _Call, service: str) -> _Answer:
        self._count("form")
        content_type = call.header("Content-Type") or ""
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if not content_type.lower().startswith("multipart/form-data") or match is None:
            raise _Refusal(415, 41500001, "media type error, need content-type")
        fields: Dict[str, str] = {}
        tmp = self._tmp_path()
        got_file: Optional[Tuple[str, int, str]] = None  # file name, size, md5
        try:
            try:
                for part, content in _FormReader(call.body, match.group(1)).parts():
                    if part.name == "file" and got_file is None:
                        digest = hashlib.md5()
                        size = 0
                        with open(tmp, "wb") as out:
                            for block in content:
                                digest.update(block)
                                size += len(block)
                                out.write(block)
                        got_file = (part.filename or "", size, digest.hexdigest())
                    elif part.name != "file":
                        value = b""
                        for block in content:
                            value += block
                            if len(value) > _MAX_FIELD:
                                raise _bad(f"form field {part.name!r} too long")
                        fields[part.name] = value.decode("utf-8", "replace")
            except _FormError as exc:
                raise _Refusal(400, 40000002, f"malformed multipart body: {exc}") from None
            return self._form_store(call, service, fields, tmp, got_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _form_store(
        self, call: _Call, service: str, fields: Mapping[str, str], tmp: Path, got_file: Optional[Tuple[str, int, str]]
    ) -> _Answer:
        policy_text = fields.get("policy")
        if not policy_text:
            raise _Refusal(400, 40000007, "need policy")
        operator, sig = self._credentials(fields.get("authorization") or call.header("Authorization"))
        try:
            policy = json.loads(base64.b64decode(policy_text.encode("ascii"), validate=True).decode("utf-8"))
        except (ValueError, UnicodeError, binascii.Error):
            raise _Refusal(400, 40000009, "decode policy error") from None
        if not isinstance(policy, dict):
            raise _Refusal(400, 40000009, "decode policy error")
        bucket = policy.get("bucket") or policy.get("service")
        if bucket != service:
            raise _Refusal(400, 40000003, "need bucket name" if not bucket else "bucket name not match")
        password = self._check_access(service, operator)
        date = str(policy.get("date") or call.header("X-Date") or call.header("Date") or "")
        content_md5 = policy.get("content-md5")
        content_md5 = str(content_md5) if content_md5 else None
        key_md5 = signing.password_md5(password)
        signed = any(
            hmac.compare_digest(
                signing.signature(key_md5, "POST", uri, date, policy_text, content_md5).encode("ascii"),
                sig.encode("ascii", "replace"),
            )
            for uri in (f"/{service}", f"/{service}/")
        )
        if not signed:
            raise _Refusal(401, 40100005, "signature error")
        expiration = policy.get("expiration")
        if expiration is None or expiration == "":
            raise _Refusal(400, 40000004, "need expiration")
        try:
            expires = int(expiration)
        except (TypeError, ValueError):
            raise _Refusal(400, 40000009, "decode policy error") from None
        if expires < self.clock():
            raise _Refusal(403, 40300006, "authorization has expired")
        template = policy.get("save-key")
        if not template or not isinstance(template, str):
            raise _Refusal(400, 40000001, "need save-key")
        self._fault_point(call, ("form",), "")
        return_url = policy.get("return-url")
        try:
            result = self._form_check_and_place(service, policy, template, tmp, got_file)
        except _Refusal as exc:
            if not return_url:
                raise
            result = {"code": exc.code, "message": exc.msg, "time": int(self.clock())}
        else:
            notify = policy.get("notify-url")
            if notify:
                body = urlencode({k: str(v) for k, v in result.items()}).encode("ascii")
                self._callback("form", str(notify), body, "application/x-www-form-urlencoded", operator, password)
        if return_url:
            location = str(return_url) + ("&" if "?" in str(return_url) else "?") + urlencode(result)
            return _Answer(302, {"Location": location})
        return _json_answer(200, result)

    def _form_check_and_place(
        self,
        service: str,
        policy: Mapping[str, Any],
        template: str,
        tmp: Path,
        got_file: Optional[Tuple[str, int, str]],
    ) -> Dict[str, Any]:
        if got_file is None:
            raise _Refusal(400, 40000005, "need file")
        filename, size, md5 = got_file
        declared = policy.get("content-md5")
        if declared and str(declared).lower() != md5:
            raise _Refusal(403, 40300007, "content md5 not match")
        bounds = policy.get("content-length-range")
        if bounds:
            try:
                low, high = (int(x) for x in str(bounds).split(","))
            except ValueError:
                raise _bad("content-length-range must be min,max") from None
            if size < low:
                raise _Refusal(403, 40300008, "file too small")
            if size > high:
                raise _Refusal(403, 40300009, "file too large")
        allowed = policy.get("allow-file-type")
        if allowed:
            kinds = {k.strip().lower().lstrip(".") for k in str(allowed).split(",") if k.strip()}
            suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
            if suffix not in kinds:
                raise _Refusal(403, 40300010, "file type error")
        secret = policy.get("content-secret")
        if secret is not None and not _SECRET_RE.match(str(secret)):
            raise _Refusal(403, 40300016, "content-secret only accept [a-zA-Z0-9]")
        now = self.clock()
        key = _normalise_key(_save_key(template, now=now, filename=filename, md5=md5))
        if not key:
            raise _Refusal(400, 40000001, "need save-key")
        meta = {str(k).lower(): str(v) for k, v in policy.items() if str(k).lower().startswith("x-upyun-meta-")}
        content_type = str(policy.get("content-type") or _content_type_for(key))
        image = _image_info(tmp)
        self._place(service, key, tmp, _File(content_type, size, md5, now, meta, secret and str(secret)))
        log.debug("form %s/%s: %d bytes", service, key, size)
        result: Dict[str, Any] = {"code": 200, "message": "ok", "url": "/" + key, "time": int(now)}
        if image is not None:
            result.update(
                {"image-width": image[0], "image-height": image[1], "image-frames": image[2], "image-type": image[3]}
            )
        if policy.get("ext-param") is not None:
            result["ext-param"] = policy["ext-param"]
        return result

    # ---------------------------------------------------------------- callbacks

    def _callback(self, kind: str, url: str, body: bytes, content_type: str, operator: str, password: str) -> None:
        record: Dict[str, Any] = {
            "kind": kind, "url": url, "body": body, "headers": {}, "done": False, "status": None, "error": None,
        }  # fmt: skip
        split = urlsplit(url)
        if split.scheme != "http" or split.hostname not in _LOOPBACK:
            record.update(done=True, error="not sent: only http://127.0.0.1, localhost or [::1] URLs are called")
            with self._lock:
                self._callbacks.append(record)
            return
        thread = threading.Thread(
            target=self._deliver,
            args=(record, content_type, operator, password),
            name=f"UpyunServer-callback-{len(self._callbacks) + 1}",
            daemon=True,
        )
        with self._lock:
            self._callbacks.append(record)
            self._callback_threads = [t for t in self._callback_threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, record: Dict[str, Any], content_type: str, operator: str, password: str) -> None:
        split = urlsplit(record["url"])
        uri = (split.path or "/") + ("?" + split.query if split.query else "")
        body: bytes = record["body"]
        date = signing.http_date(self.clock())
        md5 = hashlib.md5(body).hexdigest()
        headers = {
            "Date": date,
            "Content-MD5": md5,
            "Content-Type": content_type,
            "Authorization": signing.authorization(operator, signing.password_md5(password), "POST", uri, date,
                                                   None, md5),
            "User-Agent": "UpyunEmulator/1.0",
        }  # fmt: skip
        status: Optional[int] = None
        error: Optional[str] = None
        connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80,
                                                timeout=self.callback_timeout)  # fmt: skip
        try:
            connection.request("POST", uri, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        log.debug("callback %s -> %s", record["url"], status or error)
        with self._callbacks_done:
            record.update(headers=headers, status=status, error=error, done=True)
            self._callbacks_done.notify_all()

    # -------------------------------------------------------------------- purge

    def _purge(self, call: _Call) -> _Answer:
        self._count("purge")
        raw = call.body.read_all(_MAX_SMALL_BODY)
        if raw is None:
            raise _bad("purge body too large")
        fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        header = call.header("Authorization")
        if not header:
            raise _Refusal(401, 40100004, "need authorization header")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "upyun":
            raise _Refusal(401, 40100003, "unknown realm in authorization header")
        pieces = rest.strip().split(":")
        if len(pieces) != 3:
            raise _Refusal(401, 40100005, "signature error")
        service, operator, digest = pieces
        date = self._signed_date(call)
        password = self._check_access(service, operator)
        urls_text = fields.get("purge")
        if urls_text is None:
            raise _bad("purge (the URLs) required")
        expected = signing.purge_authorization(service, operator, signing.password_md5(password), urls_text, date)
        wanted = expected.rpartition(":")[2].encode("ascii")
        if not hmac.compare_digest(wanted, digest.lower().encode("ascii", "replace")):
            raise _Refusal(401, 40100005, "signature error")
        self._fault_point(call, ("purge",), "")
        urls = [u.strip() for u in urls_text.split("\n") if u.strip()]
        now = self.clock()
        valid_hosts = {f"{service}.b0.upaiyun.com", *self.domains}
        with self._lock:
            recent = [(t, n) for t, n in self._purge_times.get(service, []) if now - t < 60]
            if sum(n for _, n in recent) + len(urls) > _PURGE_PER_MINUTE:
                self._purge_times[service] = recent
                raise _Refusal(406, 40600003, "too many purge urls, at most 600 a minute")
            self._purge_times[service] = recent + [(now, len(urls))]
            invalid = [u for u in urls if urlsplit(u).hostname not in valid_hosts]
            self._purged.extend(u for u in urls if u not in invalid)
        return _json_answer(200, {"invalid_domain_of_url": invalid})

    # -------------------------------------------------------------------- tasks

    def _pretreat(self, call: _Call) -> _Answer:
        self._count("pretreat")
        raw = call.body.read_all(_MAX_SMALL_BODY)
        if raw is None:
            raise _bad("request body too large")
        fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        service = fields.get("service", "")
        if not service:
            raise _bad("service required")
        operator, _ = self._authenticate(call, service)
        self._check_body_md5(call, hashlib.md5(raw).hexdigest())
        try:
            specs = json.loads(base64.b64decode(fields.get("tasks", "")).decode("utf-8"))
        except (ValueError, UnicodeError, binascii.Error):
            raise _Refusal(400, 40000009, "decode tasks error") from None
        if not isinstance(specs, list) or not 1 <= len(specs) <= _MAX_TASKS:
            raise _bad(f"tasks must be a list of 1 to {_MAX_TASKS}")
        self._fault_point(call, ("pretreat",), "")
        now = self.clock()
        made = [_Task(secrets.token_hex(16), service, operator, spec, fields, now) for spec in specs]
        with self._lock:
            self._tasks.update((t.id, t) for t in made)
        return _json_answer(200, [t.id for t in made])

    def _progress(self, task: _Task, now: float) -> int:
        if self.task_duration <= 0:
            return 100
        return max(0, min(100, int((now - task.created) * 100 / self.task_duration)))

    def _result(self, task: _Task) -> Dict[str, Any]:
        spec = task.spec if isinstance(task.spec, dict) else {}
        save_as = spec.get("save_as")
        return {
            "service": task.service,
            "status_code": 200,
            "path": [save_as] if save_as else [],
            "description": "OK",
            "task_id": task.id,
            "info": None,
            "source": task.source,
            "timestamp": int(task.created + self.task_duration),
        }

    def _task_query(self, call: _Call, name: str) -> _Answer:
        route = "status" if name == "status" else "result"
        self._count(route)
        query = call.query_fields()
        service = query.get("service", "")
        if not service:
            raise _bad("service required")
        self._authenticate(call, service)
        ids = [i.strip() for i in query.get("task_ids", "").split(",") if i.strip()]
        if not ids or len(ids) > _MAX_STATUS_IDS:
            raise _bad(f"task_ids: 1 to {_MAX_STATUS_IDS} ids")
        self._fault_point(call, (route,), "")
        now = self.clock()
        answer: Dict[str, Any] = {}
        with self._lock:
            for task_id in ids:
                task = self._tasks.get(task_id)
                if task is None or task.service != service:
                    answer[task_id] = None
                elif route == "status":
                    answer[task_id] = self._progress(task, now)
                else:
                    answer[task_id] = self._result(task) if self._progress(task, now) >= 100 else None
        return _json_answer(200, {"tasks": answer})

    def _tick(self) -> None:
        """Send the callbacks of finished tasks, until stopped."""
        while not self._ticker_stop.wait(0.05):
            now = self.clock()
            due: List[_Task] = []
            with self._lock:
                for task in self._tasks.values():
                    if not task.notified and task.notify_url and self._progress(task, now) >= 100:
                        task.notified = True
                        due.append(task)
            for task in due:
                result = self._result(task)
                if task.accept == "json":
                    body, kind = json.dumps(result).encode("utf-8"), "application/json"
                else:
                    flat = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in result.items()}
                    body, kind = urlencode(flat).encode("ascii"), "application/x-www-form-urlencoded"
                self._callback("task", task.notify_url, body, kind, task.operator, self._operators[task.operator])
