"""What the community emulator holds: file records in memory, parts and files on disk.

Parts are kept in ``<directory>/parts/<file_id>/<n>``, confirmed files in
``<directory>/objects/<file_key>``. Records live only in memory, guarded
by the server's lock (:class:`FileStore` is handed it); ``Upload.lock``
serialises complete, abort and delete of one record.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from upclient.testing.community.protocol import StoreError, http_error
from upclient.testing.httpbase import BLOCK, Body

log = logging.getLogger("upclient.testing.community")


class Part:
    """One part of an upload's layout."""

    __slots__ = ("number", "start", "size", "etag")

    def __init__(self, number: int, start: int, size: int) -> None:
        self.number = number
        self.start = start
        self.size = size
        self.etag: Optional[str] = None  # md5 hex of the stored part, None until stored


class Upload:
    """One file record: an upload in progress or a stored file."""

    def __init__(
        self,
        *,
        file_id: str,
        seq: int,
        user_id: str,
        org_id: Optional[str],
        category: str,
        file_ext: str,
        file_size: int,
        file_md5: str,
        file_type: str,
        file_key: str,
        part_size: int,
        parts: List[Part],
        metadata: Dict[str, Any],
        now: float,
    ) -> None:
        self.id = file_id
        self.seq = seq
        self.user_id = user_id
        self.org_id = org_id
        self.category = category
        self.file_ext = file_ext
        self.file_size = file_size
        self.file_md5 = file_md5
        self.file_type = file_type
        self.file_key = file_key
        self.part_size = part_size
        self.parts = parts
        self.metadata = metadata
        self.status = "pending"
        self.created_at = now
        self.updated_at = now
        self.confirmed_at: Optional[float] = None
        self.deleted_at: Optional[float] = None
        self.assembling = False
        #: Held by complete, abort and delete: one of them at a time.
        self.lock = threading.Lock()

    @property
    def open(self) -> bool:
        """Parts may still be sent."""
        return self.deleted_at is None and self.status in ("pending", "uploading")

    @property
    def missing(self) -> List[int]:
        """The numbers of the parts not stored yet."""
        return [p.number for p in self.parts if p.etag is None]


