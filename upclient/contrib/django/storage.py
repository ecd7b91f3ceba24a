"""A Django ``Storage`` on any upclient backend: :class:`UpclientStorage`.

Configured in ``STORAGES``::

    STORAGES = {
        "default": {
            "BACKEND": "upclient.contrib.django.UpclientStorage",
            "OPTIONS": {"url": "upyun://op@svc", "password": "...", "base_url": "https://cdn.example.com/"},
        },
    }

Its options are its own (below) and any :class:`upclient.Client` setting or
backend option (``part_size``, ``retry``, ``password``, ``token``...).  One
Client is made per storage, on first use, and shared by every thread.
"""

from __future__ import annotations

import datetime
import io
import mimetypes
import os
import stat
import threading
import urllib.parse
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import SuspiciousFileOperation  # type: ignore[import-untyped]
from django.core.files.base import File  # type: ignore[import-untyped]
from django.core.files.storage import Storage  # type: ignore[import-untyped]

from ...client import Client
from ...errors import BadInput, NotFound
from ...result import UploadResult
from .dialects import Dialect, dialect_for
from .files import READ_BLOCK, StoredFile, UpclientFile

__all__ = ["UpclientStorage"]

#: The put option that carries a file's content type, per backend.
_CONTENT_TYPE_OPTION = {"upyun": "content_type", "community": "content_type", "tus": "filetype"}


