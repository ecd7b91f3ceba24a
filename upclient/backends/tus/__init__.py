"""tus 1.0.0 resumable uploads (``tus+http://`` and ``tus+https://`` URLs).

:mod:`.protocol` is the protocol without I/O (requests to send, what answers
mean), :mod:`.backend` the verbs and the one place requests go out,
:mod:`.uploads` the upload sessions.  See :class:`TusBackend`.
"""

from .backend import TusBackend
from .protocol import Capabilities, decode_metadata, encode_metadata

__all__ = ["TusBackend", "Capabilities", "encode_metadata", "decode_metadata"]
