"""A Django upload handler that streams each file to storage as the body arrives.

:class:`StreamingUploadHandler` takes the place of Django's memory and
temporary-file handlers.  For each file of a ``multipart/form-data`` body,
it starts a ``Client.put`` in a thread of its own and hands it the file's
chunks through a :class:`~.pipe.BytePipe` while Django's parser reads them
from the socket: nothing is written to local disk, and what waits in memory
is the pipe (``pipe_capacity``) plus the part the put is sending.  Once the
file's last byte is on the storage, ``request.FILES[field]`` holds a
:class:`~.files.StoredFile` whose ``storage_name`` is the key or id to keep.

Sizes: a browser does not say how large each file of a form is.  tus and
FastDFS take a stream of unknown size; the community API takes one too, but
needs its MD5 before it starts, so that backend keeps a stream in a
temporary file of its own.  UPYUN needs the size first: it is taken from the
part's ``Content-Length`` or from an ``X-Upload-Sizes`` request header (the
sizes of the files in body order, comma-separated, which a page's script
sets from ``File.size``); without either, the file is spooled (in memory up
to ``spool_memory`` bytes, then in a temporary file) and put once it has
arrived, or, with ``spool=False``, refused with 411.

Ends: a body that breaks off (the browser went away) cancels the put, and
the put frees what the server held of it; an upload still running when the
request ends is cancelled too.  Every wait ends at the handler's deadline
(``timeout`` seconds from the request's start), with
:class:`~upclient.errors.DeadlineExceeded`; :func:`~.views.streaming_upload`
answers it 504, and a body over ``max_size`` 413, before it is read.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from typing import IO, Any, Callable, Dict, List, Optional, Union

from django.conf import settings  # type: ignore[import-untyped]
from django.core.files.storage import Storage, storages  # type: ignore[import-untyped]
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers  # type: ignore[import-untyped]
from django.core.signals import request_finished  # type: ignore[import-untyped]

from ...client import ABORT_TIMEOUT
from ...errors import BadInput, Cancelled, DeadlineExceeded, ServiceError
from .errors import LengthRequired, UploadTooLarge
from .files import StoredFile
from .pipe import BytePipe
from .storage import UpclientStorage

__all__ = ["StreamingUploadHandler", "SIZES_HEADER"]

log = logging.getLogger("upclient.django")

#: The request header that announces the files' sizes, in body order.
SIZES_HEADER = "X-Upload-Sizes"

_DEFAULTS: Dict[str, Any] = {
    "storage": "default",
    "max_size": None,
    "timeout": None,
    "upload_to": "uploads/",
    "key": None,
    "spool": True,
    "spool_memory": 4 * 1024 * 1024,
    "pipe_capacity": 1024 * 1024,
}


class StreamingUploadHandler(FileUploadHandler):
    """See the module docstring.

    Options (keyword arguments, else ``settings.UPCLIENT_UPLOAD_HANDLER``, a
    dict, when the handler is listed in ``FILE_UPLOAD_HANDLERS``):

    - ``storage``: an :class:`~.storage.UpclientStorage` or its alias in
      ``STORAGES`` (default ``"default"``);
    - ``max_size``: the most bytes a request body may hold; a larger one is
      refused before any of it is read (413);
    - ``timeout``: seconds from the request's start by which every file must
      be stored (default: none);
    - ``upload_to`` (default ``"uploads/"``) and ``key``: a file is named
      ``upload_to + <random>/<file name>``, or ``key(file_name)``; servers
      that name files (tus, FastDFS, community) use it only as a hint;
    - ``spool``, ``spool_memory``: for a backend that needs sizes (UPYUN);
    - ``pipe_capacity``: bytes that may wait between the request and the put.
    """

    chunk_size = 1024 * 1024

    def __init__(self, request: Any = None, **options: Any) -> None:
        super().__init__(request)
        unknown = set(options) - set(_DEFAULTS)
        if unknown:
            raise BadInput(f"StreamingUploadHandler does not know option(s) {', '.join(sorted(unknown))}")
        conf = {**_DEFAULTS, **dict(getattr(settings, "UPCLIENT_UPLOAD_HANDLER", None) or {}), **options}
        storage: Union[str, Storage] = conf["storage"]
        self.storage = storages[storage] if isinstance(storage, str) else storage
        if not isinstance(self.storage, UpclientStorage):
            raise BadInput(f"StreamingUploadHandler needs an UpclientStorage, not {type(self.storage).__name__}")
        self.max_size: Optional[int] = conf["max_size"]
        self.deadline = None if conf["timeout"] is None else time.monotonic() + float(conf["timeout"])
        self.upload_to: str = conf["upload_to"]
        self.key: Optional[Callable[[str], str]] = conf["key"]
        self.spool = bool(conf["spool"])
        self.spool_memory = int(conf["spool_memory"])
        self.pipe_capacity = int(conf["pipe_capacity"])
        self._sizes: List[int] = []
        self._current: Optional[_Upload] = None
        self._thread = threading.get_ident()
        request_finished.connect(self._request_finished, weak=True)

    # -- Django's hooks --------------------------------------------------------------

    def handle_raw_input(self, input_data: Any, META: Dict[str, Any], content_length: int, boundary: Any,
                         encoding: Optional[str] = None) -> None:
        if self.max_size is not None and content_length > self.max_size:
            raise UploadTooLarge(f"the request holds {content_length} bytes; {self.max_size} at most are taken")
        announced = META.get("HTTP_" + SIZES_HEADER.upper().replace("-", "_"), "")
        try:
            self._sizes = [int(s) for s in announced.split(",") if s.strip()]
        except ValueError:
            raise BadInput(f"{SIZES_HEADER} must be sizes in bytes separated by commas") from None
        if any(s < 0 for s in self._sizes):
            raise BadInput(f"{SIZES_HEADER} must not hold negative sizes")

    def new_file(self, field_name: str, file_name: str, content_type: str, content_length: Optional[int],
                 charset: Optional[str] = None, content_type_extra: Optional[dict] = None) -> None:
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        announced = self._sizes.pop(0) if self._sizes else None
        size = content_length if content_length is not None else announced
        name = self.key(file_name) if self.key is not None else f"{self.upload_to}{secrets.token_hex(6)}/{file_name}"
        if size is None and not self.storage.client.backend.streams:
            if not self.spool:
                raise LengthRequired(f"the {self.storage.client.backend.name} backend needs each file's size: "
                                     f"send the {SIZES_HEADER} header")
            self._current = _SpooledUpload(self, name, content_type)
        else:
            self._current = _StreamedUpload(self, name, content_type, size)
        raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self._current is not None:
            self._current.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> Optional[StoredFile]:
        upload, self._current = self._current, None
        if upload is None:
            return None
        storage_name, result = upload.finish()
        if result.size != file_size:
            raise ServiceError(f"{self.file_name}: the server stored {result.size} bytes of {file_size}",
                               backend=result.backend, operation="put")
        return StoredFile(self.storage, storage_name, name=self.file_name or "upload", size=file_size,
                          content_type=self.content_type, charset=self.charset,
                          content_type_extra=self.content_type_extra, result=result)

    def upload_interrupted(self) -> None:
        self.abort(Cancelled("the request body broke off: the browser went away"))

    # -- ends ------------------------------------------------------------------------

    def abort(self, error: Optional[BaseException] = None) -> None:
        """Cancel the upload in progress, if any, and wait (briefly) until the server has let it go."""
        upload, self._current = self._current, None
        if upload is not None:
            upload.abort(error or Cancelled("the upload was abandoned"))

    def _request_finished(self, **_: Any) -> None:
        if threading.get_ident() != self._thread:
            return  # another thread's request
        request_finished.disconnect(self._request_finished)
        if self._current is not None:
            log.warning("%s: the request ended before its file did; cancelling the upload", self.file_name)
            self.abort(Cancelled("the request ended before the file did"))

    def remaining(self) -> Optional[float]:
        """Seconds left until the deadline (None: no deadline); DeadlineExceeded once it has passed."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{self.file_name}: the upload's time ran out")
        return left


