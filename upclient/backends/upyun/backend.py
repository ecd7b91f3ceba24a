"""The UPYUN backend's wire layer and its verbs other than upload.

:class:`UpyunBackend` signs every request (:mod:`.signing`), sends it through
the shared transport, and turns UPYUN's error answers (read by
:func:`.protocol.read_error`) into the shared tree in one place,
:meth:`UpyunBackend.error`.  Uploads live in :mod:`.uploads`; what their
requests and answers mean, in :mod:`.protocol`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import urllib.parse
from typing import Any, ClassVar, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Tuple, Union


from ...errors import AuthError, BadInput, ServerError, ServiceError
from ...response import HttpResponse
from ...result import FileInfo
from ...settings import Settings
from ...source import Source
from ..base import Backend, Sink, UploadSession
from ...transfer.ranges import RemoteFile, digest_of
from . import protocol
from ..urls import check_url, shown
from ...origins import origin_of
from .names import check_key, check_service, check_uuid, meta_headers, metadata_from
from .protocol import Answer, ErrorAnswer, Request
from .signing import LocalSigner, RemoteSigner, Signer, http_date, quote_path
from .uploads import cancel_multipart, open_upload

__all__ = ["UpyunBackend", "DEFAULT_ENDPOINT", "PURGE_ENDPOINT", "PROCESS_ENDPOINT", "LIST_END", "check_key"]

log = logging.getLogger("upclient.upyun")

DEFAULT_ENDPOINT = "v0.api.upyun.com"
PURGE_ENDPOINT = "purge.upyun.com"
PROCESS_ENDPOINT = "p0.api.upyun.com"
#: The ``x-upyun-list-iter`` value that marks the last page of a listing.
LIST_END = "g2gCZAAEbmV4dGQAA2VvZg"

_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$", re.IGNORECASE)

def _read_body(resp: HttpResponse) -> bytes:
    """The body of an answer; an error's is small (a broken one: the status must do)."""
    if resp.method == "HEAD":
        return b""
    try:
        return bytes(resp.content)
    except Exception as exc:
        log.debug("the body of an answer could not be read: %s", exc)
        return b""


def _endpoint_base(endpoint: str) -> str:
    """``scheme://host[:port]`` from an endpoint given with or without a scheme.

    A bare host is reached over HTTPS, except a loopback one (an emulator, a
    local proxy), which is reached over plain HTTP.
    """
    endpoint = endpoint.strip().rstrip("/")
    wrong = BadInput(f"endpoint {shown(endpoint)!r}: expected host[:port] or http(s)://host[:port]",
                     backend="upyun")
    if "://" in endpoint:
        scheme, _, host = endpoint.partition("://")
        if scheme not in ("http", "https") or not host:
            raise wrong
        base = f"{scheme}://{host}"
    else:
        host = endpoint
        base = f"{'http' if _LOOPBACK.match(endpoint) else 'https'}://{endpoint}"
    if not host or any(c in host for c in "/?#@\\"):  # no path, query, fragment or user: a signature goes there
        raise wrong
    check_url(base)  # a bad port or host, or a control character, fails here, not later on the network
    return base


