"""A streaming reader of ``multipart/form-data`` bodies, for the FORM API: each part's content comes in blocks."""

from __future__ import annotations

import re
from typing import Iterator, Optional, Tuple
from urllib.parse import unquote

from upclient.testing.httpbase import Body, KiB

__all__ = ["FormError", "FormPart", "FormReader"]


class FormError(Exception):
    """A body that is not well-formed multipart/form-data."""


class FormPart:
    """One part's name, file name and content type."""

    def __init__(self, name: str, filename: Optional[str], content_type: Optional[str]) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type


class FormReader:
    """A multipart/form-data body, part by part, each part's content streamed in blocks."""

    def __init__(self, body: Body, boundary: str) -> None:
        self._body = body
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._separator = b"\r\n" + self._delimiter
        self._buf = b""
        self._pending: Optional[Iterator[bytes]] = None

    def _fill(self) -> bool:
        block = self._body.read()
        if not block:
            return False
        self._buf += block
        return True

    def parts(self) -> Iterator[Tuple[FormPart, Iterator[bytes]]]:
        """``(part, content blocks)`` in order; a part's content not read is skipped."""
        while True:
            at = self._buf.find(self._delimiter)
            if at >= 0:
                self._buf = self._buf[at + len(self._delimiter) :]
                break
            self._buf = self._buf[-len(self._delimiter) :]
            if not self._fill():
                raise FormError("no multipart boundary in the body")
        while True:
            while len(self._buf) < 2:
                if not self._fill():
                    raise FormError("the body ends after a boundary")
            if self._buf.startswith(b"--"):
                return
            if not self._buf.startswith(b"\r\n"):
                raise FormError("no CRLF after a boundary")
            self._buf = self._buf[2:]
            while b"\r\n\r\n" not in self._buf:
                if len(self._buf) > 16 * KiB or not self._fill():
                    raise FormError("unterminated part headers")
            head, self._buf = self._buf.split(b"\r\n\r\n", 1)
            part = self._part_headers(head.decode("utf-8", "replace"))
            content = self._content()
            yield part, content
            for _ in content:  # whatever the consumer left
                pass

    @staticmethod
    def _part_headers(text: str) -> FormPart:
        name: Optional[str] = None
        filename: Optional[str] = None
        content_type: Optional[str] = None
        for line in text.split("\r\n"):
            field, _, value = line.partition(":")
            field = field.strip().lower()
            if field == "content-type":
                content_type = value.strip()
            elif field == "content-disposition":
                params = dict(
                    (k.lower(), v[1:-1].replace('\\"', '"') if v.startswith('"') else v.strip())
                    for k, v in re.findall(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', value)
                )
                name = params.get("name")
                filename = params.get("filename")
                if "filename*" in params:
                    _, _, encoded = params["filename*"].partition("''")
                    filename = unquote(encoded)
        if name is None:
            raise FormError("a part without a name")
        return FormPart(name, filename, content_type)

    def _content(self) -> Iterator[bytes]:
        separator = self._separator
        keep = len(separator) - 1
        while True:
            at = self._buf.find(separator)
            if at >= 0:
                data, self._buf = self._buf[:at], self._buf[at + len(separator) :]
                if data:
                    yield data
                return
            if len(self._buf) > keep:
                data, self._buf = self._buf[:-keep], self._buf[-keep:]
                yield data
            if not self._fill():
                raise FormError("the body ends inside a part")
