"""UPYUN uploads: one signed PUT, resumable multipart, and FORM.

- A file no larger than the client's ``part_size`` goes in one signed PUT,
  streamed from the file; with ``checksum`` its ``Content-MD5`` is hashed
  from the file first, in small steps (or known from the client's digest
  cache), so the file is never held in memory.
- A larger file goes as a resumable multipart upload: ``initiate`` gives an
  upload uuid, parts (a multiple of 1 MiB each) go in parallel
  (``X-Upyun-Multi-Disorder``) or, with ``serial=True``, one by one in
  order, each with its ``Content-MD5``, hashed by the part's worker from the
  file just before it streams the part (so memory stays at one small buffer
  per worker, and one worker hashes while the others send); ``complete``
  joins them.  The whole file's MD5 goes with ``complete`` when it costs
  nothing (the client's digest cache knows it), or when asked
  (``file_md5=True``: hashed in file order while the parts go, by whichever
  worker finished the next part in order, read back from the page cache), or
  given (``file_md5="<hex>"``).  The uuid
  and the parts done are the resume point.  A resume asks the server which
  parts it holds, so only what was in flight at the interruption is sent
  again.  A "part id error" re-synchronises (from the ``X-Upyun-Next-Part-Id``
  of the answer, or by asking); "part already complete" and "file already
  upload" count as done; an upload the server has forgotten (24 hours,
  "uuid not found") starts afresh under a new uuid.  Parts the server lacks
  when the upload finishes (those it had under a forgotten uuid; in serial
  mode, every part after a gap) go back to the engine, which sends them with
  its retries, progress and cancel before ``complete`` is asked again.
- ``form=True`` posts the file as ``multipart/form-data`` with a signed
  policy (``save-key`` placeholders, ``notify-url``, ``return-url``, type
  and size limits...), streamed from the file.

Sessions do I/O only in the engine's calls (``start``, ``send_part``,
``recover``, ``finish``, ``abort``); what to send and what an answer means
is :mod:`.protocol`'s.
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
from typing import Any, Dict, List, Mapping, Optional, Protocol, Set, Union

from ...errors import BadInput, ServerError
from ...result import FileInfo, UploadResult
from ...settings import Settings
from ...source import PartBody, Source
from ...transfer import Hint, MoreParts, Part, PartIO, Restart, Resync, UploadSession
from . import protocol
from .names import check_key, check_uuid, meta_headers
from .protocol import MAX_PART, MIN_PART, UPLOAD_LIFETIME, Answer, ErrorAnswer, Request
from .signing import Signer, http_date

__all__ = ["open_upload", "cancel_multipart", "MIN_PART", "MAX_PART", "UPLOAD_LIFETIME"]

log = logging.getLogger("upclient.upyun")


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

    def send(self, req: Request, body: Any = None) -> Answer: ...

    def call(self, req: Request, body: Any = None) -> Answer: ...

    def error(self, answer: Answer, operation: str, failure: Optional[ErrorAnswer] = None) -> ServerError: ...

    def digest(self, source: Source, algorithm: str = "md5", *, on_progress: Any = None) -> str: ...

    def info(self, id: str) -> FileInfo: ...


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
    """The session for one upload (no request yet); see the module docstring for which kind."""
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
    if adopt is not None:
        check_uuid(adopt, "put")
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

    def _body(self, io: PartIO) -> "tuple[Any, Optional[str]]":
        """The part's body and, with ``checksum``, its MD5 (hashed from the file, then streamed)."""
        if not self.checksum:
            return io.body(), None
        h, body = io.checksummed("md5")
        return body, h.hexdigest()

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
        known = _known_md5(self.backend, self.source) if self.checksum else None
        md5: Optional[str]
        if known is not None:  # the whole file's MD5 is the part's: no hashing at all
            body, md5 = io.body(), known
        else:
            body, md5 = self._body(io)
        self.answer = self.backend.call(protocol.put_request(self.path, self.file_headers(), md5), body).headers
        if md5 is not None and known is None:
            _remember_md5(self.backend, self.source, md5)

    def finish(self) -> UploadResult:
        return self.result()


# ------------------------------------------------------------------------------ multipart


#: From this size on, a file's MD5 is looked up in, and kept in, the client's
#: digest cache: below it hashing costs less than a store's read or write.
CACHE_FROM = 4 * 1024 * 1024


def _known_md5(backend: UpyunWire, source: Source) -> Optional[str]:
    cache = backend.digests
    if cache is None or (source.size or 0) < CACHE_FROM:
        return None
    return cache.known(source, "md5")


def _remember_md5(backend: UpyunWire, source: Source, md5: str) -> None:
    cache = backend.digests
    if cache is not None and (source.size or 0) >= CACHE_FROM:
        cache.remember(source, "md5", md5)