class UpyunBackend(Backend):
    """UPYUN storage: ``upyun://operator@service``.

    Client options: ``password`` (or ``password_md5``, its hex MD5; or the
    ``UPYUN_PASSWORD`` environment variable), or ``auth_server`` (a URL that
    signs requests, so the password stays there); ``endpoint`` (REST and FORM
    host, default ``v0.api.upyun.com``; ``v1``..``v3`` pick a network;
    ``host:port`` or a full ``http(s)://host:port`` for an emulator or a
    proxy), ``purge_endpoint``, ``process_endpoint`` (the purge and
    processing hosts; a loopback ``endpoint`` is the default for both, as an
    emulator serves every API on one port), ``domain`` (the CDN domain purge builds URLs with,
    default ``<service>.b0.upaiyun.com``).

    Put options: ``headers`` (extra request headers: ``x-gmkerl-*``,
    ``Content-Type``...), ``checksum`` (send MD5s the service checks; default
    the client's ``checksum`` setting), ``content_type``, ``secret``
    (``Content-Secret``), ``serial`` (multipart parts one by one, in order),
    ``form`` (a FORM upload) with ``policy`` (extra policy fields:
    ``notify-url``, ``allow-file-type``...) and ``expiration`` (seconds the
    policy is valid, default 1800), ``uuid`` (finish a multipart upload
    another client began: its ``X-Upyun-Multi-Uuid``), ``file_md5`` (the
    whole file's MD5 on ``complete``: True computes it, a hex string gives
    it, default only when the client already knows it).
    """

    name: ClassVar[str] = "upyun"
    client_options: ClassVar[FrozenSet[str]] = frozenset(
        {"password", "password_md5", "auth_server", "endpoint", "purge_endpoint", "process_endpoint", "domain"}
    )
    put_options: ClassVar[FrozenSet[str]] = frozenset(
        {"headers", "checksum", "content_type", "secret", "serial", "form", "policy", "expiration", "uuid",
         "file_md5"}
    )
    extra_verbs: ClassVar[FrozenSet[str]] = frozenset(
        {"mkdir", "move", "copy", "usage", "purge", "set_metadata", "pretreat", "put_tasks", "task_status",
         "task_results", "list_page"}
    )

    def __init__(self, url: str, settings: Settings, **options: Any) -> None:
        super().__init__(url, settings, **options)
        scheme, _, rest = url.partition("://")
        operator, at, service = rest.rpartition("@")
        service = service.strip("/")
        if scheme.lower() != "upyun" or not at or not operator or not service or "/" in service:
            raise BadInput(f"{shown(url)!r}: expected upyun://operator@service", backend=self.name)
        self.service = check_service(urllib.parse.unquote(service))
        self.operator = urllib.parse.unquote(operator)
        # Only what signing needs is kept (the password's MD5, in the signer):
        # the plaintext leaves the options, and the MD5 given as an option too.
        self.options = {k: v for k, v in options.items() if k not in ("password", "password_md5")}
        password = options.get("password")
        key_md5 = options.get("password_md5")
        auth_server = options.get("auth_server")
        if password is None and key_md5 is None and auth_server is None:
            password = os.environ.get("UPYUN_PASSWORD")
        given = [n for n, v in (("password", password), ("password_md5", key_md5), ("auth_server", auth_server))
                 if v is not None]
        if len(given) != 1:
            raise BadInput(
                "the upyun backend needs exactly one of password=, password_md5= or auth_server= "
                "(or UPYUN_PASSWORD in the environment)" + (f"; got {', '.join(given)}" if given else ""),
                backend=self.name,
            )
        self.signer: Signer
        if auth_server is not None:
            self.signer = RemoteSigner(self.operator, str(auth_server), self._ask_auth_server)
        elif key_md5 is not None:
            if not re.fullmatch(r"[0-9a-fA-F]{32}", str(key_md5)):
                raise BadInput("password_md5 must be 32 hex digits", backend=self.name)
            self.signer = LocalSigner(self.operator, password_md5_hex=str(key_md5))
        else:
            self.signer = LocalSigner(self.operator, str(password))
        endpoint = options.get("endpoint") or DEFAULT_ENDPOINT
        self.base = _endpoint_base(endpoint)
        # an emulator on loopback serves every API on one port; the service has three hosts
        local = bool(_LOOPBACK.match(self.base.partition("://")[2]))
        self.purge_base = _endpoint_base(options.get("purge_endpoint") or (endpoint if local else PURGE_ENDPOINT))
        self.process_base = _endpoint_base(options.get("process_endpoint") or (endpoint if local else PROCESS_ENDPOINT))
        self.domain = options.get("domain") or f"{self.service}.b0.upaiyun.com"
        self._sign_lock = threading.Lock()

    def __repr__(self) -> str:  # no operator: it is half of the credentials
        return f"<UpyunBackend {self.service} via {self.base}>"

    def home_origins(self) -> Optional[List[str]]:
        """The REST, purge and processing endpoints, and the trusted origins: the
        client's ``auth`` and ``headers`` go nowhere else (signatures go only to the endpoints)."""
        own = [o for o in (origin_of(b) for b in (self.base, self.purge_base, self.process_base)) if o]
        return list(dict.fromkeys([*own, *self.settings.trusted_origins]))

    # -- wire ------------------------------------------------------------------------

    def _ask_auth_server(self, url: str, fields: Mapping[str, Any]) -> str:
        body = json.dumps(dict(fields)).encode("utf-8")
        resp = self.http.request("POST", url, backend=self.name, operation="sign", body=body,
                                 headers={"Content-Type": "application/json"}, presigned=True)
        if resp.status_code != 200 or not resp.text.strip():
            raise self.http.error(resp, backend=self.name, operation="sign",
                                  cls=AuthError if resp.status_code in (200, 401, 403) else None)
        return resp.text

    def path(self, key: str, *, folder: bool = False) -> str:
        """The quoted wire path of ``key`` in this service: ``/<service>/<key>``."""
        return quote_path(f"/{self.service}/{check_key(key, folder=folder)}")

    def send(self, req: Request, body: Any = None, *, base: Optional[str] = None,
             stream: bool = False) -> Answer:
        """Sign and send ``req``; any status comes back as an :class:`~.protocol.Answer`.

        The body of a success is read unless ``stream`` (then ``raw`` holds
        it); an error's is always read, for :meth:`error`.
        """
        headers: Dict[str, str] = dict(req.headers)
        date = http_date()
        headers["Date"] = date
        headers["Authorization"] = self.signer.sign(req.method, req.path, date,
                                                    content_md5=headers.get("Content-MD5"))
        resp = self.http.request(req.method, (base or self.base) + req.path, backend=self.name,
                                 operation=req.operation, headers=headers, body=body, stream=stream)
        content = b""
        if not stream or resp.status_code not in req.ok:
            content = _read_body(resp)
        return Answer(resp.status_code, resp.headers, content, raw=resp)

    def call(self, req: Request, body: Any = None, *, base: Optional[str] = None, stream: bool = False) -> Answer:
        """:meth:`send`, raising the typed error unless the status is one of ``req.ok``."""
        answer = self.send(req, body, base=base, stream=stream)
        if answer.status not in req.ok:
            raise self.error(answer, req.operation)
        return answer

    def error(self, answer: Answer, operation: str, failure: Optional[ErrorAnswer] = None) -> ServerError:
        """The typed error for an error answer (read by :func:`.protocol.read_error`
        unless ``failure`` says already): code, message, request id.  Every UPYUN
        error is built here."""
        failure = failure or protocol.read_error(answer)
        err = self.http.error(answer.raw, backend=self.name, operation=operation, cls=failure.kind,
                              message=failure.message, code=failure.code)
        if not err.request_id and failure.request_id:
            err.request_id = failure.request_id
        return err

    def request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
        query: str = "",
        stream: bool = False,
        ok: Tuple[int, ...] = (200,),
        base: Optional[str] = None,
    ) -> HttpResponse:
        """One signed request to ``path`` (already quoted) plus ``query``; typed error unless ``ok``."""
        answer = self.call(Request(method, path + query, operation, dict(headers or {}), ok), body,
                           base=base, stream=stream)
        return answer.raw

    # -- uploads ---------------------------------------------------------------------

    def destination(self, key: Optional[str], options: Mapping[str, Any]) -> str:
        return f"upyun://{self.service}{self.base}|{key or ''}"

    def open_upload(
        self,
        source: Source,
        *,
        key: Optional[str],
        metadata: Mapping[str, str],
        options: Mapping[str, Any],
        state: Optional[Dict[str, Any]],
    ) -> UploadSession:
        return open_upload(self, source, key=key, metadata=metadata, options=options, state=state)

    def abort_state(self, state: Dict[str, Any]) -> None:
        cancel_multipart(self, state)

    def abort(self, id: str) -> None:
        """Cancel the multipart upload whose resume point names ``id`` (``key#uuid``)."""
        key, sep, uuid = id.rpartition("#")
        if not sep or not uuid:
            raise BadInput("abort takes 'key#uuid' (UploadResult.extra['uuid']) or a local file path",
                           backend=self.name, operation="abort")
        self.abort_state({"key": check_key(key), "uuid": check_uuid(uuid, "abort")})

    # -- reading ---------------------------------------------------------------------

    def download(self, id: str, sink: Sink, *, offset: int = 0, length: Optional[int] = None) -> int:
        if length == 0:
            return 0
        headers = {}
        if offset or length is not None:
            headers["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        resp = self.request("GET", self.path(id), "get", headers=headers, stream=True, ok=(200, 206))
        return int(self.http.copy_body(resp, sink, offset=offset, length=length, backend=self.name))

    def open_download(self, id: str) -> Optional[RemoteFile]:
        """A file to read by ranges: its size, MD5 and date from one HEAD (None for a folder)."""
        info = self.info(id)
        if info.extra.get("type") != "file" or info.size is None:
            return None
        size, path = info.size, self.path(id)

        def read(sink: Sink, offset: int, length: int, strict: bool) -> int:
            resp = self.request("GET", path, "get", headers={"Range": f"bytes={offset}-{offset + length - 1}"},
                                stream=True, ok=(200, 206))
            return int(self.http.copy_range(resp, sink, offset=offset, length=length, size=size, strict=strict,
                                            backend=self.name))

        md5 = info.extra.get("md5")
        return RemoteFile(size=size, read=read, version={"md5": md5, "date": info.modified},
                          digest=digest_of("md5", md5))

    def info(self, id: str) -> FileInfo:
        resp = self.request("HEAD", self.path(id, folder=True), "info")
        h = resp.headers
        size = h.get("x-upyun-file-size")
        date = h.get("x-upyun-file-date")
        kind = h.get("x-upyun-file-type") or "file"
        return FileInfo(
            id=check_key(id, folder=True), backend=self.name,
            size=int(size) if size and size.isdigit() else None,
            content_type=h.get("Content-Type") if kind == "file" else None,
            modified=float(date) if date and date.isdigit() else None,
            metadata=metadata_from(h),
            extra={"type": kind, "md5": h.get("Content-MD5"), "headers": dict(h)},
        )

    def list_page(
        self, folder: str = "", *, limit: int = 1000, order: str = "asc", iter: Optional[str] = None
    ) -> Tuple[List[FileInfo], Optional[str]]:
        """One page of ``folder``: its entries and the token of the next page (None after the last)."""
        if not 1 <= int(limit) <= 10000:
            raise BadInput(f"limit must be 1..10000, not {limit!r}", backend=self.name, operation="list")
        if order not in ("asc", "desc"):
            raise BadInput(f"order must be 'asc' or 'desc', not {order!r}", backend=self.name, operation="list")
        prefix = check_key(folder, folder=True).rstrip("/") + "/" if folder.strip("/") else ""
        path = quote_path(f"/{self.service}/{prefix}")
        headers = {"X-List-Limit": str(int(limit)), "X-List-Order": order}
        if iter:
            if not isinstance(iter, str) or not re.fullmatch(r"[!-~]+", iter):
                raise BadInput(f"iter {iter!r} is not a listing token (x-upyun-list-iter)", backend=self.name,
                               operation="list")
            headers["X-List-Iter"] = iter
        resp = self.request("GET", path, "list", headers=headers)
        entries = [
            FileInfo(id=prefix + name + ("/" if folder_entry else ""), backend=self.name, size=size, modified=mtime,
                     extra={"type": "folder" if folder_entry else "file", "name": name})
            for name, folder_entry, size, mtime in protocol.listing(resp.content.decode("utf-8"))
        ]
        token = resp.headers.get("x-upyun-list-iter")
        return entries, (None if not token or token == LIST_END or not entries else token)

    def iter(self, prefix: str = "", **options: Any) -> Iterator[FileInfo]:
        """Every entry of the folder ``prefix``, page after page as the iteration asks.

        Options: ``limit`` (entries per page, default 1000) and ``order``
        (``asc`` or ``desc`` by name).
        """
        unknown = set(options) - {"limit", "order"}
        if unknown:
            raise BadInput(f"iter takes limit= and order=, not {', '.join(sorted(unknown))}", backend=self.name)
        token: Optional[str] = None
        while True:
            entries, token = self.list_page(prefix, iter=token, **options)
            yield from entries
            if token is None:
                return

    def usage(self) -> int:
        """Bytes the service stores."""
        resp = self.request("GET", quote_path(f"/{self.service}/"), "usage", query="?usage")
        return int(resp.text.strip() or 0)

    # -- changing --------------------------------------------------------------------

    def delete(self, id: str, *, asynchronous: bool = False) -> None:
        headers = {"x-upyun-async": "true"} if asynchronous else None
        self.request("DELETE", self.path(id, folder=True), "delete", headers=headers)

    def mkdir(self, folder: str) -> None:
        """Create the folder ``folder`` (Conflict if it exists)."""
        path = self.path(folder.rstrip("/") + "/", folder=True)
        self.request("POST", path, "mkdir", headers={"Folder": "true", "x-upyun-folder": "true"})

    def _transfer(self, how: str, src: str, dst: str, metadata_directive: Optional[str]) -> None:
        headers = {f"X-Upyun-{how}-Source": self.path(src)}
        if metadata_directive is not None:
            if metadata_directive not in ("copy", "replace"):
                raise BadInput("metadata_directive must be 'copy' or 'replace'", backend=self.name)
            headers["X-Upyun-Metadata-Directive"] = metadata_directive
        self.request("PUT", self.path(dst), how.lower(), headers=headers, body=b"")

    def move(self, src: str, dst: str, *, metadata_directive: Optional[str] = None) -> None:
        """Move (rename) the file ``src`` to ``dst``."""
        self._transfer("Move", src, dst, metadata_directive)

    def copy(self, src: str, dst: str, *, metadata_directive: Optional[str] = None) -> None:
        """Copy the file ``src`` to ``dst`` on the server."""
        self._transfer("Copy", src, dst, metadata_directive)

    def set_metadata(self, key: str, metadata: Mapping[str, str], mode: str = "merge") -> None:
        """Change a file's ``x-upyun-meta-*``: ``merge``, ``replace`` or ``delete`` the given keys."""
        if mode not in ("merge", "replace", "delete"):
            raise BadInput("mode must be 'merge', 'replace' or 'delete'", backend=self.name, operation="metadata")
        self.request("PATCH", self.path(key), "metadata", query=f"?metadata={mode}",
                     headers=meta_headers(metadata), body=b"")

    # -- CDN purge ---------------------------------------------------------------------

    def purge(self, targets: Union[str, Iterable[str]], *, domain: Optional[str] = None) -> List[str]:
        """Refresh the CDN copies of keys (or full URLs); returns the URLs the service refused."""
        items = [targets] if isinstance(targets, str) else list(targets)
        if not items:
            return []
        host = domain or self.domain
        urls = [t if "://" in t else f"http://{host}/{quote_path(check_key(t)).lstrip('/')}" for t in items]
        field = "\n".join(urls) + "\n"
        date = http_date()
        headers = {
            "Date": date,
            "Authorization": self.signer.sign_purge(self.service, field, date),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        body = urllib.parse.urlencode({"purge": field}).encode("ascii")
        resp = self.http.request("POST", self.purge_base + "/purge/", backend=self.name, operation="purge",
                                 headers=headers, body=body)
        if resp.status_code != 200:
            raise self.error(Answer(resp.status_code, resp.headers, _read_body(resp), raw=resp), "purge")
        try:
            return list(resp.json().get("invalid_domain_of_url") or [])
        except ValueError as exc:
            raise ServiceError("purge: the answer is not JSON", backend=self.name, operation="purge",
                               status=resp.status_code) from exc

    # -- processing tasks --------------------------------------------------------------

    def pretreat(
        self, tasks: List[Mapping[str, Any]], source: str, notify_url: str = "", *, app: Optional[str] = None
    ) -> List[str]:
        """Submit processing tasks on ``source``; returns their task ids, in order."""
        if not isinstance(tasks, list) or not 1 <= len(tasks) <= 10:
            raise BadInput("tasks must be a list of 1 to 10 task objects", backend=self.name, operation="pretreat")
        fields = {
            "service": self.service,
            "notify_url": notify_url,
            "source": source,
            "tasks": base64.b64encode(json.dumps(tasks).encode("utf-8")).decode("ascii"),
            "accept": "json",
        }
        if app:
            fields["app_name"] = app
        body = urllib.parse.urlencode(fields).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Content-MD5": hashlib.md5(body).hexdigest()}
        resp = self.request("POST", "/pretreatment/", "pretreat", headers=headers, body=body,
                            base=self.process_base)
        ids = resp.json()
        if not isinstance(ids, list):
            raise ServiceError(f"pretreat: expected a list of task ids, got {ids!r}"[:200], backend=self.name,
                               operation="pretreat")
        return [str(i) for i in ids]

    def put_tasks(self, tasks: List[Mapping[str, Any]], notify_url: str, app: str) -> List[str]:
        """Submit tasks to a processing app (``compress``, ``depress``, ``spiderman``...)."""
        return self.pretreat(tasks, "", notify_url, app=app)

    def _task_query(self, what: str, task_ids: Iterable[str]) -> Dict[str, Any]:
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        if not 1 <= len(ids) <= 20:
            raise BadInput("give 1 to 20 task ids", backend=self.name, operation=what)
        query = "?" + urllib.parse.urlencode({"service": self.service, "task_ids": ",".join(ids)})
        data = self.request("GET", f"/{what}/", what, query=query, base=self.process_base).json()
        return dict(data.get("tasks") or {}) if isinstance(data, dict) else {}

    def task_status(self, task_ids: Iterable[str]) -> Dict[str, Optional[int]]:
        """Progress of each task: 0..100, -1 failed, None unknown."""
        return self._task_query("status", task_ids)

    def task_results(self, task_ids: Iterable[str]) -> Dict[str, Any]:
        """The result (the callback payload) of each finished task."""
        return self._task_query("result", task_ids)
