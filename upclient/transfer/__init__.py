"""The transfer core: engine, parts, sessions, hints and deadlines.

Backends import this package to implement the seam; it never imports them.
"""

from .deadline import StopSignal
from .engine import TransferEngine, stream_parts
from .hints import Hint, MoreParts, Restart, Resync
from .parts import Part, PartIO
from .session import UploadSession

__all__ = [
    "TransferEngine",
    "StopSignal",
    "stream_parts",
    "Part",
    "PartIO",
    "UploadSession",
    "Hint",
    "Resync",
    "Restart",
    "MoreParts",
]
