"""tus upload sessions: one upload filled in order, or partials joined at the end.

:meth:`~.backend.TusBackend.open_upload` makes a :class:`TusUpload` without
any I/O.  Its :meth:`~TusUpload.start`, run by the engine, asks the server
what it offers (OPTIONS, once per backend) and then either resumes a stored
upload or creates a new one, as one of two plans:

- :class:`SerialUpload`: one tus upload filled in order by PATCH requests.
  Without checksums the rest of a file is one part, sent as one streamed
  PATCH, as the protocol recommends; with checksums each part is one PATCH,
  its ``Upload-Checksum`` hashed from the file just before it is streamed.  A small file rides on the creating
  POST where the server allows it.
- :class:`ConcatUpload`: one partial upload per part, sent in parallel and
  joined by a final ``Upload-Concat`` POST.

Every request is sent from the engine's hand, in ``start``, ``send_part``,
``recover``, ``finish`` or ``abort``; what an answer asks for (resynchronise
at an offset, start afresh) comes back as a hint, and the engine calls
``recover`` before it sends the part again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Union

from ...errors import Conflict, TooLarge, Unsupported, UploadExpired
from ...result import UploadResult
from ...settings import Settings
from ...source import Source
from ...transport import redact_url
from ...transfer import Hint, Part, PartIO, Restart, Resync, UploadSession
from .ids import stored_url_ok
from .protocol import Capabilities, Created, PatchAnswer, TusRequest, UploadStatus, checksum_value

__all__ = ["Wire", "TusUpload", "SerialUpload", "ConcatUpload", "stored_urls"]

log = logging.getLogger("upclient.tus")


class Wire(Protocol):
    """What an upload needs of the backend (:class:`~.backend.TusBackend`)."""

    endpoint: str
    settings: Settings

    @property
    def name(self) -> str: ...

    def capabilities(self) -> Capabilities: ...

    def send(self, request: TusRequest) -> Any: ...

    def status(self, url: str) -> UploadStatus: ...

    def stored_status(self, url: str) -> Optional[UploadStatus]: ...

    def forget_failures(self, urls: Iterable[str]) -> None: ...

    def terminate_quietly(self, url: str) -> None: ...


def _parts(start: int, size: int, part_size: int, first_index: int = 0) -> Iterator[Part]:
    index, offset = first_index, start
    while offset < size:
        n = min(part_size, size - offset)
        yield Part(index=index, offset=offset, size=n)
        offset += n
        index += 1


def stored_urls(state: Mapping[str, Any]) -> List[str]:
    """The upload URLs a stored state names."""
    if state.get("mode") == "concat":
        return [p["url"] for p in state.get("partials", {}).values() if p.get("url")]
    return [state["url"]] if state.get("url") else []


def _patch(wire: Wire, url: str, io: PartIO, start: int, end: int, *, offset: int,
           checksum: Optional[str], length: Optional[int] = None) -> PatchAnswer:
    """PATCH the source's bytes ``[start, end)`` at upload offset ``offset``.

    With ``checksum`` the range is hashed from the file in small steps and
    then streamed (:meth:`~upclient.transfer.PartIO.checksummed`): a part is
    never held in memory whole.
    """
    if checksum:
        h, body = io.checksummed(checksum, start, end)
        request = TusRequest.patch(url, offset=offset, body=body, checksum=checksum_value(checksum, h.digest()),
                                   length=length)
    else:
        request = TusRequest.patch(url, offset=offset, body=io.body(start, end), length=length)
    return PatchAnswer.from_response(wire.send(request), url, offset + end - start)


def _create(wire: Wire, *, length: Optional[int], metadata: str, concat: Optional[str] = None,
            body: Any = None) -> Created:
    request = TusRequest.create(wire.endpoint, length=length, metadata=metadata, concat=concat, body=body)
    return Created.from_response(wire.send(request), wire.endpoint)


class _Plan(UploadSession):
    """What both plans share: the upload's name, metadata and checksum choice."""

    def __init__(self, wire: Wire, source: Source, meta: Dict[str, str], header: str, part_size: int,
                 checksum: Optional[str]) -> None:
        self.wire = wire
        self.source = source
        self.meta = meta
        self.header = header
        self.part_size = part_size
        self.checksum = checksum

    def result(self, url: str, size: int, **extra: Any) -> UploadResult:
        return UploadResult(id=url, url=url, size=size, backend=self.wire.name, key=self.meta.get("filename"),
                            expires=self.expires, metadata=self.meta, **extra)


