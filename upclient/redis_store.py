"""Resume points, digests and upload locks in Redis, shared by a fleet of workers: :class:`RedisStore`.

Every worker of a fleet (each on its own host) gives its
:class:`~upclient.Client` a ``RedisStore`` on the same Redis: a task that
another worker retries finds the resume point and resumes the upload, and
the MD5 of a large file, once computed by one worker, is known to all.

What it keeps, under ``prefix`` (default ``upclient:``):

``<prefix>rec:<key>``
    a record, one JSON string, written with one ``SET`` (atomic: a reader
    sees the old record or the new one).  Every record expires: after the
    ``ttl`` the caller gives (an upload's own expiry), else after
    ``record_ttl`` (default 30 days) without being written: stale records
    of uploads nobody resumes go away by themselves.
``<prefix>lock:<key>``
    an upload's lock: a random token, taken with ``SET NX PX`` and let go
    only by its holder (a compare-and-delete script), so a lock that lapsed
    and was taken by another worker is never freed by the first.  While it
    is held, a thread of the store renews it every third of its ttl: a long
    upload keeps it, a crashed worker's lapses after ``lock_ttl`` seconds.
    A record whose lock this store holds is written (and deleted) only if
    the lock is still its own (a script that checks the token first): a
    worker that lost its lock (Redis was out of its reach for longer than
    the ttl) gets :class:`~upclient.store.UploadInProgress` at its next part
    instead of overwriting the record of the worker that took over.

The store is *exclusive*: when another worker holds an upload's lock, a
put raises :class:`~upclient.store.UploadInProgress` (retryable) before it
sends anything, rather than sending a second copy.  ``exclusive=False``
gives :class:`~upclient.FileStore`'s behaviour (upload without a resume
point).

No secret is ever stored (:meth:`~upclient.BaseStore.save` refuses a record
with a secret-looking field, and records name their server by its URL
without credentials); the Redis URL's password appears in no repr, log or
error.  A Redis that cannot be reached is
:class:`~upclient.store.StoreUnreachable` at construction (a ``PING``) and
when an upload takes its lock: before any byte is sent.

Needs redis-py (``pip install 'upclient[redis]'``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import weakref
from typing import Any, Dict, Iterator, Optional, Tuple

from .errors import AuthError
from .store import BaseStore, Record, StoreUnreachable, UploadInProgress
from .transport import redact_url

try:
    import redis
    from redis import exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("RedisStore needs redis-py: pip install 'upclient[redis]'") from exc

__all__ = ["RedisStore"]

log = logging.getLogger("upclient.store.redis")

#: Renew a held lock when this fraction of its ttl has passed.
RENEW_FRACTION = 1 / 3

# KEYS[1] lock; ARGV[1] token, ARGV[2] ttl in ms.  1 if it is still ours (and renewed).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock; ARGV[1] token.  Deletes the lock only if it is still ours.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1] record, KEYS[2] lock; ARGV[1] token, ARGV[2] JSON, ARGV[3] ttl in ms.
# Writes the record only while the lock is still ours; 0 if it is not.
_FENCED_SET = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS[1] record, KEYS[2] lock; ARGV[1] token.
_FENCED_DELETE = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('del', KEYS[1])
return 1
"""


class _Held:
    """A lock this store holds: its token and ttl, renewed by the keeper."""

    __slots__ = ("token", "ttl_ms", "lost")

    def __init__(self, token: str, ttl_ms: int) -> None:
        self.token = token
        self.ttl_ms = ttl_ms
        self.lost = False


