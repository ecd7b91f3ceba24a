"""What the engine hands a backend for one part: its byte range, and a way to read it.

A :class:`Part` is one byte range of the source; a :class:`PartIO` reads it
while it is sent, counting progress and honouring cancellation.  A protocol
that wants a part's digest before its bytes (``Content-MD5``,
``Upload-Checksum``) asks :meth:`PartIO.checksummed`: the part is hashed
from the file in small steps and then streamed, so it is never held whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Optional, Tuple, Union

from ..source import DIGEST_BLOCK, PartBody, Source

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

    ``body()`` streams a byte range straight from the source;
    ``checksummed()`` gives a range's digest and its body; ``read()`` loads a
    range into memory, and ``body(data=...)`` then sends those bytes.  Bodies
    count progress and honour cancellation.
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

    def checksummed(
        self, algorithm: str = "md5", start: Optional[int] = None, end: Optional[int] = None
    ) -> Tuple[Any, PartBody]:
        """A hashlib object of ``[start, end)`` and the body that sends those bytes.

        A larger range of a file is hashed from the source in
        :data:`~upclient.source.DIGEST_BLOCK` steps, then streamed (from the
        page cache, where the hashing left it), so a part is never held
        whole.  A range no larger than one step, or of a source that is read
        only through its ``read`` (:meth:`~upclient.source.Source.hashes_in_place`
        False), is read once and sent from memory; a stream's part, in memory
        already, is hashed there.
        """
        start, end = self._range(start, end)
        if self.part.data is not None or end - start <= DIGEST_BLOCK or not self.source.hashes_in_place():
            data: Union[bytes, memoryview]
            if self.part.data is None:
                data = self.read(start, end)
            else:
                rel = start - self.part.offset
                data = memoryview(self.part.data)[rel : rel + end - start]
            h = hashlib.new(algorithm, data)
            return h, self.body(start, end, data=data)
        h = self.source.digest(start, end - start, algorithm, cancel=self._cancel)
        return h, self.body(start, end)

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
