"""UPYUN uploads: one signed PUT, resumable multipart, and FORM.

- A file no larger than the client's ``part_size`` goes in one signed PUT,
  streamed from the file; with ``checksum`` its bytes are read once into
  memory, digested, and sent from there, so the ``Content-MD5`` costs no
  second read.
- A larger file goes as a resumable multipart upload: ``initiate`` gives an
  upload uuid, parts (a multiple of 1 MiB each) go in parallel
  (``X-Upyun-Multi-Disorder``) or, with ``serial=True``, one by one in
  order, each with its ``Content-MD5``; ``complete`` joins them.  The whole
  file's MD5 goes with ``complete`` when it costs nothing (the client's
  digest cache knows it), or when asked (``file_md5=True``: hashed from the
  parts as they go, in order; a second read only when parts finished too far
  out of order, or on a resume), or given (``file_md5="<hex>"``).  The uuid and the
  parts done are the resume point.  A resume asks the server which parts it
  holds, so only what was in flight at the interruption is sent again.  A
  "part id error" re-synchronises from the ``X-Upyun-Next-Part-Id`` of the
  answer; "part already complete" and "file already upload" count as done;
  an upload the server has forgotten (24 hours, "uuid not found") starts
  afresh under a new uuid, re-sending the parts it had.
- ``form=True`` posts the file as ``multipart/form-data`` with a signed
  policy (``save-key`` placeholders, ``notify-url``, ``return-url``, type
  and size limits...), streamed from the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import urllib.parse
import uuid as uuidlib
from typing import Any, Dict, List, Mapping, Optional, Protocol, Set, Tuple

import requests

from ...errors import BadInput, NotFound, OffsetConflict, RequestRejected, ServerError, UploadExpired
from ...result import FileInfo, UploadResult
from ...settings import Settings
from ...source import PartBody, Source
from ...transfer import Part, PartIO, UploadSession
from .names import check_key, meta_headers
from .signing import Signer, http_date



class UpyunWire(Protocol):
    """What an upload needs of the backend that opens it (:class:`.backend.UpyunBackend`)."""

    service: str
    base: str
    settings: Settings
    signer: Signer
    digests: Any

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def http(self) -> Any: ...

    def path(self, key: str, *, folder: bool = False) -> str: ...

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
    ) -> requests.Response: ...

    def error_for(self, resp: requests.Response, operation: str) -> ServerError: ...

    def digest(self, source: Source, algorithm: str = "md5", *, on_progress: Any = None) -> str: ...

    def info(self, id: str) -> FileInfo: ...


__all__ = ["open_upload", "cancel_multipart", "MIN_PART", "MAX_PART", "UPLOAD_LIFETIME"]

log = logging.getLogger("upclient.upyun")

MIN_PART = 1024 * 1024
MAX_PART = 50 * MIN_PART
#: Seconds the service keeps an unfinished multipart upload.
UPLOAD_LIFETIME = 24 * 3600

# UPYUN codes an upload meets on its way
FILE_ALREADY_UPLOADED = 40011059
PART_ALREADY_COMPLETE = 40011062


def _check_headers(headers: Any) -> Dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise BadInput("headers must be a mapping of str to str", backend="upyun", operation="put")
    out = {}
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str) or any(c in k + v for c in "\r\n\x00"):
            raise BadInput(f"header {k!r}: names and values must be one-line strings", backend="upyun",
                           operation="put")
        out[k] = v
    return out


def open_upload(
    backend: UpyunWire,
    source: Source,
    *,
    key: Optional[str],
    metadata: Mapping[str, str],
    options: Mapping[str, Any],
    state: Optional[Dict[str, Any]],
) -> UploadSession:
    """The session for one upload; see the module docstring for which kind."""
    name = check_key(key if key is not None else source.name)
    headers = _check_headers(options.get("headers"))
    lower = {k.lower(): k for k in headers}
    content_type = options.get("content_type") or (headers.pop(lower["content-type"]) if "content-type" in lower
                                                   else None)
    secret = options.get("secret")
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9]+", str(secret)):
        raise BadInput("secret (Content-Secret) takes letters and digits only", backend="upyun", operation="put")
    checksum = bool(options.get("checksum", backend.settings.checksum))
    if not options.get("form") and ("policy" in options or "expiration" in options):
        raise BadInput("policy= and expiration= are for FORM uploads: add form=True", backend="upyun",
                       operation="put")
    common: Dict[str, Any] = dict(
        key=name, headers=headers, metadata=metadata, content_type=content_type or source.content_type,
        explicit_type=content_type is not None, secret=secret, checksum=checksum,
    )
    if options.get("form"):
        return FormUpload(backend, source, policy=options.get("policy") or {},
                          expiration=options.get("expiration", 1800), **common)
    file_md5 = options.get("file_md5")
    if not (file_md5 is None or isinstance(file_md5, bool)
            or (isinstance(file_md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", file_md5))):
        raise BadInput("file_md5 is True, False, or the file's MD5 as 32 hex digits", backend="upyun",
                       operation="put")
    size = source.size or 0
    adopt = options.get("uuid")
    if adopt is not None and (not isinstance(adopt, str) or not adopt):
        raise BadInput("uuid must be the X-Upyun-Multi-Uuid of an unfinished upload", backend="upyun",
                       operation="put")
    if size <= backend.settings.part_size and adopt is None:
        return SinglePut(backend, source, **common)
    return MultipartUpload(backend, source, serial=bool(options.get("serial")), state=state, adopt=adopt,
                           file_md5=file_md5, **common)


class _UpyunSession(UploadSession):
    """What the three kinds of upload share: the target, its headers, the result."""

    def __init__(
        self,
        backend: UpyunWire,
        source: Source,
        *,
        key: str,
        headers: Dict[str, str],
        metadata: Mapping[str, str],
        content_type: str,
        explicit_type: bool,
        secret: Optional[str],
        checksum: bool,
    ) -> None:
        self.backend = backend
        self.source = source
        self.key = key
        self.path = backend.path(key)
        self.user_headers = headers
        self.metadata = dict(metadata)
        self.content_type = content_type
        self.explicit_type = explicit_type
        self.secret = secret
        self.checksum = checksum
        self.size = source.size or 0
        self.answer: Mapping[str, str] = {}

    def file_headers(self) -> Dict[str, str]:
        """Headers that describe the stored file: type, metadata, secret, the user's own."""
        h = {"Content-Type": self.content_type}
        h.update(meta_headers(self.metadata))
        if self.secret:
            h["Content-Secret"] = self.secret
        h.update(self.user_headers)
        return h

    def result(self, **extra: Any) -> UploadResult:
        upyun = {k.lower()[len("x-upyun-"):]: v for k, v in self.answer.items()
                 if k.lower().startswith("x-upyun-")}
        return UploadResult(
            id=self.key, key=self.key, size=self.size, backend="upyun",
            url=f"https://{self.backend.options['domain']}/{self.path.split('/', 2)[2]}"
            if self.backend.options.get("domain") else None,
            metadata=self.metadata, extra={"headers": upyun, **extra},
        )


