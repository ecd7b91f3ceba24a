"""The Flask extension: :class:`Upclient`, one shared ``Client`` per app and views that stream to it."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Mapping, Optional, Union

import flask
from werkzeug import exceptions as http
from werkzeug.datastructures import MultiDict
from werkzeug.utils import secure_filename

from upclient import Client, UploadResult
from upclient.errors import BadInput, SourceChanged
from upclient.source import StreamSource

from .answers import http_error
from .body import BadForm, BodyInterrupted, FileTooLarge, RequestBody, RequestBodyError
from .config import FlaskSettings, client_arguments, request_settings
from .form import FilePart, FormReader, TextField

__all__ = ["Upclient", "FormUpload", "StoredFile", "EXTENSION_KEY"]

log = logging.getLogger("upclient.contrib.flask")

#: Where the app's ``Client`` lives: ``app.extensions["upclient"]``.
EXTENSION_KEY = "upclient"

_CONFIG: Any = object()  # "as app.config says"

KeyChooser = Callable[[str, "MultiDict[str, str]"], str]


@dataclass(frozen=True)
class StoredFile:
    """One file of a form, stored: the form field, the name the browser gave, and the result."""

    field: str
    filename: str
    content_type: str
    result: UploadResult


@dataclass(frozen=True)
class FormUpload:
    """What :meth:`Upclient.put_form` stored: the form's text fields, and its files in order."""

    fields: "MultiDict[str, str]" = field(default_factory=MultiDict)
    files: List[StoredFile] = field(default_factory=list)


class _AppState:
    """What the extension keeps per app beside the client: the request settings and the closer."""

    def __init__(self, settings: FlaskSettings, finalizer: "weakref.finalize") -> None:
        self.settings = settings
        self.finalizer = finalizer


