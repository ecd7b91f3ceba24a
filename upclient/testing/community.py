"""An emulator of the community multipart upload API, for tests.

:class:`CommunityServer` is a real HTTP/1.1 server (stdlib
:mod:`http.server`, keep-alive, a bounded number of connection threads) on
``127.0.0.1`` that implements every endpoint of the community multipart
protocol, as the official SDK ``community-uploader`` 1.0.1 speaks it (its
upload, dedup, resume, info, list, by-URL and delete run against it
unchanged: ``tests/test_community_sdk.py``), and stores files on disk::

    with CommunityServer(tmp_path / "community", tokens={"t0k3n"}, min_part_size=64 * 1024) as server:
        run_client(server.url, token="t0k3n")
        server.fail_part(3, status=503)          # the next PUT of part 3 answers 503
        server.expire_urls()                     # every part URL issued so far is expired
        assert server.stored_sha256(file_id) == hashlib.sha256(data).hexdigest()

API routes (JSON; envelope ``{"code": 0, "message": "ok", "data": ...}``):

=========  ===============================================  ================
init       ``POST /api/community/file/upload/init``          counter ``init``
complete   ``POST /api/community/file/upload/complete``      ``complete``
abort      ``POST /api/community/file/upload/abort``         ``abort``
info       ``GET /api/community/file/{file_id}``             ``info``
by key     ``GET /api/community/file/by-key?file_key=``      ``by_key``
list       ``GET /api/community/file?page=&page_size=...``   ``list``
delete     ``DELETE /api/community/file/{file_id}``          ``delete``
=========  ===============================================  ================

Storage routes (no API auth; errors are OSS-like XML ``<Error><Code>..``):

* ``PUT /upload/{file_id}/{part_number}?Expires=&Gen=&Signature=``: a
  presigned part URL (counter ``part``). ``Signature`` is the hex
  HMAC-SHA256, with a per-server secret, of ``"PUT\\n{path}\\n{Expires}\\n{Gen}"``.
  403 ``SignatureDoesNotMatch`` if the signature does not match (tampered
  path, expiry or generation) or if the request has a ``Content-Type``
  header (a real store signs it); 403 ``AccessDenied`` once ``clock() >
  Expires`` or after :meth:`CommunityServer.expire_urls`; 404
  ``NoSuchUpload`` if the upload is gone (completed, aborted, deleted);
  409 while the upload is being assembled; 400 ``InvalidPartSize`` unless
  the body is exactly the part's size (``Content-Length`` or chunked). The
  body is streamed to a temporary file in 1 MiB blocks with its MD5
  computed on the way, then renamed into place: a part cut off midway
  stores nothing. 200 with ``ETag: "<md5 hex>"``; sending a part again
  replaces it.
* ``GET``/``HEAD /oss/{file_key}``, ``/cdn/{file_key}``, ``/ik/{file_key}``:
  the bytes of a confirmed file (``oss_url``, ``cdn_url`` and
  ``imagekit_url`` point here), with ``Range`` (one range; 206 and
  ``Content-Range``, 416 when unsatisfiable), ``ETag``, ``Accept-Ranges``
  (counter ``download``).

Auth: ``Authorization: Bearer <token>`` with a token given to the
constructor (the user is the one ``tokens`` maps it to, or
:meth:`CommunityServer.user_for_token`), or ``X-API-Key: <key>`` with a key
given to the constructor; with an API key, ``user_id`` is required in the
bodies of init and complete (``org_id`` optional). Anything else: HTTP 401.
A bearer user may complete, abort and delete only their own uploads and
lists only their own files; an API key may act on any file and list
everything (or one user's files with ``user_id=`` in the query). Info and
by-key are open to every authenticated caller.

HTTP errors (status >= 400, body ``{"code": <status>, "message": ...,
"data": null}``, always JSON: the official SDK parses the body before it
looks at the status): 400 malformed JSON, 401 auth, 403 not the owner, 404
unknown file or route, 405 wrong method, 413 JSON body over 1 MiB.

Business errors (HTTP 200, ``code`` below, ``message``, ``data`` null unless
said; 1000 is never an error code, the SDK counts it as success):

====  ==============================================================
1001  invalid ``category`` (general, video, image, document, avatar, cover)
1002  invalid ``file_md5`` (32 lower-case hex digits)
1003  invalid ``file_ext`` (lower-case letters and digits, no dot, at most
      16; empty is allowed: the SDK sends ``""`` for a name without one)
1004  invalid ``file_size`` (an integer >= 0)
1005  invalid ``part_size`` (an integer > 0 when given)
1006  ``user_id`` missing with API-key auth (init, complete)
1007  invalid request: body not a JSON object, ``file_id`` / ``metadata`` /
      ``content_type`` / ``file_key`` missing or of the wrong type, bad
      ``page`` / ``page_size`` / ``status`` in a list query
1011  complete: parts missing (``data``: ``{"missing_parts": [n, ...]}``);
      the upload stays open
1012  complete: the assembled file's MD5 is not ``file_md5``; the upload's
      status becomes ``failed`` and its parts are dropped
1013  wrong state: complete of a failed upload, abort of a confirmed file
====  ==============================================================

Init answers (``data``):

* dedup: a confirmed, undeleted file with the same ``file_md5`` and
  ``file_size`` (whoever uploaded it) -> ``{"status": "completed",
  "file_id": ..., "file": <file object>}`` (the existing file; nothing is
  copied).
* resume: an open upload (``pending`` or ``uploading``) of the same MD5,
  size and user -> the same ``file_id`` and part layout (a new
  ``part_size`` is ignored), ``uploaded``/``etag`` per part and fresh
  presigned URLs for every part; ``status`` is ``"resuming"`` when at least
  one part is stored, else ``"pending"``.
* otherwise a new upload: ``status: "pending"``.

The non-dedup answer is ``{"file_id", "status", "file_key", "part_size",
"total_parts", "parts", "url_expires_at"}`` (epoch seconds), each part
``{"part_number", "start", "end", "size", "upload_url", "uploaded",
"etag"}`` with ``end = start + size`` (exclusive: the SDK slices
``data[start:end]`` for bytes and reads ``size`` bytes at ``start`` for
files) and ``etag`` the stored part's ETag as the PUT answered it (quoted
MD5 hex), ``null`` until stored. Complete needs no part list: the server
knows what it holds.

Part layout: part size = the requested ``part_size`` or ``default_part_size``
(8 MiB), raised to ``min_part_size`` (5 MiB by default, the object stores'
minimum for every part but the last; lower it for small test files) and
lowered to ``max_part_size`` (5 GiB), then raised if needed so there are at
most ``max_parts`` (10000) parts. Parts are numbered from 1, all of that size
but the last, which holds the rest. A 0-byte file has no parts: complete it
right away.

File object: ``id, file_key, file_size, file_type, file_ext, file_md5,
bucket, region, oss_url, imagekit_url, cdn_url, category, user_id, org_id,
status, related_type, related_id, extra_metadata, created_at, updated_at,
confirmed_at, deleted_at`` (timestamps ISO 8601 UTC ``...Z`` from
``clock``); ``file_key`` is ``community/<category>s/<yyyy>/<mm>/<id>.<ext>``
(no ``.<ext>`` when the extension is empty); status ``pending`` after init,
``uploading`` once a part is stored, ``confirmed`` after complete,
``failed`` after an MD5 mismatch. Complete of a confirmed file answers it
again (idempotent). Abort and delete are soft deletes: the record gets
``deleted_at``, its bytes are removed, info/by-key answer 404 and it leaves
the list (newest first; ``pagination: {"total", "page", "page_size",
"total_pages"}``). by-key takes a ``file_key``, an ``oss_url`` /
``cdn_url`` / ``imagekit_url``, or what the SDK's ``extract_file_key``
makes of one (``oss/community/...``).

Storage layout: parts in ``<directory>/parts/<file_id>/<n>``, confirmed files
in ``<directory>/objects/<file_key>``. State is kept in memory: it survives
:meth:`~CommunityServer.stop` / :meth:`~CommunityServer.start` (same port)
but not a new instance.

Faults (thread-safe, used up after ``times`` matches; ``times=None``: until
:meth:`~CommunityServer.clear_faults`): :meth:`~CommunityServer.fail_part`,
:meth:`~CommunityServer.fail_complete`, :meth:`~CommunityServer.fail_request`,
:meth:`~CommunityServer.expire_urls`; a ``status`` of 0 closes the connection
without an answer. Counters: :attr:`~CommunityServer.requests`,
:attr:`~CommunityServer.part_puts`, :attr:`~CommunityServer.part_bytes`,
:attr:`~CommunityServer.part_log`, and :meth:`~CommunityServer.wait_idle`
(after an aborted client run: ``disconnected=True``). Inspection:
:meth:`~CommunityServer.stored_path`, :meth:`~CommunityServer.stored_sha256`,
:meth:`~CommunityServer.uploaded_parts`, :meth:`~CommunityServer.file_object`,
:meth:`~CommunityServer.file_ids`.

``python -m upclient.testing community --port 0 --dir DIR --token TOKEN``
runs one from the command line (first stdout line: its URL).

The HTTP plumbing (body framing, bounded connection threads, start/stop)
is :mod:`upclient.testing.httpbase`, shared with the other emulators.

Nothing here prints; diagnostics go to the ``upclient.testing.community`` logger.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    Union,
    cast,
)
from urllib.parse import parse_qs, quote, unquote, urlsplit

from upclient.testing.httpbase import (
    BLOCK,
    Body,
    Drop,
    GiB,
    HTTPEmulator,
    MiB,
    PathLike,
    RequestHandler,
    file_digest,
    parse_range,
)

__all__ = [
    "CommunityServer",
    "CATEGORIES",
    "STATUSES",
    "ENDPOINTS",
    "CODE_BAD_CATEGORY",
    "CODE_BAD_MD5",
    "CODE_BAD_EXT",
    "CODE_BAD_SIZE",
    "CODE_BAD_PART_SIZE",
    "CODE_USER_REQUIRED",
    "CODE_BAD_REQUEST",
    "CODE_PARTS_MISSING",
    "CODE_MD5_MISMATCH",
    "CODE_WRONG_STATE",
]

log = logging.getLogger(__name__)

#: The categories init accepts.
CATEGORIES = ("general", "video", "image", "document", "avatar", "cover")
#: The statuses of a file object.
STATUSES = ("pending", "uploading", "confirmed", "failed")
#: Counter names of :attr:`CommunityServer.requests`.
ENDPOINTS = ("init", "part", "complete", "abort", "info", "by_key", "list", "delete", "download")

CODE_BAD_CATEGORY = 1001
CODE_BAD_MD5 = 1002
CODE_BAD_EXT = 1003
CODE_BAD_SIZE = 1004
CODE_BAD_PART_SIZE = 1005
CODE_USER_REQUIRED = 1006
CODE_BAD_REQUEST = 1007
CODE_PARTS_MISSING = 1011
CODE_MD5_MISMATCH = 1012
CODE_WRONG_STATE = 1013

API = "/api/community/file"
UPLOAD_PREFIX = "/upload/"
#: Download routes: ``oss_url``, ``cdn_url``, ``imagekit_url``.
DOWNLOAD_PREFIXES = {"oss": "oss_url", "cdn": "cdn_url", "ik": "imagekit_url"}

_MAX_JSON = 1 * MiB

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_EXT_RE = re.compile(r"^[a-z0-9]{0,16}$")


# ------------------------------------------------------------------ errors


class _ApiError(Exception):
    """An API answer other than success: HTTP status, envelope code, message."""

    def __init__(self, status: int, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data


def _business(code: int, message: str, data: Any = None) -> _ApiError:
    return _ApiError(200, code, message, data)


def _http_error(status: int, message: str) -> _ApiError:
    return _ApiError(status, status, message)


class _StoreError(Exception):
    """A storage-route answer other than success (OSS-like XML body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ------------------------------------------------------------------ records


class _Part:
    __slots__ = ("number", "start", "size", "etag")

    def __init__(self, number: int, start: int, size: int) -> None:
        self.number = number
        self.start = start
        self.size = size
        self.etag: Optional[str] = None  # md5 hex of the stored part, None until stored


class _Upload:
    """One file record: an upload in progress or a stored file."""

    def __init__(
        self,
        *,
        file_id: str,
        seq: int,
        user_id: str,
        org_id: Optional[str],
        category: str,
        file_ext: str,
        file_size: int,
        file_md5: str,
        file_type: str,
        file_key: str,
        part_size: int,
        parts: List[_Part],
        metadata: Dict[str, Any],
        now: float,
    ) -> None:
        self.id = file_id
        self.seq = seq
        self.user_id = user_id
        self.org_id = org_id
        self.category = category
        self.file_ext = file_ext
        self.file_size = file_size
        self.file_md5 = file_md5
        self.file_type = file_type
        self.file_key = file_key
        self.part_size = part_size
        self.parts = parts
        self.metadata = metadata
        self.status = "pending"
        self.created_at = now
        self.updated_at = now
        self.confirmed_at: Optional[float] = None
        self.deleted_at: Optional[float] = None
        self.assembling = False
        #: Held by complete, abort and delete: one of them at a time.
        self.lock = threading.Lock()

    @property
    def open(self) -> bool:
        """Parts may still be sent."""
        return self.deleted_at is None and self.status in ("pending", "uploading")


class _Fault:
    __slots__ = ("endpoint", "part_number", "file_id", "status", "code", "commit", "remaining")

    def __init__(
        self,
        endpoint: str,
        status: int,
        times: Optional[int],
        *,
        part_number: Optional[int] = None,
        file_id: Optional[str] = None,
        code: Optional[int] = None,
        commit: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.part_number = part_number
        self.file_id = file_id
        self.status = status
        self.code = code
        self.commit = commit
        self.remaining = times

    def __repr__(self) -> str:
        times = "forever" if self.remaining is None else f"{self.remaining}x"
        where = self.endpoint if self.part_number is None else f"part {self.part_number}"
        return f"<fault {where} status={self.status} {times}>"


class _Caller(NamedTuple):
    kind: str  # "token" or "api_key"
    user_id: Optional[str]  # the token's user; None for an API key


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Handler(RequestHandler):
    server_version = "CommunityEmulator/1.0"

    @property
    def owner(self) -> "CommunityServer":
        return cast("CommunityServer", super().owner)

    def reply_error(self, status: int, message: str) -> None:
        self.send_json(status, {"code": status, "message": message, "data": None})

    def route(self) -> None:
        path = urlsplit(self.path).path
        first = path.lstrip("/").split("/", 1)[0]
        if path.startswith(UPLOAD_PREFIX):
            self._storage(self._put_part, "part")
        elif first in DOWNLOAD_PREFIXES and path.count("/") >= 2:
            self._storage(self._download, "download")
        else:
            self._api(path)

    def _send_xml_error(self, exc: _StoreError) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{exc.code}</Code><Message>{exc.message}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:24].upper()}</RequestId></Error>\n"
        ).encode("utf-8")
        self.send(exc.status, body, {"Content-Type": "application/xml"})

    # ------------------------------------------------------------ storage routes

    def _storage(self, handler: Callable[[], None], endpoint: str) -> None:
        self.owner._count(endpoint)
        try:
            handler()
        except _StoreError as exc:
            log.debug("%s %s -> %s %s", self.command, self.path, exc.status, exc.code)
            self._send_xml_error(exc)

    def _put_part(self) -> None:
        owner = self.owner
        if self.command != "PUT":
            raise _StoreError(405, "MethodNotAllowed", "part URLs take PUT")
        split = urlsplit(self.path)
        segments = split.path[len(UPLOAD_PREFIX):].split("/")
        file_id = segments[0] if segments else ""
        number = int(segments[1]) if len(segments) == 2 and segments[1].isdigit() else 0
        status = 0  # no answer (connection dropped or cut off), until known
        try:
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            owner._check_signature("PUT", split.path, query)
            if self.headers.get("Content-Type") is not None:
                raise _StoreError(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided "
                    "(a Content-Type header is not part of the signed request)",
                )
            owner._check_expiry(query)
            part, fault = owner._part_for_put(file_id, number)
            if fault is not None:
                self.body.drain()
                if fault.status == 0:
                    raise Drop()
                raise _StoreError(fault.status, "InjectedFault", f"injected failure of part {number}")
            if self.body.length is not None and self.body.length != part.size:
                raise _StoreError(
                    400, "InvalidPartSize", f"part {number} is {part.size} bytes, the body has {self.body.length}"
                )
            etag = owner._store_part(file_id, part, self.body)
            status = 200
        except _StoreError as exc:
            status = exc.status
            raise
        finally:
            owner._log_part(file_id, number, status, self.body.received)
        self.send(200, b"", {"ETag": f'"{etag}"'})

    def _download(self) -> None:
        if self.command not in ("GET", "HEAD"):
            raise _StoreError(405, "MethodNotAllowed", "downloads take GET or HEAD")
        path = unquote(urlsplit(self.path).path)
        key = path.lstrip("/").split("/", 1)[1] if "/" in path.lstrip("/") else ""
        owner = self.owner
        fault = owner._take_fault("download")
        if fault is not None:
            if fault.status == 0:
                raise Drop()
            raise _StoreError(fault.status, "InjectedFault", "injected failure of a download")
        record = owner._stored_by_key(key)
        if record is None:
            raise _StoreError(404, "NoSuchKey", "The specified key does not exist.")
        stored = owner._object_path(record)
        size = stored.stat().st_size
        start, end, partial = 0, size, False  # end exclusive
        range_header = self.headers.get("Range")
        if range_header:
            parsed = parse_range(range_header, size)
            if parsed == "unsatisfiable":
                self.send(
                    416,
                    b"",
                    {"Content-Range": f"bytes */{size}", "Content-Length": "0", "Accept-Ranges": "bytes"},
                )
                return
            if isinstance(parsed, tuple):
                start, end = parsed
                partial = True
        headers = {
            "Content-Type": record.file_type,
            "Content-Length": str(end - start),
            "Accept-Ranges": "bytes",
            "ETag": f'"{record.file_md5}"',
            "Last-Modified": self.date_time_string(record.confirmed_at or record.updated_at),
        }
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send(206 if partial else 200, b"", headers)
        if self.command == "HEAD":
            return
        with open(stored, "rb") as handle:
            self.stream_file(handle, start, end)

    # ---------------------------------------------------------------- API routes

    def _api(self, path: str) -> None:
        route = _route(self.command, path)
        if route is None:
            self.send_json(404, {"code": 404, "message": f"no route for {path}", "data": None})
            return
        endpoint, arg = route
        if endpoint == "method":
            self.send_json(405, {"code": 405, "message": f"{self.command} is not allowed on {path}", "data": None})
            return
        owner = self.owner
        owner._count(endpoint)
        fault = owner._take_fault(endpoint)
        if fault is not None and not fault.commit:
            self._injected(endpoint, fault)
            return
        try:
            caller = owner._authenticate(self.headers)
            handler = getattr(owner, f"_api_{endpoint}")
            if self.command in ("POST", "PUT"):
                data = handler(caller, self._json_body())
            else:
                data = handler(caller, arg, {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()})
            answer: Tuple[int, Dict[str, Any]] = (200, {"code": 0, "message": "ok", "data": data})
        except _ApiError as exc:
            answer = (exc.status, {"code": exc.code, "message": exc.message, "data": exc.data})
        if fault is not None:  # commit=True: the call took effect, its answer is replaced
            self._injected(endpoint, fault)
            return
        if answer[0] >= 400 or answer[1]["code"] != 0:
            log.debug("%s %s -> %s %s", self.command, self.path, answer[0], answer[1])
        self.send_json(*answer)

    def _injected(self, endpoint: str, fault: _Fault) -> None:
        log.info("%s %s: injected answer %s", self.command, self.path, fault.status or "(connection closed)")
        if fault.status == 0:
            self.body.drain()
            raise Drop()
        code = fault.code if fault.code is not None else fault.status
        self.send_json(fault.status, {"code": code, "message": f"injected failure of {endpoint}", "data": None})

    def _json_body(self) -> Any:
        raw = self.body.read_all(_MAX_JSON)
        if raw is None:
            self.close_connection = True
            raise _http_error(413, "request body too large")
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _http_error(400, f"malformed JSON: {exc}") from None