class SinglePut(_UpyunSession):
    """A file up to one part: one signed PUT."""

    parts_total = 1

    def pending_parts(self) -> List[Part]:
        return [Part(index=0, offset=0, size=self.size)]

    def send_part(self, part: Part, io: PartIO) -> None:
        headers = self.file_headers()
        if self.checksum:
            data = io.read()
            headers["Content-MD5"] = hashlib.md5(data).hexdigest()
            body = io.body(data=data)
        else:
            body = io.body()
        resp = self.backend.request("PUT", self.path, "put", headers=headers, body=body)
        self.answer = resp.headers

    def finish(self) -> UploadResult:
        return self.result()


# ------------------------------------------------------------------------------ multipart


class _InOrderMD5:
    """The whole file's MD5 from parts that arrive in any order.

    A part that comes before its predecessors waits in memory, up to
    ``limit`` parts; past that the running digest is given up and
    :meth:`hexdigest` says None (the caller reads the file instead).
    """

    def __init__(self, limit: int, usable: bool = True) -> None:
        self._h = hashlib.md5()
        self._next = 0
        self._waiting: Dict[int, bytes] = {}
        self._limit = limit
        self._usable = usable
        self._lock = threading.Lock()

    def feed(self, index: int, data: bytes) -> None:
        with self._lock:
            if not self._usable or index < self._next or index in self._waiting:
                return
            if index != self._next:
                if len(self._waiting) >= self._limit:
                    self._usable = False
                    self._waiting.clear()
                else:
                    self._waiting[index] = data
                return
            self._h.update(data)
            self._next += 1
            while self._next in self._waiting:
                self._h.update(self._waiting.pop(self._next))
                self._next += 1

    def hexdigest(self, parts: int) -> Optional[str]:
        with self._lock:
            return self._h.hexdigest() if self._usable and self._next == parts else None


