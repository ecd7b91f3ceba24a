"""One sync: the plan carried out on ``put_many``, each finished file journaled as it ends.

:class:`SyncRun` takes what the source holds (a walk of a local tree, a
listing of a backend, the files of a list), plans (:mod:`.plan`), asks the
destination about the files the plan could not settle from one listing,
uploads the rest with :meth:`upclient.Client.put_many` (local files by path,
so interrupted ones resume from their resume points; files of a source
backend as :class:`~.copy.CopySource` streams), records each one in the
journal the moment it is finished, and deletes last.  What happens to each
file is reported as a :class:`SyncEvent`; the outcome of the whole run is a
:class:`SyncSummary` with its exit status.

A kill at any moment loses at most the files in flight: the next run skips
what the journal holds and resumes the rest.  The uploads are *journaled*
puts (see :meth:`upclient.Client.put`): a file's resume point is saved before
its bytes go and kept, as a finished record, until the journal holds the
file, so a kill between the server finishing a file and the journal's commit
does not make the next run send it again.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import queue
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ..client import Client
from ..errors import BadInput, Cancelled, ChecksumMismatch, NotFound, SourceChanged, UpClientError
from ..journal import Journal, JournalEntry
from ..progress import Progress
from ..result import PutOutcome, UploadResult
from ..source import FileSource
from ..transfer import StopSignal
from .copy import CopySource, RangeSource
from .items import Skipped, SourceFile
from .listing import Holdings, destination_holdings, info_md5, lists
from .plan import Check, Delete, Plan, Skip, Upload, held, plan_sync

__all__ = ["SyncRun", "SyncEvent", "SyncSummary"]

log = logging.getLogger("upclient.sync")

#: Destinations that give a file's MD5 after an upload: a copy's bytes are hashed to compare with it.
GIVES_MD5 = frozenset({"upyun", "community"})
#: Destinations that need a file's MD5 before its first byte: a copy reads the source by ranges.
MD5_FIRST = frozenset({"community"})


@dataclasses.dataclass(frozen=True)
class SyncEvent:
    """What a sync did with one file, or in a dry run would do.

    ``action``: ``uploaded``, ``skipped``, ``failed``, ``deleted``; in a dry
    run ``upload``, ``skip``, ``delete``.  ``key`` is the destination key
    (for a failure before any key was made, the source's name), ``source`` the
    path below the source's root or the id on the source backend.
    """

    action: str
    key: str
    source: Optional[str] = None
    bytes: int = 0
    id: Optional[str] = None
    reason: str = ""
    error: Optional[BaseException] = None
    resumed: bool = False
    sent_bytes: int = 0


@dataclasses.dataclass
class SyncSummary:
    uploaded: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    bytes_uploaded: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    dry_run: bool = False
    #: The error of each failure, in the order they came.
    errors: List[BaseException] = dataclasses.field(default_factory=list)


class SyncRun:
    """A sync of one source into ``destination`` (see the module docstring).

    ``source`` is the client of the source backend (None for a local tree).
    ``check_server``: check what the journal finished against the
    destination (one listing where it lists, else ``info`` per file).
    ``on_event(event)`` reports each file, from the uploading threads;
    ``on_plan(plan)`` runs once the uploads are known, before any is sent;
    ``on_file_progress(i, progress)`` and ``on_file_done(i, size)`` follow
    the i-th upload of the plan.  ``cancel`` (an Event) stops the run.
    """

    def __init__(
        self,
        destination: Client,
        journal: Journal,
        *,
        prefix: str = "",
        source: Optional[Client] = None,
        dry_run: bool = False,
        delete: bool = False,
        check_server: bool = True,
        on_event: Optional[Callable[[SyncEvent], Any]] = None,
        on_plan: Optional[Callable[[Plan], Any]] = None,
        on_file_progress: Optional[Callable[[int, Progress], Any]] = None,
        on_file_done: Optional[Callable[[int, Optional[int]], Any]] = None,
        cancel: Any = None,
        workers: int = 8,
    ) -> None:
        self.destination = destination
        self.journal = journal
        self.prefix = prefix
        self.source = source
        self.dry_run = dry_run
        self.delete = delete
        self.check_server = check_server
        self.on_event = on_event
        self.on_plan = on_plan
        self.on_file_progress = on_file_progress
        self.on_file_done = on_file_done
        self.cancel = cancel if cancel is not None else StopSignal()  # no watchdog needed for it
        self.workers = workers
        self.summary = SyncSummary(dry_run=dry_run)
        self._lock = threading.Lock()

    # -- reporting --------------------------------------------------------------------

    def _event(self, event: SyncEvent) -> None:
        with self._lock:
            s = self.summary
            if event.action == "uploaded":
                s.uploaded += 1
                s.bytes_uploaded += event.bytes
                s.bytes_sent += event.sent_bytes
            elif event.action in ("skipped", "skip"):
                s.skipped += 1
            elif event.action in ("deleted", "delete"):
                s.deleted += 1
            elif event.action == "failed":
                s.failed += 1
                s.errors.append(event.error if event.error is not None else UpClientError(event.reason))
            elif event.action == "upload":
                s.uploaded += 1
                s.bytes_uploaded += event.bytes
        if self.on_event is not None:
            self.on_event(event)

    def _failed(self, key: str, source: Optional[str], error: BaseException, reason: str = "") -> None:
        self._event(SyncEvent("failed", key, source, error=error, reason=reason))

    # -- the run ----------------------------------------------------------------------

    def run(self, found: Iterable[Union[SourceFile, Skipped]]) -> SyncSummary:
        """Carry out the sync of ``found`` (what the source holds); the summary."""
        started = time.monotonic()
        try:
            self._run(found)
        except (Cancelled, KeyboardInterrupt):
            self.summary.interrupted = True
        if self.cancel.is_set():
            self.summary.interrupted = True
        self.summary.elapsed = time.monotonic() - started
        return self.summary

    def _run(self, found: Iterable[Union[SourceFile, Skipped]]) -> None:
        holdings = Holdings()
        with cf.ThreadPoolExecutor(1, thread_name_prefix="upclient-sync-list") as background:
            listing = None
            if (self.check_server or self.delete) and lists(self.destination):
                # the destination is listed while the source is read
                listing = background.submit(destination_holdings, self.destination, self.prefix)
            try:
                files, whole = self._gather(found)
                entries = self.journal.load()
            except BaseException:
                if listing is not None:
                    listing.cancel()
                raise
            if listing is not None:
                holdings = listing.result()
        if self.delete and not whole:
            log.warning("not deleting anything: part of the source could not be read")
        plan = plan_sync(files, entries, holdings, prefix=self.prefix, check_server=self.check_server,
                         delete=self.delete and whole)
        self._settle_checks(plan)
        self._stop_if_cancelled()
        if self.on_plan is not None:
            self.on_plan(plan)
        if self.dry_run:
            for skip in plan.skips:
                self._event(SyncEvent("skip", skip.key, skip.file.ref, skip.size or 0, skip.id, skip.reason))
            for up in plan.uploads:
                self._event(SyncEvent("upload", up.key, up.file.ref, up.file.size or 0, reason=up.reason))
            for d in plan.deletes:
                self._event(SyncEvent("delete", d.key, None, d.size or 0, d.id, "gone from the source"))
            return
        for skip in plan.skips:
            self._event(SyncEvent("skipped", skip.key, skip.file.ref, skip.size or 0, skip.id, skip.reason))
        self._upload(plan.uploads)
        self._stop_if_cancelled()
        self._delete(plan.deletes)

    def _stop_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("sync interrupted")

    def _gather(self, found: Iterable[Union[SourceFile, Skipped]]) -> Tuple[List[SourceFile], bool]:
        """The files to sync, with left-out entries reported; whether the source was read whole."""
        files: List[SourceFile] = []
        keys: Dict[str, SourceFile] = {}
        whole = True
        for item in found:
            self._stop_if_cancelled()
            if isinstance(item, Skipped):
                if item.error is not None:
                    whole = False
                    self._failed(item.where, item.where, item.error, item.reason)
                else:
                    log.log(logging.WARNING if item.warn else logging.INFO, "left out %s: %s", item.where,
                            item.reason)
                continue
            other = keys.get(item.key)
            if other is not None:
                self._failed(self.prefix + item.key, item.ref, BadInput(
                    f"{other.ref} and {item.ref} would both be stored as {self.prefix + item.key}"))
                continue
            keys[item.key] = item
            files.append(item)
        return files, whole

    # -- asking the destination -------------------------------------------------------

    def _settle_checks(self, plan: Plan) -> None:
        """Turn each check of the plan into a skip or an upload, several at once."""
        if not plan.checks:
            return

        def settle(check: Check) -> Union[Skip, Upload, Tuple[Check, BaseException]]:
            if self.cancel.is_set():
                return check, Cancelled("sync interrupted")
            try:
                return self._settle(check)
            except (UpClientError, OSError) as exc:
                return check, exc

        with cf.ThreadPoolExecutor(self.workers, thread_name_prefix="upclient-sync-check") as pool:
            for outcome in pool.map(settle, plan.checks):
                if isinstance(outcome, Skip):
                    plan.skips.append(outcome)
                elif isinstance(outcome, Upload):
                    plan.uploads.append(outcome)
                elif not isinstance(outcome[1], Cancelled):
                    check, error = outcome
                    self._failed(check.key, check.file.ref, error, "could not be checked on the destination")
        plan.checks.clear()

    def _settle(self, check: Check) -> Union[Skip, Upload]:
        f, key = check.file, check.key
        if check.entry is not None:  # the journal finished it: is it still there?
            try:
                info = self.destination.info(check.entry.id)
            except NotFound:
                return Upload(f, key, "gone from the server")
            if held(info, check.entry.size, check.entry.md5):
                return Skip(f, key, check.entry.id, check.entry.size, "unchanged")
            return Upload(f, key, "different on the server")
        # the destination holds this key with the same size: the same bytes?
        assert check.remote is not None
        theirs = info_md5(check.remote) or info_md5(self.destination.info(key))
        ours = f.md5
        if ours is None and f.path is not None and theirs is not None:
            with FileSource(f.path) as src:
                ours = self.destination.backend.digest(src, "md5")
        if theirs is None or ours is None or theirs != ours.lower():
            return Upload(f, key, "new" if theirs is None or ours is None else "different on the server")
        entry = JournalEntry(path=f.ref, destination=key, size=f.size, mtime_ns=f.mtime_ns, inode=f.inode,
                             id=check.remote.id, md5=theirs)
        if not self.dry_run:
            self.journal.record(entry)
        return Skip(f, key, entry.id, entry.size, "on the server already (same MD5)")

    # -- uploading --------------------------------------------------------------------

    def _upload(self, uploads: List[Upload]) -> None:
        if not uploads:
            return
        dst = self.destination
        # the bytes are hashed on their way only where the source gives an MD5 and the destination none
        # (where both give one, the two are compared; UPYUN checks each part's MD5 as it arrives)
        hash_copies = dst.backend.name not in GIVES_MD5
        sources: List[Any] = []
        for up in uploads:
            if up.file.path is not None:
                sources.append(up.file.path)
            elif dst.backend.name in MD5_FIRST:
                assert self.source is not None, "a file without a path needs a source client"
                ranged = RangeSource(self.source, up.file, self.source.backend.destination(None, {}))
                if up.file.md5 and dst.backend.digests is not None:  # read once, not once more for its MD5
                    dst.backend.digests.remember(ranged, "md5", up.file.md5.lower())
                sources.append(ranged)
            else:
                assert self.source is not None, "a file without a path needs a source client"
                sources.append(CopySource(self.source, up.file, md5=hash_copies and up.file.md5 is not None))

        def done(i: int, outcome: PutOutcome) -> None:
            up, src = uploads[i], sources[i]
            try:
                if isinstance(src, CopySource):
                    src.close()
                if outcome.result is not None:
                    self._finished(up, outcome.result, src if isinstance(src, CopySource) else None)
                elif not (isinstance(outcome.error, Cancelled) and self.cancel.is_set()):
                    assert outcome.error is not None
                    self._failed(up.key, up.file.ref, outcome.error)
            finally:
                if self.on_file_done is not None:
                    self.on_file_done(i, outcome.result.size if outcome.result is not None else None)

        self._recorder = _Recorder(self.journal, self._event, dst.settle)
        try:
            dst.put_many(sources, keys=[u.key for u in uploads], on_file_progress=self.on_file_progress,
                         on_file_done=done, cancel=self.cancel, journaled=True)
        finally:
            self._recorder.close()  # every finished file journaled and reported
            for src in sources:
                if isinstance(src, CopySource):
                    src.close()

    def _finished(self, up: Upload, result: UploadResult, copy: Optional[CopySource]) -> None:
        """Check a finished upload (a copy's bytes), journal it, report it."""
        try:
            md5 = _result_md5(result)
            if up.file.path is None and copy is None:  # read by ranges: the destination hashed what it got
                _check_ranged(up.file, result, md5, self.destination.backend.name)
            if copy is not None:
                if md5 is None and copy.file.md5 is not None and self.destination.backend.name == "upyun":
                    md5 = info_md5(self.destination.info(result.id))
                md5 = copy.verify(md5, backend=self.destination.backend.name)
        except (UpClientError, OSError) as exc:
            self._failed(up.key, up.file.ref, exc)
            return
        f = up.file
        self._recorder.add(JournalEntry(path=f.ref, destination=up.key, size=result.size, mtime_ns=f.mtime_ns,
                                        inode=f.inode, id=result.id, md5=md5),
                           SyncEvent("uploaded", up.key, f.ref, result.size, result.id, up.reason,
                                     resumed=result.resumed, sent_bytes=result.sent_bytes), result)

    # -- deleting ---------------------------------------------------------------------

    def _delete(self, deletes: List[Delete]) -> None:
        for d in deletes:
            self._stop_if_cancelled()
            try:
                self.destination.delete(d.id)
            except NotFound:
                pass  # gone already: what was wanted
            except UpClientError as exc:
                self._failed(d.key, None, exc, "could not be deleted")
                continue
            if d.entry is not None:
                self.journal.forget(d.entry.path, d.entry.destination)
            self._event(SyncEvent("deleted", d.key, None, d.size or 0, d.id, "gone from the source"))


#: How long the journal waits after a finished file for others to commit with it (seconds), and at most how many.
GATHER = 0.05
GATHER_FILES = 1000


class _Recorder:
    """Journals finished files in a thread of its own, then reports each one.

    An upload worker hands a finished file over and takes the next at once
    instead of waiting for the commit.  A file is reported only once its
    entry is committed, so what a run reported is never sent again by the
    next one, however this one ends.  The files that finish within
    :data:`GATHER` of the first go together in one transaction: a commit a
    file cost more CPU than the upload of a small one (1,000 files of 16 KiB:
    980 commits).  Delaying the commit opens no window for a second copy:
    where the server names uploads, each file's finished record stays until
    its entry is committed, and elsewhere sending it again replaces it.  A journal that cannot be
    written makes those files failures: the next run sends them again (or
    finds them in their finished records).  Once committed, a file's
    finished record is dropped (``settle``): the journal holds it now.
    """

    def __init__(self, journal: Journal, report: Callable[[SyncEvent], Any],
                 settle: Callable[[UploadResult], Any]) -> None:
        self.journal = journal
        self.report = report
        self.settle = settle
        self._queue: "queue.SimpleQueue[Optional[Tuple[JournalEntry, SyncEvent, UploadResult]]]" = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="upclient-sync-journal", daemon=True)
        self._thread.start()

    def add(self, entry: JournalEntry, event: SyncEvent, result: UploadResult) -> None:
        self._queue.put((entry, event, result))

    def _loop(self) -> None:
        ending = False
        while not ending:
            batch = [self._queue.get()]
            until = time.monotonic() + GATHER
            while batch[-1] is not None and len(batch) < GATHER_FILES:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            ending = None in batch
            work = [item for item in batch if item is not None]
            if not work:
                continue
            try:
                self.journal.record_many([entry for entry, _, _ in work])
            except (sqlite3.Error, OSError) as exc:
                log.error("cannot write the journal %s: %s", self.journal.path, exc)
                for _, event, _ in work:
                    self.report(dataclasses.replace(event, action="failed", error=exc,
                                                    reason="uploaded, but the journal cannot be written"))
                continue
            for _, event, result in work:
                try:
                    self.settle(result)
                except Exception as exc:  # the record stays; the next run finds the file in the journal first
                    log.warning("could not drop the finished record of %s: %s", event.key, exc)
                self.report(event)

    def close(self) -> None:
        """Wait until every file handed over is journaled and reported."""
        self._queue.put(None)
        self._thread.join()


def _check_ranged(file: SourceFile, result: UploadResult, md5: Optional[str], backend: str) -> None:
    if result.size != file.size:
        raise SourceChanged(f"{file.ref}: {result.size} bytes reached the destination, {file.size} were listed",
                            backend=backend, operation="sync")
    if file.md5 and md5 and file.md5.lower() != md5:
        raise ChecksumMismatch(f"{file.ref}: MD5 {file.md5.lower()} on the source, {md5} on the destination",
                               backend=backend, operation="sync")


def _result_md5(result: UploadResult) -> Optional[str]:
    stored = getattr(result, "file", None)  # the community API's file object
    md5 = getattr(stored, "file_md5", None) or result.extra.get("md5")  # or a finished record's
    return str(md5).lower() if md5 else None

