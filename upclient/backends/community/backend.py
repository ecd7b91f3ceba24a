"""The community backend's verbs: :class:`CommunityBackend`.

Requests are built and answers read by :mod:`.protocol`; this module sends
them through the shared transport.  Uploads are sessions of :mod:`.uploads`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar, Dict, FrozenSet, Iterator, Mapping, Optional, Union

from ...errors import BadInput, ServerError
from ...result import FileInfo
from ...settings import Settings
from ...source import Source
from ...transfer import UploadSession
from ...transfer.ranges import RemoteFile, digest_of
from ..base import Backend, Sink
from . import protocol
from ..urls import shown, without_userinfo
from .protocol import CATEGORIES, Answer, CommunityFile, Request

__all__ = ["CommunityBackend"]

log = logging.getLogger("upclient.community")


class CommunityBackend(Backend):
    """The community multipart API.  URL: ``community+https://api.example.com``.

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
    #: A stream (of known size or not) is spooled to a temporary file and
    #: hashed as it is read: init needs the whole file's MD5 first.
    streams: ClassVar[bool] = True
    #: Verbs of this backend beyond the shared ones, reachable on the Client.
    extra_verbs: ClassVar[FrozenSet[str]] = frozenset({"info_by_key", "iter_files", "md5"})

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        if without_userinfo(url)[1] is not None:  # Basic auth would replace the bearer token
            raise BadInput(f"{shown(url)!r}: the community API takes token= or api_key=, not a user and "
                           "password in the URL", backend=self.name)
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        inner = scheme.split("+", 1)[1] if "+" in scheme else scheme
        if inner not in ("http", "https") or not rest:
            raise BadInput(f"{shown(url)!r}: expected community+https://host or community+http://host")
        if "?" in rest or "#" in rest:
            raise BadInput(f"{shown(url)!r}: the API's base URL takes no query or fragment", backend=self.name)
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

    def send(self, request: Request) -> Answer:
        """Send one API request (with auth); any status comes back as an :class:`Answer`."""
        headers = protocol.auth_headers(self.token, self.api_key)
        body = request.content()
        if body is not None:
            headers["Content-Type"] = "application/json"
        resp = self.http.request(request.method, request.url(self.base), backend=self.name,
                                 operation=request.operation, headers=headers, body=body)
        return Answer.of(resp)

    def call(self, request: Request) -> Any:
        """One API request; the envelope's ``data``, or a typed error."""
        return protocol.read_envelope(self.send(request), request.operation)

    def put_part(self, url: str, body: Any) -> Answer:
        """PUT one part's bytes to its presigned URL: no credentials, no Content-Type."""
        resp = self.http.request("PUT", url, backend=self.name, operation="part", body=body, presigned=True)
        return Answer.of(resp)

    # -- uploads ---------------------------------------------------------------------

    def destination(self, key: Optional[str], options: Mapping[str, Any]) -> str:
        return f"{self.base}|{options.get('category', 'general')}"

    def md5(self, path: Any, on_progress: Any = None) -> str:
        """The MD5 the server deduplicates by (from the cache when the file is unchanged)."""
        from ...source import open_source

        with open_source(path) as src:
            return self.digest(src, "md5", on_progress=on_progress)  # stopped by the call's signal

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        from .uploads import CommunityUpload

        category = options.get("category", "general")
        if category not in CATEGORIES:
            raise BadInput(f"category must be one of {', '.join(CATEGORIES)}, not {category!r}",
                           backend=self.name, operation="put")
        md5 = options.get("md5")
        if md5 is not None and not (isinstance(md5, str) and len(md5) == 32 and
                                    all(c in "0123456789abcdefABCDEF" for c in md5)):
            raise BadInput(f"md5 must be 32 hex digits, not {md5!r}", backend=self.name, operation="put")
        payload: Dict[str, Any] = {
            "file_ext": protocol.file_ext(key or source.name),
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
        return CommunityUpload(self, source, payload, metadata, state=state,
                               md5=md5.lower() if md5 else None, on_md5_progress=options.get("on_md5_progress"))

    # -- other verbs -----------------------------------------------------------------

    def file(self, id: str) -> CommunityFile:
        return protocol.read_file(self.send(protocol.info_request(id)))

    def info(self, id: str) -> FileInfo:
        return self.file(id).info(self.name)

    def info_by_key(self, key: str) -> FileInfo:
        """A file by its ``file_key``, or by its OSS or CDN URL."""
        return protocol.read_file(self.send(protocol.by_key_request(key))).info(self.name)

    def iter_files(
        self, category: Optional[str] = None, status: Optional[str] = None, page_size: int = 100
    ) -> Iterator[FileInfo]:
        """Every file, page by page, fetched as the iteration goes."""
        page = 1
        seen = 0
        while True:
            items, total = protocol.read_list(self.send(protocol.list_request(page, page_size, category, status)))
            for item in items:
                yield item.info(self.name)
            seen += len(items)
            if not items or (total is not None and seen >= total):
                return
            page += 1

    def iter(self, prefix: str = "", **options: Any) -> Iterator[FileInfo]:
        for info in self.iter_files(**options):
            f = info.extra.get("file")
            if not prefix or (f is not None and (f.file_key or "").startswith(prefix)):
                yield info

    def delete(self, id: str) -> None:
        self.call(protocol.delete_request(id))

    def abort(self, id: str) -> None:
        self.call(protocol.abort_request(id))

    def abort_state(self, state: Dict[str, Any]) -> None:
        if state.get("file_id"):
            self.abort(str(state["file_id"]))

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        url = self._object_url(self.file(id))
        if length == 0:
            return 0
        headers = {}
        if offset or length is not None:
            headers["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        resp = self._get_object(url, headers)
        return int(self.http.copy_body(resp, sink, offset=offset, length=length, backend=self.name))

    def open_download(self, id: str) -> Optional[RemoteFile]:
        """A confirmed file to read by ranges from its object URL, found once: size and MD5 from the API."""
        f = self.file(id)
        if f.status != "confirmed" or not isinstance(f.file_size, int):
            return None
        url, size = self._object_url(f), f.file_size

        def read(sink: Sink, offset: int, length: int, strict: bool) -> int:
            resp = self._get_object(url, {"Range": f"bytes={offset}-{offset + length - 1}"})
            return int(self.http.copy_range(resp, sink, offset=offset, length=length, size=size, strict=strict,
                                            backend=self.name))

        return RemoteFile(size=size, read=read, version={"md5": f.file_md5, "key": f.file_key},
                          digest=digest_of("md5", f.file_md5))

    def _object_url(self, f: CommunityFile) -> str:
        url = f.cdn_url or f.oss_url
        if not url:
            raise ServerError(f"file {f.id} has no download URL", backend=self.name, operation="get")
        return protocol.fetch_url(url, "download URL", operation="get")

    def _get_object(self, url: str, headers: Dict[str, str]) -> Any:
        # a public URL: the API's credentials are not for it
        resp = self.http.request("GET", url, backend=self.name, operation="get", headers=headers, stream=True,
                                 presigned=True)
        if resp.status_code not in (200, 206):
            raise self.http.error(resp, backend=self.name, operation="get")
        return resp
