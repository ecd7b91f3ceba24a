"""Uploads run by Celery workers that resume each other: :func:`upload_task`.

A task factory for the user's own Celery app::

    from celery import Celery
    import upclient
    from upclient.contrib.celery import upload_task

    app = Celery("fleet", broker="redis://queue:6379/0", backend="redis://queue:6379/0")

    def make_client():        # runs on each worker: credentials never travel with a task
        return upclient.Client("upyun://op@svc", password=os.environ["UPYUN_PASSWORD"],
                               store=upclient.RedisStore("redis://queue:6379/1"), identity="content")

    upload = upload_task(app, make_client)
    upload.delay("/mnt/shared/video.mp4", key="videos/video.mp4")

The task uploads one file by path (a path every worker sees: shared
storage) and returns a JSON-able dict of the :class:`~upclient.UploadResult`
(``id``, ``size``, ``key``, ``url``, ``resumed``, ``sent_bytes``...) with
the ``path``, the ``worker`` that uploaded it, its ``attempts`` and
``done_before`` (True: an earlier task had uploaded it, nothing was sent).

* ``acks_late`` and ``reject_on_worker_lost``: the message is acknowledged
  once the upload is done, so a worker that dies mid-upload leaves it to
  the broker, which hands it to another worker (for Redis, after the
  transport's ``visibility_timeout``).
* Retries chosen from the error tree: an error whose ``retryable`` is true
  (the network, a 5xx, a rate limit, a store out of reach, the upload held
  by another worker) is retried with exponential backoff and jitter, or
  after the ``retry_after`` the error gives; any other (``AuthError``,
  ``BadInput``, ``NotFound``, ``SourceChanged``...) fails the task at once.
  Waiting for another worker that holds the upload
  (:class:`~upclient.store.UploadInProgress`) uses up no retry: its lock
  is renewed only while it runs.
* Idempotent: a redelivered or retried task resumes the upload from the
  client's store; a task whose file was already uploaded to that
  destination (a *done record* in the store, kept ``done_ttl`` seconds,
  keyed by the file's identity and the destination) returns that result
  without sending anything.  The done record is checked and written under
  the store's lock on it, so two workers given the same file at once
  upload it once: the second gets
  :class:`~upclient.store.UploadInProgress` and retries, and then finds it
  done.
* Progress: ``update_state(state="PROGRESS", meta=...)`` about once a second
  (``meta``: ``path``, ``name``, ``bytes_done``, ``total``, ``rate``,
  ``eta``, ``parts_done``, ``parts_total``, ``worker``), which
  ``AsyncResult(id).info`` shows to whoever waits for the task.

For a fleet, the client's store is a :class:`~upclient.RedisStore` every
worker shares, and its ``identity`` is ``"content"`` or ``"digest"`` when
workers see the shared files under different mount points (see
:mod:`upclient.digest`).  With the default ``FileStore`` the task works on
one host.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from ..client import Client
from ..digest import source_identity
from ..errors import BadInput, UpClientError
from ..progress import Progress
from ..result import UploadResult
from ..source import FileSource
from ..store import UploadInProgress, resume_key

__all__ = ["upload_task", "done_key", "result_dict", "WorkerClient"]

log = logging.getLogger("upclient.contrib.celery")

#: What a task's result (and its done record) holds of an UploadResult.
RESULT_FIELDS = ("id", "size", "backend", "url", "key", "resumed", "sent_bytes", "deduplicated", "elapsed",
                 "expires", "metadata")


class WorkerClient:
    """One :class:`~upclient.Client` per worker process, made by ``factory`` on first use.

    Shared by the task's threads (a Client is thread-safe); a process forked
    after it was made (Celery's prefork pool) makes its own.
    """

    def __init__(self, factory: Callable[[], Client]) -> None:
        self.factory = factory
        self._client: Optional[Client] = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                client = self.factory()
                if not isinstance(client, Client):
                    raise TypeError(f"the client factory returned a {type(client).__name__}, not an upclient.Client")
                self._client, self._pid = client, os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


def done_key(client: Client, identity: Mapping[str, Any], key: Optional[str], options: Mapping[str, Any]) -> str:
    """The store key of the done record of one file (its ``identity``) uploaded to one destination."""
    backend = client.backend
    where = f"{client._server()}|{backend.destination(key, options)}"
    return "done-" + resume_key(backend.name, where, dict(identity))


def result_dict(result: UploadResult, path: str) -> Dict[str, Any]:
    """The JSON-able part of ``result``, with the ``path`` it came from."""
    out: Dict[str, Any] = {name: getattr(result, name) for name in RESULT_FIELDS}
    out["metadata"] = dict(result.metadata)
    extra = {}
    for name, value in dict(result.extra).items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        extra[name] = value
    out["extra"] = extra
    out["path"] = path
    return out


def _progress_meta(progress: Progress, path: str, worker: Optional[str]) -> Dict[str, Any]:
    meta = dataclasses.asdict(progress)
    meta.update(path=path, worker=worker)
    return meta


def _countdown(exc: UpClientError, retries: int, backoff: float, backoff_max: float) -> float:
    """Seconds before the next try: the error's ``retry_after``, else exponential backoff; with jitter."""
    if exc.retry_after is not None:
        return max(0.0, float(exc.retry_after)) + random.uniform(0.0, min(backoff, 1.0))
    delay = min(backoff_max, backoff * (2 ** retries))
    return delay / 2 + random.uniform(0.0, delay / 2)


def upload_task(
    app: Any,
    client_factory: Callable[[], Client],
    *,
    name: str = "upclient.upload",
    max_retries: Optional[int] = 12,
    backoff: float = 5.0,
    backoff_max: float = 600.0,
    done_ttl: float = 7 * 86400,
    progress_interval: float = 1.0,
    **task_options: Any,
) -> Any:
    """Register on ``app`` the task that uploads one file, and return it (module docstring).

    The task is called as ``upload.delay(path, key=None, metadata=None,
    options=None, force=False)``: ``options`` go to ``Client.put`` as
    backend options; ``force`` uploads again even if a done record says the
    file is there.

    :param client_factory: makes the worker's :class:`~upclient.Client`
        (called once per worker process; credentials come from the worker's
        own settings, never from the task's message).
    :param max_retries: Celery's limit on retries (None: no limit).
    :param backoff, backoff_max: seconds of the first retry's delay, and the
        most any delay grows to.
    :param done_ttl: seconds a done record is kept.
    :param progress_interval: seconds between ``PROGRESS`` states at most.
    :param task_options: more options of ``app.task`` (``queue``,
        ``time_limit``...); ``acks_late`` and ``reject_on_worker_lost`` are
        True unless given.
    """
    clients = WorkerClient(client_factory)
    options: Dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True, "track_started": True,
                               **task_options}

    @app.task(bind=True, name=name, max_retries=max_retries, **options)
    def upload(self: Any, path: str, key: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
               options: Optional[Mapping[str, Any]] = None, force: bool = False) -> Dict[str, Any]:
        try:
            return _upload(self, clients.get(), path, key, metadata, dict(options or {}), force,
                           done_ttl, progress_interval)
        except UpClientError as exc:
            if not exc.retryable:
                log.warning("upload of %s failed for good: %s", path, exc)
                raise
            countdown = _countdown(exc, self.request.retries, backoff, backoff_max)
            log.info("upload of %s failed (%s); trying again in %.1f s", path, exc, countdown)
            if isinstance(exc, UploadInProgress):  # waiting on a live worker uses up no retry
                raise self.retry(exc=exc, countdown=countdown, max_retries=self.request.retries + 1) from exc
            raise self.retry(exc=exc, countdown=countdown) from exc

    upload.clients = clients  # the worker's client, for tests and shutdown hooks
    return upload


