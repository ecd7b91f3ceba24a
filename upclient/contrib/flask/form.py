"""A ``multipart/form-data`` body read part by part, each file as a stream: no temporary file.

Werkzeug's form parser (``request.files``) writes every file larger than
500 KiB to a temporary file before the view runs.  :class:`FormReader` walks
the body with Werkzeug's sans-I/O :class:`~werkzeug.sansio.multipart.MultipartDecoder`
instead, one chunk at a time: text fields are collected (each up to a
limit), and each file is handed out as a :class:`FilePart`, a non-seekable
stream of its bytes that ``Client.put`` reads while the browser still
sends.  Memory stays near one chunk here, plus what ``put`` holds of the
part it is sending.

A file part's size is not in the body ahead of its bytes.  :attr:`FilePart.size_if_last`
is what it must be if the file is the last field of the form (browsers send
fields in the order of the form): the rest of ``Content-Length`` less the
closing boundary.  A storage that needs the size first (UPYUN) is given
that, and a file followed by more fields then ends short of it: the upload
is aborted as :class:`~upclient.contrib.flask.body.BadForm`.
"""

from __future__ import annotations

import re
from typing import Iterator, List, Optional, Union

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Event, Field, File, MultipartDecoder, Preamble

from .body import BadForm, FileTooLarge, RequestBody

__all__ = ["FormReader", "TextField", "FilePart", "CHUNK_SIZE"]

#: How much of the body is read and decoded at a time.
CHUNK_SIZE = 256 * 1024

_LINE_BREAK = re.compile(rb"\r\n|\n|\r")


class TextField:
    """A text field of the form: its name and value."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"TextField({self.name!r})"


class FilePart:
    """One file of the form, read as a stream (``read(n)``) while the body arrives.

    ``name`` is the form field's name, ``filename`` what the browser sent
    (not a safe path), ``content_type`` the part's own.  Reading past
    ``max_size`` bytes raises :class:`FileTooLarge`.
    """

    def __init__(self, reader: "FormReader", event: File, data_start: int, max_size: Optional[int]) -> None:
        self._reader = reader
        self.name = event.name
        self.filename = event.filename
        self.headers: Headers = event.headers
        self.content_type = event.headers.get("Content-Type", "application/octet-stream")
        #: The file's size if it is the last field (see the module docstring); never negative.
        self.size_if_last = max(0, reader.length - data_start - reader.trailer_length)
        self.max_size = max_size
        #: Bytes of the file read so far.
        self.received = 0
        self._held = b""
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether the file's last byte has been read."""
        return self._ended and not self._held

    def read(self, size: int = -1) -> bytes:
        if not self._held and not self._ended:
            self._pull()
        if size is None or size < 0 or size >= len(self._held):
            data, self._held = self._held, b""
        else:
            data, self._held = self._held[:size], self._held[size:]
        return data

    def _pull(self) -> None:
        """Decode until some of the file's bytes are here, or its end."""
        while not self._held and not self._ended:
            event = self._reader.next_event()
            if not isinstance(event, Data):
                raise BadForm(f"the form's file {self.name!r} ended without its closing boundary")
            self._ended = not event.more_data
            if event.data:
                self.received += len(event.data)
                if self.max_size is not None and self.received > self.max_size:
                    raise FileTooLarge(f"the file {self.filename!r} is larger than {self.max_size} bytes")
                self._held = event.data

    def skip(self) -> None:
        """Read and drop what is left of the file (to get to the next field)."""
        self._held = b""
        while not self._ended:
            self._pull()
            self._held = b""


class FormReader:
    """The parts of one ``multipart/form-data`` body, in order (see the module docstring).

    ``body`` is the request's :class:`RequestBody`; ``boundary`` the one of
    its ``Content-Type``.  Text fields longer than ``max_field_size`` bytes,
    more than ``max_parts`` parts, or a part header larger than a chunk are
    :class:`BadForm`; a body that breaks off is :class:`BodyInterrupted`.
    """

    def __init__(
        self,
        body: RequestBody,
        boundary: str,
        *,
        max_file_size: Optional[int] = None,
        max_field_size: int = 64 * 1024,
        max_parts: int = 1000,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if not boundary or len(boundary) > 200:
            raise BadForm("the multipart/form-data Content-Type has no usable boundary")
        self._body = body
        self.length = body.length
        raw = boundary.encode("latin-1")
        #: ``\r\n--boundary--\r\n``: what follows the last field's bytes.
        self.trailer_length = len(raw) + 8
        self._chunk_size = chunk_size
        # the decoder's buffer never holds more than a chunk and a part's headers
        self._decoder = MultipartDecoder(raw, max_form_memory_size=2 * chunk_size, max_parts=max_parts)
        self._fed_all = False
        self.max_file_size = max_file_size
        self.max_field_size = max_field_size
        self._current: Optional[FilePart] = None

    def next_event(self) -> Event:
        """The decoder's next event, reading the body as it needs."""
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:
                raise BadForm(f"malformed multipart/form-data body: {exc}") from None
            if event is not NEED_DATA:
                return event
            if self._fed_all:  # the decoder raises on a cut body; this is a safeguard
                raise BadForm("the multipart/form-data body ends in the middle of a part")
            self._feed()

    def _feed(self) -> None:
        data = self._body.read(self._chunk_size)  # BodyInterrupted if the body breaks off
        try:
            self._decoder.receive_data(data)
        except RequestEntityTooLarge:
            raise BadForm("a part's headers are too large") from None
        if self._body.complete:
            self._decoder.receive_data(None)
            self._fed_all = True

    def _data_offset(self) -> int:
        """Where in the body the part whose headers were just decoded starts its bytes."""
        buffer = self._decoder.buffer  # what is read but not decoded: the line break, then data
        match = _LINE_BREAK.match(buffer)
        return self._body.received - len(buffer) + (match.end() if match else 0)

    def parts(self) -> Iterator[Union[TextField, FilePart]]:
        """Each field in turn; a :class:`FilePart` not read to its end is skipped when the next is asked for."""
        if self.length == 0:
            raise BadForm("the multipart/form-data body is empty")
        while True:
            if self._current is not None:
                self._current.skip()
                self._current = None
            event = self.next_event()
            if isinstance(event, Preamble):
                continue
            if isinstance(event, Epilogue):
                return
            if isinstance(event, File):
                self._current = FilePart(self, event, self._data_offset(), self.max_file_size)
                yield self._current
            elif isinstance(event, Field):
                yield TextField(event.name, self._field_value(event))
            else:  # Data outside a part: the decoder never gives it
                raise BadForm("malformed multipart/form-data body")

    def _field_value(self, field: Field) -> str:
        chunks: List[bytes] = []
        size = 0
        while True:
            event = self.next_event()
            if not isinstance(event, Data):
                raise BadForm(f"the form's field {field.name!r} ended without its closing boundary")
            size += len(event.data)
            if size > self.max_field_size:
                raise BadForm(f"the form's field {field.name!r} is larger than {self.max_field_size} bytes")
            chunks.append(event.data)
            if not event.more_data:
                return b"".join(chunks).decode("utf-8", "replace")
