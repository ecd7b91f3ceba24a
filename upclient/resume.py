"""One upload's resume point: claimed, read, kept up to date, and forgotten.

:class:`ResumePoint` is what ``Client.put`` holds while an upload runs.  It
claims the record (so two processes do not drive one upload), hands the
backend the state stored by an earlier attempt if that attempt was of the
same, unchanged source, saves the session's state after every part, and
forgets the record once the upload is finished or can never be resumed.
An upload that needs no resume point (one part, a stream, ``resume=False``)
gets an inactive one that does nothing.

A job that journals what it finished (``upclient sync``, a multi-file
``upclient put``) has a window between the server finishing an upload and
its journal holding it.  Where the server names the upload (tus, FastDFS), a
re-run that knows neither would send the file again, as a second copy.  For
such a job the record outlives the upload as a *finished* record: the
upload's result (:meth:`ResumePoint.finish`), which a re-run of the same,
unchanged source gets back without sending anything, and which the job drops
once its journal holds the file (:meth:`upclient.Client.settle`).

When someone else holds the claim, what happens depends on the store: a
store of one machine (``FileStore``, ``MemoryStore``) lets the upload go on
without a resume point; an *exclusive* store, one a fleet shares
(``RedisStore``), raises :class:`~upclient.store.UploadInProgress` before
anything is sent, so two workers never both send the same upload: the one
that tries again later finds it finished, or resumes it once the first
worker's claim has lapsed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Dict, Optional

from .result import UploadResult
from .transfer import UploadSession
from .store import BaseStore, UploadInProgress, resume_key

__all__ = ["ResumePoint", "is_finished", "settle"]

log = logging.getLogger("upclient.resume")


class ResumePoint:
    """A context manager around one record of a store (see the module docstring)."""

    def __init__(
        self,
        store: BaseStore,
        backend: str,
        destination: str,
        identity: Optional[Dict[str, Any]],
        name: str,
        server: Optional[str] = None,
    ) -> None:
        self.store = store
        self.backend = backend
        #: The server (its URL without credentials) the upload goes to, so abort(path) finds only its own.
        self.server = server
        self.identity = identity
        self.name = name
        self.key = resume_key(backend, destination, identity) if identity is not None else None
        self._claim: Optional[contextlib.AbstractContextManager] = None
        #: The record as read once (stored_result, stored_state) or last written: a save of the
        #: same state again writes nothing (a tus upload's state is its URL, part after part).
        self._record: Optional[Dict[str, Any]] = None
        self._read = False

    @property
    def active(self) -> bool:
        return self.key is not None

    def __enter__(self) -> "ResumePoint":
        if self.key is not None:
            self._claim = self.store.lock(self.key)
            if not self._claim.__enter__():
                self._release()
                if getattr(self.store, "exclusive", False):
                    raise self._busy()
                log.info("%s is being uploaded by another process; not resuming it here", self.name)
                self.key = None
        return self

    def _busy(self) -> UploadInProgress:
        """The error for an upload another worker holds: retry once its claim may have lapsed."""
        assert self.key is not None
        left = None
        holder_ttl = getattr(self.store, "lock_holder_ttl", None)
        if callable(holder_ttl):
            try:
                left = holder_ttl(self.key)
            except Exception:  # only a hint: the error is raised anyway
                left = None
        return UploadInProgress(
            f"{self.name} is being uploaded to this destination by another worker; nothing was sent "
            "(try again later: the upload will be finished, or resumable once that worker's claim lapses)",
            backend=self.backend, operation="put", retry_after=left)

    def __exit__(self, *exc: Any) -> None:
        self._release()

    def _release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.__exit__(None, None, None)

    def _load(self) -> Optional[Dict[str, Any]]:
        """The stored record, read once."""
        if not self._read and self.key is not None:
            self._record, self._read = self.store.load(self.key), True
        return self._record

    def stored_state(self) -> Optional[Dict[str, Any]]:
        """The session state an earlier attempt saved, if it is for this very source."""
        if self.key is None:
            return None
        record = self._load()
        if record is None:
            return None
        if record.get("identity") != self.identity:
            log.info("%s changed since its last upload; starting afresh", self.name)
            self.store.delete(self.key)
            self._record = None
            return None
        if is_finished(record):
            return None
        return record.get("state")

    def stored_result(self) -> Optional[UploadResult]:
        """The result a finished record holds, if it is for this very source (module docstring)."""
        if self.key is None:
            return None
        record = self._load()
        if record is None or not is_finished(record) or record.get("identity") != self.identity:
            return None
        done = record["finished"]
        try:
            return UploadResult(id=str(done["id"]), size=int(done["size"]), backend=self.backend,
                                url=done.get("url"), key=done.get("key"), metadata=dict(done.get("metadata") or {}),
                                extra=dict(done.get("extra") or {}), resumed=True)
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring an unreadable finished record of %s", self.name)
            self.store.delete(self.key)
            self._record = None
            return None

    def finish(self, result: UploadResult, md5: Optional[str] = None) -> None:
        """The upload is done, and its job journals it: keep its result until :meth:`settle`."""
        if self.key is None:
            return
        extra = {k: v for k, v in result.extra.items() if _plain(v)}
        if md5:
            extra["md5"] = md5
        done = {"id": result.id, "size": result.size, "url": result.url, "key": result.key,
                "metadata": {k: v for k, v in result.metadata.items() if isinstance(v, str)}, "extra": extra}
        record = {"backend": self.backend, "server": self.server, "id": result.id, "identity": self.identity,
                  "finished": done}
        self.store.save(self.key, record)
        self._record, self._read = record, True

    def save(self, session: UploadSession) -> None:
        """Record where ``session`` stands (after every finished part)."""
        if self.key is None:
            return
        state = session.state()
        if state is None:
            return
        record = {
            "backend": self.backend,
            "server": self.server,
            "id": session.upload_id,
            "identity": self.identity,
            "expires": session.expires,
            "state": state,
        }
        if record == self._written():
            return  # nothing changed since the last save
        self.store.save(self.key, record)
        self._record, self._read = record, True

    def _written(self) -> Optional[Dict[str, Any]]:
        """The last record this point read or wrote, without its ``updated`` stamp."""
        if self._record is None:
            return None
        return {k: v for k, v in self._record.items() if k != "updated"}

    def forget(self) -> None:
        """The upload is done, or can never be resumed: drop the record."""
        if self.key is not None:
            self.store.delete(self.key)
            self._record, self._read = None, True


def settle(store: BaseStore, key: str, upload_id: str) -> None:
    """Drop the finished record ``key`` once its job journaled ``upload_id``; a record that has
    since become another (the file changed and is being sent again) stays."""
    record = store.load(key)
    if record is not None and is_finished(record) and record.get("id") == upload_id:
        store.delete(key)


def is_finished(record: Dict[str, Any]) -> bool:
    """Whether a stored record is a finished upload kept for its job's journal (not one to resume)."""
    return isinstance(record.get("finished"), dict)


def _plain(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
