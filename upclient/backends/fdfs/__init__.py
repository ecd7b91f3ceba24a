"""FastDFS over its native TCP protocol (``fdfs://tracker:22122[,tracker:22122]`` URLs).

:mod:`.protocol` is the wire format (no sockets), :mod:`.connection` the
pooled connections, :mod:`.backend` the verbs and :mod:`.uploads` the upload
sessions.  See :class:`FdfsBackend`.
"""

from .backend import FdfsBackend, status_error
from .connection import Silent
from .protocol import FileId, FileStat, GroupStat, StorageAddress, StorageStat

__all__ = ["FdfsBackend", "FileId", "FileStat", "GroupStat", "Silent", "StorageAddress", "StorageStat",
           "status_error"]