class _Upload:
    """One file's way to the storage."""

    def __init__(self, handler: StreamingUploadHandler, name: str, content_type: Optional[str]) -> None:
        self.handler = handler
        self.name = name
        self.content_type = content_type

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> Any:
        raise NotImplementedError

    def abort(self, error: BaseException) -> None:
        raise NotImplementedError


class _StreamedUpload(_Upload):
    """A put running in a thread of its own, fed through a pipe as the body arrives."""

    def __init__(self, handler: StreamingUploadHandler, name: str, content_type: Optional[str],
                 size: Optional[int]) -> None:
        super().__init__(handler, name, content_type)
        self.pipe = BytePipe(handler.pipe_capacity, deadline=handler.deadline, name=os.path.basename(name))
        self.cancel = threading.Event()
        self.outcome: Any = None
        self.error: Optional[BaseException] = None
        timeout = handler.remaining()
        self.thread = threading.Thread(target=self._run, args=(size, timeout), name="upclient-django-put",
                                       daemon=True)
        self.thread.start()

    def _run(self, size: Optional[int], timeout: Optional[float]) -> None:
        try:
            self.outcome = self.handler.storage.put_named(self.pipe, self.name, size=size,
                                                          content_type=self.content_type, cancel=self.cancel,
                                                          timeout=timeout, serial=True)
        except BaseException as exc:
            self.error = exc
            self.pipe.fail(exc)  # the request thread, maybe waiting on a full pipe, learns it at once

    def write(self, data: bytes) -> None:
        self.pipe.write(data)

    def finish(self) -> Any:
        self.pipe.close()
        if not self._join(self.handler.deadline):
            self.abort(DeadlineExceeded(f"{self.pipe.name}: the upload's time ran out"))
            raise DeadlineExceeded(f"{self.pipe.name}: the storage did not finish the upload in time")
        if self.error is not None:
            raise self.error
        return self.outcome

    def abort(self, error: BaseException) -> None:
        self.pipe.fail(error)
        self.cancel.set()
        # the put frees what the server holds (bounded by ABORT_TIMEOUT): wait for it, a little longer
        self._join(time.monotonic() + ABORT_TIMEOUT + 5.0)

    def _join(self, deadline: Optional[float]) -> bool:
        self.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.thread.is_alive()


