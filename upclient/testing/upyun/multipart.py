"""UPYUN resumable multipart uploads: initiate, parts (serial or in any order), complete, query and cancel.

Every stage is a PUT to the target path with ``X-Upyun-Multi-Stage``
(stages combine with commas, as the SDK sends them); parts wait in
``<directory>/multipart/<uuid>/<part id>`` until complete joins them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid as uuidlib
from typing import Any, Dict, Optional, Tuple

from upclient.testing.httpbase import BLOCK, MiB
from upclient.testing.upyun.auth import Authenticating
from upclient.testing.upyun.faults import FaultPoints
from upclient.testing.upyun.records import MAX_PART_SIZE, MULTI_LIFETIME, FileRecord, MultipartUpload
from upclient.testing.upyun.store import log
from upclient.testing.upyun.wire import (
    Answer,
    Call,
    Refusal,
    bad,
    content_secret,
    content_type_for,
    dir_conflict,
    int_header,
    json_answer,
    multi_error,
)

__all__ = ["MultipartVerbs"]

_STAGES = ("initiate", "upload", "complete")


class MultipartVerbs(Authenticating, FaultPoints):
    """The multipart handlers, and :meth:`uploads` to look at the unfinished ones."""

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

    def _lookup(self, call: Call, service: str, key: str, *, completed: bool = False) -> MultipartUpload:
        """The upload of the request's uuid (a completed one only if ``completed``)."""
        upload_id = call.header("X-Upyun-Multi-Uuid") or ""
        now = self.clock()
        with self._lock:
            record = self._multis.get(upload_id)
            if record is not None and now - record.created > MULTI_LIFETIME:
                self._forget_locked(record)
                record = None
            if record is None or record.gone or record.service != service or record.key != key:
                raise multi_error(40011058)
            if record.completed and not completed:
                raise multi_error(40011059)
            return record

    def _forget_locked(self, record: MultipartUpload) -> None:
        record.gone = True
        self._multis.pop(record.uuid, None)
        shutil.rmtree(self.directory / "multipart" / record.uuid, ignore_errors=True)

    def _multipart(self, call: Call, service: str, key: str) -> Answer:
        stages = [s.strip().lower() for s in (call.header("X-Upyun-Multi-Stage") or "").split(",") if s.strip()]
        if not stages or any(s not in _STAGES for s in stages) or stages != sorted(set(stages), key=_STAGES.index):
            raise bad("x-upyun-multi-stage must be initiate, upload and/or complete, in that order")
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
                raise multi_error(40011059)
        headers = {"x-upyun-multi-uuid": record.uuid}
        if "upload" in stages:
            self._upload_part(call, record, part_id)
        if "complete" in stages:
            status, done = self._complete(call, record)
            headers.update(done)
            return Answer(status, headers)
        with self._lock:
            headers["x-upyun-next-part-id"] = str(record.next_part_id())
        return Answer(204, headers)

    def _initiate(self, call: Call, service: str, key: str) -> MultipartUpload:
        length = int_header(call.header("X-Upyun-Multi-Length"), "x-upyun-multi-length")
        part_size = int_header(call.header("X-Upyun-Multi-Part-Size"), "x-upyun-multi-part-size", default=MiB)
        if length < 0:
            raise bad("x-upyun-multi-length must be >= 0")
        if part_size < MiB or part_size > MAX_PART_SIZE or part_size % MiB:
            raise bad("x-upyun-multi-part-size must be a multiple of 1 MiB, at most 50 MiB")
        if not key or self._path(service, key).is_dir():
            raise dir_conflict()
        record = MultipartUpload(
            uuid=str(uuidlib.uuid4()),
            service=service,
            key=key,
            length=length,
            part_size=part_size,
            content_type=call.header("X-Upyun-Multi-Type") or content_type_for(key),
            disorder=call.flag("X-Upyun-Multi-Disorder"),
            meta=call.meta_headers(),
            secret=content_secret(call),
            created=self.clock(),
        )
        (self.directory / "multipart" / record.uuid).mkdir(parents=True)
        with self._lock:
            self._multis[record.uuid] = record
        call.created_uuid = record.uuid
        log.debug("initiate %s for %s/%s: %d bytes, parts of %d", record.uuid, service, key, length, part_size)
        return record

    def _upload_part(self, call: Call, record: MultipartUpload, part_id: Optional[int]) -> None:
        with self._lock:
            following = record.next_part_id()
            if part_id is None or not 0 <= part_id < record.total:
                raise multi_error(40011061, following)
            if not record.disorder:
                if following == -1:
                    raise multi_error(40011062)
                if part_id != following:
                    raise multi_error(40011061, following)
        expected = record.part_length(part_id)
        call.part = (record.uuid, part_id, expected)
        if call.body.length is not None and call.body.length != expected:
            raise Refusal(403, 40300030, "wrong content-length")
        tmp = self._tmp_path()
        try:
            size, md5 = self._receive(call.body, tmp, expected)
            if size != expected:
                raise Refusal(403, 40300030, "wrong content-length")
            self._check_body_md5(call, md5)
            with record.lock, self._lock:
                if record.gone:
                    raise multi_error(40011058)
                if record.completed:
                    raise multi_error(40011059)
                os.replace(tmp, self.directory / "multipart" / record.uuid / str(part_id))
                record.parts[part_id] = (size, md5)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _complete(self, call: Call, record: MultipartUpload) -> Tuple[int, Dict[str, str]]:
        with record.lock:
            with self._lock:
                if record.gone:
                    raise multi_error(40011058)
                if record.completed:
                    raise multi_error(40011059)
                missing = record.next_part_id()
                if missing != -1:
                    raise multi_error(40011061, missing)
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
                    raise multi_error(40011060)
                file = FileRecord(record.content_type, record.length, md5, self.clock(), record.meta, record.secret)
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

    def _multi_query(self, call: Call, service: str, key: str) -> Answer:
        self._count("query")
        self._authenticate(call, service)
        self._fault_point(call, ("query",), key)
        record = self._lookup(call, service, key)
        with self._lock:
            parts = sorted(record.parts.items())
            following = record.next_part_id()
        if call.flag("X-Upyun-Multi-Info"):
            return Answer(
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
        return json_answer(200, {"parts": [{"id": i, "size": size, "etag": md5} for i, (size, md5) in parts]})

    def _multi_cancel(self, call: Call, service: str, key: str) -> Answer:
        self._count("cancel")
        self._authenticate(call, service)
        self._fault_point(call, ("cancel",), key)
        record = self._lookup(call, service, key)
        with record.lock, self._lock:
            if record.completed:
                raise multi_error(40011059)
            self._forget_locked(record)
        return Answer(204)
