"""tus 1.0.0 resumable uploads (``tus+http://`` and ``tus+https://`` URLs).

See :class:`TusBackend`.
"""

from .backend import Capabilities, TusBackend, decode_metadata, encode_metadata

__all__ = ["TusBackend", "Capabilities", "encode_metadata", "decode_metadata"]