def _route(method: str, path: str) -> Optional[Tuple[str, str]]:
    """``(endpoint, argument)``, ``("method", "")`` for a known path with the wrong method, or None."""
    if path.endswith("/") and path != "/":
        path = path.rstrip("/")
    if not path.startswith(API):
        return None
    rest = path[len(API):]
    table = {
        "/upload/init": ("POST", "init"),
        "/upload/complete": ("POST", "complete"),
        "/upload/abort": ("POST", "abort"),
        "/by-key": ("GET", "by_key"),
        "": ("GET", "list"),
    }
    if rest in table:
        wanted, endpoint = table[rest]
        return (endpoint, "") if method == wanted else ("method", "")
    if rest.startswith("/upload/"):
        return None
    if rest.count("/") == 1 and len(rest) > 1:
        file_id = unquote(rest[1:])
        if method in ("GET", "HEAD"):
            return "info", file_id
        if method == "DELETE":
            return "delete", file_id
        return "method", ""
    return None


# ------------------------------------------------------------------ the server


class CommunityServer(HTTPEmulator):
    """An emulator of the community multipart API on ``127.0.0.1`` (see the module docstring).

    :param directory: where parts and files are stored (created if needed);
        ``None`` makes a temporary directory that :meth:`close` removes.
    :param tokens: accepted bearer tokens: an iterable (each token's user is
        :meth:`user_for_token`) or a mapping token -> user id (several
        tokens may map to one user, as with rotating tokens).
    :param api_keys: accepted ``X-API-Key`` values.
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (kept across :meth:`stop` / :meth:`start`).
    :param default_part_size: the part size when init does not ask for one.
    :param min_part_size: requested part sizes below this are raised to it
        (every part but the last is at least this big).
    :param max_part_size: requested part sizes above this are lowered to it.
    :param max_parts: the most parts one upload may have (the part size
        grows to keep to it).
    :param url_lifetime: seconds a presigned part URL stays valid.
    :param clock: returns the time in epoch seconds (expiry, timestamps,
        file keys); inject one to move time forward in tests.
    :param secret: the HMAC key of part URLs (default: random).
    :param bucket, region: reported in file objects.
    :param max_connections: the most connections served at once (one thread
        each); more wait in the listen backlog.
    :param idle_timeout: seconds a connection may stay silent (idle
        keep-alive, or a stalled body) before it is closed.
    :param public_url: the base URL (``http://host:port``, no path) put in
        every URL the emulator hands out (part upload URLs, ``oss_url``,
        ``cdn_url``, ``imagekit_url``) instead of :attr:`url`, so clients
        reach them through a proxy in front of it; ``None``: :attr:`url`.

    All methods are thread-safe.
    """

    handler_class = _Handler
    log = log

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        tokens: Union[Iterable[str], Mapping[str, str]] = (),
        api_keys: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        default_part_size: int = 8 * MiB,
        min_part_size: int = 5 * MiB,
        max_part_size: int = 5 * GiB,
        max_parts: int = 10000,
        url_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        secret: Optional[bytes] = None,
        bucket: str = "community-emulator",
        region: str = "local",
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        public_url: Optional[str] = None,
    ) -> None:
        if isinstance(tokens, str):
            tokens = [tokens]
        if isinstance(api_keys, str):
            api_keys = [api_keys]
        if isinstance(tokens, Mapping):
            self._tokens: Dict[str, str] = {str(t): str(u) for t, u in tokens.items()}
        else:
            self._tokens = {str(t): self.user_for_token(str(t)) for t in tokens}
        self._api_keys = {str(k) for k in api_keys}
        if not self._tokens and not self._api_keys:
            raise ValueError("give at least one bearer token or API key")
        if min(default_part_size, min_part_size, max_part_size, max_parts) < 1 or min_part_size > max_part_size:
            raise ValueError("part sizes and max_parts must be >= 1, min_part_size <= max_part_size")
        super().__init__(
            directory,
            host=host,
            port=port,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            temp_prefix="upclient-community-",
        )
        self.default_part_size = int(default_part_size)
        self.min_part_size = int(min_part_size)
        self.max_part_size = int(max_part_size)
        self.max_parts = int(max_parts)
        self.url_lifetime = float(url_lifetime)
        self.clock = clock
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.bucket = bucket
        self.region = region
        self.public_url: Optional[str] = public_url.rstrip("/") if public_url else None

        self._records: Dict[str, _Upload] = {}
        self._seq = 0
        self._generation = 0
        self._part_puts = 0
        self._part_bytes = 0
        self._part_log: List[Tuple[str, int, int]] = []

    def _prepare_directory(self) -> None:
        (self.directory / "parts").mkdir(parents=True, exist_ok=True)
        (self.directory / "objects").mkdir(parents=True, exist_ok=True)

    @property
    def _public_base(self) -> str:
        """The base of the URLs handed out: ``public_url`` if set, else :attr:`url`."""
        return self.public_url or self.url

    @staticmethod
    def user_for_token(token: str) -> str:
        """The user id of a bearer token given as a plain iterable: ``user-<12 hex>``."""
        return "user-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]

    # ------------------------------------------------------------- inspection

    def _record(self, file_id: str) -> _Upload:
        with self._lock:
            record = self._records.get(file_id)
        if record is None:
            raise KeyError(f"no file {file_id!r}")
        return record

    def stored_path(self, file_id: str) -> Path:
        """The path of the assembled file (it exists once the file is confirmed)."""
        return self._object_path(self._record(file_id))

    def stored_sha256(self, file_id: str) -> str:
        """Hex SHA-256 of the stored file; :class:`FileNotFoundError` if it is not stored."""
        return file_digest(self.stored_path(file_id), "sha256")

    def part_path(self, file_id: str, part_number: int) -> Path:
        """Where part ``part_number`` of an open upload is (or would be) stored."""
        return self.directory / "parts" / self._record(file_id).id / str(int(part_number))

    def uploaded_parts(self, file_id: str) -> List[int]:
        """The numbers of the parts the server holds for an upload, in order."""
        record = self._record(file_id)
        with self._lock:
            return [p.number for p in record.parts if p.etag is not None]

    def file_object(self, file_id: str) -> Dict[str, Any]:
        """The file object of a record (deleted ones included), as the API returns it."""
        record = self._record(file_id)
        with self._lock:
            return self._file_object(record)

    def file_ids(self) -> List[str]:
        """The ids of every record, oldest first (deleted ones included)."""
        with self._lock:
            return [r.id for r in sorted(self._records.values(), key=lambda r: r.seq)]

    # ------------------------------------------------------------------- faults

    def fail_part(
        self, part_number: int, status: int = 500, times: Optional[int] = 1, *, file_id: Optional[str] = None
    ) -> None:
        """The next ``times`` PUTs of part ``part_number`` (of ``file_id``, or of any upload) fail.

        A PUT with a valid URL has its body read and dropped, then gets
        ``status`` (0: the connection is closed without an answer, which the
        SDK retries as a network error). Nothing is stored.
        """
        self._arm(_Fault("part", int(status), times, part_number=int(part_number), file_id=file_id))

    def fail_complete(
        self, status: int = 500, times: Optional[int] = 1, *, code: Optional[int] = None, commit: bool = False
    ) -> None:
        """The next ``times`` completes answer ``status`` (envelope ``code``: ``code`` or ``status``).

        ``commit=True``: the complete is carried out first (the file is
        confirmed) and only its answer is replaced, as when a response is lost.
        ``status`` 0 closes the connection without an answer.
        """
        self.fail_request("complete", status, times, code=code, commit=commit)

    def fail_request(
        self,
        endpoint: str,
        status: int = 500,
        times: Optional[int] = 1,
        *,
        code: Optional[int] = None,
        commit: bool = False,
    ) -> None:
        """Like :meth:`fail_complete` for any endpoint of :data:`ENDPOINTS` but ``part``.

        ``status`` 200 with a ``code`` makes a business error.
        """
        if endpoint not in ENDPOINTS or endpoint == "part":
            raise ValueError(f"endpoint must be one of {ENDPOINTS} but 'part' (use fail_part)")
        if endpoint == "download" and commit:
            raise ValueError("commit does not apply to downloads")
        self._arm(_Fault(endpoint, int(status), times, code=code, commit=commit))

    def expire_urls(self) -> None:
        """Every part URL issued so far is expired from now on (403); new ones are not."""
        with self._lock:
            self._generation += 1
        log.info("CommunityServer: part URLs before generation %d expired", self._generation)

    def _take_fault(
        self, endpoint: str, *, file_id: Optional[str] = None, part_number: Optional[int] = None
    ) -> Optional[_Fault]:
        with self._lock:
            return self._take_fault_locked(endpoint, file_id=file_id, part_number=part_number)

    def _take_fault_locked(
        self, endpoint: str, *, file_id: Optional[str] = None, part_number: Optional[int] = None
    ) -> Optional[_Fault]:
        return cast(
            Optional[_Fault],
            self._use_fault_locked(
                lambda f: f.endpoint == endpoint
                and (f.part_number is None or f.part_number == part_number)
                and (f.file_id is None or f.file_id == file_id)
            ),
        )

    # ----------------------------------------------------------------- counters

    @property
    def part_puts(self) -> int:
        """PUT requests to part URLs, whatever their outcome."""
        with self._lock:
            return self._part_puts

    @property
    def part_bytes(self) -> int:
        """Body bytes received by part PUTs, whatever their outcome."""
        with self._lock:
            return self._part_bytes

    @property
    def part_log(self) -> List[Tuple[str, int, int]]:
        """``(file_id, part_number, status)`` of every part PUT, in order (0: no answer)."""
        with self._lock:
            return list(self._part_log)

    def reset_counters(self) -> None:
        """Zero the request counters and the part log."""
        with self._lock:
            self._requests.clear()
            self._part_puts = 0
            self._part_bytes = 0
            self._part_log.clear()

    def _log_part(self, file_id: str, number: int, status: int, nbytes: int) -> None:
        with self._lock:
            self._part_puts += 1
            self._part_bytes += nbytes
            self._part_log.append((file_id, number, status))

    # --------------------------------------------------------------------- auth

    def _authenticate(self, headers: Any) -> _Caller:
        authorization = headers.get("Authorization")
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            user = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if user is not None:
                return _Caller("token", user)
        key = headers.get("X-API-Key")
        if key and key in self._api_keys:
            return _Caller("api_key", None)
        raise _http_error(401, "authentication failed: unknown bearer token or API key")

    @staticmethod
    def _body_object(body: Any) -> Dict[str, Any]:
        if not isinstance(body, dict):
            raise _business(CODE_BAD_REQUEST, "the request body must be a JSON object")
        return body

    @staticmethod
    def _identity(caller: _Caller, body: Mapping[str, Any]) -> Tuple[str, Optional[str]]:
        org_id = body.get("org_id")
        org = None if org_id is None else str(org_id)
        if caller.kind == "token":
            assert caller.user_id is not None
            return caller.user_id, org
        user_id = body.get("user_id")
        if user_id is None or user_id == "":
            raise _business(CODE_USER_REQUIRED, "user_id is required with API-key authentication")
        return str(user_id), org

    @staticmethod
    def _check_owner(caller: _Caller, record: _Upload, user_id: Optional[str] = None) -> None:
        acting = caller.user_id if caller.kind == "token" else user_id
        if acting is not None and acting != record.user_id:
            raise _http_error(403, f"file {record.id} belongs to another user")

    # --------------------------------------------------------------- part URLs

    def _signature(self, method: str, path: str, expires: str, generation: str) -> str:
        message = f"{method}\n{path}\n{expires}\n{generation}".encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _part_url_locked(self, record: _Upload, part: _Part, expires: int) -> str:
        path = f"{UPLOAD_PREFIX}{quote(record.id)}/{part.number}"
        gen = str(self._generation)
        signature = self._signature("PUT", path, str(expires), gen)
        return f"{self._public_base}{path}?Expires={expires}&Gen={gen}&Signature={signature}"

    def _check_signature(self, method: str, path: str, query: Mapping[str, str]) -> None:
        expires, gen, signature = query.get("Expires"), query.get("Gen"), query.get("Signature")
        if not expires or gen is None or not signature:
            raise _StoreError(403, "AccessDenied", "Expires, Gen and Signature are required")
        expected = self._signature(method, path, expires, gen)
        if not hmac.compare_digest(expected, signature):
            raise _StoreError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )

    def _check_expiry(self, query: Mapping[str, str]) -> None:
        try:
            expires = int(query["Expires"])
            generation = int(query["Gen"])
        except (KeyError, ValueError):
            raise _StoreError(403, "AccessDenied", "bad Expires or Gen") from None
        with self._lock:
            current = self._generation
        if self.clock() > expires or generation < current:
            raise _StoreError(403, "AccessDenied", "Request has expired.")

    # ------------------------------------------------------------------ storage

    def _object_path(self, record: _Upload) -> Path:
        return self.directory / "objects" / record.file_key

    def _parts_dir(self, record: _Upload) -> Path:
        return self.directory / "parts" / record.id

    def _stored_by_key(self, key: str) -> Optional[_Upload]:
        with self._lock:
            for record in self._records.values():
                if record.file_key == key and record.deleted_at is None and record.status == "confirmed":
                    return record
        return None

    def _part_for_put(self, file_id: str, number: int) -> Tuple[_Part, Optional[_Fault]]:
        with self._lock:
            record = self._records.get(file_id)
            if record is None or not record.open:
                raise _StoreError(404, "NoSuchUpload", "The specified upload does not exist.")
            if record.assembling:
                raise _StoreError(409, "OperationConflict", "the upload is being completed")
            if not 1 <= number <= len(record.parts):
                raise _StoreError(400, "InvalidArgument", f"part number {number} out of range")
            fault = self._take_fault_locked("part", file_id=file_id, part_number=number)
            return record.parts[number - 1], fault

    def _store_part(self, file_id: str, part: _Part, body: Body) -> str:
        """Stream ``body`` to the part's file; returns its MD5 hex."""
        record = self._record(file_id)
        directory = self._parts_dir(record)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{part.number}.{uuid.uuid4().hex}.tmp"
        digest = hashlib.md5()
        written = 0
        try:
            with open(tmp, "wb") as out:
                for block in body.blocks():
                    written += len(block)
                    if written > part.size:
                        raise _StoreError(400, "InvalidPartSize", f"part {part.number} is {part.size} bytes")
                    digest.update(block)
                    out.write(block)
            if written != part.size:
                raise _StoreError(
                    400, "InvalidPartSize", f"part {part.number} is {part.size} bytes, the body had {written}"
                )
            etag = digest.hexdigest()
            with self._lock:
                if not record.open:
                    raise _StoreError(404, "NoSuchUpload", "The specified upload does not exist.")
                if record.assembling:
                    raise _StoreError(409, "OperationConflict", "the upload is being completed")
                os.replace(tmp, directory / str(part.number))
                part.etag = etag
                record.status = "uploading"
                record.updated_at = self.clock()
            log.debug("stored part %d of %s (%d bytes)", part.number, file_id, written)
            return etag
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -------------------------------------------------------------- file objects

    def _file_object(self, record: _Upload) -> Dict[str, Any]:
        key = quote(record.file_key)
        base = self._public_base
        return {
            "id": record.id,
            "file_key": record.file_key,
            "file_size": record.file_size,
            "file_type": record.file_type,
            "file_ext": record.file_ext,
            "file_md5": record.file_md5,
            "bucket": self.bucket,
            "region": self.region,
            "oss_url": f"{base}/oss/{key}",
            "imagekit_url": f"{base}/ik/{key}",
            "cdn_url": f"{base}/cdn/{key}",
            "category": record.category,
            "user_id": record.user_id,
            "org_id": record.org_id,
            "status": record.status,
            "related_type": None,
            "related_id": None,
            "extra_metadata": dict(record.metadata),
            "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
            "confirmed_at": _iso(record.confirmed_at),
            "deleted_at": _iso(record.deleted_at),
        }

    def _layout(self, file_size: int, requested: Optional[int]) -> Tuple[int, List[_Part]]:
        part_size = requested or self.default_part_size
        part_size = min(max(part_size, self.min_part_size), self.max_part_size)
        if file_size > 0 and -(-file_size // part_size) > self.max_parts:
            part_size = -(-file_size // self.max_parts)
        parts: List[_Part] = []
        start = 0
        while start < file_size:
            size = min(part_size, file_size - start)
            parts.append(_Part(len(parts) + 1, start, size))
            start += size
        return part_size, parts

    def _upload_answer_locked(self, record: _Upload, status: str) -> Dict[str, Any]:
        expires = int(self.clock() + self.url_lifetime)
        return {
            "file_id": record.id,
            "status": status,
            "file_key": record.file_key,
            "part_size": record.part_size,
            "total_parts": len(record.parts),
            "url_expires_at": expires,
            "parts": [
                {
                    "part_number": p.number,
                    "start": p.start,
                    "end": p.start + p.size,
                    "size": p.size,
                    "upload_url": self._part_url_locked(record, p, expires),
                    "uploaded": p.etag is not None,
                    "etag": None if p.etag is None else f'"{p.etag}"',
                }
                for p in record.parts
            ],
        }

    def _live(self, file_id: Any) -> _Upload:
        if not isinstance(file_id, str) or not file_id:
            raise _business(CODE_BAD_REQUEST, "file_id (a string) is required")
        with self._lock:
            record = self._records.get(file_id)
        if record is None or record.deleted_at is not None:
            raise _http_error(404, f"file {file_id} not found")
        return record

    # ----------------------------------------------------------------- endpoints

    def _api_init(self, caller: _Caller, raw: Any) -> Dict[str, Any]:
        body = self._body_object(raw)
        user_id, org_id = self._identity(caller, body)
        category = body.get("category", "general")
        if category not in CATEGORIES:
            raise _business(CODE_BAD_CATEGORY, f"invalid category {category!r}; one of {', '.join(CATEGORIES)}")
        file_ext = body.get("file_ext")
        if not isinstance(file_ext, str) or not _EXT_RE.match(file_ext):
            raise _business(CODE_BAD_EXT, f"invalid file_ext {file_ext!r}: lower-case letters and digits, no dot")
        raw_size: Any = body.get("file_size")
        if not _is_int(raw_size) or raw_size < 0:
            raise _business(CODE_BAD_SIZE, f"invalid file_size {raw_size!r}")
        file_size = int(raw_size)
        file_md5 = body.get("file_md5")
        if not isinstance(file_md5, str) or not _MD5_RE.match(file_md5):
            raise _business(CODE_BAD_MD5, f"invalid file_md5 {file_md5!r}: 32 lower-case hex digits")
        part_size: Any = body.get("part_size")
        if part_size is not None and (not _is_int(part_size) or part_size <= 0):
            raise _business(CODE_BAD_PART_SIZE, f"invalid part_size {part_size!r}")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _business(CODE_BAD_REQUEST, "metadata must be a JSON object")
        content_type = body.get("content_type")
        if content_type is not None and not isinstance(content_type, str):
            raise _business(CODE_BAD_REQUEST, "content_type must be a string")
        file_type = content_type or (mimetypes.guess_type(f"x.{file_ext}")[0] if file_ext else None)
        file_type = file_type or "application/octet-stream"

        with self._lock:
            live = [r for r in self._records.values() if r.deleted_at is None]
            for record in sorted(live, key=lambda r: r.seq):
                if record.status == "confirmed" and record.file_md5 == file_md5 and record.file_size == file_size:
                    log.info("init: %s dedup hit on %s", file_md5, record.id)
                    return {"status": "completed", "file_id": record.id, "file": self._file_object(record)}
            for record in sorted(live, key=lambda r: -r.seq):
                if (
                    record.open
                    and not record.assembling
                    and record.file_md5 == file_md5
                    and record.file_size == file_size
                    and record.user_id == user_id
                ):
                    stored = sum(1 for p in record.parts if p.etag is not None)
                    log.info("init: resuming %s (%d/%d parts stored)", record.id, stored, len(record.parts))
                    return self._upload_answer_locked(record, "resuming" if stored else "pending")
            now = self.clock()
            self._seq += 1
            file_id = uuid.uuid4().hex
            moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            name = f"{file_id}.{file_ext}" if file_ext else file_id
            file_key = f"community/{category}s/{moment:%Y}/{moment:%m}/{name}"
            size, parts = self._layout(file_size, part_size)
            record = _Upload(
                file_id=file_id,
                seq=self._seq,
                user_id=user_id,
                org_id=org_id,
                category=category,
                file_ext=file_ext,
                file_size=file_size,
                file_md5=file_md5,
                file_type=file_type,
                file_key=file_key,
                part_size=size,
                parts=parts,
                metadata=dict(metadata or {}),
                now=now,
            )
            self._records[file_id] = record
            log.info("init: new upload %s, %d bytes in %d parts of %d", file_id, file_size, len(parts), size)
            return self._upload_answer_locked(record, "pending")

    def _api_complete(self, caller: _Caller, raw: Any) -> Dict[str, Any]:
        body = self._body_object(raw)
        record = self._live(body.get("file_id"))
        user_id = self._identity(caller, body)[0] if caller.kind == "api_key" else None
        self._check_owner(caller, record, user_id)
        with record.lock:
            with self._lock:
                if record.deleted_at is not None:
                    raise _http_error(404, f"file {record.id} not found")
                if record.status == "confirmed":
                    return self._file_object(record)
                if record.status == "failed":
                    raise _business(CODE_WRONG_STATE, f"upload {record.id} failed; start a new one")
                missing = [p.number for p in record.parts if p.etag is None]
                if missing:
                    raise _business(
                        CODE_PARTS_MISSING,
                        f"{len(missing)} of {len(record.parts)} parts missing",
                        {"missing_parts": missing},
                    )
                record.assembling = True
            try:
                digest = self._assemble(record)
            finally:
                with self._lock:
                    record.assembling = False
            parts_dir = self._parts_dir(record)
            with self._lock:
                record.updated_at = self.clock()
                if digest != record.file_md5:
                    record.status = "failed"
                    answer: Optional[Dict[str, Any]] = None
                else:
                    record.status = "confirmed"
                    record.confirmed_at = record.updated_at
                    answer = self._file_object(record)
                for part in record.parts:
                    part.etag = None
            shutil.rmtree(parts_dir, ignore_errors=True)
            if answer is None:
                log.info("complete: %s MD5 mismatch (%s, declared %s)", record.id, digest, record.file_md5)
                raise _business(
                    CODE_MD5_MISMATCH,
                    f"MD5 mismatch: the parts make {digest}, init declared {record.file_md5}",
                    {"file_id": record.id, "file_md5": digest},
                )
            log.info("complete: %s confirmed (%d bytes)", record.id, record.file_size)
            return answer

    def _assemble(self, record: _Upload) -> str:
        """Concatenate the parts into the object file; returns the MD5 hex (file removed on mismatch)."""
        target = self._object_path(record)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        digest = hashlib.md5()
        parts_dir = self._parts_dir(record)
        try:
            with open(tmp, "wb") as out:
                for part in record.parts:
                    with open(parts_dir / str(part.number), "rb") as handle:
                        while True:
                            block = handle.read(BLOCK)
                            if not block:
                                break
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() == record.file_md5:
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return digest.hexdigest()

    def _remove(self, record: _Upload) -> None:
        """Soft delete (caller holds ``record.lock``)."""
        with self._lock:
            record.deleted_at = record.updated_at = self.clock()
            for part in record.parts:
                part.etag = None
        shutil.rmtree(self._parts_dir(record), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self._object_path(record).unlink()

    def _api_abort(self, caller: _Caller, raw: Any) -> None:
        body = self._body_object(raw)
        record = self._live(body.get("file_id"))
        user_id = body.get("user_id") if caller.kind == "api_key" else None
        self._check_owner(caller, record, None if user_id is None else str(user_id))
        with record.lock:
            if record.deleted_at is not None:
                raise _http_error(404, f"file {record.id} not found")
            if record.status == "confirmed":
                raise _business(CODE_WRONG_STATE, f"file {record.id} is confirmed; delete it instead")
            self._remove(record)
        log.info("abort: %s", record.id)
        return None

    def _api_info(self, caller: _Caller, file_id: str, query: Mapping[str, str]) -> Dict[str, Any]:
        record = self._live(file_id)
        with self._lock:
            return self._file_object(record)

    def _api_by_key(self, caller: _Caller, arg: str, query: Mapping[str, str]) -> Dict[str, Any]:
        value = query.get("file_key")
        if not value:
            raise _business(CODE_BAD_REQUEST, "file_key is required")
        key = unquote(urlsplit(value).path) if "://" in value else value
        key = key.lstrip("/")
        head, _, tail = key.partition("/")
        if head in DOWNLOAD_PREFIXES and tail:
            key = tail
        with self._lock:
            for record in self._records.values():
                if record.file_key == key and record.deleted_at is None:
                    return self._file_object(record)
        raise _http_error(404, f"no file with key {key}")

    def _api_list(self, caller: _Caller, arg: str, query: Mapping[str, str]) -> Dict[str, Any]:
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "20"))
        except ValueError:
            raise _business(CODE_BAD_REQUEST, "page and page_size must be integers") from None
        if page < 1 or not 1 <= page_size <= 100:
            raise _business(CODE_BAD_REQUEST, "page >= 1 and 1 <= page_size <= 100")
        category = query.get("category") or None
        if category is not None and category not in CATEGORIES:
            raise _business(CODE_BAD_CATEGORY, f"invalid category {category!r}")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise _business(CODE_BAD_REQUEST, f"invalid status {status!r}; one of {', '.join(STATUSES)}")
        owner = caller.user_id if caller.kind == "token" else (query.get("user_id") or None)
        with self._lock:
            selected = [
                r
                for r in self._records.values()
                if r.deleted_at is None
                and (owner is None or r.user_id == owner)
                and (category is None or r.category == category)
                and (status is None or r.status == status)
            ]
            selected.sort(key=lambda r: -r.seq)
            window = selected[(page - 1) * page_size : page * page_size]
            files = [self._file_object(r) for r in window]
        total = len(selected)
        return {
            "list": files,
            "pagination": {
                "total": total,
                "page": page,
                "page_size": page_size,
                "total_pages": -(-total // page_size),
            },
        }

    def _api_delete(self, caller: _Caller, file_id: str, query: Mapping[str, str]) -> None:
        record = self._live(file_id)
        self._check_owner(caller, record)
        with record.lock:
            if record.deleted_at is not None:
                raise _http_error(404, f"file {record.id} not found")
            self._remove(record)
        log.info("delete: %s", record.id)
        return None
