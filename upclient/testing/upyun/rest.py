"""The UPYUN REST verbs on files and folders: put, get (and list), usage, head, delete, mkdir, move, copy, metadata.

Each handler counts its route, authenticates, passes its fault point and
then does its work on the store.  Lists page with an opaque ``X-List-Iter``
token (the last name of the page, base64) and end with :data:`LIST_END`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import shutil
from typing import BinaryIO, List, Tuple, cast
from urllib.parse import unquote

from upclient.testing.httpbase import BLOCK, parse_range
from upclient.testing.upyun.auth import Authenticating
from upclient.testing.upyun.faults import FaultPoints
from upclient.testing.upyun.images import image_info
from upclient.testing.upyun.records import FileRecord
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
    normalise_key,
    not_found,
)

__all__ = ["LIST_END", "RestVerbs"]

#: The ``x-upyun-list-iter`` of a listing's last page.
LIST_END = "g2gCZAAEbmV4dGQAA2VvZg"
_MAX_LIST = 10000


def encode_iter(name: str) -> str:
    """The list token that resumes after ``name``."""
    return base64.urlsafe_b64encode(name.encode("utf-8", "surrogateescape")).decode("ascii").rstrip("=")


def decode_iter(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return raw.decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        raise bad("invalid x-list-iter") from None


class RestVerbs(Authenticating, FaultPoints):
    """The handlers of the REST verbs (the dispatch is :class:`~upclient.testing.upyun.UpyunServer`'s)."""

    def _put(self, call: Call, service: str, key: str) -> Answer:
        self._count("put")
        self._authenticate(call, service)
        if not key:
            raise dir_conflict()
        secret = content_secret(call)
        self._fault_point(call, ("put",), key)
        tmp = self._tmp_path()
        try:
            size, md5 = self._receive(call.body, tmp)
            self._check_body_md5(call, md5)
            record = FileRecord(
                call.header("Content-Type") or content_type_for(key),
                size,
                md5,
                self.clock(),
                call.meta_headers(),
                secret,
            )
            image = image_info(tmp)
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
        return Answer(200, headers)

    def _get(self, call: Call, service: str, key: str) -> Answer:
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
                raise not_found()
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
                    raise Refusal(400, 40001161, "wrong range")
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            headers["Content-Length"] = str(end - start)
        except BaseException:
            handle.close()
            raise
        return Answer(status, headers, stream=(cast(BinaryIO, handle), start, end))

    def _list(self, call: Call, service: str, key: str) -> Answer:
        limit = min(int_header(call.header("X-List-Limit"), "x-list-limit", default=100), _MAX_LIST)
        if limit < 1:
            raise bad("x-list-limit must be >= 1")
        order = (call.header("X-List-Order") or "asc").lower()
        if order not in ("asc", "desc"):
            raise Refusal(403, 40300014, "order must be asc or desc")
        token = call.header("X-List-Iter") or ""
        entries: List[Tuple[str, bool, int, int, str]] = []  # name, folder?, size, mtime, type
        if token != LIST_END:
            after = decode_iter(token) if token else None
            with self._lock:
                folder = self._path(service, key)
                if not folder.is_dir():
                    raise not_found()
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
        next_token = encode_iter(page[-1][0]) if more else LIST_END
        if "application/json" in (call.header("Accept") or "").lower():
            files = [{"type": e[4], "length": e[2], "name": e[0], "last_modified": e[3]} for e in page]
            return json_answer(200, {"files": files, "iter": next_token}, {"x-upyun-list-iter": next_token})
        text = "\n".join(f"{e[0]}\t{'F' if e[1] else 'N'}\t{e[2]}\t{e[3]}" for e in page)
        return Answer(
            200,
            {"Content-Type": "text/plain; charset=utf-8", "x-upyun-list-iter": next_token},
            text.encode("utf-8", "surrogateescape"),
        )

    def _usage(self, call: Call, service: str) -> Answer:
        self._count("usage")
        self._authenticate(call, service)
        self._fault_point(call, ("usage",), "")
        with self._lock:
            total = sum(r.size for (s, _), r in self._files.items() if s == service)
        return Answer(200, {"Content-Type": "text/plain; charset=utf-8"}, str(total).encode("ascii"))

    def _head(self, call: Call, service: str, key: str) -> Answer:
        self._count("head")
        self._authenticate(call, service)
        self._fault_point(call, ("head",), key)
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                mtime = self._folder_times.get((service, key), path.stat().st_mtime)
                return Answer(
                    200,
                    {"x-upyun-file-type": "folder", "x-upyun-file-size": "0", "x-upyun-file-date": str(int(mtime))},
                )
            record = self._files.get((service, key))
            if record is None or not path.is_file():
                raise not_found()
            headers = self._file_headers(record)
        headers.update(
            {
                "x-upyun-file-type": "file",
                "x-upyun-file-size": str(record.size),
                "x-upyun-file-date": str(int(record.mtime)),
            }
        )
        return Answer(200, headers)

    def _delete(self, call: Call, service: str, key: str) -> Answer:
        self._count("delete")
        self._authenticate(call, service)
        self._fault_point(call, ("delete",), key)
        if not key:
            raise Refusal(403, 40300011, "has no permission to delete")
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                try:
                    path.rmdir()
                except OSError:
                    raise Refusal(403, 40300005, "directory not empty") from None
                self._folder_times.pop((service, key), None)
            elif path.is_file():
                path.unlink()
                self._files.pop((service, key), None)
            else:
                raise not_found()
        log.debug("delete %s/%s", service, key)
        return Answer(200)

    def _mkdir(self, call: Call, service: str, key: str) -> Answer:
        self._count("mkdir")
        self._authenticate(call, service)
        self._fault_point(call, ("mkdir",), key)
        now = self.clock()
        with self._lock:
            path = self._path(service, key)
            if path.is_dir():
                raise Refusal(406, 40600002, "folder already exists")
            if path.exists():
                raise dir_conflict()
            self._ensure_parents_locked(service, key, now)
            path.mkdir()
            self._folder_times[(service, key)] = now
        return Answer(200)

    def _move_copy(self, call: Call, service: str, key: str) -> Answer:
        moving = call.header("X-Upyun-Move-Source") is not None
        route = "move" if moving else "copy"
        self._count(route)
        self._authenticate(call, service)
        source = call.header("X-Upyun-Move-Source" if moving else "X-Upyun-Copy-Source") or ""
        directive = (call.header("X-Upyun-Metadata-Directive") or "copy").lower()
        if directive not in ("copy", "replace"):
            raise bad("x-upyun-metadata-directive must be copy or replace")
        source_service, _, source_rest = source.lstrip("/").partition("/")
        if not source.startswith("/") or source_service != service:
            raise Refusal(400, 40000042, "bad source")
        try:
            source_key = normalise_key(source_rest)
            if not self._path(service, source_key).exists() and unquote(source_rest) != source_rest:
                source_key = normalise_key(unquote(source_rest))
        except Refusal:
            raise Refusal(400, 40000042, "bad source") from None
        if not source_key or not key:
            raise Refusal(400, 40000042, "bad source")
        if source_key == key:
            raise Refusal(400, 40000041, "source equals target")
        self._fault_point(call, (route,), key)
        tmp = self._tmp_path()
        try:
            with self._lock:
                path = self._path(service, source_key)
                if path.is_dir():
                    raise Refusal(400, 40000042, "bad source")
                found = self._files.get((service, source_key))
                if found is None or not path.is_file():
                    raise not_found()
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
            except Refusal:
                if moving:  # put the source back
                    with self._lock:
                        os.replace(tmp, path)
                        self._files[(service, source_key)] = found
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return Answer(200)

    def _metadata(self, call: Call, service: str, key: str) -> Answer:
        self._count("metadata")
        self._authenticate(call, service)
        how = call.query_fields().get("metadata", "")
        if how not in ("merge", "replace", "delete"):
            raise bad("?metadata= must be merge, replace or delete")
        self._fault_point(call, ("metadata",), key)
        given = call.meta_headers()
        with self._lock:
            if self._path(service, key).is_dir():
                raise Refusal(403, 40300015, "path is not a file, maybe a directory")
            record = self._files.get((service, key))
            if record is None:
                raise not_found()
            if how == "merge":
                record.meta.update(given)
            elif how == "replace":
                record.meta = given
            else:
                for name in given:
                    record.meta.pop(name, None)
        return Answer(200)
