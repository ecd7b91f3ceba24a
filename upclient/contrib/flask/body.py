"""A request body as ``Client.put`` reads it: never past ``Content-Length``, and a broken one said so.

:class:`RequestBody` wraps ``request.stream``.  It stops at the announced
length (a kept-alive connection has no end of file, and its next bytes are
the next request), and turns a body that breaks off (the browser closed the
connection or went away: the stream ends early, or its read raises) into
:class:`BodyInterrupted`.

The errors of this module are :class:`~upclient.errors.SourceChanged`: the
source ended otherwise than announced.  ``Client.put`` answers that by
giving the upload up: it keeps no resume point and frees what the storage
server holds of it (no one can send a request body again), so a browser
that goes away leaves no partial file behind.
"""

from __future__ import annotations

from typing import Any

from upclient.errors import SourceChanged

__all__ = ["RequestBodyError", "BodyInterrupted", "FileTooLarge", "BadForm", "RequestBody"]


class RequestBodyError(SourceChanged):
    """The request body cannot be uploaded as it was announced (see the module docstring)."""


class BodyInterrupted(RequestBodyError):
    """The client stopped sending before the end of its body: it closed the connection or went away."""


class FileTooLarge(RequestBodyError):
    """A file of the request is larger than the app accepts (413)."""


class BadForm(RequestBodyError):
    """The ``multipart/form-data`` body is malformed, or not as this storage needs it (400)."""


def _werkzeug_disconnect() -> Any:
    try:
        from werkzeug.exceptions import ClientDisconnected
    except ImportError:  # pragma: no cover - werkzeug comes with Flask
        return ()
    return ClientDisconnected


class RequestBody:
    """``length`` bytes of ``stream``, read on demand (see the module docstring)."""

    _disconnect = _werkzeug_disconnect()

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self.length = length
        #: Bytes read so far.
        self.received = 0

    @property
    def complete(self) -> bool:
        return self.received >= self.length

    def read(self, size: int = -1) -> bytes:
        left = self.length - self.received
        if left <= 0:
            return b""
        want = left if size is None or size < 0 else min(size, left)
        if want == 0:
            return b""
        try:
            data = self._stream.read(want)
        except (OSError, ValueError, self._disconnect) as exc:
            # OSError: the socket broke; ValueError: a server closed the stream under us;
            # ClientDisconnected: Werkzeug's LimitedStream saw the body end early
            raise BodyInterrupted(
                f"the client stopped sending after {self.received} of {self.length} bytes"
            ) from exc
        if not data:
            raise BodyInterrupted(f"the client stopped sending after {self.received} of {self.length} bytes")
        self.received += len(data)
        return bytes(data)
