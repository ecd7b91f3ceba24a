"""The UPYUN emulator's state: services and operators, the clock, files on disk and what is known of them.

:class:`UpyunStore` is the base every part of :class:`~upclient.testing.upyun.UpyunServer`
builds on.  It holds the in-memory records (guarded by ``_lock``), puts
received files in place, and answers the tests' questions about what is
stored and what arrived.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable, Counter, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from upclient.testing.httpbase import Body, HTTPEmulator, PathLike, file_digest
from upclient.testing.upyun.records import FileRecord, MultipartUpload, Task
from upclient.testing.upyun.signatures import format_date
from upclient.testing.upyun.wire import Call, Refusal, dir_conflict, normalise_key

__all__ = ["UpyunStore", "log"]

log = logging.getLogger("upclient.testing.upyun")


class UpyunStore(HTTPEmulator):
    """Files on disk with their records, uploads, tasks, callbacks and counters (see the package docstring)."""

    log = log

    def __init__(
        self,
        directory: Optional[PathLike],
        *,
        service: str,
        services: Iterable[str],
        operators: Mapping[str, str],
        permissions: Mapping[str, Iterable[str]],
        clock: Callable[[], float],
        host: str,
        port: int,
        max_connections: int,
        idle_timeout: float,
    ) -> None:
        super().__init__(
            directory,
            temp_prefix="upclient-upyun-",
            idle_timeout=idle_timeout,
            host=host,
            port=port,
            max_connections=max_connections,
        )
        self.service = service
        self._services: Set[str] = set(services)
        self._operators: Dict[str, str] = dict(operators)
        self._permissions: Dict[str, Set[str]] = {s: set(ops) for s, ops in permissions.items()}
        self._base_clock = clock
        self._offset = 0.0
        self._files: Dict[Tuple[str, str], FileRecord] = {}
        self._folder_times: Dict[Tuple[str, str], float] = {}
        self._multis: Dict[str, MultipartUpload] = {}
        self._tasks: Dict[str, Task] = {}
        self._part_log: List[Tuple[str, int, int, int]] = []
        self._receipts: Dict[str, Counter[int]] = {}
        self._purged: List[str] = []
        self._purge_times: Dict[str, List[Tuple[float, int]]] = {}
        self._callbacks: List[Dict[str, Any]] = []
        self._callback_threads: List[threading.Thread] = []
        self._callbacks_done = threading.Condition(self._lock)

    def _prepare_directory(self) -> None:
        for sub in ("tmp", "multipart"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        for service in self._services:
            (self.directory / "files" / service).mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- clock

    def clock(self) -> float:
        """The server's time, epoch seconds (the clock given, plus :meth:`advance`)."""
        return self._base_clock() + self._offset  # no lock: callers may hold the server's

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward (or back, if negative)."""
        with self._lock:
            self._offset += float(seconds)

    # ------------------------------------------------------------- inspection

    def _locate(self, key: str, service: Optional[str]) -> Tuple[str, str]:
        service = service or self.service
        if service not in self._services:
            raise KeyError(f"no service {service!r}")
        try:
            return service, normalise_key(key)
        except Refusal as exc:
            raise ValueError(f"bad key {key!r}: {exc.msg}") from None

    def _path(self, service: str, key: str) -> Path:
        root = self.directory / "files" / service
        return root.joinpath(*key.split("/")) if key else root

    def stored_path(self, key: str, service: Optional[str] = None) -> Path:
        """Where the file ``key`` is (or would be) stored."""
        return self._path(*self._locate(key, service))

    def stored_bytes(self, key: str, service: Optional[str] = None) -> bytes:
        """The bytes of a stored file; :class:`FileNotFoundError` if there is none."""
        path = self.stored_path(key, service)
        if not path.is_file():
            raise FileNotFoundError(f"no file {key!r}")
        return path.read_bytes()

    def stored_sha256(self, key: str, service: Optional[str] = None) -> str:
        """Hex SHA-256 of a stored file; :class:`FileNotFoundError` if there is none."""
        path = self.stored_path(key, service)
        if not path.is_file():
            raise FileNotFoundError(f"no file {key!r}")
        return file_digest(path, "sha256")

    def exists(self, key: str, service: Optional[str] = None) -> bool:
        """Whether a file or folder ``key`` exists."""
        return self.stored_path(key, service).exists()

    def metadata(self, key: str, service: Optional[str] = None) -> Dict[str, Any]:
        """``{"content_type", "size", "md5", "mtime", "meta", "secret"}`` of a stored file (KeyError if none)."""
        located = self._locate(key, service)
        with self._lock:
            record = self._files.get(located)
            if record is None:
                raise KeyError(f"no file {key!r}")
            return {
                "content_type": record.content_type,
                "size": record.size,
                "md5": record.md5,
                "mtime": record.mtime,
                "meta": dict(record.meta),
                "secret": record.secret,
            }

    # ----------------------------------------------------------------- counters

    @property
    def part_log(self) -> List[Tuple[str, int, int, int]]:
        """``(uuid, part id, status, body bytes received)`` of every request with a part, in order
        (status 0: no answer, the connection was dropped or cut off)."""
        with self._lock:
            return list(self._part_log)

    def part_receipts(self, uuid: Optional[str] = None) -> Dict[int, int]:
        """Part id -> how many times a body for it arrived in full (whatever the answer),
        for one upload or summed over all."""
        with self._lock:
            total: Counter[int] = collections.Counter()
            for upload, counts in self._receipts.items():
                if uuid is None or upload == uuid:
                    total.update(counts)
            return dict(total)

    def reset_counters(self) -> None:
        """Zero the request counters and the part log."""
        with self._lock:
            self._requests.clear()
            self._part_log.clear()
            self._receipts.clear()

    def _finished(self, call: Call, status: int) -> None:
        """Log a request with a part, once its answer is known (0: none)."""
        if call.part is None:
            return
        upload, part_id, expected = call.part
        received = call.body.received
        with self._lock:
            self._part_log.append((upload, part_id, status, received))
            if call.body.done and received == expected:
                self._receipts.setdefault(upload, collections.Counter())[part_id] += 1

    # ------------------------------------------------------------------ storage

    def _tmp_path(self) -> Path:
        return self.directory / "tmp" / f"{uuidlib.uuid4().hex}.tmp"

    @staticmethod
    def _receive(body: Body, target: Path, limit: Optional[int] = None) -> Tuple[int, str]:
        """Stream the body to ``target``: (size, md5 hex); stops reading past ``limit`` bytes."""
        digest = hashlib.md5()
        size = 0
        with open(target, "wb") as out:
            for block in body.blocks():
                size += len(block)
                if limit is not None and size > limit:
                    break
                digest.update(block)
                out.write(block)
        return size, digest.hexdigest()

    @staticmethod
    def _check_body_md5(call: Call, md5: str) -> None:
        declared = call.header("Content-MD5")
        if declared is not None and declared.lower() != md5:
            raise Refusal(403, 40300007, "content md5 not match")

    def _ensure_parents_locked(self, service: str, key: str, now: float) -> None:
        segments = key.split("/")[:-1]
        for i in range(len(segments)):
            folder = "/".join(segments[: i + 1])
            path = self._path(service, folder)
            if path.is_dir():
                continue
            if path.exists():
                raise dir_conflict()
            path.mkdir()
            self._folder_times[(service, folder)] = now

    def _place(self, service: str, key: str, source: Path, record: FileRecord) -> bool:
        """Move a received file to ``key``; whether it replaced one."""
        with self._lock:
            target = self._path(service, key)
            if target.is_dir():
                raise dir_conflict()
            self._ensure_parents_locked(service, key, record.mtime)
            existed = target.is_file()
            os.replace(source, target)
            self._files[(service, key)] = record
        return existed

    @staticmethod
    def _file_headers(record: FileRecord) -> Dict[str, str]:
        headers = {
            "Content-Type": record.content_type,
            "Content-MD5": record.md5,
            "ETag": f'"{record.md5}"',
            "Last-Modified": format_date(record.mtime),
        }
        headers.update(record.meta)
        return headers
