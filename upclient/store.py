"""Resume points: small JSON records that let an upload continue after a crash.

A record is keyed by :func:`resume_key` (backend, destination, source path)
and holds the source's identity, the backend's session state and, where the
server says so, when the upload expires.  :class:`FileStore` keeps one file a
record in the user's state directory, so a re-run of a killed process finds
it; :class:`MemoryStore` lives as long as the process.  Records never hold
credentials: :meth:`BaseStore.save` refuses a record with a secret-looking key.

Your own store (a database, Redis, ...) subclasses :class:`BaseStore` and
implements its public primitives ``get``, ``set``, ``delete`` and ``keys``
(and ``lock`` when processes share it); ``load``, ``save`` and ``prune`` are
built on them.  :class:`~upclient.RedisStore` (module
:mod:`upclient.redis_store`) is the one a fleet of workers shares.

Two errors belong to stores:

* :class:`UploadInProgress` (retryable): an *exclusive* store's lock on the
  upload is held by another worker, so this one sends nothing; trying again
  later finds the upload finished or resumes it.
* :class:`StoreUnreachable` (a :class:`~upclient.errors.NetworkError`,
  retryable): the store's server does not answer; raised before any byte of
  an upload is sent.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ContextManager, Dict, Iterator, Optional, Set, Union

from .errors import StoreUnreachable, UploadInProgress  # noqa: F401 - they were defined here first

__all__ = [
    "BaseStore",
    "MemoryStore",
    "FileStore",
    "Record",
    "resume_key",
    "default_store_dir",
    "UploadInProgress",
    "StoreUnreachable",
]

log = logging.getLogger("upclient.store")

#: A record: a JSON object (str keys; str, number, bool, None, list and dict values).
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


class _Claims:
    """Keys claimed by this process's threads: the lock of a store no other process shares."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: Set[str] = set()

    def take(self, key: str) -> bool:
        with self._mutex:
            if key in self._held:
                return False
            self._held.add(key)
            return True

    def give_back(self, key: str) -> None:
        with self._mutex:
            self._held.discard(key)

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        free = self.take(key)
        try:
            yield free
        finally:
            if free:
                self.give_back(key)


