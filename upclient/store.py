"""Resume points: small JSON records that let an upload continue after a crash.

A record is keyed by :func:`resume_key` (backend, destination, source path)
and holds the source's identity, the backend's session state and, where the
server says so, when the upload expires.  :class:`FileStore` keeps one file a
record in the user's state directory, so a re-run of a killed process finds
it; :class:`MemoryStore` lives as long as the process.  Records never hold
credentials: :meth:`BaseStore.save` refuses a record with a secret-looking key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

__all__ = ["BaseStore", "MemoryStore", "FileStore", "resume_key", "default_store_dir"]

log = logging.getLogger("upclient.store")

Record = Dict[str, Any]

_SECRET_NAMES = {"password", "passwd", "token", "authorization", "secret", "api_key", "apikey"}


def resume_key(backend: str, destination: str, identity: Dict[str, Any]) -> str:
    """The store key for uploading one source to one destination of a backend."""
    where = identity.get("path") or json.dumps(identity, sort_keys=True)
    raw = json.dumps([backend, destination, where, identity.get("offset", 0)])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]


def _find_secret(value: Any, path: str = "") -> Optional[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() in _SECRET_NAMES:
                return f"{path}{k}"
            found = _find_secret(v, f"{path}{k}.")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_secret(v, f"{path}{i}.")
            if found:
                return found
    return None


class BaseStore:
    """Where resume points live.  Subclasses implement the four primitives.

    ``load`` returns None for a missing, expired or unreadable record; a store
    never raises because a record is bad: the upload then just starts afresh.
    """

    def _read(self, key: str) -> Optional[Record]:
        raise NotImplementedError

    def _write(self, key: str, record: Record) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Forget the record for ``key`` (no error if there is none)."""
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        """Every key that has a record."""
        raise NotImplementedError

    def lock(self, key: str) -> "contextlib.AbstractContextManager[bool]":
        """Claim ``key`` for one upload; the context value says whether it was free."""
        raise NotImplementedError

    def load(self, key: str) -> Optional[Record]:
        record = self._read(key)
        if record is None:
            return None
        expires = record.get("expires")
        if isinstance(expires, (int, float)) and expires <= time.time():
            log.info("resume point %s expired; starting afresh", key)
            self.delete(key)
            return None
        return record

    def save(self, key: str, record: Record) -> None:
        secret = _find_secret(record)
        if secret:
            raise ValueError(f"refusing to store a secret in a resume point (field {secret!r})")
        record = dict(record, updated=time.time())
        self._write(key, record)

    def prune(self, older_than: float = 30 * 86400) -> int:
        """Delete records not touched for ``older_than`` seconds; returns how many."""
        cutoff = time.time() - older_than
        dropped = 0
        for key in list(self.keys()):
            record = self._read(key)
            if record is None or record.get("updated", 0) < cutoff:
                self.delete(key)
                dropped += 1
        return dropped


class MemoryStore(BaseStore):
    """Resume points for the life of this process (thread-safe)."""

    def __init__(self) -> None:
        self._records: Dict[str, str] = {}
        self._mutex = threading.Lock()
        self._held: set = set()

    def _read(self, key: str) -> Optional[Record]:
        with self._mutex:
            raw = self._records.get(key)
        return json.loads(raw) if raw is not None else None

    def _write(self, key: str, record: Record) -> None:
        raw = json.dumps(record)
        with self._mutex:
            self._records[key] = raw

    def delete(self, key: str) -> None:
        with self._mutex:
            self._records.pop(key, None)

    def keys(self) -> Iterator[str]:
        with self._mutex:
            return iter(list(self._records))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        with self._mutex:
            free = key not in self._held
            if free:
                self._held.add(key)
        try:
            yield free
        finally:
            if free:
                with self._mutex:
                    self._held.discard(key)


def default_store_dir() -> Path:
    """``<user state dir>/upclient/resume`` as platformdirs names it for this OS."""
    import platformdirs

    return Path(platformdirs.user_state_dir("upclient", appauthor=False)) / "resume"


class FileStore(BaseStore):
    """One JSON file per record in a private directory (0700, files 0600).

    Writes go to a temporary file renamed over the record, so a reader (in
    this or another process) sees the old record or the new one, never half.
    Two processes uploading the same source to the same destination do not
    share a record: :meth:`lock` takes an OS file lock, and the second one
    uploads without a resume point.  A corrupt record is logged and ignored.
    """

    def __init__(self, directory: Union[str, os.PathLike, None] = None) -> None:
        self.directory = Path(directory) if directory is not None else default_store_dir()
        self._local = threading.Lock()
        self._held: set = set()

    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError(f"bad store key {key!r}")
        return self.directory / f"{key}.json"

    def _read(self, key: str) -> Optional[Record]:
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read resume point %s: %s; ignoring it", path, exc)
            return None
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not an object")
            return record
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("resume point %s is corrupt (%s); ignoring and removing it", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _write(self, key: str, record: Record) -> None:
        self._ensure_dir()
        path = self._path(key)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def keys(self) -> Iterator[str]:
        if not self.directory.is_dir():
            return iter(())
        return iter(sorted(p.stem for p in self.directory.glob("*.json") if not p.name.startswith(".")))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[bool]:
        with self._local:  # threads of this process first
            free = key not in self._held
            if free:
                self._held.add(key)
        if not free:
            yield False
            return
        handle = None
        try:
            handle = self._os_lock(key)
            yield handle is not None
        finally:
            if handle is not None:
                self._os_unlock(handle, key)
            with self._local:
                self._held.discard(key)

    def _os_lock(self, key: str) -> Optional[int]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks (Windows)
            return -1
        self._ensure_dir()
        path = self.directory / f"{key}.lock"
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            # The holder before us removes the file as it lets go; if it did
            # so between our open and our lock, we hold a lock on a file no one
            # else will find: take a fresh one.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        return None

    def _os_unlock(self, fd: int, key: str) -> None:
        if fd < 0:
            return
        import fcntl

        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / f"{key}.lock")
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