class _RunningMD5:
    """The whole file's MD5, fed in file order while parts finish in any order.

    Each finished part is marked; the worker that finds the next part in
    file order marked hashes it and every marked part after it, reading them
    back from the source in small steps (the page cache holds them: they
    were just sent), while the other workers go on sending.  One worker
    hashes at a time; the others only mark.  A stream's parts cannot be read
    again: theirs are kept (at most ``limit`` waiting) until their turn, and
    past that the digest is given up (:meth:`hexdigest` says None).
    """

    def __init__(self, source: Source, part_size: int, limit: int) -> None:
        self._source = source
        self._part_size = part_size
        self._h = hashlib.md5()
        self._next = 0
        self._marked: Set[int] = set()
        self._kept: Dict[int, Any] = {}  # a stream's parts waiting for their turn
        self._limit = limit
        self._usable = True
        self._hashing = False
        self._lock = threading.Lock()

    def mark(self, part: Part) -> None:
        """``part`` is on the server; hash what is now next in order (if no other worker is)."""
        with self._lock:
            if not self._usable or part.index < self._next or part.index in self._marked:
                return
            if not self._source.seekable:
                if part.data is None or (part.index != self._next and len(self._kept) >= self._limit):
                    self._give_up()
                    return
                self._kept[part.index] = part.data
            self._marked.add(part.index)
            if self._hashing:
                return
            self._hashing = True
        self._catch_up()

    def _give_up(self) -> None:
        self._usable = False
        self._kept.clear()
        self._marked.clear()

    def _catch_up(self) -> None:
        """Hash marked parts in order until the next one is not there (this worker holds the turn)."""
        try:
            while True:
                with self._lock:
                    index = self._next
                    if not self._usable or index not in self._marked:
                        self._hashing = False
                        return
                    self._marked.discard(index)
                    data = self._kept.pop(index, None)
                if data is not None:
                    self._h.update(data)
                else:
                    offset = index * self._part_size
                    length = min(self._part_size, (self._source.size or 0) - offset)
                    self._source.digest(offset, length, "md5", into=self._h)
                with self._lock:
                    self._next = index + 1
        except BaseException:
            with self._lock:
                self._hashing = False
                self._give_up()  # half of a part went into the hash: it is no good now
            raise

    def hexdigest(self, nparts: int) -> Optional[str]:
        """The digest once all ``nparts`` parts are in; parts done before (a resume) are read now."""
        if self._source.seekable:
            with self._lock:
                if self._usable and not self._hashing:
                    self._marked.update(range(self._next, nparts))
                    self._hashing = True
                else:
                    return None
            self._catch_up()
        with self._lock:
            return self._h.hexdigest() if self._usable and self._next == nparts else None