class SerialUpload(_Plan):
    """One tus upload filled in order by PATCH requests (see the module docstring).

    A server that refuses the one large PATCH (413) gets ``part_size``
    requests instead, each one a try of the part.
    """

    parallel = False

    def __init__(self, wire: Wire, source: Source, meta: Dict[str, str], header: str, part_size: int,
                 checksum: Optional[str], *, inline: bool = False, explicit: bool = False) -> None:
        super().__init__(wire, source, meta, header, part_size, checksum)
        self.url: Optional[str] = None
        self.offset = 0
        self.length_sent = source.size is not None
        #: The creating POST may carry the first bytes (creation-with-upload).
        self.inline = inline
        #: The caller named this upload (``upload_url=``): never replace it.
        self.explicit = explicit
        #: Bytes per request; None: all that is left, in one request.
        self.limit: Optional[int] = part_size if checksum else None

    @property
    def upload_id(self) -> Optional[str]:  # type: ignore[override]
        return self.url

    def create(self) -> None:
        """A new upload.  A small file rides on the POST where the server allows
        it: one request in all.  A larger one is created first, so that its URL,
        the resume point, is known before the bytes go."""
        size = self.source.size
        if not (self.inline and size is not None and 0 < size <= self.part_size):
            self._create(body=None)

    def resume(self, url: str, status: UploadStatus) -> None:
        self.url = url
        self.offset = status.offset or 0
        self.length_sent = status.length is not None
        self.expires = status.expires
        self.resumed = True
        self.done_bytes = self.offset

    def fits(self, status: UploadStatus) -> bool:
        size = self.source.size
        return status.length is None or size is None or status.length == size

    def _create(self, body: Any) -> Created:
        created = _create(self.wire, length=self.source.size, metadata=self.header, body=body)
        self.url, self.offset = created.url, created.offset
        self.expires = created.expires or self.expires
        return created

    def pending_parts(self) -> List[Part]:
        size = self.source.size
        assert size is not None
        if self.limit is None:  # one part: the rest of the file
            self.parts_total = 1 if size else 0
            return [Part(index=0, offset=self.offset, size=size - self.offset)] if self.offset < size else []
        self.parts_total = -(-size // self.part_size)
        return list(_parts(self.offset, size, self.part_size, self.offset // self.part_size))

    def confirmed(self, part: Part) -> int:
        return max(0, min(self.offset, part.end) - part.offset)

    def send_part(self, part: Part, io: PartIO) -> Optional[Hint]:
        start = max(self.offset, part.offset)
        if start >= part.end and not (part.last and not self.length_sent):
            return None  # the server already has it
        if start < part.offset:
            raise Conflict(f"server offset {self.offset} is before part {part.index} at {part.offset}",
                           backend=self.wire.name, operation="patch")
        end = part.end if self.limit is None else min(part.end, start + self.limit)
        if self.url is None and self.inline and start == 0 and end <= self.part_size:  # the POST carries them
            self._create(body=io.body(start, end))
        else:
            if self.url is None:
                self._create(body=None)
            assert self.url is not None
            announce = end if part.last and end == part.end and not self.length_sent else None
            try:
                answer = _patch(self.wire, self.url, io, start, end, offset=start, checksum=self.checksum,
                                length=announce)
            except TooLarge:
                if self.limit is not None or end - start <= self.part_size:
                    raise
                self.limit = self.part_size
                log.info("server refused a %d-byte request; sending %d bytes at a time", end - start,
                         self.part_size)
                return Resync(f"the server refused {end - start} bytes in one request (413)", offset=self.offset,
                              upload_id=self.url)
            self.expires = answer.expires or self.expires
            if answer.offset is not None:
                self.offset = answer.offset
            if answer.hint is not None:
                return answer.hint
            if announce is not None:
                self.length_sent = True
        if self.offset < part.end:  # the rest of the part goes in the next request
            return Resync(f"the server holds {self.offset - part.offset} of {part.size} bytes of part {part.index}",
                          offset=self.offset, upload_id=self.url)
        return None

    def recover(self, part: Part, cause: Union[BaseException, Hint]) -> None:
        if isinstance(cause, Resync) and cause.offset is not None:
            return  # the answer said where the server stands; send_part took it
        if isinstance(cause, Restart):
            self._restart(part, cause.reason)
            return
        if self.url is None:
            return  # the creating POST failed: it is simply sent again
        try:
            status = self.wire.status(self.url)
        except UploadExpired as exc:
            self._restart(part, exc.message)
            return
        self.offset = status.offset or 0
        log.info("re-synchronised %s at offset %d", redact_url(self.url), self.offset)

    def _restart(self, part: Part, reason: str) -> None:
        """The server forgot the upload: a new one, if nothing before ``part`` is lost with it."""
        if self.explicit or part.offset > 0:
            raise UploadExpired(
                f"the server no longer has upload {redact_url(self.url or '')} ({reason}) after {part.offset} "
                "bytes had been "
                + ("sent; start it again without upload_url=" if self.explicit
                   else "sent; put the file again: the next upload starts afresh"),
                backend=self.wire.name, operation="patch")
        log.info("upload %s is gone (%s); starting a new upload", redact_url(self.url or ""), reason)
        self.url, self.offset, self.resumed, self.done_bytes = None, 0, False, 0
        self.length_sent = self.source.size is not None

    def finish(self) -> UploadResult:
        assert self.url is not None
        size = self.source.size if self.source.size is not None else self.offset
        return self.result(self.url, size)

    def abort(self) -> None:
        if self.url:
            self.wire.terminate_quietly(self.url)

    def state(self) -> Optional[Dict[str, Any]]:
        if self.url is None or not self.source.seekable:
            return None
        return {"mode": "serial", "url": self.url}


class ConcatUpload(_Plan):
    """Partial uploads sent in parallel, joined by a final ``Upload-Concat`` POST."""

    parallel = True

    def __init__(self, wire: Wire, source: Source, meta: Dict[str, str], header: str, part_size: int,
                 checksum: Optional[str], *, inline: bool = False) -> None:
        super().__init__(wire, source, meta, header, part_size, checksum)
        self.inline = inline
        if source.size is not None:
            self.parts_total = -(-source.size // part_size)
        # per part index: {"url": str | None, "offset": int | None, "done": bool}
        self.partials: Dict[int, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def fits(cls, source: Source, state: Mapping[str, Any]) -> bool:
        return state.get("size") == source.size and bool(state.get("part_size"))

    def resume(self, state: Mapping[str, Any]) -> None:
        """Ask the server about each stored partial; the ones it lost are sent again."""
        for index, p in state.get("partials", {}).items():
            entry: Dict[str, Any] = {"url": None, "offset": None, "done": False}
            status = self.wire.stored_status(p["url"]) if p.get("url") else None
            if status is not None:
                offset = status.offset or 0
                entry = {"url": p["url"], "offset": offset, "done": offset >= self._part(int(index)).size}
            self.partials[int(index)] = entry
        self.resumed = any(p["url"] for p in self.partials.values())
        self.done_bytes = sum(min(p["offset"] or 0, self._part(i).size)
                              for i, p in self.partials.items() if p["url"])

    def _part(self, index: int) -> Part:
        offset = index * self.part_size
        assert self.source.size is not None
        return Part(index=index, offset=offset, size=min(self.part_size, self.source.size - offset))

    def _entry(self, index: int) -> Dict[str, Any]:
        with self._lock:
            return dict(self.partials.get(index) or {"url": None, "offset": None, "done": False})

    def _store(self, index: int, entry: Dict[str, Any]) -> None:
        with self._lock:
            self.partials[index] = dict(entry)

    def pending_parts(self) -> List[Part]:
        assert self.parts_total is not None
        return [self._part(i) for i in range(self.parts_total) if not self.partials.get(i, {}).get("done")]

    def confirmed(self, part: Part) -> int:
        return min(self._entry(part.index)["offset"] or 0, part.size)

    def send_part(self, part: Part, io: PartIO) -> Optional[Hint]:
        entry = self._entry(part.index)
        hint: Optional[Hint] = None
        posted = False
        if entry["url"] is None:
            posted = self.inline  # creation-with-upload: the POST carries the part
            created = _create(self.wire, length=part.size, metadata="", concat="partial",
                              body=io.body() if posted else None)
            entry = {"url": created.url, "offset": created.offset, "done": False}
            self.expires = created.expires or self.expires
        start = part.offset + (entry["offset"] or 0)
        if start < part.end and not posted:
            self._store(part.index, entry)  # its URL is known before its bytes go
            answer = _patch(self.wire, entry["url"], io, start, part.end, offset=start - part.offset,
                            checksum=self.checksum)
            self.expires = answer.expires or self.expires
            if answer.offset is not None:
                entry["offset"] = answer.offset
            hint = answer.hint
        self._settle(part, entry)
        if hint is None and not entry["done"]:
            hint = Resync(f"partial upload for part {part.index} is at {entry['offset']} of {part.size}",
                          offset=entry["offset"], upload_id=entry["url"])
        return hint

    def _settle(self, part: Part, entry: Dict[str, Any]) -> None:
        if entry["offset"] is not None and entry["offset"] >= part.size:
            entry["done"] = True
        self._store(part.index, entry)

    def recover(self, part: Part, cause: Union[BaseException, Hint]) -> None:
        entry = self._entry(part.index)
        if isinstance(cause, Resync) and cause.offset is not None or not entry.get("url"):
            return
        if isinstance(cause, Restart):
            log.info("partial upload %s is gone (%s); creating it again", redact_url(entry["url"]), cause.reason)
            self._store(part.index, {"url": None, "offset": None, "done": False})
            return
        try:
            entry["offset"] = self.wire.status(entry["url"]).offset or 0
        except UploadExpired:
            entry = {"url": None, "offset": None, "done": False}
        self._store(part.index, entry)

    def finish(self) -> UploadResult:
        with self._lock:
            urls = [self.partials[i]["url"] for i in sorted(self.partials)]
        resp = self.wire.send(TusRequest.final(self.wire.endpoint, urls, self.header))
        created = Created.from_response(resp, self.wire.endpoint)
        assert self.source.size is not None
        self.expires = created.expires
        return self.result(created.url, self.source.size, extra={"partials": len(urls)})

    def abort(self) -> None:
        with self._lock:
            urls = [p["url"] for p in self.partials.values() if p.get("url")]
        for url in urls:
            self.wire.terminate_quietly(url)

    def state(self) -> Optional[Dict[str, Any]]:
        if not self.source.seekable:
            return None
        with self._lock:
            partials = {str(i): {"url": p["url"], "done": p["done"]} for i, p in self.partials.items() if p.get("url")}
        return {"mode": "concat", "size": self.source.size, "part_size": self.part_size, "partials": partials}


class TusUpload(UploadSession):
    """The session :meth:`~.backend.TusBackend.open_upload` returns, made without I/O.

    :meth:`start` learns what the server offers, picks the plan (resume a
    stored upload, continue ``upload_url``, or a new serial or concatenated
    upload) and returns it: the engine carries on with that session.

    ``point_first`` (set by the client for a put that keeps a resume point
    whatever its size, a journaled one): a small file's upload is created
    empty, so that its URL is known, and saved, before any byte goes; no
    creation-with-upload.  That costs one round trip per file of one part
    (the POST, then the PATCH), and it is what lets a re-run find an upload
    the server finished while the client that sent it was killed.  Measured
    (``upclient sync`` of 1,000 x 16 KiB files to @tus/server over loopback,
    2 cores): about 590 files/s before, 290 after; client CPU 1.0 s, then
    2.1 s, about half of the extra for the request and half for the resume
    records a journaled put writes.
    Concatenated uploads keep sending each partial in its creating POST: a
    partial is no copy of the file, and its URL is saved once it answers.
    """

    point_first = False

    def __init__(self, wire: Wire, source: Source, *, meta: Dict[str, str], header: str, part_size: int,
                 state: Optional[Mapping[str, Any]], upload_url: Optional[str], concat: bool) -> None:
        self.wire = wire
        self.source = source
        self.meta = meta
        self.header = header
        self.part_size = part_size
        if state and not all(stored_url_ok(url) for url in stored_urls(state)):
            log.warning("the resume record names an upload URL upclient will not use; starting afresh")
            state = None
        self.stored = state
        self.upload_url = upload_url
        self.concat = concat

    def start(self) -> _Plan:
        caps = self.wire.capabilities()
        size, name = self.source.size, self.wire.name
        if size is not None and caps.max_size is not None and size > caps.max_size:
            raise TooLarge(f"{self.source.name} is {size} bytes; the server accepts at most {caps.max_size}",
                           backend=name, operation="put")
        if size is None and not caps.has("creation-defer-length"):
            raise Unsupported("the server cannot take uploads of unknown length (no creation-defer-length): "
                              "pass size=", backend=name, operation="put")
        checksum = caps.checksum_algorithm() if self.wire.settings.checksum else None
        inline = caps.has("creation-with-upload") and not checksum
        common = (self.wire, self.source, self.meta, self.header)
        if self.upload_url:
            given = SerialUpload(*common, self.part_size, checksum, explicit=True)
            status = self.wire.status(self.upload_url)
            if not given.fits(status):
                raise UploadExpired(f"upload {redact_url(self.upload_url)} is for {status.length} bytes, "
                                    f"the source has {size}", backend=name, operation="resume")
            given.resume(self.upload_url, status)
            return given
        resumed = self._resumed(caps, checksum, inline)
        if self.stored:
            self.wire.forget_failures(stored_urls(self.stored))
        if resumed is not None:
            return resumed
        # Parallel partial uploads pay off from two parts on; a stream goes
        # that way too, each chunk a partial of known length, so it needs no
        # deferred length (which some servers handle badly).
        if self.concat and caps.has("concatenation") and (size is None or size > self.part_size):
            return ConcatUpload(*common, self.part_size, checksum, inline=inline)
        serial = SerialUpload(*common, self.part_size, checksum,
                              inline=inline and self.source.seekable and not self.point_first)
        serial.create()
        return serial

    def _resumed(self, caps: Capabilities, checksum: Optional[str], inline: bool) -> Optional[_Plan]:
        """The stored upload, if the server still has it (else None: start afresh)."""
        state = self.stored
        if not state:
            return None
        common = (self.wire, self.source, self.meta, self.header)
        if state.get("mode") == "concat" and caps.has("concatenation") and ConcatUpload.fits(self.source, state):
            concat = ConcatUpload(*common, int(state["part_size"]), checksum, inline=inline)
            concat.resume(state)
            return concat
        if state.get("mode") == "serial" and state.get("url"):
            serial = SerialUpload(*common, self.part_size, checksum)
            status = self.wire.stored_status(state["url"])
            if status is not None and serial.fits(status):
                serial.resume(state["url"], status)
                return serial
            if status is not None:
                log.info("stored upload %s is for %s bytes, the source has %s; starting a new upload",
                         redact_url(state["url"]), status.length, self.source.size)
        return None
