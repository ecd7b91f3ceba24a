"""The JSON API of the community emulator: init, complete, abort, info, by-key, list, delete.

Each endpoint takes the authenticated :class:`~.auth.Caller` and the
request's JSON body (POST) or its path argument and query (GET, DELETE),
and returns the envelope's ``data`` or raises :class:`~.protocol.ApiError`.
"""

from __future__ import annotations

import datetime
import logging
import mimetypes
import uuid
from typing import Any, Callable, Dict, Mapping, Protocol
from urllib.parse import unquote, urlsplit

from upclient.testing.community.auth import Caller, PartUrls, check_owner, identity
from upclient.testing.community.protocol import (
    CATEGORIES,
    CODE_BAD_CATEGORY,
    CODE_BAD_EXT,
    CODE_BAD_MD5,
    CODE_BAD_PART_SIZE,
    CODE_BAD_REQUEST,
    CODE_BAD_SIZE,
    CODE_MD5_MISMATCH,
    CODE_PARTS_MISSING,
    CODE_WRONG_STATE,
    DOWNLOAD_PREFIXES,
    EXT_RE,
    MD5_RE,
    STATUSES,
    business,
    http_error,
    is_int,
    json_object,
)
from upclient.testing.community.state import FileStore, Upload, plan_parts

log = logging.getLogger("upclient.testing.community")


class ApiHost(Protocol):
    """What the endpoints need from their server (a :class:`~upclient.testing.community.CommunityServer`).

    Read at each call, so a setting changed on the server, or a URL known
    only once it has started, applies to the next request.
    """

    files: FileStore
    part_urls: PartUrls
    clock: Callable[[], float]
    url_lifetime: float
    default_part_size: int
    min_part_size: int
    max_part_size: int
    max_parts: int

    @property
    def _public_base(self) -> str:
        """The base of the URLs handed out."""

    def _file_object(self, record: Upload) -> Dict[str, Any]:
        """A record's file object, with the server's URLs, bucket and region (lock held)."""


