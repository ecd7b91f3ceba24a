"""What an upload's failure answers: the HTTP error a view raises for each upclient error.

===========================================  ======  =====================================
Failure                                      Status  Why
===========================================  ======  =====================================
no ``Content-Length``                        411     the size is needed before the body
a file or body over the app's limit          413     ``UPCLIENT_MAX_SIZE``, ``MAX_CONTENT_LENGTH``
the storage refuses the size                 413     :class:`~upclient.errors.TooLarge`
a malformed form, a bad key, a body cut off  400     the request is at fault
the deadline ran out, the storage timed out  504     ``UPCLIENT_TIMEOUT``; the storage is slow
the app is shutting down (client closed)     503     try again
any other storage error, after its retries   502     the storage failed, not the request
===========================================  ======  =====================================

Descriptions say what happened in the request's terms; the storage's own
messages (hosts, ids) go to the log only.
"""

from __future__ import annotations

from typing import Optional

from werkzeug import exceptions as http

from upclient import errors

from .body import BadForm, BodyInterrupted, FileTooLarge

__all__ = ["http_error"]


def http_error(exc: BaseException) -> Optional[http.HTTPException]:
    """The HTTP error for ``exc``, or None for an error that is a bug (let it be a 500)."""
    if isinstance(exc, http.HTTPException):
        return exc
    if isinstance(exc, FileTooLarge):
        return http.RequestEntityTooLarge(str(exc))
    if isinstance(exc, BodyInterrupted):
        return http.ClientDisconnected(str(exc))
    if isinstance(exc, BadForm):
        return http.BadRequest(str(exc))
    if isinstance(exc, errors.SourceChanged):  # a body of another size than announced
        return http.BadRequest(f"the request body is not as announced: {exc}")
    if isinstance(exc, (errors.DeadlineExceeded, TimeoutError)):
        return http.GatewayTimeout("the upload did not finish in time: the storage is too slow or unreachable")
    if isinstance(exc, errors.Cancelled):
        return http.ServiceUnavailable("the upload was stopped: the server is shutting down")
    if isinstance(exc, errors.BadInput):
        return http.BadRequest(str(exc))
    if isinstance(exc, errors.TooLarge):
        return http.RequestEntityTooLarge("the storage does not accept a file this large")
    if isinstance(exc, errors.UpClientError):
        return http.BadGateway(f"the storage failed ({type(exc).__name__}); try again later")
    return None
