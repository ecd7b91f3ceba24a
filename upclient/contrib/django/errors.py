"""What a streamed upload can answer, and the HTTP status each answer has.

:func:`error_response` turns the errors a request's upload raises into the
response a browser should get: 413 for a body over ``max_size``, 411 when a
backend needs sizes nobody gave, 504 when the upload's time ran out (the
storage server stalled), 502 when the storage server refused or failed,
400 when the browser's body broke off.  Anything else is not an upload
error (None): Django's own handling applies.
"""

from __future__ import annotations

import logging
from typing import Optional

from django.core.exceptions import BadRequest, RequestDataTooBig  # type: ignore[import-untyped]
from django.http import HttpResponse, UnreadablePostError  # type: ignore[import-untyped]

from ...errors import BadInput, Cancelled, DeadlineExceeded, Timeout, UpClientError

__all__ = ["UploadTooLarge", "LengthRequired", "error_response"]

log = logging.getLogger("upclient.django")


class UploadTooLarge(RequestDataTooBig):
    """The request's body is larger than the handler's ``max_size`` (413)."""

    status = 413


class LengthRequired(BadRequest):
    """The backend needs each file's size first, and the request did not say it (411)."""

    status = 411


def error_response(exc: BaseException) -> Optional[HttpResponse]:
    """The response for an upload error, or None when ``exc`` is none of them."""
    if isinstance(exc, (UploadTooLarge, LengthRequired)):
        status, text = exc.status, str(exc)
    elif isinstance(exc, (DeadlineExceeded, Timeout)):
        status, text = 504, "the storage server did not take the upload in time"
    elif isinstance(exc, Cancelled):
        status, text = 400, "the upload was cancelled"
    elif isinstance(exc, BadInput):
        status, text = 400, str(exc)
    elif isinstance(exc, UpClientError):
        status, text = 502, "the storage server failed to store the upload"
    elif isinstance(exc, UnreadablePostError):
        status, text = 400, "the request body broke off"
    else:
        return None
    if status >= 500:
        log.warning("upload failed, answering %d: %s", status, exc)
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    return response