def _upload(task: Any, client: Client, path: str, key: Optional[str], metadata: Optional[Mapping[str, str]],
            options: Dict[str, Any], force: bool, done_ttl: float, progress_interval: float) -> Dict[str, Any]:
    if not isinstance(path, str) or not path:
        raise BadInput(f"the task uploads a file by its path, not {path!r}")
    client.backend.check_put_options(options)
    store = client.store
    worker = getattr(task.request, "hostname", None)
    with FileSource(path) as src:  # BadInput if there is no such file
        identity = source_identity(src, client.identity, client.backend.digests)
        assert identity is not None  # a file always has one
        record_key = done_key(client, identity, key, options)
        if not force:
            done = _done(store.load(record_key), identity)
            if done is not None:
                log.info("%s was uploaded before (%s): nothing to send", path, done.get("id"))
                return dict(done, path=path, done_before=True)  # ``worker``: the one that uploaded it
        with store.lock(record_key) as free:
            if not free:
                holder_ttl = getattr(store, "lock_holder_ttl", None)
                raise UploadInProgress(
                    f"{src.name} is being uploaded to this destination by another worker; nothing was sent",
                    operation="put", retry_after=holder_ttl(record_key) if callable(holder_ttl) else None)
            if not force:  # it may have finished while we looked
                done = _done(store.load(record_key), identity)
                if done is not None:
                    return dict(done, path=path, done_before=True)
            result = client.put(src, key, metadata=metadata, on_progress=_reporter(task, path, worker,
                                                                                   progress_interval), **options)
            out = result_dict(result, path)
            out.update(worker=worker, attempts=task.request.retries + 1)
            try:
                store.save(record_key, {"identity": identity, "result": out}, ttl=done_ttl)
            except ValueError:  # metadata named like a secret: the store keeps none
                kept = {k: v for k, v in out.items() if k not in ("metadata", "extra")}
                store.save(record_key, {"identity": identity, "result": kept}, ttl=done_ttl)
    out["done_before"] = False
    return out


def _done(record: Optional[Dict[str, Any]], identity: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    if record is None or record.get("identity") != identity or not isinstance(record.get("result"), dict):
        return None
    return dict(record["result"])


def _reporter(task: Any, path: str, worker: Optional[str], interval: float) -> Optional[Callable[[Progress], None]]:
    """``on_progress`` that sets the task's PROGRESS state, at most every ``interval`` seconds."""
    if not getattr(task.request, "id", None) or getattr(task.request, "is_eager", False):
        return None
    last = [0.0]

    def report(progress: Progress) -> None:
        now = time.monotonic()
        final = progress.total is not None and progress.bytes_done >= progress.total
        if now - last[0] < interval and not final:
            return
        last[0] = now
        try:
            task.update_state(state="PROGRESS", meta=_progress_meta(progress, path, worker))
        except Exception as exc:  # the result backend is only told: the upload goes on
            log.debug("could not report progress of %s: %s", path, exc)

    return report
