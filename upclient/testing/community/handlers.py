"""The HTTP side of the community emulator: one handler per connection, routing requests.

Storage routes (part PUTs, downloads) answer OSS-like XML errors; API
routes answer the JSON envelope. Armed faults are applied here, before (or,
with ``commit=True``, after) the endpoint runs.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable, Dict, Optional, Protocol, Tuple, cast
from urllib.parse import parse_qs, unquote, urlsplit

from upclient.testing.community.api import CommunityApi
from upclient.testing.community.auth import Credentials, PartUrls
from upclient.testing.community.protocol import (
    DOWNLOAD_PREFIXES,
    MAX_JSON,
    UPLOAD_PREFIX,
    ApiError,
    StoreError,
    api_route,
    http_error,
)
from upclient.testing.community.state import FileStore, Part
from upclient.testing.faults import Fault
from upclient.testing.httpbase import Drop, RequestHandler, parse_range

log = logging.getLogger("upclient.testing.community")


class HandlerHost(Protocol):
    """What a connection's handler needs from its server (a :class:`~upclient.testing.community.CommunityServer`)."""

    credentials: Credentials
    part_urls: PartUrls
    files: FileStore
    api: CommunityApi

    def _count(self, *routes: str) -> None:
        """Count a request of each route."""

    def _take_fault(self, **facts: Any) -> Optional[Fault]:
        """The first armed fault matching ``facts``, one use taken."""

    def _part_for_put(self, file_id: str, number: int) -> Tuple[Part, Optional[Fault]]:
        """The part a PUT stores and the fault it meets, if any."""

    def _log_part(self, file_id: str, number: int, status: int, nbytes: int) -> None:
        """Count a part PUT and its outcome."""


class CommunityHandler(RequestHandler):
    server_version = "CommunityEmulator/1.0"

    @property
    def host(self) -> HandlerHost:
        """:attr:`owner`, as what this handler uses of it."""
        return cast(HandlerHost, self.owner)

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

    def _send_xml_error(self, exc: StoreError) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{exc.code}</Code><Message>{exc.message}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:24].upper()}</RequestId></Error>\n"
        ).encode("utf-8")
        self.send(exc.status, body, {"Content-Type": "application/xml"})

    # ------------------------------------------------------------ storage routes

    def _storage(self, handler: Callable[[], None], endpoint: str) -> None:
        self.host._count(endpoint)
        try:
            handler()
        except StoreError as exc:
            log.debug("%s %s -> %s %s", self.command, self.path, exc.status, exc.code)
            self._send_xml_error(exc)

    def _put_part(self) -> None:
        owner = self.host
        if self.command != "PUT":
            raise StoreError(405, "MethodNotAllowed", "part URLs take PUT")
        split = urlsplit(self.path)
        segments = split.path[len(UPLOAD_PREFIX):].split("/")
        file_id = segments[0] if segments else ""
        number = int(segments[1]) if len(segments) == 2 and segments[1].isdigit() else 0
        status = 0  # no answer (connection dropped or cut off), until known
        try:
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            owner.part_urls.check_signature("PUT", split.path, query)
            if self.headers.get("Content-Type") is not None:
                raise StoreError(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided "
                    "(a Content-Type header is not part of the signed request)",
                )
            owner.part_urls.check_expiry(query)
            part, fault = owner._part_for_put(file_id, number)
            if fault is not None:
                self.body.drain()
                if fault.status == 0:
                    raise Drop()
                raise StoreError(fault.status, "InjectedFault", f"injected failure of part {number}")
            if self.body.length is not None and self.body.length != part.size:
                raise StoreError(
                    400, "InvalidPartSize", f"part {number} is {part.size} bytes, the body has {self.body.length}"
                )
            etag = owner.files.store_part(file_id, part, self.body)
            status = 200
        except StoreError as exc:
            status = exc.status
            raise
        finally:
            owner._log_part(file_id, number, status, self.body.received)
        self.send(200, b"", {"ETag": f'"{etag}"'})

    def _download(self) -> None:
        if self.command not in ("GET", "HEAD"):
            raise StoreError(405, "MethodNotAllowed", "downloads take GET or HEAD")
        path = unquote(urlsplit(self.path).path)
        key = path.lstrip("/").split("/", 1)[1] if "/" in path.lstrip("/") else ""
        owner = self.host
        fault = owner._take_fault(route="download")
        if fault is not None:
            if fault.status == 0:
                raise Drop()
            raise StoreError(fault.status, "InjectedFault", "injected failure of a download")
        record = owner.files.stored_by_key(key)
        if record is None:
            raise StoreError(404, "NoSuchKey", "The specified key does not exist.")
        stored = owner.files.object_path(record)
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
        route = api_route(self.command, path)
        if route is None:
            self.send_json(404, {"code": 404, "message": f"no route for {path}", "data": None})
            return
        endpoint, arg = route
        if endpoint == "method":
            self.send_json(405, {"code": 405, "message": f"{self.command} is not allowed on {path}", "data": None})
            return
        owner = self.host
        owner._count(endpoint)
        fault = owner._take_fault(route=endpoint)
        if fault is not None and not fault.commit:
            self._injected(endpoint, fault)
            return
        try:
            caller = owner.credentials.authenticate(self.headers)
            handler = getattr(owner.api, endpoint)
            if self.command in ("POST", "PUT"):
                data = handler(caller, self._json_body())
            else:
                data = handler(caller, arg, {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()})
            answer: Tuple[int, Dict[str, Any]] = (200, {"code": 0, "message": "ok", "data": data})
        except ApiError as exc:
            answer = (exc.status, {"code": exc.code, "message": exc.message, "data": exc.data})
        if fault is not None:  # commit=True: the call took effect, its answer is replaced
            self._injected(endpoint, fault)
            return
        if answer[0] >= 400 or answer[1]["code"] != 0:
            log.debug("%s %s -> %s %s", self.command, self.path, answer[0], answer[1])
        self.send_json(*answer)

    def _injected(self, endpoint: str, fault: Fault) -> None:
        log.info("%s %s: injected answer %s", self.command, self.path, fault.status or "(connection closed)")
        if fault.status == 0:
            self.body.drain()
            raise Drop()
        code = fault.code if fault.code is not None else fault.status
        self.send_json(fault.status, {"code": code, "message": f"injected failure of {endpoint}", "data": None})

    def _json_body(self) -> Any:
        raw = self.body.read_all(MAX_JSON)
        if raw is None:
            self.close_connection = True
            raise http_error(413, "request body too large")
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise http_error(400, f"malformed JSON: {exc}") from None
