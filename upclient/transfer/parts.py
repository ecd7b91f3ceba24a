"""What the engine hands a backend for one part: its byte range, and a way to read it.

A :class:`Part` is one byte range of the source; a :class:`PartIO` reads it
while it is sent, counting progress and honouring cancellation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from ..source import PartBody, Source

__all__ = ["Part", "PartIO"]


@dataclasses.dataclass(frozen=True)
class Part:
    """One byte range of the source: ``size`` bytes from ``offset``.

    ``data`` holds the bytes of a part read from a non-seekable stream; it is
    None for seekable sources, whose bytes are read as they are sent.
    ``last`` marks the final part of a stream whose size was unknown.
    """

    index: int
    offset: int
    size: int
    data: Optional[Union[bytes, memoryview]] = None
    last: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.size


class PartIO:
    """What a session uses to read one part while sending it.

    ``body()`` streams a byte range straight from the source; ``read()``
    loads a range into memory (for protocols that need a digest of the part
    before sending it), and ``body(data=...)`` then sends those bytes.  Both
    count progress and honour cancellation; nothing is read twice.
    """

    def __init__(
        self,
        source: Source,
        part: Part,
        on_read: Callable[[int], None],
        cancel: Any,
    ) -> None:
        self.source = source
        self.part = part
        self._on_read = on_read
        self._cancel = cancel

    def _range(self, start: Optional[int], end: Optional[int]) -> "tuple[int, int]":
        start = self.part.offset if start is None else start
        end = self.part.end if end is None else end
        if not self.part.offset <= start <= end <= self.part.end:
            raise ValueError(f"range {start}-{end} is outside part {self.part}")
        return start, end

    def read(self, start: Optional[int] = None, end: Optional[int] = None) -> bytes:
        """The bytes ``[start, end)`` (absolute offsets, default the whole part)."""
        start, end = self._range(start, end)
        if self.part.data is not None:
            rel = start - self.part.offset
            return bytes(self.part.data[rel : rel + end - start])
        data = bytes(self.source.read(start, end - start))
        if len(data) != end - start:
            self.source.check_unchanged()
        return data

    def body(
        self,
        start: Optional[int] = None,
        end: Optional[int] = None,
        *,
        data: Optional[Union[bytes, memoryview]] = None,
    ) -> PartBody:
        """A sized, streamed request body for ``[start, end)`` or for ``data``."""
        start, end = self._range(start, end)
        if data is None and self.part.data is not None:
            rel = start - self.part.offset
            data = self.part.data[rel : rel + end - start]
        if data is not None:
            view = memoryview(data)
            return PartBody(
                lambda pos, n: view[pos : pos + n],
                0,
                len(view),
                on_read=self._on_read,
                cancel=self._cancel,
            )
        return self.source.body(start, end - start, on_read=self._on_read, cancel=self._cancel)