class _SpooledUpload(_Upload):
    """A file kept until its end (its size is then known), then put: for backends that need sizes.

    In memory up to the handler's ``spool_memory`` bytes, then in an
    anonymous temporary file (``FILE_UPLOAD_TEMP_DIR``), gone once closed.
    """

    def __init__(self, handler: StreamingUploadHandler, name: str, content_type: Optional[str]) -> None:
        super().__init__(handler, name, content_type)
        self.memory = bytearray()
        self.file: Optional[IO[bytes]] = None

    def write(self, data: bytes) -> None:
        if self.file is None and len(self.memory) + len(data) > self.handler.spool_memory:
            self.file = tempfile.TemporaryFile(prefix="upclient-spool-",
                                               dir=getattr(settings, "FILE_UPLOAD_TEMP_DIR", None))
            self.file.write(self.memory)
            self.memory = bytearray()
        if self.file is not None:
            self.file.write(data)
        else:
            self.memory += data

    def finish(self) -> Any:
        try:
            source: Any = self.memory
            if self.file is not None:
                self.file.flush()
                self.file.seek(0)
                source = self.file
            return self.handler.storage.put_named(source, self.name, content_type=self.content_type,
                                                  timeout=self.handler.remaining())
        finally:
            self.abort(Cancelled("done"))

    def abort(self, error: BaseException) -> None:
        self.memory = bytearray()
        if self.file is not None:
            self.file.close()
            self.file = None
