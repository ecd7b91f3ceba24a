"""The community multipart API (``community+https://`` URLs).

An upload starts with ``init`` (the file's MD5 and size): a server that
already holds the same bytes answers at once and nothing is sent ("instant
upload"); otherwise it lays out the parts, each with a presigned URL, and
marks the ones it already has, so a resume is the server's own.  Parts go in
parallel by PUT to their URLs, streamed from the file, with no credentials
and no Content-Type (the store's signature covers the headers); ``complete``
joins them.  A presigned URL that expired or was refused (403) is replaced
by running ``init`` again, which resumes.  The MD5 is read once per file and
remembered in the client's store (:class:`upclient.digest.DigestCache`).

Auth is a bearer token (a string, or a callable asked on every request, so
tokens may rotate; ``Bearer`` is added when missing) or an API key with
``user_id`` and optional ``org_id`` for service-to-service calls.  The
envelope ``{"code", "message", "data"}`` maps into the shared errors: 401 is
:class:`~upclient.errors.AuthError`, a 2xx with another ``code`` is a
:class:`~upclient.errors.RequestRejected` carrying that code.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any, Callable, ClassVar, Dict, FrozenSet, Iterator, List, Mapping, Optional, Union

import requests

from ..errors import AuthError, BadInput, RequestRejected, ServerError, error_for_status
from ..result import FileInfo, UploadResult
from ..settings import Settings
from ..source import Source
from ..transfer import Part, PartIO, UploadSession
from .base import Backend, Sink

__all__ = ["CommunityBackend", "CommunityFile", "CommunityResult", "CATEGORIES"]

log = logging.getLogger("upclient.community")

API = "/api/community/file"
CATEGORIES = ("general", "video", "image", "document", "avatar", "cover")
_OK_CODES = (0, 1000, None)


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

    def info(self, backend: str) -> FileInfo:
        return FileInfo(
            id=self.id, backend=backend, size=self.file_size, complete=self.status == "confirmed",
            content_type=self.file_type, metadata=self.raw.get("extra_metadata") or {},
            extra={"file": self},
        )


@dataclasses.dataclass(frozen=True)
class CommunityResult(UploadResult):
    """An :class:`~upclient.UploadResult` with the server's file object in ``file``."""

    file: Optional[CommunityFile] = None


def _result(f: CommunityFile, deduplicated: bool, metadata: Mapping[str, str]) -> CommunityResult:
    return CommunityResult(
        id=f.id, size=f.file_size or 0, backend="community", url=f.cdn_url or f.oss_url, key=f.file_key,
        deduplicated=deduplicated, metadata=dict(metadata), file=f,
    )


