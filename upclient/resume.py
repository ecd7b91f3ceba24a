"""One upload's resume point: claimed, read, kept up to date, and forgotten.

:class:`ResumePoint` is what ``Client.put`` holds while an upload runs.  It
claims the record (so two processes do not drive one upload), hands the
backend the state stored by an earlier attempt if that attempt was of the
same, unchanged source, saves the session's state after every part, and
forgets the record once the upload is finished or can never be resumed.
An upload that needs no resume point (one part, a stream, ``resume=False``)
gets an inactive one that does nothing.

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
import logging
from typing import Any, Dict, Optional

from .transfer import UploadSession
from .store import BaseStore, UploadInProgress, resume_key

__all__ = ["ResumePoint"]

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

    def stored_state(self) -> Optional[Dict[str, Any]]:
        """The session state an earlier attempt saved, if it is for this very source."""
        if self.key is None:
            return None
        record = self.store.load(self.key)
        if record is None:
            return None
        if record.get("identity") != self.identity:
            log.info("%s changed since its last upload; starting afresh", self.name)
            self.store.delete(self.key)
            return None
        return record.get("state")

    def save(self, session: UploadSession) -> None:
        """Record where ``session`` stands (after every finished part)."""
        if self.key is None:
            return
        state = session.state()
        if state is None:
            return
        self.store.save(
            self.key,
            {
                "backend": self.backend,
                "server": self.server,
                "id": session.upload_id,
                "identity": self.identity,
                "expires": session.expires,
                "state": state,
            },
        )

    def forget(self) -> None:
        """The upload is done, or can never be resumed: drop the record."""
        if self.key is not None:
            self.store.delete(self.key)