class BaseStore(abc.ABC):
    """Where resume points (and the digest cache) live: the interface a store implements.

    A subclass implements four primitives, and a fifth when several
    processes share the store; ``load``, ``save`` and ``prune`` are built on
    them and need no overriding:

    ``get(key)``
        The record last ``set`` under ``key`` (a dict of its own: changing it
        changes nothing stored), or None.  A record that cannot be read
        (corrupt, unreachable) is None, and logged: never an exception, the
        upload then just starts afresh.
    ``set(key, record, ttl=None)``
        Store ``record`` (a JSON-serialisable dict) under ``key``, replacing
        any, atomically: a reader in any thread or process sees the old
        record or the new one, never half of it.  ``ttl``: seconds after
        which the store may forget the record by itself (None: keep it until
        it is deleted or pruned); a store that cannot expire records may
        ignore it.
    ``delete(key)``
        Forget ``key``; no error if it has no record.
    ``keys()``
        Every key that has a record, as a snapshot (deleting while iterating
        is fine).
    ``lock(key, ttl=None)``
        Claim ``key`` for one upload without waiting: a context manager whose
        value is True if the key was free (it is then held until the block
        ends) and False if someone else holds it, in which case the upload
        goes on without a resume point.  ``ttl``: seconds after which a
        holder that died without letting go loses the claim, for stores whose
        locks do not die with their process (OS file locks do).  The default
        here keeps claims in this process only: enough for a store no other
        process uses; override it for a shared one.

    Keys are short strings of ASCII letters, digits, ``-`` and ``_``
    (:func:`resume_key`, and ``digest-...`` for the digest cache).  A
    :class:`~upclient.Client` shares its store between threads: every method
    must be safe to call from several at once.

    ``exclusive`` (class attribute, False here): what a put does when the
    lock of its upload is held by someone else.  False: it uploads without a
    resume point (a second copy on the server, nothing shared).  True: it
    raises :class:`UploadInProgress` before sending anything, so two workers
    of a fleet never both send the same upload.
    """

    exclusive: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> Optional[Record]:
        """The record stored under ``key``, or None (missing or unreadable)."""

    @abc.abstractmethod
    def set(self, key: str, record: Record, ttl: Optional[float] = None) -> None:
        """Store ``record`` under ``key`` atomically; the store may forget it after ``ttl`` seconds."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Forget the record for ``key`` (no error if there is none)."""

    @abc.abstractmethod
    def keys(self) -> Iterator[str]:
        """Every key that has a record."""

    def lock(self, key: str, ttl: Optional[float] = None) -> ContextManager[bool]:
        """Claim ``key`` for one upload; the context value says whether it was free.

        This default claims it among the threads of this process only.
        """
        claims = self.__dict__.get("_upclient_claims")
        if claims is None:  # no __init__ to call: a subclass need not call ours
            claims = self.__dict__.setdefault("_upclient_claims", _Claims())
        return claims.claim(key)

    # built on the primitives -------------------------------------------------------

    def load(self, key: str) -> Optional[Record]:
        """The record for ``key``, or None if there is none, it expired, or it cannot be read."""
        record = self.get(key)
        if record is None:
            return None
        if not isinstance(record, dict):
            log.warning("resume point %s is not a JSON object; ignoring it", key)
            return None
        expires = record.get("expires")
        if isinstance(expires, (int, float)) and expires <= time.time():
            log.info("resume point %s expired; starting afresh", key)
            self.delete(key)
            return None
        return record

    def save(self, key: str, record: Record, ttl: Optional[float] = None) -> None:
        """Store ``record`` (stamped with ``updated``); ValueError if it holds a secret.

        ``ttl`` None: a record that says when it ``expires`` (the server
        forgets the upload then) may be forgotten by the store at that time.
        """
        secret = _find_secret(record)
        if secret:
            raise ValueError(f"refusing to store a secret in a resume point (field {secret!r})")
        now = time.time()
        record = dict(record, updated=now)
        expires = record.get("expires")
        if ttl is None and isinstance(expires, (int, float)):
            ttl = max(1.0, expires - now)
        self.set(key, record, ttl)

    def prune(self, older_than: float = 30 * 86400) -> int:
        """Delete records not touched for ``older_than`` seconds; returns how many."""
        cutoff = time.time() - older_than
        dropped = 0
        for key in list(self.keys()):
            record = self.get(key)
            if not isinstance(record, dict) or record.get("updated", 0) < cutoff:
                self.delete(key)
                dropped += 1
        return dropped


class MemoryStore(BaseStore):
    """Resume points for the life of this process (thread-safe); ``ttl`` is honoured."""

    def __init__(self) -> None:
        self._records: Dict[str, str] = {}
        self._until: Dict[str, float] = {}  # monotonic deadlines of records set with a ttl
        self._mutex = threading.Lock()

    def get(self, key: str) -> Optional[Record]:
        with self._mutex:
            until = self._until.get(key)
            if until is not None and until <= time.monotonic():
                self._records.pop(key, None)
                del self._until[key]
            raw = self._records.get(key)
        return json.loads(raw) if raw is not None else None

    def set(self, key: str, record: Record, ttl: Optional[float] = None) -> None:
        raw = json.dumps(record)
        with self._mutex:
            self._records[key] = raw
            if ttl is None:
                self._until.pop(key, None)
            else:
                self._until[key] = time.monotonic() + ttl

    def delete(self, key: str) -> None:
        with self._mutex:
            self._records.pop(key, None)
            self._until.pop(key, None)

    def keys(self) -> Iterator[str]:
        now = time.monotonic()
        with self._mutex:
            return iter([k for k in self._records if self._until.get(k, now + 1) > now])


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
    A ``ttl`` is not kept: :meth:`~BaseStore.load` drops a record past its
    ``expires``, and :meth:`~BaseStore.prune` the ones left behind.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]", None] = None) -> None:
        self.directory = Path(directory) if directory is not None else default_store_dir()
        self._claims = _Claims()

    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError(f"bad store key {key!r}")
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Optional[Record]:
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

    def set(self, key: str, record: Record, ttl: Optional[float] = None) -> None:
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
    def lock(self, key: str, ttl: Optional[float] = None) -> Iterator[bool]:
        """An OS file lock (``flock``) on ``<key>.lock``: it dies with its process, so ``ttl`` is not needed."""
        if not self._claims.take(key):  # threads of this process first
            yield False
            return
        handle = None
        try:
            handle = self._os_lock(key)
            yield handle is not None
        finally:
            if handle is not None:
                self._os_unlock(handle, key)
            self._claims.give_back(key)

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
