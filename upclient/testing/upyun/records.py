"""What the UPYUN emulator remembers besides the bytes on disk: files, multipart uploads, processing tasks."""

from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional, Tuple

from upclient.testing.httpbase import MiB

__all__ = ["MULTI_LIFETIME", "MAX_PART_SIZE", "FileRecord", "MultipartUpload", "Task"]

#: Seconds an unfinished multipart upload lives after its initiate.
MULTI_LIFETIME = 24 * 3600
MAX_PART_SIZE = 50 * MiB


class FileRecord:
    """What the service knows of a stored file besides its bytes."""

    __slots__ = ("content_type", "size", "md5", "mtime", "meta", "secret")

    def __init__(
        self, content_type: str, size: int, md5: str, mtime: float, meta: Mapping[str, str], secret: Optional[str]
    ) -> None:
        self.content_type = content_type
        self.size = size
        self.md5 = md5
        self.mtime = mtime
        self.meta = dict(meta)
        self.secret = secret

    def copy(self) -> "FileRecord":
        return FileRecord(self.content_type, self.size, self.md5, self.mtime, self.meta, self.secret)


class MultipartUpload:
    """One multipart upload."""

    def __init__(
        self,
        *,
        uuid: str,
        service: str,
        key: str,
        length: int,
        part_size: int,
        content_type: str,
        disorder: bool,
        meta: Mapping[str, str],
        secret: Optional[str],
        created: float,
    ) -> None:
        self.uuid = uuid
        self.service = service
        self.key = key
        self.length = length
        self.part_size = part_size
        self.total = max(1, -(-length // part_size))
        self.content_type = content_type
        self.disorder = disorder
        self.meta = dict(meta)
        self.secret = secret
        self.created = created
        self.parts: Dict[int, Tuple[int, str]] = {}  # part id -> (size, md5 hex)
        self.completed = False
        self.gone = False  # cancelled, expired or dropped after an MD5 mismatch
        #: Held while a part is put in place or the parts are joined (before the server lock).
        self.lock = threading.Lock()

    def part_length(self, part_id: int) -> int:
        return min(self.part_size, self.length - part_id * self.part_size)

    def next_part_id(self) -> int:
        """The lowest part not received yet; -1 when all are in."""
        for part_id in range(self.total):
            if part_id not in self.parts:
                return part_id
        return -1


class Task:
    """One processing task, as submitted."""

    def __init__(
        self, task_id: str, service: str, operator: str, spec: Any, fields: Mapping[str, str], created: float
    ) -> None:
        self.id = task_id
        self.service = service
        self.operator = operator
        self.spec = spec
        self.source = fields.get("source", "")
        self.notify_url = fields.get("notify_url", "")
        self.accept = fields.get("accept", "")
        self.app_name = fields.get("app_name") or None
        self.created = created
        self.notified = False
