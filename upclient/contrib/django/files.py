"""The file objects of the Django integration.

* :class:`RangedReader`: a stored file read lazily, a range per request
  (``client.get(id, offset=..., length=...)``), seekable, so ``FileResponse``
  can measure it and Pillow can jump about in it.  Nothing is fetched until
  the first read.
* :class:`UpclientFile`: what ``storage.open(name)`` returns, a Django
  ``File`` over a buffered :class:`RangedReader`.
* :class:`StoredFile`: what the streaming upload handler puts in
  ``request.FILES``: an ``UploadedFile`` whose bytes are already on the
  storage; ``storage_name`` is the name to keep in a ``FileField``.
"""

from __future__ import annotations

import io
from typing import Any, Optional

from django.core.files.base import File  # type: ignore[import-untyped]
from django.core.files.uploadedfile import UploadedFile  # type: ignore[import-untyped]

__all__ = ["RangedReader", "UpclientFile", "StoredFile"]

#: Bytes one ranged request fetches at least (reads are buffered up to it).
READ_BLOCK = 1024 * 1024


class RangedReader(io.RawIOBase):
    """A stored file as a seekable, read-only raw stream; see the module docstring.

    ``size`` may be given when it is known; otherwise it is asked of the
    server when first needed (the end of the file, a seek from the end).
    """

    def __init__(self, storage: Any, name: str, size: Optional[int] = None) -> None:
        super().__init__()
        self._storage = storage
        self.name = name
        self._size = size
        self._pos = 0

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = int(self._storage.size(self.name))
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self._pos)
        if want <= 0:
            return 0
        data = self._storage.client.get(self._storage.dialect.id_of(self.name), offset=self._pos, length=want)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n


class UpclientFile(File):
    """A stored file opened for reading (``storage.open(name)``), fetched lazily in ranges."""

    def __init__(self, storage: Any, name: str, mode: str = "rb", block: int = READ_BLOCK,
                 size: Optional[int] = None) -> None:
        self._storage = storage
        self.mode = mode
        self._raw = RangedReader(storage, name, size)
        super().__init__(io.BufferedReader(self._raw, buffer_size=block), name)

    @property
    def size(self) -> int:  # type: ignore[override]
        return self._raw.size

    def open(self, mode: Optional[str] = None) -> "UpclientFile":
        if self.closed:
            self._raw = RangedReader(self._storage, self.name, self._raw._size)
            self.file = io.BufferedReader(self._raw, buffer_size=READ_BLOCK)
        else:
            self.seek(0)
        return self


class StoredFile(UploadedFile):
    """An uploaded file the streaming handler has already stored; see the module docstring.

    ``name`` is the file name the browser sent (as ``UploadedFile`` has it);
    ``storage_name`` is where it is stored (a key, or the server's id), the
    value to keep in a ``FileField``: assigning this object to a field of
    the same storage keeps that name without uploading the bytes again.
    ``result`` is the :class:`~upclient.UploadResult`.  Reading it (Pillow
    measuring an image, a checksum) fetches the stored bytes lazily.
    """

    def __init__(self, storage: Any, storage_name: str, *, name: str, size: int, content_type: Optional[str],
                 charset: Optional[str], content_type_extra: Optional[dict], result: Any) -> None:
        self.storage = storage
        self.storage_name = storage_name
        self.result = result
        self._opened: Optional[UpclientFile] = None
        super().__init__(None, name, content_type, size, charset, content_type_extra)

    @property
    def file(self) -> Any:  # type: ignore[override]
        if self._opened is None:
            self._opened = UpclientFile(self.storage, self.storage_name, size=self.size)
        return self._opened

    @file.setter
    def file(self, value: Any) -> None:
        self._opened = value

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._opened is None or self._opened.closed

    def open(self, mode: Optional[str] = None) -> "StoredFile":
        self.file.open(mode)
        return self

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def __repr__(self) -> str:
        return f"<StoredFile {self.name!r} stored as {self.storage_name!r} ({self.size} bytes)>"
