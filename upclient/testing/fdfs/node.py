"""The storage of one group: its files, the counters it reports to the tracker, its port.

Its listener is the server's (:mod:`.server`), which starts and closes it.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional, Tuple

from upclient.testing.fdfs.store import FileStore

__all__ = ["StorageNode", "StorageStats"]

# The 42 counters of a storage, in the order of the 92 reply.
STAT_FIELDS = (
    "total_upload_count", "success_upload_count", "total_append_count", "success_append_count",
    "total_modify_count", "success_modify_count", "total_truncate_count", "success_truncate_count",
    "total_set_meta_count", "success_set_meta_count", "total_delete_count", "success_delete_count",
    "total_download_count", "success_download_count", "total_get_meta_count", "success_get_meta_count",
    "total_create_link_count", "success_create_link_count", "total_delete_link_count",
    "success_delete_link_count", "total_upload_bytes", "success_upload_bytes", "total_append_bytes",
    "success_append_bytes", "total_modify_bytes", "success_modify_bytes", "total_download_bytes",
    "success_download_bytes", "total_sync_in_bytes", "success_sync_in_bytes", "total_sync_out_bytes",
    "success_sync_out_bytes", "total_file_open_count", "success_file_open_count", "total_file_read_count",
    "success_file_read_count", "total_file_write_count", "success_file_write_count", "last_source_update",
    "last_sync_update", "last_synced_timestamp", "last_heart_beat_time",
)  # fmt: skip
assert len(STAT_FIELDS) == 42
_BYTE_OPS = ("upload", "append", "modify", "download")


class StorageStats:
    """The counters a storage reports to the tracker (list storages, 92), kept for real."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: Dict[str, int] = dict.fromkeys(STAT_FIELDS, 0)
        self.connections_alloc = 0
        self.connections_current = 0
        self.connections_max = 0

    def record(self, op: str, ok: bool, nbytes: Optional[int] = None, change: bool = False) -> None:
        """One ``op`` (upload, append, modify, truncate, set_meta, delete, download, get_meta)."""
        with self._lock:
            v = self.values
            v[f"total_{op}_count"] += 1
            if ok:
                v[f"success_{op}_count"] += 1
            if nbytes is not None and op in _BYTE_OPS:
                v[f"total_{op}_bytes"] += nbytes
                if ok:
                    v[f"success_{op}_bytes"] += nbytes
            if ok and change:
                v["last_source_update"] = int(time.time())

    def file_io(self, opened: int = 0, reads: int = 0, writes: int = 0) -> None:
        with self._lock:
            v = self.values
            for kind, n in (("open", opened), ("read", reads), ("write", writes)):
                v[f"total_file_{kind}_count"] += n
                v[f"success_file_{kind}_count"] += n

    def connection(self, delta: int) -> None:
        with self._lock:
            if delta > 0:
                self.connections_alloc += delta
            self.connections_current += delta
            self.connections_max = max(self.connections_max, self.connections_current)

    def snapshot(self) -> Tuple[Tuple[int, int, int], List[int]]:
        with self._lock:
            self.values["last_heart_beat_time"] = int(time.time())
            conns = (self.connections_alloc, self.connections_current, self.connections_max)
            return conns, [self.values[name] for name in STAT_FIELDS]


class StorageNode:
    """The one storage of a group: its files, its counters, its port."""

    def __init__(self, group: str, store: FileStore) -> None:
        self.group = group
        self.store = store
        self.stats = StorageStats()
        self.port = 0
        self.join_time = int(time.time())
        self.up_time = self.join_time