class RedisStore(BaseStore):
    """Resume points, digests and upload locks in one Redis, shared by every worker (module docstring).

    :param url: ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS)
        or ``unix:///path?db=0``; ignored when ``client`` is given.
    :param prefix: put before every key, so several applications (or
        tests) share one Redis.
    :param record_ttl: seconds after which a record nobody wrote again
        expires (None: records stay until deleted or pruned).
    :param lock_ttl: seconds after which the lock of a worker that died
        lapses; renewed while the upload runs.
    :param exclusive: see the module docstring.
    :param connect_timeout, socket_timeout: seconds, for each Redis command.
    :param client: a ready ``redis.Redis`` (Sentinel, a cluster proxy...).

    Raises :class:`~upclient.store.StoreUnreachable` when Redis does not
    answer a ``PING``, :class:`~upclient.errors.AuthError` when it refuses
    the credentials.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "upclient:",
        *,
        record_ttl: Optional[float] = 30 * 86400,
        lock_ttl: float = 30.0,
        exclusive: bool = True,
        connect_timeout: float = 5.0,
        socket_timeout: float = 10.0,
        client: Optional["redis.Redis"] = None,
    ) -> None:
        if not lock_ttl > 0:
            raise ValueError(f"lock_ttl must be a positive number of seconds, not {lock_ttl!r}")
        self.prefix = prefix
        self.record_ttl = record_ttl
        self.lock_ttl = float(lock_ttl)
        self.exclusive = exclusive
        self._where = redact_url(url) if client is None else _describe(client)
        if client is None:
            client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout,
                                          socket_timeout=socket_timeout)
        self._redis = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fenced_set = client.register_script(_FENCED_SET)
        self._fenced_delete = client.register_script(_FENCED_DELETE)
        self._held: Dict[str, _Held] = {}
        self._mutex = threading.Lock()
        self._keeper: Optional[threading.Thread] = None
        self._keeper_pid = 0
        self._kick = threading.Event()  # a new lock (renew it on time) or close()
        self._closed = False
        self._command("ping", lambda: self._redis.ping())

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} prefix={self.prefix!r}>"

    # -- keys and errors ----------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return f"{self.prefix}rec:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    def _command(self, what: str, call: Any) -> Any:
        """Run one Redis call; its errors become upclient's (the URL's password never shows)."""
        try:
            return call()
        except redis_errors.AuthenticationError as exc:
            raise AuthError(f"Redis at {self._where} refused the credentials: {exc}",
                            backend="redis", operation=what) from None
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise StoreUnreachable(f"Redis at {self._where} cannot be reached: {exc}",
                                   backend="redis", operation=what) from None
        except redis_errors.RedisError as exc:
            raise StoreUnreachable(f"Redis at {self._where} failed: {exc}", backend="redis",
                                   operation=what) from None

    def _ttl_ms(self, ttl: Optional[float]) -> int:
        """The record's expiry in ms: the caller's ttl, at most ``record_ttl``; 0: none."""
        limits = [t for t in (ttl, self.record_ttl) if t is not None]
        if not limits:
            return 0
        return max(1, int(min(limits) * 1000))

    # -- the primitives ------------------------------------------------------------

    def get(self, key: str) -> Optional[Record]:
        try:
            raw = self._redis.get(self._record_key(key))
        except redis_errors.RedisError as exc:
            log.warning("cannot read resume point %s from Redis at %s: %s; ignoring it", key, self._where, exc)
            return None
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            return record
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("resume point %s in Redis is corrupt (%s); ignoring and removing it", key, exc)
            with contextlib.suppress(redis_errors.RedisError):
                self._redis.delete(self._record_key(key))
            return None

    def set(self, key: str, record: Record, ttl: Optional[float] = None) -> None:
        raw = json.dumps(record, separators=(",", ":"))
        ms = self._ttl_ms(ttl)
        held = self._held.get(key)
        if held is None:
            self._command("set", lambda: self._redis.set(self._record_key(key), raw, px=ms or None))
            return
        if not ms:  # the script always sets an expiry: "no expiry" is a long one
            ms = 100 * 365 * 86400 * 1000
        ok = self._command("set", lambda: self._fenced_set(keys=[self._record_key(key), self._lock_key(key)],
                                                          args=[held.token, raw, ms]))
        if not ok:
            raise self._lost(key, held)

    def delete(self, key: str) -> None:
        held = self._held.get(key)
        if held is None:
            self._command("delete", lambda: self._redis.delete(self._record_key(key)))
            return
        ok = self._command("delete", lambda: self._fenced_delete(keys=[self._record_key(key), self._lock_key(key)],
                                                                args=[held.token]))
        if not ok:  # the record may be the new holder's now: leave it (nothing is lost by not deleting)
            held.lost = True
            log.warning("the lock on %s lapsed before its record could be deleted; leaving the record", key)

    def keys(self) -> Iterator[str]:
        start = len(self._record_key(""))
        pattern = _glob_escape(self._record_key("")) + "*"
        found = self._command("keys", lambda: [k.decode() for k in self._redis.scan_iter(match=pattern, count=500)])
        return iter(sorted(k[start:] for k in found))

    def _lost(self, key: str, held: _Held) -> UploadInProgress:
        held.lost = True
        log.warning("the lock on %s lapsed and may be held by another worker: this one stops", key)
        return UploadInProgress(
            "this worker's lock on the upload lapsed (Redis was out of reach for longer than its "
            f"{self.lock_ttl:g} s ttl) and another worker may have taken the upload over; stopping",
            backend="redis", operation="save", retry_after=self.lock_ttl)

    # -- locks ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, ttl: Optional[float] = None) -> Iterator[bool]:
        """Claim ``key`` across every worker on this Redis; renewed while held (module docstring).

        Raises :class:`~upclient.store.StoreUnreachable` if Redis cannot be
        reached: before the upload sends anything.
        """
        ms = max(1, int((ttl if ttl is not None else self.lock_ttl) * 1000))
        token = secrets.token_hex(16)
        with self._mutex:
            if key in self._held:  # another thread of this process holds it
                got = False
            else:
                got = bool(self._command("lock", lambda: self._redis.set(self._lock_key(key), token, nx=True,
                                                                         px=ms)))
                if got:
                    self._held[key] = _Held(token, ms)
                    self._ensure_keeper()
                    self._kick.set()
        try:
            yield got
        finally:
            if got:
                with self._mutex:
                    self._held.pop(key, None)
                try:
                    self._release(keys=[self._lock_key(key)], args=[token])
                except redis_errors.RedisError as exc:  # it lapses by itself after its ttl
                    log.warning("could not let go of the lock on %s (%s); it lapses in %g s", key, exc, ms / 1000)

    def lock_holder_ttl(self, key: str) -> Optional[float]:
        """Seconds until the lock on ``key`` lapses if its holder stops renewing it; None if nobody holds it."""
        ms = self._command("pttl", lambda: self._redis.pttl(self._lock_key(key)))
        return ms / 1000 if isinstance(ms, int) and ms >= 0 else None

    def _ensure_keeper(self) -> None:
        """Start the thread that renews held locks (call with ``_mutex`` held)."""
        alive = self._keeper is not None and self._keeper.is_alive() and self._keeper_pid == os.getpid()
        if alive:
            return
        self._keeper_pid = os.getpid()
        self._keeper = threading.Thread(target=_keep_locks, args=(weakref.ref(self),), daemon=True,
                                        name="upclient-redis-locks")
        self._keeper.start()

    def _renew_all(self) -> Tuple[bool, float]:
        """Renew every held lock; (any still held, seconds until the next round)."""
        with self._mutex:
            held = [(k, h) for k, h in self._held.items() if not h.lost]
        if not held:
            return False, 0.0
        for key, lock in held:
            try:
                if not self._renew(keys=[self._lock_key(key)], args=[lock.token, lock.ttl_ms]):
                    lock.lost = True
                    log.warning("the lock on %s was lost before it could be renewed", key)
            except redis_errors.RedisError as exc:  # tried again next round; the lock may still lapse
                log.warning("could not renew the lock on %s: %s", key, exc)
        return True, min(h.ttl_ms for _, h in held) / 1000 * RENEW_FRACTION

    def close(self) -> None:
        """Close the connections to Redis (locks still held lapse after their ttl)."""
        self._closed = True
        self._kick.set()
        self._redis.close()


def _keep_locks(ref: "weakref.ReferenceType[RedisStore]") -> None:
    """The keeper thread: renews the store's locks until none is held or the store is gone."""
    while True:
        store = ref()
        if store is None:
            return
        with store._mutex:
            if not store._held:
                store._keeper = None
                return
        if store._closed:
            return
        _, pause = store._renew_all()
        kick = store._kick
        del store
        if kick.wait(max(0.05, pause)):
            kick.clear()


def _describe(client: "redis.Redis") -> str:
    """Where a given client connects, without its password: ``redis://host:port/db``."""
    kwargs = getattr(client.connection_pool, "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