class MultipartUpload(_UpyunSession):
    """A resumable multipart upload; see the module docstring.

    The constructor only decides; :meth:`start` initiates the upload, or asks
    the server about a stored (or adopted) one.
    """

    def __init__(self, backend: UpyunWire, source: Source, *, serial: bool, state: Optional[Dict[str, Any]],
                 adopt: Optional[str] = None, file_md5: Any = None, **common: Any) -> None:
        super().__init__(backend, source, **common)
        self.parallel = not serial
        self.adopt = adopt
        self.file_md5 = file_md5
        self._lock = threading.Lock()
        self._recovering = threading.Lock()  # one restart per forgotten upload, however many parts notice
        self.done: Set[int] = set()
        self._prefix = 0  # parts 0.._prefix-1 are known done (serial order checks)
        self.uuid = ""
        self.initiated = 0.0
        self.already_uploaded = False
        self._restarts = 0
        self._layout(backend.settings.part_size, check=adopt is None)  # an adopted upload's is the server's
        self._stored = state if adopt is None and state and self._matches(state) else None
        self._md5 = self._new_md5()

    def _layout(self, part_size: int, *, check: bool = True) -> None:
        problem = protocol.check_part_size(part_size) if check else None
        if problem:
            raise BadInput(problem, backend="upyun", operation="put")
        self.part_size = part_size
        self.nparts = math.ceil(self.size / part_size)
        self.parts_total = self.nparts

    def _new_md5(self) -> Optional[_RunningMD5]:
        """A running whole-file MD5, when one is asked for."""
        if self.file_md5 is not True:
            return None
        return _RunningMD5(self.source, self.part_size, self.backend.settings.concurrency)

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

    def _part(self, index: int) -> Part:
        offset = index * self.part_size
        return Part(index=index, offset=offset, size=min(self.part_size, self.size - offset))

    def _set_done(self, held: Set[int]) -> None:
        """What the server holds, as it said (call with the lock held)."""
        self.done = {i for i in held if 0 <= i < self.nparts}
        self._prefix = 0

    def _in_order(self, index: int) -> bool:
        """Serial mode: whether every part before ``index`` is on the server (lock held)."""
        while self._prefix < self.nparts and self._prefix in self.done:
            self._prefix += 1
        return self._prefix >= index

    # -- the server's side of things (each runs in an engine call) ----------------------

    def start(self) -> None:
        if self.adopt is not None:
            self._adopt(self.adopt)
        elif self._stored is not None:
            with self._lock:
                self.uuid = str(self._stored["uuid"])
                self.initiated = float(self._stored.get("initiated") or time.time())
                self._set_done({int(i) for i in self._stored.get("done") or ()})
            self._reopen()
        else:
            self._initiate()
        self.expires = self.initiated + UPLOAD_LIFETIME
        self.upload_id = self.uuid
        with self._lock:
            self.done_bytes = sum(self._part(i).size for i in self.done)

    def _reopen(self) -> None:
        """Continue a known upload from the parts the server holds, or begin a new one."""
        uuid = self.uuid
        held = self._ask(uuid)
        if isinstance(held, Restart):
            log.info("upload %s of %s is gone on the server; starting afresh", uuid, self.key)
            self._initiate()
            return
        self._apply(uuid, held)
        self.resumed = True

    def _adopt(self, uuid: str) -> None:
        """Take over an upload begun elsewhere: its part size and order are the server's."""
        answer = self.backend.send(protocol.info_request(self.path, uuid))
        info = protocol.read_info(answer, uuid, self.key)
        if isinstance(info, ErrorAnswer):
            raise self.backend.error(answer, "query", info)
        if info.length is not None and info.length != self.size:
            raise BadInput(f"upload {uuid} is of {info.length} bytes; this source has {self.size}", backend="upyun",
                           operation="put")
        self._layout(info.part_size or self.backend.settings.part_size)
        if info.disorder is False:
            self.parallel = False  # the server takes its parts in order only
        with self._lock:
            self.uuid = uuid
            self.initiated = time.time()
        self._reopen()

    def _initiate(self) -> None:
        req = protocol.initiate_request(self.path, self.file_headers(), length=self.size, part_size=self.part_size,
                                        disorder=self.parallel)
        answer = self.backend.send(req)
        uuid = protocol.read_initiate(answer)
        if isinstance(uuid, ErrorAnswer):
            raise self.backend.error(answer, "initiate", uuid)
        with self._lock:
            self.uuid = uuid
            self._set_done(set())
            self.initiated = time.time()
        self.expires = self.initiated + UPLOAD_LIFETIME
        self.upload_id = uuid

    def _restart(self, why: str) -> None:
        log.info("upload of %s: %s; starting it afresh", self.key, why)
        self._restarts += 1
        self._initiate()

    def _ask(self, uuid: str) -> Union[Set[int], Restart, None]:
        """The parts the server holds (Restart: it forgot the upload; None: it cannot say)."""
        return protocol.read_parts(self.backend.send(protocol.query_request(self.path, uuid)), uuid)

    def _apply(self, uuid: str, held: Optional[Set[int]]) -> None:
        if held is None:  # a server without the query: what is known stands
            log.debug("cannot ask the server for the parts of %s; trusting what is known", self.key)
            return
        with self._lock:
            if uuid == self.uuid:
                self._set_done(held)

    def _resync(self) -> None:
        """Ask the server which parts it holds; start afresh if it forgot the upload."""
        uuid = self.uuid
        held = self._ask(uuid)
        if isinstance(held, Restart):
            self._restart(held.reason)
        else:
            self._apply(uuid, held)

    # -- the engine's side ----------------------------------------------------------------

    def pending_parts(self) -> List[Part]:
        with self._lock:
            return [self._part(i) for i in range(self.nparts) if i not in self.done]

    def confirmed(self, part: Part) -> int:
        with self._lock:
            return part.size if part.index in self.done else 0

    def send_part(self, part: Part, io: PartIO) -> Optional[Hint]:
        with self._lock:
            if part.index in self.done or self.already_uploaded:
                return None
            if not self.parallel and not self._in_order(part.index):
                # The server lacks an earlier part (a new upload, a resync): this one cannot go
                # yet; finish hands it back to the engine with its predecessors, in order.
                return None
            uuid = self.uuid
        body, md5 = self._body(io)
        answer = self.backend.send(protocol.part_request(self.path, uuid, part.index, md5), body)
        outcome = protocol.read_part(answer, uuid)
        if isinstance(outcome, ErrorAnswer):
            raise self.backend.error(answer, "part", outcome)
        if isinstance(outcome, (Resync, Restart)):
            return outcome
        if isinstance(outcome, protocol.AlreadyStored):
            with self._lock:
                self.already_uploaded = True
            return None
        with self._lock:
            if uuid != self.uuid:  # sent under an upload replaced meanwhile: again, under the new one
                return Restart("the upload was begun afresh meanwhile", upload_id=uuid)
            self.done.add(part.index)
            if outcome.all_parts:
                self.done = set(range(self.nparts))
        if self._md5 is not None:
            self._md5.mark(part)  # the file's bytes, whichever upload they went to
        return None

    def recover(self, part: Part, cause: Union[BaseException, Hint]) -> None:
        if isinstance(cause, (Restart, Resync)):
            with self._recovering:
                self._recover(cause)

    def _recover(self, cause: Hint) -> None:
        with self._lock:
            current = cause.upload_id in (None, self.uuid)
        if not current:
            return  # about an upload already replaced: nothing to do but send again
        if isinstance(cause, Restart):
            self._restart(cause.reason)
        else:
            if self.parallel or cause.next_part is None:
                self._resync()
                return
            with self._lock:  # serial: the server holds exactly the parts before the one it names
                self._set_done(set(range(self.nparts)) if cause.next_part < 0 else set(range(cause.next_part)))

    def finish(self) -> Union[UploadResult, MoreParts]:
        if self.already_uploaded:
            return self._stored_result()
        missing = self.pending_parts()
        if missing:
            return MoreParts(missing, f"the server lacks {len(missing)} part(s) of upload {self.uuid}",
                             parallel=self.parallel)
        uuid = self.uuid
        answer = self.backend.send(protocol.complete_request(self.path, uuid, self._whole_md5()))
        outcome = protocol.read_complete(answer, uuid)
        if isinstance(outcome, protocol.Completed):
            self.answer = outcome.headers
            return self.result(uuid=self.uuid, restarts=self._restarts)
        if isinstance(outcome, protocol.AlreadyStored):
            return self._stored_result()
        if isinstance(outcome, Restart):
            self._restart(outcome.reason)
            return MoreParts(self.pending_parts(), "the server forgot the upload before complete",
                             parallel=self.parallel)
        if isinstance(outcome, Resync):
            self._resync()
            named = outcome.next_part
            with self._lock:
                if len(self.done) == self.nparts and named is not None and 0 <= named < self.nparts:
                    self.done.discard(named)  # the query says all, complete names one missing: resend it
                    self._prefix = 0
            missing = self.pending_parts()
            if missing:
                return MoreParts(missing, "complete: the server lacks parts", parallel=self.parallel)
            raise self.backend.error(answer, "complete")
        raise self.backend.error(answer, "complete", outcome)

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
    uuid = check_uuid(str(state["uuid"]), "abort")
    answer = backend.send(protocol.cancel_request(backend.path(str(state["key"])), uuid))
    failure = protocol.read_cancel(answer)
    if failure is not None:
        raise backend.error(answer, "abort", failure)


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

    def send_part(self, part: Part, io: PartIO) -> None:
        content_md5 = None
        file_body: Optional[PartBody] = None
        if self.checksum:
            content_md5 = _known_md5(self.backend, self.source)
            if content_md5 is None:  # hashed from the file in small steps, then streamed
                h, file_body = io.checksummed("md5")
                content_md5 = h.hexdigest()
                _remember_md5(self.backend, self.source, content_md5)
        date = http_date()
        fields = protocol.form_policy(
            service=self.backend.service, key=self.key, expiration=int(time.time() + self.expiration), date=date,
            content_type=self.content_type if self.explicit_type else None, secret=self.secret,
            metadata=self.metadata, user_headers=self.user_headers, extra=self.policy, content_md5=content_md5,
        )
        policy = base64.b64encode(json.dumps(fields).encode("utf-8")).decode("ascii")
        uri = f"/{urllib.parse.quote(self.backend.service, safe='')}/"
        auth = self.backend.signer.sign("POST", uri, date, policy=policy, content_md5=content_md5)
        boundary = uuidlib.uuid4().hex
        # the file's own name: the policy's type check and {filename}/{suffix} read it
        head, tail = protocol.form_envelope(boundary, policy, auth, os.path.basename(self.source.name or self.key),
                                            self.content_type)
        if file_body is None:
            file_body = io.body()
        resp = self.backend.http.request(
            "POST", self.backend.base + uri, backend="upyun", operation="form",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Date": date},
            body=_FormBody(head, file_body, tail),
        )
        answer = Answer(resp.status_code, resp.headers, resp.content, raw=resp)
        outcome = protocol.read_form(answer)
        if isinstance(outcome, ErrorAnswer):
            raise self.backend.error(answer, "form", outcome)
        self.response = outcome

    def finish(self) -> UploadResult:
        url = str(self.response.get("url") or "")
        if url:
            self.key = urllib.parse.unquote(url.lstrip("/"))
        return UploadResult(id=self.key, key=self.key, size=self.size, backend="upyun",
                            metadata=self.metadata, extra={"form": self.response})