class UpclientStorage(Storage):
    """A Django storage whose files live on an upclient backend.

    Options of the storage itself:

    - ``url``: the backend URL (``upyun://op@svc``, ``tus+https://host/files/``,
      ``community+https://api``, ``fdfs://tracker:22122``), or ``client``: a
      ready :class:`~upclient.Client` to share;
    - ``base_url``: ``url(name)`` is ``base_url`` + name; without it, what the
      backend gives (UPYUN: its CDN ``domain``; tus: the upload URL;
      community: the file's ``cdn_url``; FastDFS has none);
    - ``location``: a key prefix below which names live (UPYUN);
    - ``file_overwrite`` (default True, as django-storages): saving a name that
      exists replaces it; False finds a free name first, as Django does.
      Backends that name files themselves (tus, FastDFS, community) never
      collide;
    - ``put_options``: backend put options for every save (``{"category":
      "image"}``, ``{"headers": {...}}``);
    - ``timeout``: seconds a save may take in all (default: none);
    - ``read_block``: bytes a read fetches at least (default 1 MiB).

    Everything else goes to :class:`~upclient.Client`; ``store`` defaults to
    ``None`` (resume points in memory): a web server's saves do not resume
    across processes.  A verb the backend lacks raises ``NotImplementedError``
    saying so: tus and FastDFS cannot list; FastDFS has no URL without
    ``base_url``; tus has no modification time.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        client: Optional[Client] = None,
        base_url: Optional[str] = None,
        location: str = "",
        file_overwrite: bool = True,
        put_options: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        read_block: int = READ_BLOCK,
        **client_settings: Any,
    ) -> None:
        if (url is None) == (client is None):
            raise BadInput("UpclientStorage needs exactly one of url= (a backend URL) or client=")
        if client is not None and client_settings:
            raise BadInput(f"client= is ready made: {', '.join(sorted(client_settings))} cannot apply to it")
        self._url = url
        self._client = client
        self._client_settings: Dict[str, Any] = {"store": None, **client_settings}
        self.base_url = base_url
        self.location = location
        self.file_overwrite = bool(file_overwrite)
        self.put_options = dict(put_options or {})
        self.timeout = timeout
        self.read_block = int(read_block)
        self._dialect: Optional[Dialect] = None
        self._lock = threading.Lock()

    # -- the one client --------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The storage's :class:`~upclient.Client`, made on first use (no request is sent then)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    assert self._url is not None
                    self._client = Client(self._url, **self._client_settings)
        return self._client

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            self._dialect = dialect_for(self.client, self.location)
        return self._dialect

    def close(self) -> None:
        """Close the client (its worker threads and connections); a storage lives as long as its process."""
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        target = repr(self._client.backend) if self._client is not None else "(client not made yet)"
        return f"<UpclientStorage {target}>"

    # -- saving ----------------------------------------------------------------------

    def _save(self, name: str, content: Any) -> str:
        if isinstance(content, StoredFile) and content.storage is self:
            return content.storage_name  # streamed here already: keep it, do not upload it again
        source, size = _source_of(content)
        content_type = getattr(content, "content_type", None)
        return self.put_named(source, name, size=size, content_type=content_type, timeout=self.timeout)[0]

    def put_named(self, source: Any, name: str, *, size: Optional[int] = None, content_type: Optional[str] = None,
                  cancel: Any = None, timeout: Optional[float] = None,
                  serial: bool = False) -> Tuple[str, UploadResult]:
        """Put ``source`` (anything ``Client.put`` takes) as ``name``: the storage name it got, and the result.

        The name is a key below ``location`` (UPYUN) or a hint to a server
        that names files itself; the content type goes along where the
        backend keeps one.  ``serial`` sends the parts one at a time, where
        the backend would send several at once (a stream arriving in order
        gains nothing from it, and each part in flight is held in memory).
        """
        options = {**(self.dialect.serial_options if serial else {}), **self.put_options}
        option = _CONTENT_TYPE_OPTION.get(self.client.backend.name)
        content_type = content_type or mimetypes.guess_type(name)[0]
        if option and content_type and option not in options:
            options[option] = content_type
        result = self.client.put(source, key=self.dialect.key_for(name), size=size, cancel=cancel,
                                 timeout=timeout, **options)
        return self.dialect.name_of(result), result

    def get_available_name(self, name: str, max_length: Optional[int] = None) -> str:
        """A name to save under: ``name`` itself when it may be replaced, as django-storages does."""
        name = str(name).replace("\\", "/")
        if not self.dialect.keyed:
            return name  # the server names the file: nothing to find
        if not self.file_overwrite:
            return str(super().get_available_name(name, max_length))
        return _fit(name, max_length)

    # -- reading ---------------------------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> UpclientFile:
        if any(c in mode for c in "wax+"):
            raise NotImplementedError(f"an UpclientStorage file opens for reading only (mode {mode!r}): "
                                      "write with save()")
        return UpclientFile(self, name, "rb", block=self.read_block)

    def exists(self, name: str) -> bool:
        try:
            return bool(self.client.exists(self.dialect.id_of(name)))
        except BadInput:
            return False  # not a name this backend could have given out

    def size(self, name: str) -> int:
        size = self.client.info(self.dialect.id_of(name)).size
        if size is None:
            raise OSError(f"the {self.client.backend.name} server does not know the size of {name} yet")
        return int(size)

    def url(self, name: Optional[str]) -> str:
        if name is None:
            raise ValueError("a file with no name has no URL")
        if self.base_url is not None:
            return self.base_url + urllib.parse.quote(name, safe="/~")
        return self.dialect.url(name)

    def get_modified_time(self, name: str) -> datetime.datetime:
        when = self.dialect.modified(self.client.info(self.dialect.id_of(name)))
        if when is None:
            raise NotImplementedError(f"the {self.client.backend.name} backend does not say when a file changed")
        return datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc if settings.USE_TZ else None)

    def listdir(self, path: str) -> Tuple[List[str], List[str]]:
        return self.dialect.listdir(path)

    # -- changing --------------------------------------------------------------------

    def delete(self, name: str) -> None:
        try:
            self.client.delete(self.dialect.id_of(name))
        except (NotFound, BadInput):
            pass  # nothing stored under that name: what delete wanted


# ------------------------------------------------------------------ helpers


class ChunkReader:
    """A non-seekable stream over an iterator of byte chunks (a Django ``File.chunks()``)."""

    def __init__(self, chunks: Iterator[bytes], name: str = "upload") -> None:
        self._chunks = chunks
        self._held = memoryview(b"")
        self.name = name

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        if not self._held:
            block = next(self._chunks, b"")
            if not block:
                return b""
            self._held = memoryview(block).cast("B")
        take = len(self._held) if size is None or size < 0 else min(size, len(self._held))
        out, self._held = self._held[:take], self._held[take:]
        return out.tobytes()


def _source_of(content: Any) -> Tuple[Any, Optional[int]]:
    """What ``Client.put`` reads ``content`` from, and the size to announce for a stream.

    A file on disk (Django's temporary upload file) goes by path; a seekable
    binary file object from its start, read in ranges; anything else
    through its ``chunks()``.  Text (``ContentFile("...")``) is UTF-8.
    """
    temporary = getattr(content, "temporary_file_path", None)
    if callable(temporary):
        return temporary(), None
    inner = content
    while isinstance(inner, File) and getattr(inner, "file", None) is not None and inner.file is not inner:
        inner = inner.file
    if isinstance(inner, io.TextIOBase):
        content.seek(0)
        return content.read().encode("utf-8"), None
    if _seekable(content):
        content.seek(0)
        if _is_regular_file(inner):
            return inner, None  # read with os.pread, in parallel parts
        return content, None
    try:
        size: Optional[int] = int(content.size)
    except (AttributeError, TypeError, ValueError, OSError):
        size = None
    return ChunkReader(content.chunks(), name=os.path.basename(getattr(content, "name", None) or "upload")), size


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _is_regular_file(f: Any) -> bool:
    try:
        return stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return False


def _fit(name: str, max_length: Optional[int]) -> str:
    """``name``, its file root cut short if it is longer than ``max_length``."""
    if max_length is None or len(name) <= max_length:
        return name
    dir_name, file_name = os.path.split(name)
    root, ext = os.path.splitext(file_name)
    cut = len(name) - max_length
    if cut >= len(root):
        raise SuspiciousFileOperation(f'Storage cannot fit "{name}" in {max_length} characters: '
                                      "allow a larger max_length")
    return os.path.join(dir_name, root[:-cut] + ext)