class Upclient:
    """Uploads from Flask views to the storage of ``UPCLIENT_URL``; see :mod:`upclient.contrib.flask`.

    ``Upclient(app)``, or ``uploads = Upclient()`` then ``uploads.init_app(app)``
    in an app factory: one object may serve several apps, each with its own
    ``Client`` in ``app.extensions["upclient"]``.  The client is made at
    ``init_app`` (a setting in error fails there, not at the first upload),
    shared by every request thread, and closed by :meth:`close`, when the app
    is garbage-collected, or at interpreter exit: never after a request.
    """

    def __init__(self, app: Optional[flask.Flask] = None) -> None:
        self._states: "weakref.WeakKeyDictionary[flask.Flask, _AppState]" = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    # -- lifecycle ---------------------------------------------------------------------

    def init_app(self, app: flask.Flask) -> None:
        """Make the app's client from its ``UPCLIENT_*`` settings (see :mod:`.config`)."""
        settings = request_settings(app.config)
        url, kwargs = client_arguments(app.config)
        try:
            client = Client(url, **kwargs)
        except BadInput as exc:
            raise BadInput(f"upclient settings in app.config (UPCLIENT_<NAME> is Client's <name>): {exc}") from None
        old = app.extensions.get(EXTENSION_KEY)
        if isinstance(old, Client):
            self.close(app)
        app.extensions[EXTENSION_KEY] = client
        # the app is often part of reference cycles: closed at its collection or at exit
        self._states[app] = _AppState(settings, weakref.finalize(app, client.close))
        log.debug("%s: uploads go to %r", app.name, client)

    def close(self, app: Optional[flask.Flask] = None) -> None:
        """Close the client of ``app`` (default: the current app): uploads in flight are cancelled."""
        app = app if app is not None else flask.current_app._get_current_object()  # type: ignore[attr-defined]
        client = app.extensions.pop(EXTENSION_KEY, None)
        state = self._states.pop(app, None)
        if state is not None:
            state.finalizer.detach()
        if isinstance(client, Client):
            client.close()

    @property
    def client(self) -> Client:
        """The current app's :class:`~upclient.Client` (for ``get``, ``delete``, ``info``, ...)."""
        client = flask.current_app.extensions.get(EXTENSION_KEY)
        if not isinstance(client, Client):
            raise RuntimeError("upclient is not set up for this app: call Upclient(app) or init_app(app)")
        return client

    def _settings(self) -> FlaskSettings:
        state = self._states.get(flask.current_app._get_current_object())  # type: ignore[attr-defined]
        if state is None:
            raise RuntimeError("upclient is not set up for this app: call Upclient(app) or init_app(app)")
        return state.settings

    # -- views -------------------------------------------------------------------------

    def put_body(
        self,
        key: str,
        *,
        max_size: Optional[int] = _CONFIG,
        timeout: Optional[float] = _CONFIG,
        metadata: Optional[Mapping[str, str]] = None,
        **options: Any,
    ) -> UploadResult:
        """Store the request's body as ``key``, streamed from ``request.stream`` while it arrives.

        For ``PUT /upload/<name>`` with the file as the body (``curl -T``, a
        browser's ``fetch(url, {method: "PUT", body: file})``).  The size is
        the ``Content-Length``; the part's type the request's ``Content-Type``.
        ``max_size`` and ``timeout`` default to ``UPCLIENT_MAX_SIZE`` and
        ``UPCLIENT_TIMEOUT``; ``metadata`` and backend ``options`` go to
        ``Client.put``.  Failures are raised as Werkzeug HTTP errors (see
        :mod:`.answers`): 411, 413, 400, 504, 502, and the upload is aborted
        on the storage server when the browser goes away.  Read nothing of
        the request body (``request.data``, ``request.form``) before.
        """
        settings = self._settings()
        request = flask.request
        limit = settings.max_size if max_size is _CONFIG else max_size
        length = _content_length(request, limit)
        body = RequestBody(request.stream, length)
        source = StreamSource(body, name=key.rsplit("/", 1)[-1] or "upload", size=length)
        if request.mimetype:
            source.content_type = request.mimetype
        with _answering(key):
            return self.client.put(source, key=key, metadata=metadata,
                                   timeout=settings.timeout if timeout is _CONFIG else timeout, **options)

    def put_form(
        self,
        key: Union[str, KeyChooser, None] = None,
        *,
        max_size: Optional[int] = _CONFIG,
        timeout: Optional[float] = _CONFIG,
        metadata: Optional[Mapping[str, str]] = None,
        max_field_size: int = 64 * 1024,
        **options: Any,
    ) -> FormUpload:
        """Store each file of a ``multipart/form-data`` request while it arrives, without a temporary file.

        What a browser's ``<form method=post enctype=multipart/form-data>``
        sends.  The parts are read in order from ``request.stream``: text
        fields are collected (up to ``max_field_size`` bytes each) and each
        file is streamed to ``Client.put``.  ``key`` names the stored file: a
        string (a form of one file), a callable ``key(filename, fields)``
        given the fields before the file, or None for the browser's file
        name made safe (``secure_filename``).  A file input left empty is
        skipped.  ``timeout`` bounds the whole request; ``max_size`` each
        file.  Storage that needs the size first (UPYUN) needs the file as
        the form's last field (where browsers send a form's last input).
        Failures are raised as for :meth:`put_body`; files stored before a
        later one failed stay stored (their ids are logged).
        """
        settings = self._settings()
        request = flask.request
        limit = settings.max_size if max_size is _CONFIG else max_size
        seconds = settings.timeout if timeout is _CONFIG else timeout
        deadline = None if seconds is None else time.monotonic() + seconds
        if request.mimetype != "multipart/form-data":
            raise http.BadRequest("send the file as multipart/form-data")
        boundary = request.mimetype_params.get("boundary", "")
        length = _content_length(request, None)
        client = self.client
        needs_size = not client.backend.streams
        upload = FormUpload()
        with _answering(key if isinstance(key, str) else "a form"):
            reader = FormReader(RequestBody(request.stream, length), boundary,
                                max_file_size=limit, max_field_size=max_field_size)
            try:
                for part in reader.parts():
                    if isinstance(part, TextField):
                        upload.fields.add(part.name, part.value)
                        continue
                    if not part.filename:  # a file input the user left empty
                        continue
                    if isinstance(key, str) and upload.files:
                        raise BadForm(f"the form has more than one file, and all would be stored as {key!r}")
                    upload.files.append(self._put_part(client, part, _key_for(key, part, upload.fields),
                                                       needs_size, deadline, metadata, options))
            except BaseException:
                if upload.files:  # stored, but the request fails: say where they are
                    log.warning("a form failed after storing %s", ", ".join(f.result.id for f in upload.files))
                raise
        return upload

    def _put_part(
        self,
        client: Client,
        part: FilePart,
        key: str,
        needs_size: bool,
        deadline: Optional[float],
        metadata: Optional[Mapping[str, str]],
        options: Mapping[str, Any],
    ) -> StoredFile:
        if needs_size and part.max_size is not None and part.size_if_last > part.max_size:
            raise FileTooLarge(f"the file {part.filename!r} is larger than {part.max_size} bytes")
        source = StreamSource(part, name=part.filename, size=part.size_if_last if needs_size else None)
        source.content_type = part.content_type
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise http.GatewayTimeout("the upload did not finish in time")
        try:
            result = client.put(source, key=key, metadata=metadata, timeout=timeout, **options)
        except SourceChanged as exc:
            if needs_size and not isinstance(exc, RequestBodyError):
                raise BadForm(f"the file {part.filename!r} is not the form's last field: this storage needs "
                              "the size before the bytes, so put the file input last") from exc
            raise
        return StoredFile(part.name, part.filename, part.content_type, result)


def _key_for(key: Union[str, KeyChooser, None], part: FilePart, fields: "MultiDict[str, str]") -> str:
    if isinstance(key, str):
        return key
    if key is not None:
        chosen = key(part.filename, fields)
        if not isinstance(chosen, str) or not chosen:
            raise TypeError("key(filename, fields) must return a non-empty string")
        return chosen
    return secure_filename(part.filename) or "upload"


def _content_length(request: flask.Request, limit: Optional[int]) -> int:
    length = request.content_length
    if length is None:
        raise http.LengthRequired("send a Content-Length: the size must be known before the body")
    if limit is not None and length > limit:
        raise http.RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    return length


@contextlib.contextmanager
def _answering(what: str) -> Iterator[None]:
    """Raise an upload's failure as its HTTP error (see :mod:`.answers`), and log it."""
    try:
        yield
    except Exception as exc:
        answer = http_error(exc)
        if answer is None:
            raise
        if isinstance(exc, (BodyInterrupted, http.ClientDisconnected)):
            log.info("upload of %s stopped: the client went away (%s)", what, exc)
        elif answer.code is not None and answer.code >= 500:
            log.warning("upload of %s failed: %s: %s", what, type(exc).__name__, exc)
        else:
            log.info("upload of %s refused (%s): %s", what, answer.code, exc)
        if answer is exc:
            raise
        raise answer from exc
