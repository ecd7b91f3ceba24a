"""Putting the streaming handler on a view: :func:`streaming_upload` and :class:`UploadErrorMiddleware`.

Django reads a form's body the first time ``request.POST`` or
``request.FILES`` is touched, and ``CsrfViewMiddleware`` touches it before
the view runs, so a handler set inside the view comes too late and an
error raised while the body streams is out of the view's reach.  The
decorator does what Django's documentation prescribes (``csrf_exempt``
outside, the handler set, then the CSRF check inside) and turns the
upload's errors into answers (:func:`~.errors.error_response`): 413, 411,
504, 502, 400.

With the handler in ``settings.FILE_UPLOAD_HANDLERS`` instead, add
:class:`UploadErrorMiddleware` before ``CsrfViewMiddleware``: it reads the
form first (for a multipart request), so the same errors get the same
answers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from django.views.decorators.csrf import csrf_exempt, csrf_protect  # type: ignore[import-untyped]

from .errors import error_response
from .handler import StreamingUploadHandler

__all__ = ["streaming_upload", "UploadErrorMiddleware"]

View = Callable[..., Any]


def streaming_upload(view: Optional[View] = None, *, csrf: bool = True, **options: Any) -> Any:
    """Decorate a view so that its form's files stream to storage as they arrive.

    ``options`` are :class:`~.handler.StreamingUploadHandler`'s (``storage``,
    ``max_size``, ``timeout``, ``upload_to``...).  ``csrf=False`` leaves the
    view exempt from the CSRF check (an API authenticated otherwise).  Use
    as ``@streaming_upload`` or ``@streaming_upload(max_size=..., timeout=...)``.
    """

    def decorate(inner: View) -> View:
        checked = csrf_protect(inner) if csrf else inner

        @functools.wraps(inner)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            handler = StreamingUploadHandler(request, **options)
            request.upload_handlers = [handler]
            try:
                return checked(request, *args, **kwargs)
            except Exception as exc:
                handler.abort(exc)
                response = error_response(exc)
                if response is None:
                    raise
                return response

        return csrf_exempt(wrapper)

    return decorate(view) if view is not None else decorate


class UploadErrorMiddleware:
    """Answers the upload errors of a handler set in ``FILE_UPLOAD_HANDLERS``; see the module docstring."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_view(self, request: Any, view: View, args: Any, kwargs: Any) -> Any:
        if request.method != "POST" or not request.content_type.startswith("multipart/"):
            return None
        try:
            request.FILES  # noqa: B018 - reading the form is the point
        except Exception as exc:
            for handler in request.upload_handlers:
                if isinstance(handler, StreamingUploadHandler):
                    handler.abort(exc)
            response = error_response(exc)
            if response is None:
                raise
            return response
        return None
