"""The community multipart API (``community+https://`` URLs).

An upload starts with ``init`` (the file's MD5 and size): a server that
already holds the same bytes answers at once and nothing is sent ("instant
upload"); otherwise it lays out the parts, each with a presigned URL, and
marks the ones it already has, so a resume is the server's own.  Parts go in
parallel by PUT to their URLs, streamed from the file, with no credentials
and no Content-Type (the store's signature covers the headers); ``complete``
joins them.  The MD5 is read once per file and remembered in the client's
store (:class:`upclient.digest.DigestCache`); a non-seekable stream is
spooled to a temporary file and hashed as it is read.

Auth is a bearer token (a string, or a callable asked on every request, so
tokens may rotate; ``Bearer`` is added when missing) or an API key with
``user_id`` and optional ``org_id`` for service-to-service calls.  The
envelope ``{"code", "message", "data"}`` maps into the shared errors: 401 is
:class:`~upclient.errors.AuthError`, a 2xx with another ``code`` is a
:class:`~upclient.errors.RequestRejected` carrying that code.

:mod:`.protocol` builds the requests and reads the answers (no sockets),
:mod:`.backend` holds the verbs and :mod:`.uploads` the upload sessions.
"""

from .backend import CommunityBackend
from .protocol import CATEGORIES, CommunityFile, CommunityResult

__all__ = ["CommunityBackend", "CommunityFile", "CommunityResult", "CATEGORIES"]
