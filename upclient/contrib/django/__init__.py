"""Django integration: a storage on any backend, and uploads streamed from the request.

* :class:`UpclientStorage`: a Django ``Storage`` configured in ``STORAGES``
  (:mod:`.storage`; what names mean per backend: :mod:`.dialects`).
* :class:`StreamingUploadHandler`: an upload handler that sends each file
  of a form to the storage while the body arrives (:mod:`.handler`), put on
  a view with :func:`streaming_upload` or, set in ``FILE_UPLOAD_HANDLERS``,
  with :class:`UploadErrorMiddleware` (:mod:`.views`).
* :class:`StoredFile`: what such a view finds in ``request.FILES``
  (:mod:`.files`).
"""

from .errors import LengthRequired, UploadTooLarge, error_response
from .files import StoredFile, UpclientFile
from .handler import SIZES_HEADER, StreamingUploadHandler
from .storage import UpclientStorage
from .views import UploadErrorMiddleware, streaming_upload

__all__ = [
    "UpclientStorage",
    "StreamingUploadHandler",
    "streaming_upload",
    "UploadErrorMiddleware",
    "StoredFile",
    "UpclientFile",
    "UploadTooLarge",
    "LengthRequired",
    "error_response",
    "SIZES_HEADER",
]