class CommunityBackend(Backend):
    """See the module docstring.  URL: ``community+https://api.example.com``.

    Client options: ``token`` (str or callable), or ``api_key`` with
    ``user_id`` and ``org_id``.  Put options: ``category`` (default
    ``general``), ``content_type``, ``user_id``, ``org_id``, ``md5`` (a digest
    known already), ``on_md5_progress``.
    """

    name: ClassVar[str] = "community"
    client_options: ClassVar[FrozenSet[str]] = frozenset({"token", "api_key", "user_id", "org_id"})
    put_options: ClassVar[FrozenSet[str]] = frozenset(
        {"category", "content_type", "user_id", "org_id", "md5", "on_md5_progress"}
    )
    #: Verbs of this backend beyond the shared ones, reachable on the Client.
    extra_verbs: ClassVar[FrozenSet[str]] = frozenset({"info_by_key", "iter_files", "md5"})

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        inner = scheme.split("+", 1)[1] if "+" in scheme else scheme
        if inner not in ("http", "https") or not rest:
            raise BadInput(f"{url!r}: expected community+https://host or community+http://host")
        self.base = f"{inner}://{rest}".rstrip("/")
        self.token: Union[str, Callable[[], str], None] = options.get("token")
        self.api_key: Optional[str] = options.get("api_key")
        self.user_id: Optional[str] = options.get("user_id")
        self.org_id: Optional[str] = options.get("org_id")
        if self.token is None and self.api_key is None:
            raise BadInput("the community backend needs token= (str or callable) or api_key=")
        if self.api_key is not None and not self.user_id:
            raise BadInput("api_key= needs user_id= (and optionally org_id=)")

    # -- wire ------------------------------------------------------------------------

    def _auth_headers(self) -> Dict[str, str]:
        if self.api_key is not None:
            return {"X-API-Key": self.api_key}
        token = self.token() if callable(self.token) else self.token
        token = str(token or "")
        return {"Authorization": token if token.startswith("Bearer ") else f"Bearer {token}"}

    def call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        json: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """One API request; returns the envelope's ``data`` or raises a typed error."""
        url = self.base + path
        if params:
            url += "?" + requests.models.RequestEncodingMixin._encode_params(  # type: ignore[attr-defined]
                {k: v for k, v in params.items() if v is not None}
            )
        headers = self._auth_headers()
        body = None
        if json is not None:
            import json as _json

            body = _json.dumps(json).encode("utf-8")
            headers["Content-Type"] = "application/json"
        resp = self.http.request(method, url, backend=self.name, operation=operation, headers=headers, body=body)
        try:
            envelope = resp.json() if resp.content else {}
        except ValueError:
            envelope = {}
        if not isinstance(envelope, dict):
            envelope = {"data": envelope}
        message = envelope.get("message")
        if resp.status_code == 401:
            raise self.http.error(resp, backend=self.name, operation=operation, cls=AuthError, message=message,
                                  code=envelope.get("code"))
        if resp.status_code >= 400:
            raise self.http.error(resp, backend=self.name, operation=operation,
                                  cls=error_for_status(resp.status_code), message=message, code=envelope.get("code"))
        if envelope.get("code") not in _OK_CODES:
            raise RequestRejected(
                message or f"business error {envelope.get('code')}", backend=self.name, operation=operation,
                status=resp.status_code, code=envelope.get("code"),
            )
        return envelope.get("data", envelope)

    # -- uploads ---------------------------------------------------------------------

    def destination(self, key: Optional[str], options: Mapping[str, Any]) -> str:
        return f"{self.base}|{options.get('category', 'general')}"

    def md5(self, path: Any, on_progress: Any = None) -> str:
        """The MD5 the server deduplicates by (from the cache when the file is unchanged)."""
        from ..source import open_source

        with open_source(path) as src:
            return self.digest(src, "md5", on_progress=on_progress)

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        category = options.get("category", "general")
        if category not in CATEGORIES:
            raise BadInput(f"category must be one of {', '.join(CATEGORIES)}, not {category!r}",
                           backend=self.name, operation="put")
        name = key or source.name
        ext = os.path.splitext(name)[1].lstrip(".").lower()
        if not ext:
            raise BadInput(f"{name!r} has no extension; the community API needs one (give key='x.mp4')",
                           backend=self.name, operation="put")
        md5 = options.get("md5")
        if md5 is None:
            md5 = self.digest(source, "md5", on_progress=options.get("on_md5_progress"))
        payload: Dict[str, Any] = {
            "file_ext": ext,
            "file_size": source.size,
            "file_md5": md5,
            "category": category,
            "content_type": options.get("content_type") or source.content_type,
            "part_size": self.settings.part_size,
        }
        if metadata:
            payload["metadata"] = dict(metadata)
        user_id = options.get("user_id") or self.user_id
        org_id = options.get("org_id") or self.org_id
        if user_id:
            payload["user_id"] = user_id
        if org_id:
            payload["org_id"] = org_id
        return CommunityUpload(self, source, payload, metadata)


    # -- other verbs -----------------------------------------------------------------

    def file(self, id: str) -> CommunityFile:
        return CommunityFile.from_dict(self.call("GET", f"{API}/{id}", "info"))

    def info(self, id: str) -> FileInfo:
        return self.file(id).info(self.name)

    def info_by_key(self, key: str) -> FileInfo:
        """A file by its ``file_key``, or by its OSS or CDN URL."""
        data = self.call("GET", f"{API}/by-key", "info", params={"file_key": key})
        return CommunityFile.from_dict(data).info(self.name)

    def iter_files(
        self, category: Optional[str] = None, status: Optional[str] = None, page_size: int = 100
    ) -> Iterator[FileInfo]:
        """Every file, page by page, fetched as the iteration goes."""
        page = 1
        seen = 0
        while True:
            data = self.call("GET", API, "list",
                             params={"page": page, "page_size": page_size, "category": category, "status": status})
            items = data.get("list") or []
            for item in items:
                yield CommunityFile.from_dict(item).info(self.name)
            seen += len(items)
            total = (data.get("pagination") or {}).get("total")
            if not items or (total is not None and seen >= int(total)):
                return
            page += 1

    def iter(self, prefix: str = "", **options: Any) -> Iterator[FileInfo]:
        for info in self.iter_files(**options):
            f = info.extra.get("file")
            if not prefix or (f is not None and (f.file_key or "").startswith(prefix)):
                yield info

    def delete(self, id: str) -> None:
        self.call("DELETE", f"{API}/{id}", "delete")

    def abort(self, id: str) -> None:
        self.call("POST", f"{API}/upload/abort", "abort", json={"file_id": id})

    def abort_state(self, state: Dict[str, Any]) -> None:
        if state.get("file_id"):
            self.abort(str(state["file_id"]))

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        f = self.file(id)
        url = f.cdn_url or f.oss_url
        if not url:
            raise ServerError(f"file {id} has no download URL", backend=self.name, operation="get")
        if length == 0:
            return 0
        headers = {}
        if offset or length is not None:
            headers["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        # a public URL: the API's credentials are not for it
        resp = self.http.request("GET", url, backend=self.name, operation="get", headers=headers, stream=True,
                                 presigned=True)
        if resp.status_code not in (200, 206):
            raise self.http.error(resp, backend=self.name, operation="get")
        return int(self.http.copy_body(resp, sink, offset=offset, length=length, backend=self.name))


class CommunityUpload(UploadSession):
    """One upload: the server's part layout, presigned URLs, ETags."""

    parallel = True

    def __init__(self, backend: CommunityBackend, source: Source, payload: Dict[str, Any],
                 metadata: Mapping[str, str]) -> None:
        self.backend = backend
        self.source = source
        self.payload = payload
        self.metadata = metadata
        self._lock = threading.Lock()
        self.file: Optional[CommunityFile] = None
        self.parts: Dict[int, Dict[str, Any]] = {}
        self._init()

    def _init(self) -> None:
        data = self.backend.call("POST", f"{API}/upload/init", "init", json=self.payload)
        if data.get("status") == "completed":
            self.file = CommunityFile.from_dict(data.get("file") or {})
            self.parts_total = 0
            return
        self.upload_id = str(data.get("file_id"))
        with self._lock:
            for p in data.get("parts") or []:
                self.parts[int(p["part_number"])] = dict(p)
        self.resumed = data.get("status") == "resuming"
        self.parts_total = len(self.parts)
        self.done_bytes = sum(int(p["size"]) for p in self.parts.values() if p.get("uploaded"))

    def pending_parts(self) -> List[Part]:
        with self._lock:
            return [
                Part(index=n - 1, offset=int(p["start"]), size=int(p["size"]))
                for n, p in sorted(self.parts.items()) if not p.get("uploaded")
            ]

    def send_part(self, part: Part, io: PartIO) -> None:
        with self._lock:
            url = self.parts[part.index + 1]["upload_url"]
        resp = self.backend.http.request(
            "PUT", url, backend=self.backend.name, operation="part", body=io.body(), presigned=True
        )
        if resp.status_code not in (200, 201):
            err = self.backend.http.error(resp, backend=self.backend.name, operation="part")
            if resp.status_code == 403:  # an expired or refused URL: recover() gets fresh ones
                err.retryable, err.retry_after = True, 0.0
            raise err
        with self._lock:
            self.parts[part.index + 1].update(uploaded=True, etag=resp.headers.get("ETag"))

    def recover(self, part: Part, error: BaseException) -> None:
        if isinstance(error, ServerError) and error.status == 403 and error.operation == "part":
            log.info("part URL refused (%s); asking for fresh ones", error)
            with self._lock:
                done = {n for n, p in self.parts.items() if p.get("uploaded")}
            self._init()  # resumes: same layout, fresh URLs
            with self._lock:
                for n in done:
                    self.parts[n]["uploaded"] = True

    def finish(self) -> UploadResult:
        if self.file is not None:
            return _result(self.file, True, self.metadata)
        body: Dict[str, Any] = {"file_id": self.upload_id}
        if self.payload.get("user_id"):
            body["user_id"] = self.payload["user_id"]
        data = self.backend.call("POST", f"{API}/upload/complete", "complete", json=body)
        return _result(CommunityFile.from_dict(data), False, self.metadata)

    def abort(self) -> None:
        if self.upload_id:
            self.backend.abort(self.upload_id)

    def state(self) -> Optional[Dict[str, Any]]:
        return {"file_id": self.upload_id} if self.upload_id else None