def plan_parts(
    file_size: int, requested: Optional[int], *, default: int, minimum: int, maximum: int, max_parts: int
) -> Tuple[int, List[Part]]:
    """The part size and the parts of a new upload (see "Part layout" in the package docstring)."""
    part_size = requested or default
    part_size = min(max(part_size, minimum), maximum)
    if file_size > 0 and -(-file_size // part_size) > max_parts:
        part_size = -(-file_size // max_parts)
    parts: List[Part] = []
    start = 0
    while start < file_size:
        size = min(part_size, file_size - start)
        parts.append(Part(len(parts) + 1, start, size))
        start += size
    return part_size, parts


class FileStore:
    """The records of one emulator and their bytes under ``directory``.

    :param lock: the server's lock; methods named ``*_locked`` expect it held.
    :param clock: epoch seconds, for ``updated_at`` and friends.
    """

    def __init__(self, directory: Path, lock: Any, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.lock = lock
        self.clock = clock
        self.records: Dict[str, Upload] = {}
        self._seq = 0

    def prepare(self) -> None:
        """Create the storage layout."""
        (self.directory / "parts").mkdir(parents=True, exist_ok=True)
        (self.directory / "objects").mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- lookups

    def get(self, file_id: str) -> Upload:
        """Any record, deleted ones included; :class:`KeyError` if unknown."""
        with self.lock:
            record = self.records.get(file_id)
        if record is None:
            raise KeyError(f"no file {file_id!r}")
        return record

    def live(self, file_id: str) -> Upload:
        """An undeleted record; HTTP 404 otherwise."""
        with self.lock:
            record = self.records.get(file_id)
        if record is None or record.deleted_at is not None:
            raise http_error(404, f"file {file_id} not found")
        return record

    def oldest_first_locked(self) -> List[Upload]:
        return sorted(self.records.values(), key=lambda r: r.seq)

    def by_key_locked(self, key: str) -> Optional[Upload]:
        """The undeleted record with ``file_key`` ``key``, whatever its status."""
        for record in self.records.values():
            if record.file_key == key and record.deleted_at is None:
                return record
        return None

    def stored_by_key(self, key: str) -> Optional[Upload]:
        """The confirmed, undeleted record with ``file_key`` ``key``."""
        with self.lock:
            for record in self.records.values():
                if record.file_key == key and record.deleted_at is None and record.status == "confirmed":
                    return record
        return None

    def add_locked(self, **fields: Any) -> Upload:
        """A new record (``Upload``'s fields but ``seq``), kept."""
        self._seq += 1
        record = Upload(seq=self._seq, **fields)
        self.records[record.id] = record
        return record

    # ------------------------------------------------------------------ paths

    def object_path(self, record: Upload) -> Path:
        return self.directory / "objects" / record.file_key

    def parts_dir(self, record: Upload) -> Path:
        return self.directory / "parts" / record.id

    # ------------------------------------------------------------------ parts

    def open_part_locked(self, file_id: str, number: int) -> Part:
        """The part a PUT may store, or the storage error it gets."""
        record = self.records.get(file_id)
        if record is None or not record.open:
            raise StoreError(404, "NoSuchUpload", "The specified upload does not exist.")
        if record.assembling:
            raise StoreError(409, "OperationConflict", "the upload is being completed")
        if not 1 <= number <= len(record.parts):
            raise StoreError(400, "InvalidArgument", f"part number {number} out of range")
        return record.parts[number - 1]

    def store_part(self, file_id: str, part: Part, body: Body) -> str:
        """Stream ``body`` to the part's file; returns its MD5 hex."""
        record = self.get(file_id)
        directory = self.parts_dir(record)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{part.number}.{uuid.uuid4().hex}.tmp"
        digest = hashlib.md5()
        written = 0
        try:
            with open(tmp, "wb") as out:
                for block in body.blocks():
                    written += len(block)
                    if written > part.size:
                        raise StoreError(400, "InvalidPartSize", f"part {part.number} is {part.size} bytes")
                    digest.update(block)
                    out.write(block)
            if written != part.size:
                raise StoreError(
                    400, "InvalidPartSize", f"part {part.number} is {part.size} bytes, the body had {written}"
                )
            etag = digest.hexdigest()
            with self.lock:
                if not record.open:
                    raise StoreError(404, "NoSuchUpload", "The specified upload does not exist.")
                if record.assembling:
                    raise StoreError(409, "OperationConflict", "the upload is being completed")
                os.replace(tmp, directory / str(part.number))
                part.etag = etag
                record.status = "uploading"
                record.updated_at = self.clock()
            log.debug("stored part %d of %s (%d bytes)", part.number, file_id, written)
            return etag
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # ---------------------------------------------------------- whole files

    def finish(self, record: Upload) -> str:
        """Assemble the parts of a record whose parts are all stored.

        The caller holds ``record.lock`` and has set ``record.assembling``
        under :attr:`lock` when it found every part there, so no part PUT
        slips in between. Confirms the record if the assembled MD5 is its
        ``file_md5``, else marks it failed; the parts are dropped either
        way. Returns the MD5 hex.
        """
        try:
            digest = self._assemble(record)
        finally:
            with self.lock:
                record.assembling = False
        parts_dir = self.parts_dir(record)
        with self.lock:
            record.updated_at = self.clock()
            if digest != record.file_md5:
                record.status = "failed"
            else:
                record.status = "confirmed"
                record.confirmed_at = record.updated_at
            for part in record.parts:
                part.etag = None
        shutil.rmtree(parts_dir, ignore_errors=True)
        return digest

    def _assemble(self, record: Upload) -> str:
        """Concatenate the parts into the object file; returns the MD5 hex (file removed on mismatch)."""
        target = self.object_path(record)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        digest = hashlib.md5()
        parts_dir = self.parts_dir(record)
        try:
            with open(tmp, "wb") as out:
                for part in record.parts:
                    with open(parts_dir / str(part.number), "rb") as handle:
                        while True:
                            block = handle.read(BLOCK)
                            if not block:
                                break
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() == record.file_md5:
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return digest.hexdigest()

    def remove(self, record: Upload) -> None:
        """Soft delete (caller holds ``record.lock``): the record stays, its bytes go."""
        with self.lock:
            record.deleted_at = record.updated_at = self.clock()
            for part in record.parts:
                part.etag = None
        shutil.rmtree(self.parts_dir(record), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.object_path(record).unlink()