class MultipartUpload(_UpyunSession):
    """A resumable multipart upload; see the module docstring."""

    def __init__(self, backend: UpyunWire, source: Source, *, serial: bool, state: Optional[Dict[str, Any]],
                 adopt: Optional[str] = None, file_md5: Any = None, **common: Any) -> None:
        super().__init__(backend, source, **common)
        part_size = backend.settings.part_size
        if adopt is not None:  # another client's upload: its part size is the server's to say
            part_size = self._adopt(adopt)
        if part_size % MIN_PART or not MIN_PART <= part_size <= MAX_PART:
            raise BadInput(
                f"UPYUN multipart parts must be a multiple of 1 MiB from 1 to 50 MiB; part_size={part_size} "
                "is not (give e.g. part_size=16 * 1024 * 1024)", backend="upyun", operation="put")
        self.part_size = part_size
        self.parallel = not serial
        self.nparts = math.ceil(self.size / part_size)
        self.parts_total = self.nparts
        self._lock = threading.Lock()
        self.done: Set[int] = set()
        self.uuid = ""
        self.initiated = 0.0
        self.already_uploaded = False
        self._restarts = 0
        self.file_md5 = file_md5
        self._md5 = self._new_md5()
        if adopt is not None:
            state = {"key": self.key, "size": self.size, "part_size": part_size, "serial": serial, "uuid": adopt,
                     "done": []}
        if state and self._matches(state):
            self.uuid = str(state["uuid"])
            self.initiated = float(state.get("initiated") or time.time())
            self.done = {int(i) for i in state.get("done") or ()}
            try:
                self._resync()
                self.resumed = True
            except (UploadExpired, NotFound) as exc:
                log.info("stored upload %s is gone (%s); starting afresh", self.key, exc)
                self._initiate()
        else:
            self._initiate()
        self.expires = self.initiated + UPLOAD_LIFETIME
        self.upload_id = self.uuid
        self.done_bytes = sum(self._part(i).size for i in self.done)

    def _new_md5(self) -> Optional[_InOrderMD5]:
        """A running whole-file MD5, when one is asked for and the parts pass through memory."""
        return _InOrderMD5(self.backend.settings.concurrency) if self.file_md5 is True and self.checksum else None

    def _whole_md5(self) -> Optional[str]:
        """``X-Upyun-Multi-MD5``: given, computed on the way (or by reading), or free from the cache."""
        if isinstance(self.file_md5, str):
            return self.file_md5.lower()
        if self.file_md5 is False:
            return None
        cache = self.backend.digests
        known = cache.known(self.source, "md5") if cache is not None else None
        if known is not None or self.file_md5 is None:
            return known
        running = self._md5.hexdigest(self.nparts) if self._md5 is not None else None
        if running is None:
            return self.backend.digest(self.source, "md5")
        if cache is not None:
            cache.remember(self.source, "md5", running)
        return running

    def _matches(self, state: Mapping[str, Any]) -> bool:
        return (
            state.get("key") == self.key and state.get("size") == self.size
            and state.get("part_size") == self.part_size and bool(state.get("serial")) == (not self.parallel)
            and isinstance(state.get("uuid"), str)
        )

    def _adopt(self, uuid: str) -> int:
        """The part size of an upload begun elsewhere; BadInput unless it is one of this file."""
        try:
            resp = self.backend.request("GET", self.path, "query",
                                        headers={"X-Upyun-Multi-Info": "true", "X-Upyun-Multi-Uuid": uuid})
        except NotFound as exc:
            raise UploadExpired(f"no unfinished upload {uuid} of {self.key}: {exc.message}", backend="upyun",
                                operation="query", status=exc.status, code=exc.code) from exc
        length = resp.headers.get("X-Upyun-Multi-Length")
        part_size = resp.headers.get("X-Upyun-Multi-Part-Size")
        if length is not None and length.isdigit() and int(length) != self.size:
            raise BadInput(f"upload {uuid} is of {length} bytes; this source has {self.size}", backend="upyun",
                           operation="put")
        return int(part_size) if part_size and part_size.isdigit() else self.backend.settings.part_size

    def _part(self, index: int) -> Part:
        offset = index * self.part_size
        return Part(index=index, offset=offset, size=min(self.part_size, self.size - offset))

    # -- the server's side of things ---------------------------------------------------

    def _initiate(self) -> None:
        headers = self.file_headers()
        headers.pop("Content-Type", None)  # the type of the file is X-Upyun-Multi-Type
        headers.update({
            "X-Upyun-Multi-Stage": "initiate",
            "X-Upyun-Multi-Length": str(self.size),
            "X-Upyun-Multi-Type": self.content_type,
            "X-Upyun-Multi-Part-Size": str(self.part_size),
        })
        if self.parallel:
            headers["X-Upyun-Multi-Disorder"] = "true"
        resp = self.backend.request("PUT", self.path, "initiate", headers=headers, body=b"", ok=(200, 201, 204))
        uuid = resp.headers.get("x-upyun-multi-uuid")
        if not uuid:
            raise RequestRejected("initiate: the answer has no x-upyun-multi-uuid", backend="upyun",
                                  operation="initiate", status=resp.status_code)
        with self._lock:
            self.uuid = uuid
            self.done = set()
            self.initiated = time.time()
            self._md5 = self._new_md5()
        self.expires = self.initiated + UPLOAD_LIFETIME
        self.upload_id = uuid

    def _resync(self) -> None:
        """Ask the server which parts it holds (UploadExpired when it forgot the upload)."""
        try:
            resp = self.backend.request("GET", self.path, "query", headers={"X-Upyun-Multi-Uuid": self.uuid})
            listed = resp.json().get("parts")
            held = {int(p["id"]) for p in listed or []}
        except UploadExpired:
            raise
        except NotFound as exc:
            raise UploadExpired(str(exc), backend="upyun", operation="query", status=exc.status,
                                code=exc.code) from exc
        except (ServerError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # a server without the query: the stored list of parts stands
            log.debug("cannot ask the server for the parts of %s (%s); trusting the resume point", self.key, exc)
            return
        with self._lock:
            self.done = held
            if self.done and self._md5 is not None:
                self._md5 = _InOrderMD5(0, usable=False)  # the first parts are not in memory
        self.expires = self.initiated + UPLOAD_LIFETIME
        self.upload_id = self.uuid

    # -- the engine's side -----------------------------------------------------------

    def pending_parts(self) -> List[Part]:
        with self._lock:
            return [self._part(i) for i in range(self.nparts) if i not in self.done]

    def confirmed(self, part: Part) -> int:
        with self._lock:
            return part.size if part.index in self.done else 0

    def send_part(self, part: Part, io: PartIO) -> None:
        with self._lock:
            if part.index in self.done or self.already_uploaded:
                return
            uuid = self.uuid
            missing = [i for i in range(part.index) if i not in self.done] if not self.parallel else []
        for index in missing:  # serial: the server wants earlier parts first
            self._send(self._part(index), self._uncounted_io(index), uuid)
        self._send(part, io, uuid)

    def _uncounted_io(self, index: int) -> PartIO:
        """A part sent again out of the engine's schedule: its bytes were counted once already."""
        return PartIO(self.source, self._part(index), lambda n: None, None)

    def _send(self, part: Part, io: PartIO, uuid: str) -> None:
        headers = {"X-Upyun-Multi-Stage": "upload", "X-Upyun-Multi-Uuid": uuid, "X-Upyun-Part-Id": str(part.index)}
        data = None
        if self.checksum:
            data = io.read()
            headers["Content-MD5"] = hashlib.md5(data).hexdigest()
            body: Any = io.body(data=data)
        else:
            body = io.body()
        try:
            resp = self.backend.request("PUT", self.path, "part", headers=headers, body=body, ok=(200, 201, 204))
        except ServerError as exc:
            if exc.code == PART_ALREADY_COMPLETE:  # every part is in already
                with self._lock:
                    self.done = set(range(self.nparts))
                return
            if exc.code == FILE_ALREADY_UPLOADED:
                with self._lock:
                    self.already_uploaded = True
                return
            exc.upyun_uuid = uuid  # type: ignore[attr-defined]
            if isinstance(exc, UploadExpired):  # recover() starts afresh; then this part goes again
                exc.retryable, exc.retry_after = True, 0.0
            raise
        if data is not None and self._md5 is not None:
            self._md5.feed(part.index, data)
        nxt = resp.headers.get("x-upyun-next-part-id")
        with self._lock:
            if uuid != self.uuid:
                return  # sent under an upload that was replaced meanwhile
            self.done.add(part.index)
            if nxt == "-1":
                self.done = set(range(self.nparts))

    def recover(self, part: Part, error: BaseException) -> None:
        if isinstance(error, UploadExpired):
            with self._lock:
                stale = getattr(error, "upyun_uuid", self.uuid) == self.uuid
            if stale:  # the first part to notice starts the upload afresh; the others follow
                log.info("upload %s expired on the server; starting it afresh", self.key)
                self._restarts += 1
                self._initiate()
        elif isinstance(error, OffsetConflict):
            nxt = getattr(error, "next_part_id", None)
            if nxt is None:
                self._resync()
                return
            with self._lock:
                self.done = set(range(self.nparts)) if nxt < 0 else set(range(nxt)) | {
                    i for i in self.done if i < nxt}

    def finish(self) -> UploadResult:
        if self.already_uploaded:
            return self._stored_result()
        self._fill_gaps()
        headers = {"X-Upyun-Multi-Stage": "complete", "X-Upyun-Multi-Uuid": self.uuid}
        whole = self._whole_md5()
        if whole:
            headers["X-Upyun-Multi-MD5"] = whole
        try:
            resp = self.backend.request("PUT", self.path, "complete", headers=headers, body=b"",
                                        ok=(200, 201, 204))
        except ServerError as exc:
            if exc.code == FILE_ALREADY_UPLOADED:
                return self._stored_result()
            if isinstance(exc, OffsetConflict):  # the server misses parts: send them, then complete again
                self._resync()
                self._fill_gaps()
            raise
        self.answer = resp.headers
        return self.result(uuid=self.uuid, restarts=self._restarts)

    def _fill_gaps(self) -> None:
        """Send, here and in order, parts the server lacks (after a restart under a new uuid)."""
        for part in self.pending_parts():
            self._send(part, self._uncounted_io(part.index), self.uuid)

    def _stored_result(self) -> UploadResult:
        info = self.backend.info(self.key)
        self.answer = dict(info.extra.get("headers") or {})
        return self.result(uuid=self.uuid, restarts=self._restarts)

    def abort(self) -> None:
        cancel_multipart(self.backend, {"key": self.key, "uuid": self.uuid})

    def state(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            return {
                "key": self.key, "uuid": self.uuid, "size": self.size, "part_size": self.part_size,
                "serial": not self.parallel, "done": sorted(self.done), "initiated": self.initiated,
            }


def cancel_multipart(backend: UpyunWire, state: Mapping[str, Any]) -> None:
    """Drop an unfinished multipart upload on the server (gone already is fine)."""
    if not state.get("uuid") or not state.get("key"):
        return
    try:
        backend.request("DELETE", backend.path(str(state["key"])), "abort",
                        headers={"X-Upyun-Multi-Uuid": str(state["uuid"])}, ok=(200, 204))
    except NotFound:
        pass


# ------------------------------------------------------------------------------ FORM


class _FormBody:
    """``multipart/form-data``: the fields, then the file streamed, then the closing line."""

    def __init__(self, head: bytes, file_body: Any, tail: bytes) -> None:
        self._pieces = [head, file_body, tail]
        self._len = len(head) + len(file_body) + len(tail)
        self._index = 0
        self._pos = 0
        self._sent = 0

    def __len__(self) -> int:
        return self._len

    def tell(self) -> int:
        return self._sent

    def read(self, size: int = -1) -> bytes:
        while self._index < 3:
            piece = self._pieces[self._index]
            if isinstance(piece, bytes):
                if self._pos < len(piece):
                    end = len(piece) if size is None or size < 0 else self._pos + size
                    block = piece[self._pos:end]
                    self._pos += len(block)
                    self._sent += len(block)
                    return block
            else:
                block = bytes(piece.read(size))
                if block:
                    self._sent += len(block)
                    return block
            self._index += 1
            self._pos = 0
        return b""


def _field(boundary: str, name: str, value: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode("utf-8")


class FormUpload(_UpyunSession):
    """A FORM upload: a signed policy and the file, in one POST."""

    parts_total = 1

    def __init__(self, backend: UpyunWire, source: Source, *, policy: Mapping[str, Any], expiration: Any,
                 **common: Any) -> None:
        super().__init__(backend, source, **common)
        if not isinstance(policy, Mapping):
            raise BadInput("policy must be a mapping of policy fields", backend="upyun", operation="put")
        if not isinstance(expiration, (int, float)) or expiration <= 0:
            raise BadInput("expiration is seconds from now, a positive number", backend="upyun", operation="put")
        self.policy = dict(policy)
        self.expiration = expiration
        self.response: Dict[str, Any] = {}

    def pending_parts(self) -> List[Part]:
        return [Part(index=0, offset=0, size=self.size)]

    def _policy(self, date: str, content_md5: Optional[str]) -> Dict[str, Any]:
        policy: Dict[str, Any] = {
            "service": self.backend.service,
            "save-key": "/" + self.key,
            "expiration": int(time.time() + self.expiration),
            "date": date,
        }
        if self.explicit_type:
            policy["content-type"] = self.content_type
        if self.secret:
            policy["content-secret"] = self.secret
        for k, v in meta_headers(self.metadata).items():
            policy[k] = v
        for k, v in self.user_headers.items():
            policy[k.lower()] = v
        policy.update(self.policy)
        if content_md5:
            policy["content-md5"] = content_md5
        return policy

    def send_part(self, part: Part, io: PartIO) -> None:
        data = None
        content_md5 = None
        if self.checksum:
            if self.size <= self.backend.settings.part_size:
                data = io.read()
                content_md5 = hashlib.md5(data).hexdigest()
            else:
                content_md5 = self.backend.digest(self.source, "md5")
        date = http_date()
        policy = base64.b64encode(json.dumps(self._policy(date, content_md5)).encode("utf-8")).decode("ascii")
        uri = f"/{urllib.parse.quote(self.backend.service, safe='')}/"
        auth = self.backend.signer.sign("POST", uri, date, policy=policy, content_md5=content_md5)
        boundary = uuidlib.uuid4().hex
        # the file's own name: the policy's type check and {filename}/{suffix} read it
        filename = os.path.basename(self.source.name or self.key).replace('"', "%22")
        head = (
            _field(boundary, "policy", policy) + _field(boundary, "authorization", auth)
            + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
               f"Content-Type: {self.content_type}\r\n\r\n").encode("utf-8")
        )
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        file_body: PartBody = io.body(data=data) if data is not None else io.body()
        resp = self.backend.http.request(
            "POST", self.backend.base + uri, backend="upyun", operation="form",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Date": date},
            body=_FormBody(head, file_body, tail),
        )
        self.response = self._answer(resp)

    def _answer(self, resp: requests.Response) -> Dict[str, Any]:
        if resp.is_redirect:  # return-url: the outcome is in the query of the Location
            location = resp.headers.get("Location", "")
            answer: Dict[str, Any] = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
            answer["return_url"] = location
        elif resp.status_code == 200:
            try:
                answer = resp.json()
            except ValueError:
                answer = {}
        else:
            raise self.backend.error_for(resp, "form")
        code = answer.get("code")
        if code is not None and str(code) != "200":
            raise RequestRejected(f"form upload refused: {answer.get('message')}", backend="upyun",
                                  operation="form", status=resp.status_code, code=code)
        return answer

    def finish(self) -> UploadResult:
        url = str(self.response.get("url") or "")
        if url:
            self.key = urllib.parse.unquote(url.lstrip("/"))
        return UploadResult(id=self.key, key=self.key, size=self.size, backend="upyun",
                            metadata=self.metadata, extra={"form": self.response})
