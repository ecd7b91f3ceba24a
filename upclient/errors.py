"""The errors upclient raises: one tree, rooted at :class:`UpClientError`.

::

    UpClientError
    ├── BadInput (ValueError)            wrong arguments; raised before any request
    ├── Unsupported (NotImplementedError) the backend or server cannot do that
    ├── SourceChanged                    the file changed while it was uploaded
    ├── UploadInProgress                 another worker holds the upload in a shared store (retried)
    ├── Cancelled                        cancel token set, client closed, Ctrl-C
    │   └── DeadlineExceeded (TimeoutError)  the call's ``timeout`` ran out
    ├── TransportError                   no usable answer from the server (retried)
    │   ├── NetworkError (ConnectionError)
    │   │   ├── OutcomeUnknown               a lost answer to a request that must not be repeated
    │   │   ├── TLSError                     the TLS handshake failed (a bad certificate: not retried)
    │   │   └── StoreUnreachable             the store's server (Redis) does not answer (retried)
    │   └── Timeout (TimeoutError)
    └── ServerError                      the server answered with an error
        ├── AuthError                    401, 403
        ├── NotFound (LookupError)       404, 410
        │   └── UploadExpired            a resumable upload is gone on the server
        ├── Conflict                     409
        │   └── OffsetConflict           server and client disagree on an offset
        ├── ChecksumMismatch             a part arrived damaged (retried)
        ├── TooLarge                     413, or over the server's advertised limit
        ├── RateLimited                  429 (retried, Retry-After honoured)
        ├── ServiceError                 5xx (retried, Retry-After honoured)
        │   └── NoStorageAvailable       FastDFS: no active storage in the group (retried)
        └── RequestRejected              any other 4xx

Every error carries the ``backend`` and ``operation`` it came from, and where
there is one the HTTP ``status``, the protocol ``code``, the server's
``message`` and ``request_id``.  ``retryable`` tells the shared retry policy
whether trying again can help.  Exceptions of requests, urllib3 or socket are
translated at the transport boundary and never reach the caller raw.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "UpClientError",
    "BadInput",
    "Unsupported",
    "SourceChanged",
    "Cancelled",
    "DeadlineExceeded",
    "TransportError",
    "NetworkError",
    "Timeout",
    "OutcomeUnknown",
    "TLSError",
    "StoreUnreachable",
    "UploadInProgress",
    "ServerError",
    "AuthError",
    "NotFound",
    "UploadExpired",
    "Conflict",
    "OffsetConflict",
    "ChecksumMismatch",
    "TooLarge",
    "RateLimited",
    "ServiceError",
    "NoStorageAvailable",
    "RequestRejected",
    "error_for_status",
]


class UpClientError(Exception):
    """Root of every error raised by upclient."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        backend: Optional[str] = None,
        operation: Optional[str] = None,
        status: Optional[int] = None,
        code: Any = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.operation = operation
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = ".".join(p for p in (self.backend, self.operation) if p)
        facts = []
        if self.status is not None:
            facts.append(f"HTTP {self.status}")
        if self.code is not None:
            facts.append(f"code {self.code}")
        if self.request_id:
            facts.append(f"request id {self.request_id}")
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({', '.join(facts)})" if facts else text


class BadInput(UpClientError, ValueError):
    """The caller passed something unusable; nothing was sent."""


class Unsupported(UpClientError, NotImplementedError):
    """The backend, or this server, cannot do what was asked."""


class SourceChanged(UpClientError):
    """The source file changed while it was being uploaded.

    The upload is not finished, so the server never holds a mix of old and
    new bytes; the resume point is dropped, and a new ``put`` starts afresh.
    """


class Cancelled(UpClientError):
    """The transfer was cancelled; a file's upload keeps its resume point (a stream's has none)."""


class DeadlineExceeded(Cancelled, TimeoutError):
    """The call's ``timeout`` ran out; a file's upload keeps its resume point.

    A ``Cancelled`` (never retried) that ``except TimeoutError`` catches too.
    """


class TransportError(UpClientError):
    """No usable answer came back: the request may or may not have arrived."""

    retryable = True


class NetworkError(TransportError, ConnectionError):
    """Connection refused, reset or broken mid-request."""


class OutcomeUnknown(NetworkError):
    """The request went out but its answer was lost, and it is not safe to
    repeat: an upload or an append may have been done, and doing it again
    would store the bytes twice.  Not retried; look (``info``) before acting.
    """

    retryable = False


class TLSError(NetworkError):
    """The TLS handshake failed: an untrusted or wrong certificate, a protocol
    the two sides do not share.  Not retried: it will not get better."""

    retryable = False


class StoreUnreachable(NetworkError):
    """The store's server (Redis, ...) cannot be reached: a setup error, raised before any byte is sent.

    A :class:`NetworkError` (so a ``ConnectionError``), retryable: the store
    may come back, and an upload resumes from the last part it recorded.
    """


class UploadInProgress(UpClientError):
    """Another worker holds this upload's lock in a shared, exclusive store: nothing was sent.

    Retryable: when its holder finishes, a new attempt finds the upload done
    (``upclient.contrib.celery`` keeps a record of it) or, when the holder
    died, resumes it once the lock's ttl has run out (``retry_after``).  Also
    raised mid-upload when this worker lost its lock (the store was
    unreachable for longer than the lock's ttl): it stops rather than send
    alongside a worker that may have taken the upload over.
    """

    retryable = True


class Timeout(TransportError, TimeoutError):
    """Connecting or waiting for the server took longer than allowed."""


class ServerError(UpClientError):
    """The server answered, with an error."""


class AuthError(ServerError):
    """Credentials missing, wrong or not allowed (401, 403)."""


class NotFound(ServerError, LookupError):
    """No such file or upload (404, 410)."""


class UploadExpired(NotFound):
    """A resumable upload has expired or vanished on the server."""


class Conflict(ServerError):
    """The request conflicts with the server's state (409)."""


class OffsetConflict(Conflict):
    """The client's idea of an offset differs from the server's.

    The engine re-synchronises with the server and sends what is missing,
    instead of retrying blindly.
    """

    retryable = True


class ChecksumMismatch(ServerError):
    """The server received a part whose checksum did not match; resend it."""

    retryable = True


class TooLarge(ServerError):
    """The upload is larger than the server accepts (413)."""


class RateLimited(ServerError):
    """Too many requests (429); retried after ``retry_after`` seconds."""

    retryable = True


class ServiceError(ServerError):
    """The server failed (5xx); retried."""

    retryable = True


class NoStorageAvailable(ServiceError):
    """The service has nowhere to put or read the file just now (FastDFS: no
    active storage server in the group); retried, as the storage may return."""


class RequestRejected(ServerError):
    """The server refused the request (a 4xx not covered above)."""


def error_for_status(status: int) -> type:
    """The error class for an HTTP status, for backends without special codes."""
    if status in (401, 403):
        return AuthError
    if status in (404, 410):
        return NotFound
    if status == 409:
        return Conflict
    if status == 413:
        return TooLarge
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServiceError
    return RequestRejected