class CommunityApi:
    """The endpoints of one :class:`~upclient.testing.community.CommunityServer`."""

    def __init__(self, server: ApiHost) -> None:
        self.server = server
        self.files = server.files

    def _live(self, file_id: Any) -> Upload:
        if not isinstance(file_id, str) or not file_id:
            raise business(CODE_BAD_REQUEST, "file_id (a string) is required")
        return self.files.live(file_id)

    def upload_answer_locked(self, record: Upload, status: str) -> Dict[str, Any]:
        """Init's answer for an upload: its layout, what is stored, fresh part URLs."""
        server = self.server
        expires = int(server.clock() + server.url_lifetime)
        base = server._public_base
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
                    "upload_url": server.part_urls.url(base, record.id, p.number, expires),
                    "uploaded": p.etag is not None,
                    "etag": None if p.etag is None else f'"{p.etag}"',
                }
                for p in record.parts
            ],
        }

    # ---------------------------------------------------------------- uploads

    def init(self, caller: Caller, raw: Any) -> Dict[str, Any]:
        body = json_object(raw)
        user_id, org_id = identity(caller, body)
        category = body.get("category", "general")
        if category not in CATEGORIES:
            raise business(CODE_BAD_CATEGORY, f"invalid category {category!r}; one of {', '.join(CATEGORIES)}")
        file_ext = body.get("file_ext")
        if not isinstance(file_ext, str) or not EXT_RE.match(file_ext):
            raise business(CODE_BAD_EXT, f"invalid file_ext {file_ext!r}: lower-case letters and digits, no dot")
        raw_size: Any = body.get("file_size")
        if not is_int(raw_size) or raw_size < 0:
            raise business(CODE_BAD_SIZE, f"invalid file_size {raw_size!r}")
        file_size = int(raw_size)
        file_md5 = body.get("file_md5")
        if not isinstance(file_md5, str) or not MD5_RE.match(file_md5):
            raise business(CODE_BAD_MD5, f"invalid file_md5 {file_md5!r}: 32 lower-case hex digits")
        part_size: Any = body.get("part_size")
        if part_size is not None and (not is_int(part_size) or part_size <= 0):
            raise business(CODE_BAD_PART_SIZE, f"invalid part_size {part_size!r}")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise business(CODE_BAD_REQUEST, "metadata must be a JSON object")
        content_type = body.get("content_type")
        if content_type is not None and not isinstance(content_type, str):
            raise business(CODE_BAD_REQUEST, "content_type must be a string")
        file_type = content_type or (mimetypes.guess_type(f"x.{file_ext}")[0] if file_ext else None)
        file_type = file_type or "application/octet-stream"

        server = self.server
        with self.files.lock:
            live = [r for r in self.files.oldest_first_locked() if r.deleted_at is None]
            for record in live:
                if record.status == "confirmed" and record.file_md5 == file_md5 and record.file_size == file_size:
                    log.info("init: %s dedup hit on %s", file_md5, record.id)
                    return {"status": "completed", "file_id": record.id, "file": server._file_object(record)}
            for record in reversed(live):
                if (
                    record.open
                    and not record.assembling
                    and record.file_md5 == file_md5
                    and record.file_size == file_size
                    and record.user_id == user_id
                ):
                    stored = len(record.parts) - len(record.missing)
                    log.info("init: resuming %s (%d/%d parts stored)", record.id, stored, len(record.parts))
                    return self.upload_answer_locked(record, "resuming" if stored else "pending")
            now = server.clock()
            file_id = uuid.uuid4().hex
            moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            name = f"{file_id}.{file_ext}" if file_ext else file_id
            size, parts = plan_parts(
                file_size,
                part_size,
                default=server.default_part_size,
                minimum=server.min_part_size,
                maximum=server.max_part_size,
                max_parts=server.max_parts,
            )
            record = self.files.add_locked(
                file_id=file_id,
                user_id=user_id,
                org_id=org_id,
                category=category,
                file_ext=file_ext,
                file_size=file_size,
                file_md5=file_md5,
                file_type=file_type,
                file_key=f"community/{category}s/{moment:%Y}/{moment:%m}/{name}",
                part_size=size,
                parts=parts,
                metadata=dict(metadata or {}),
                now=now,
            )
            log.info("init: new upload %s, %d bytes in %d parts of %d", file_id, file_size, len(parts), size)
            return self.upload_answer_locked(record, "pending")

    def complete(self, caller: Caller, raw: Any) -> Dict[str, Any]:
        body = json_object(raw)
        record = self._live(body.get("file_id"))
        user_id = identity(caller, body)[0] if caller.kind == "api_key" else None
        check_owner(caller, record, user_id)
        server = self.server
        with record.lock:
            with self.files.lock:
                if record.deleted_at is not None:
                    raise http_error(404, f"file {record.id} not found")
                if record.status == "confirmed":
                    return server._file_object(record)
                if record.status == "failed":
                    raise business(CODE_WRONG_STATE, f"upload {record.id} failed; start a new one")
                missing = record.missing
                if missing:
                    raise business(
                        CODE_PARTS_MISSING,
                        f"{len(missing)} of {len(record.parts)} parts missing",
                        {"missing_parts": missing},
                    )
                record.assembling = True
            digest = self.files.finish(record)
            if record.status != "confirmed":
                log.info("complete: %s MD5 mismatch (%s, declared %s)", record.id, digest, record.file_md5)
                raise business(
                    CODE_MD5_MISMATCH,
                    f"MD5 mismatch: the parts make {digest}, init declared {record.file_md5}",
                    {"file_id": record.id, "file_md5": digest},
                )
            with self.files.lock:
                answer = server._file_object(record)
            log.info("complete: %s confirmed (%d bytes)", record.id, record.file_size)
            return answer

    def abort(self, caller: Caller, raw: Any) -> None:
        body = json_object(raw)
        record = self._live(body.get("file_id"))
        user_id = body.get("user_id") if caller.kind == "api_key" else None
        check_owner(caller, record, None if user_id is None else str(user_id))
        with record.lock:
            if record.deleted_at is not None:
                raise http_error(404, f"file {record.id} not found")
            if record.status == "confirmed":
                raise business(CODE_WRONG_STATE, f"file {record.id} is confirmed; delete it instead")
            self.files.remove(record)
        log.info("abort: %s", record.id)
        return None

    # ------------------------------------------------------------------ files

    def info(self, caller: Caller, file_id: str, query: Mapping[str, str]) -> Dict[str, Any]:
        record = self._live(file_id)
        with self.files.lock:
            return self.server._file_object(record)

    def by_key(self, caller: Caller, arg: str, query: Mapping[str, str]) -> Dict[str, Any]:
        value = query.get("file_key")
        if not value:
            raise business(CODE_BAD_REQUEST, "file_key is required")
        key = unquote(urlsplit(value).path) if "://" in value else value
        key = key.lstrip("/")
        head, _, tail = key.partition("/")
        if head in DOWNLOAD_PREFIXES and tail:
            key = tail
        with self.files.lock:
            record = self.files.by_key_locked(key)
            if record is not None:
                return self.server._file_object(record)
        raise http_error(404, f"no file with key {key}")

    def list(self, caller: Caller, arg: str, query: Mapping[str, str]) -> Dict[str, Any]:
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "20"))
        except ValueError:
            raise business(CODE_BAD_REQUEST, "page and page_size must be integers") from None
        if page < 1 or not 1 <= page_size <= 100:
            raise business(CODE_BAD_REQUEST, "page >= 1 and 1 <= page_size <= 100")
        category = query.get("category") or None
        if category is not None and category not in CATEGORIES:
            raise business(CODE_BAD_CATEGORY, f"invalid category {category!r}")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise business(CODE_BAD_REQUEST, f"invalid status {status!r}; one of {', '.join(STATUSES)}")
        owner = caller.user_id if caller.kind == "token" else (query.get("user_id") or None)
        with self.files.lock:
            selected = [
                r
                for r in self.files.oldest_first_locked()
                if r.deleted_at is None
                and (owner is None or r.user_id == owner)
                and (category is None or r.category == category)
                and (status is None or r.status == status)
            ]
            selected.reverse()  # newest first
            window = selected[(page - 1) * page_size : page * page_size]
            files = [self.server._file_object(r) for r in window]
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

    def delete(self, caller: Caller, file_id: str, query: Mapping[str, str]) -> None:
        record = self._live(file_id)
        check_owner(caller, record)
        with record.lock:
            if record.deleted_at is not None:
                raise http_error(404, f"file {record.id} not found")
            self.files.remove(record)
        log.info("delete: %s", record.id)
        return None
