"""The one object users hold: :class:`Client`."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import io
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from .backends import backend_for_url
from .backends.base import Backend
from .digest import IDENTITIES, DigestCache, source_identity
from .transfer import MoreParts, Part, StopSignal, TransferEngine, UploadSession, deadline, stream_parts
from .errors import BadInput, NotFound, ServiceError, SourceChanged, Unsupported, UpClientError
from .pacing import FilePacer
from .progress import Progress, ProgressTracker
from .result import FileInfo, PutOutcome, UploadResult
from .retry import RetryPolicy
from .settings import Settings
from .source import Source, StreamSource, open_source
from .resume import ResumePoint, is_finished, settle
from .transport import redact_url
from .store import BaseStore, FileStore, MemoryStore

__all__ = ["Client"]

log = logging.getLogger("upclient")

ProgressCallback = Callable[[Progress], Any]

_DEFAULT = object()

#: Seconds at most that freeing a failed upload on the server may take.
ABORT_TIMEOUT = 10.0


def _check_metadata(metadata: Optional[Mapping[str, Any]]) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise BadInput("metadata must be a mapping of str to str")
    out = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not k:
            raise BadInput(f"metadata keys must be non-empty strings, not {k!r}")
        if not isinstance(v, str):
            raise BadInput(f"metadata value for {k!r} must be a str, not {type(v).__name__}")
        out[k] = v
    return out


class Client:
    """Upload, download and manage files on one storage backend.

    ``target`` is a URL whose scheme picks the backend (``tus+http://host/files/``,
    ``tus+https://...``) or a :class:`~upclient.backends.base.Backend` object.
    Keyword settings are shared by every call:

    - ``part_size`` (bytes, default 16 MiB) and ``concurrency`` (parts in flight
      at once, default 4): parts held in memory (streams, checksummed parts)
      stay below their product; parts read from files are streamed;
    - ``max_files``: files ``put_many`` uploads at once (default 4);
    - ``retry``: a :class:`~upclient.RetryPolicy`;
    - ``connect_timeout`` / ``read_timeout`` in seconds;
    - ``checksum``: send part checksums where the server checks them;
    - ``store``: where resume points live; default a :class:`~upclient.FileStore`
      in the user state directory, ``None`` or ``False`` for no resume across runs,
      a :class:`~upclient.RedisStore` for a fleet of workers;
    - ``identity``: what a file's resume point (and cached digest) is kept under:
      ``"local"`` (path, size, mtime, inode: the default), ``"content"`` (name,
      size, mtime and samples of the bytes: another host that sees the same file
      on shared storage resumes its upload) or ``"digest"`` (name, size and the
      SHA-256 of the whole file: exact, read once per host); see
      :mod:`upclient.digest` for the trade-off;
    - ``headers``: extra headers on every request; ``auth``: a requests auth
      object, or a callable returning headers, called per request (tokens may
      rotate);
    - ``verify`` (TLS verification, on by default, or a CA bundle path) and
      ``cert`` (client certificate path, or ``(cert, key)``);
    - ``trusted_origins``: other ``scheme://host[:port]`` that may receive
      ``auth``, ``headers`` and a password given in the URL.  By default they
      go only to the backend's own server; a URL elsewhere (a tus id on
      another host, a redirect) gets a request without them.

    Other keyword arguments go to the backend, which rejects those it does not
    know.  A client is safe to share between threads; close it (or use it as a
    context manager) to stop its worker threads.
    """

    def __init__(
        self,
        target: Union[str, Backend],
        *,
        part_size: int = 16 * 1024 * 1024,
        concurrency: int = 4,
        max_files: int = 4,
        retry: Optional[RetryPolicy] = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        checksum: bool = True,
        store: Any = _DEFAULT,
        headers: Optional[Mapping[str, str]] = None,
        auth: Any = None,
        verify: Union[bool, str] = True,
        cert: Any = None,
        trusted_origins: Optional[Iterable[str]] = None,
        identity: str = "local",
        **backend_options: Any,
    ) -> None:
        if identity not in IDENTITIES:
            raise BadInput(f"identity must be one of {', '.join(map(repr, IDENTITIES))}, not {identity!r}")
        #: What resume points and digests are kept under (``"local"``, ``"content"`` or ``"digest"``).
        self.identity = identity
        self.settings = Settings(
            part_size=part_size,
            concurrency=concurrency,
            max_files=max_files,
            retry=retry if retry is not None else RetryPolicy(),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            checksum=checksum,
            verify=verify,
            cert=cert,
            headers=dict(headers) if headers else None,
            auth=auth,
            trusted_origins=trusted_origins,  # type: ignore[arg-type]
        )
        if store is _DEFAULT:
            store = FileStore()
        elif store is None or store is False:
            store = MemoryStore()
        elif not isinstance(store, BaseStore):
            raise BadInput("store must be a BaseStore (MemoryStore, FileStore), None or False")
        self.store: BaseStore = store
        if isinstance(target, Backend):
            if backend_options:
                raise BadInput("backend options go to the backend's constructor, not to Client")
            self.backend = target
        elif isinstance(target, str):
            self.backend = backend_for_url(target, self.settings, backend_options)
        else:
            raise BadInput(f"target must be a URL or a Backend, not {type(target).__name__}")
        self.backend.digests = DigestCache(self.store, identity)  # digests survive a re-run, as resume points do
        #: The root of every call's token: close() sets it, which aborts them all at once.
        self._closed = StopSignal()
        self._lock = threading.Lock()
        self._executor: Optional[cf.ThreadPoolExecutor] = None
        self._engine: Optional[TransferEngine] = None
        #: Finished records kept for a journaling caller: upload id -> store key (see settle).
        self._unsettled: Dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<upclient.Client {self.backend!r}>"

    def __getattr__(self, name: str) -> Any:
        """The backend's own verbs (``extra_verbs``), called under the shared retry policy."""
        backend = self.__dict__.get("backend")
        if backend is None or name not in getattr(backend, "extra_verbs", ()):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        verb = getattr(backend, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.settings.retry.call(lambda: verb(*args, **kwargs), cancel=self._signal(), what=name)

        call.__name__ = name
        call.__doc__ = verb.__doc__
        return call

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | set(getattr(self.backend, "extra_verbs", ())))

    # -- lifecycle -----------------------------------------------------------------

    def _get_engine(self) -> TransferEngine:
        if self._closed.is_set():
            raise BadInput("this client is closed")
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._executor = cf.ThreadPoolExecutor(
                        max_workers=self.settings.concurrency, thread_name_prefix="upclient-part"
                    )
                    self._engine = TransferEngine(
                        self._executor, self.settings.concurrency, self.settings.retry
                    )
        return self._engine

    def close(self) -> None:
        """Cancel transfers in progress, wait for the worker threads to end, free connections."""
        self._closed.set()
        with self._lock:
            executor, self._executor, self._engine = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self.backend.close()
        deadline.settle(self._closed)

    def _signal(self, cancel: Any = None, timeout: Optional[float] = None) -> StopSignal:
        """A call's deadline and cancel token, also fired by :meth:`close`."""
        return StopSignal(cancel, self._closed, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- uploads -------------------------------------------------------------------

    def put(
        self,
        source: Any,
        key: Optional[str] = None,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        on_progress: Optional[ProgressCallback] = None,
        cancel: Any = None,
        resume: bool = True,
        size: Optional[int] = None,
        timeout: Optional[float] = None,
        journaled: bool = False,
        **options: Any,
    ) -> UploadResult:
        """Upload ``source`` and block until the server has all of it.

        ``source`` is a path, bytes, a binary file object, or a non-seekable
        stream (``size`` may announce its length).  ``key`` names the upload
        (a storage key, or the tus ``filename``).  ``on_progress`` is called
        with :class:`~upclient.Progress` in this thread a few times a second
        and once at the end.  ``cancel`` is an Event-like object; setting it
        stops the upload with :class:`~upclient.errors.Cancelled` and keeps its
        resume point, as Ctrl-C does.  ``timeout`` (seconds for the whole
        upload) does the same with :class:`~upclient.errors.DeadlineExceeded`,
        also a ``TimeoutError``.  Both reach every request in flight at once,
        whatever the server does.  A file uploaded before and interrupted
        resumes from where the server stands, unless ``resume=False``.
        Backend options are keyword arguments.

        ``journaled=True`` is for a job that records each finished file in a
        journal of its own (``upclient sync``, a multi-file ``upclient put``),
        so that a kill between the server finishing an upload and the journal
        holding it makes no second copy where the server names uploads (tus,
        FastDFS).  The file's resume point is then kept after the upload as a
        finished record holding the result, until the job calls
        :meth:`settle` with it; a put of the same unchanged file before that
        returns that result (once the server confirms it still has the
        upload) without sending anything.  A file of one part gets a resume
        point too, saved before its bytes go: on tus its upload is created
        empty and then filled, one round trip more than riding on the POST.
        """
        engine = self._get_engine()
        self.backend.check_put_options(options)
        meta = _check_metadata(metadata)
        if key is not None and (not isinstance(key, str) or not key):
            raise BadInput("key must be a non-empty string")
        if timeout is not None and not timeout > 0:
            raise BadInput(f"timeout must be a positive number of seconds, not {timeout!r}")
        owned = not isinstance(source, Source)
        src = open_source(source, size=size)
        try:
            return self._put(engine, src, key, meta, on_progress, self._signal(cancel, timeout),
                             resume, options, journaled)
        finally:
            if owned:
                src.close()

    def _put(
        self,
        engine: TransferEngine,
        src: Source,
        key: Optional[str],
        meta: dict,
        on_progress: Optional[ProgressCallback],
        stop: StopSignal,
        resume: bool,
        options: Mapping[str, Any],
        journaled: bool = False,
    ) -> UploadResult:
        backend = self.backend
        if src.size is None and not backend.streams:
            raise BadInput(
                f"the {backend.name} backend needs to know the size: pass size= for a stream",
                backend=backend.name,
                operation="put",
            )
        started = time.monotonic()
        multipart = src.size is None or src.size > self.settings.part_size
        # a file of many parts has a resume point anyway; in a journaled put, one of one part gets
        # one where sending it again would store a second copy
        keep = resume and (multipart or (journaled and backend.names_uploads))
        identity = source_identity(src, self.identity, self.backend.digests) if keep else None
        point = ResumePoint(self.store, backend.name, backend.destination(key, options), identity, src.name,
                            server=self._server())
        with point:
            done = point.stored_result() if journaled else None
            if done is not None and self._still_held(done, stop):
                log.info("%s: finished by an earlier run as %s; not sent again", src.name, redact_url(done.id))
                self._hold(point, done)
                return dataclasses.replace(done, elapsed=time.monotonic() - started)
            state = point.stored_state()

            def open_session() -> UploadSession:
                made = backend.open_upload(src, key=key, metadata=meta, options=options, state=state)
                if point.active:
                    # the resume point names the upload before its bytes go (tus: no
                    # creation-with-upload), so a kill at any moment leaves it findable
                    made.point_first = True
                return made.start() or made

            session: UploadSession = self.settings.retry.call(
                open_session, cancel=stop, what=f"opening the upload of {src.name}"
            )
            point.save(session)
            if src.seekable:
                parts: Iterable[Part] = list(session.pending_parts())
                parts_total = session.parts_total
            else:
                assert isinstance(src, StreamSource)
                parts = stream_parts(src, self.settings.part_size, stop)
                parts_total = None
            tracker = ProgressTracker(
                key or src.name,
                src.size,
                parts_total=parts_total,
                done_bytes=session.done_bytes,
                done_parts=(parts_total - len(parts)) if parts_total is not None else 0,  # type: ignore[arg-type]
            )
            try:
                engine.run(
                    session,
                    src,
                    parts,
                    tracker=tracker,
                    stop=stop,
                    on_progress=on_progress,
                    on_part_done=lambda _part: point.save(session),
                )
                src.check_unchanged()
                result = self._finish(engine, session, src, tracker, stop, on_progress, point)
            except SourceChanged:
                point.forget()
                self._abort_quietly(session)
                raise
            except BaseException:
                if not src.seekable and not session.resumed:
                    # nobody can resume a stream: what the server holds of it would stay there for good
                    self._abort_quietly(session)
                else:
                    # a finish may have renamed the upload before it failed (FastDFS regenerate, then
                    # metadata): the next run must look for it under its new name
                    self._save_quietly(point, session)
                raise
            if journaled and point.active:
                point.finish(result, _result_md5(result))
                self._hold(point, result)
            else:
                point.forget()
        return _with_run_facts(result, session, tracker, time.monotonic() - started)

    def _still_held(self, done: UploadResult, stop: StopSignal) -> bool:
        """Whether the server still holds a finished upload, whole (one info request where the
        backend has it; a backend without one is trusted)."""
        try:
            info = self.settings.retry.call(lambda: self.backend.info(done.id), cancel=stop,
                                            what=f"checking {done.id}")
        except NotFound:
            return False
        except Unsupported:
            return True
        return info.complete and (info.size is None or info.size == done.size)

    def _hold(self, point: ResumePoint, result: UploadResult) -> None:
        if point.key is not None:
            with self._lock:
                self._unsettled[result.id] = point.key

    @staticmethod
    def _save_quietly(point: ResumePoint, session: UploadSession) -> None:
        try:
            point.save(session)
        except Exception as exc:  # already failing: the store's error must not mask the upload's
            log.warning("could not record where the upload stands: %s", exc)

    def settle(self, result: UploadResult) -> None:
        """The caller's journal now holds ``result``: drop the finished record a ``journaled`` put kept.

        Nothing happens for a result that has none (a put without
        ``journaled``, a file whose record could not be kept).
        """
        with self._lock:
            key = self._unsettled.pop(result.id, None)
        if key is not None:
            settle(self.store, key, result.id)

    def _abort_quietly(self, session: UploadSession) -> None:
        """Free what the server holds of an upload given up, as far as it can in a bounded time.

        Under a token of its own: the engine has set the call's one to stop the
        parts, and the abort must not wait on a stalled server for long.
        """
        limit = min(self.settings.connect_timeout + self.settings.read_timeout, ABORT_TIMEOUT)
        with contextlib.suppress(UpClientError), self._signal(timeout=limit).bound():
            session.abort()

    def _finish(
        self,
        engine: TransferEngine,
        session: UploadSession,
        src: Source,
        tracker: ProgressTracker,
        stop: StopSignal,
        on_progress: Optional[ProgressCallback],
        point: ResumePoint,
    ) -> UploadResult:
        """Finish the upload; parts the finish says are missing are sent first, by the engine.

        Where the session stands is recorded after each finish that asks for more: one that asks
        for no parts has only changed its state (renamed the upload) and is called again.
        """
        for rounds in range(4):
            outcome = self.settings.retry.call(session.finish, cancel=stop, what="finishing the upload")
            if not isinstance(outcome, MoreParts):
                return outcome
            if rounds == 3:
                break  # three rounds sent, and the server still lacks them
            point.save(session)  # a finish that asks for more may have renamed the upload (FastDFS regenerate)
            if not outcome.parts:
                continue
            if not src.seekable and any(part.data is None for part in outcome.parts):
                raise ServiceError(f"the server lost parts of {src.name}, a stream that cannot be read again "
                                   f"({outcome.reason or 'missing at finish'}); upload it again",
                                   backend=self.backend.name, operation="put")
            log.info("%s: sending %d more part(s) before finishing: %s", src.name, len(outcome.parts),
                     outcome.reason or "the server lacks them")
            for part in outcome.parts:
                tracker.reopen_part(part.index, part.size)
            engine.run(session, src, list(outcome.parts), tracker=tracker, stop=stop, on_progress=on_progress,
                       on_part_done=lambda _part: point.save(session), parallel=outcome.parallel)
            src.check_unchanged()
        raise ServiceError("the server still lacks parts after they were sent three times",
                           backend=self.backend.name, operation="put")

    def put_many(
        self,
        sources: Iterable[Any],
        *,
        keys: Optional[Iterable[Optional[str]]] = None,
        metadata: Optional[Mapping[str, str]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_file_progress: Optional[Callable[[int, Progress], Any]] = None,
        on_file_done: Optional[Callable[[int, PutOutcome], Any]] = None,
        cancel: Any = None,
        resume: bool = True,
        journaled: bool = False,
        **options: Any,
    ) -> List[PutOutcome]:
        """Upload many sources, several at a time; one outcome per source, in order.

        How many go at once is measured, not guessed: from one up to
        ``max_files``, as long as more at once means more files per second
        (see :mod:`upclient.pacing`).  An error uploading one file is kept in
        its outcome and does not stop the others; a cancel, Ctrl-C or a closed
        client stops them all, and a source not started by then gets a
        :class:`~upclient.errors.Cancelled` outcome.

        ``keys`` gives each source its key (one entry per source, None for
        none).  Callbacks run in the thread uploading the file:
        ``on_progress(progress)`` as for :meth:`put`; ``on_file_progress(i,
        progress)`` the same with the index of the source it belongs to (two
        files may share a name); ``on_file_done(i, outcome)`` once as each
        source ends, well or not, so a caller can report it at once.
        ``journaled`` is as for :meth:`put`.
        """
        items = list(sources)
        key_list = list(keys) if keys is not None else [None] * len(items)
        if len(key_list) != len(items):
            raise BadInput("keys must have one entry per source")
        self.backend.check_put_options(options)
        stop = self._signal(cancel)
        outcomes: List[Optional[PutOutcome]] = [None] * len(items)

        pacer = FilePacer(self.settings.max_files)
        queue = iter(range(len(items)))
        queue_lock = threading.Lock()

        def progress_of(i: int) -> Optional[ProgressCallback]:
            if on_file_progress is None:
                return on_progress
            if on_progress is None:
                return lambda p: on_file_progress(i, p)

            def both(p: Progress) -> None:
                on_progress(p)  # type: ignore[misc]
                on_file_progress(i, p)

            return both

        def upload(i: int) -> PutOutcome:
            try:
                r = self.put(items[i], key_list[i], metadata=metadata, on_progress=progress_of(i),
                             cancel=stop, resume=resume, journaled=journaled, **options)
                outcome = PutOutcome(items[i], result=r)
            except UpClientError as exc:
                outcome = PutOutcome(items[i], error=exc)
            outcomes[i] = outcome
            if on_file_done is not None:
                on_file_done(i, outcome)
            return outcome

        def worker() -> None:
            # Each worker takes the next source while the pacer lets it.
            while pacer.acquire(stop):
                with queue_lock:
                    i = None if stop.is_set() else next(queue, None)
                if i is None:
                    pacer.release(finished=False)
                    return
                try:
                    upload(i)
                finally:
                    pacer.release()

        width = min(self.settings.max_files, max(1, len(items)))
        with cf.ThreadPoolExecutor(width, thread_name_prefix="upclient-file") as pool:
            workers = [pool.submit(worker) for _ in range(width)]
            try:
                pending = set(workers)
                while pending:
                    done, pending = cf.wait(pending, timeout=0.2)
                    for f in done:
                        f.result()
            except BaseException:
                stop.set()
                raise
        outcomes = [o if o is not None else PutOutcome(items[i], error=_cancelled()) for i, o in enumerate(outcomes)]
        return [o for o in outcomes if o is not None]

    # -- the other verbs -----------------------------------------------------------

    def get(
        self,
        id: str,
        dest: Any = None,
        *,
        offset: int = 0,
        length: Optional[int] = None,
        on_progress: Optional[ProgressCallback] = None,
        cancel: Any = None,
        timeout: Optional[float] = None,
    ) -> Union[bytes, int]:
        """Download ``length`` bytes (to the end if None) from ``offset``.

        Without ``dest`` the bytes are returned; with a path or a binary file
        object they are written there and the count is returned.  A path is
        written to a temporary file beside it and renamed at the end, so it
        never holds half a download.  A broken download continues from the
        last byte received.  ``on_progress``, ``cancel`` and ``timeout`` work
        as for :meth:`put`.

        To a path, where the backend reads byte ranges, more than
        ``part_size`` bytes go into ``<dest>.upclient-<hash>.part``: one
        stream, split into ranges of ``part_size``, up to ``concurrency`` at a
        time, where more connections measurably pay; an interrupted download
        keeps that file and a resume point in the store, and the next ``get``
        of the same file to the same path fetches only the missing ranges.
        The file is renamed into place once whole, of the right size and,
        where the server keeps one, of the right MD5 or CRC32.
        """
        if not isinstance(offset, int) or offset < 0:
            raise BadInput(f"offset must be a non-negative integer, not {offset!r}")
        if length is not None and (not isinstance(length, int) or length < 0):
            raise BadInput(f"length must be a non-negative integer, not {length!r}")
        if timeout is not None and not timeout > 0:
            raise BadInput(f"timeout must be a positive number of seconds, not {timeout!r}")
        stop = self._signal(cancel, timeout)
        if dest is None:
            buf = io.BytesIO()
            self._download(id, buf.write, offset, length, on_progress, stop)
            return buf.getvalue()
        if isinstance(dest, (str, os.PathLike)):
            if os.path.isdir(dest):
                raise BadInput(f"{dest} is a directory: give a file path")
            parent = os.path.dirname(os.path.abspath(dest))
            if not os.path.isdir(parent):
                raise BadInput(f"cannot write {dest}: no directory {parent}")
            from .download import PathDownload  # the ranged-download machinery, on the first get to a path

            if PathDownload.supported(self.backend):
                s = self.settings
                ranged = PathDownload(self.backend, server=self._server(), store=self.store,
                                      executor=self._get_engine().executor, concurrency=s.concurrency,
                                      part_size=s.part_size, retry=s.retry)
                got = ranged.run(id, os.fspath(dest), offset=offset, length=length, on_progress=on_progress,
                                 stop=stop)
                if got is not None:
                    return got
            tmp = f"{os.fspath(dest)}.upclient-part"
            try:
                with open(tmp, "wb") as f:
                    n = self._download(id, f.write, offset, length, on_progress, stop)
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return n
        if hasattr(dest, "write"):
            return self._download(id, dest.write, offset, length, on_progress, stop)
        raise BadInput("dest must be a path or a binary file object")

    def _download(
        self,
        id: str,
        write: Callable[[bytes], Any],
        offset: int,
        length: Optional[int],
        on_progress: Optional[ProgressCallback],
        stop: StopSignal,
    ) -> int:
        got = 0
        total = length
        if on_progress is not None and total is None:
            with contextlib.suppress(UpClientError):  # no size known: the bar just counts
                size = self.info(id).size
                total = None if size is None else max(0, size - offset)
        tracker = ProgressTracker(id.rsplit("/", 1)[-1] or id, total)
        count = tracker.reader(0)
        next_report = [0.0]

        def sink(block: bytes) -> None:
            nonlocal got
            if stop.is_set():
                raise stop.error()
            write(block)
            got += len(block)
            count(len(block))
            if on_progress is not None and time.monotonic() >= next_report[0]:
                next_report[0] = time.monotonic() + 0.2
                on_progress(tracker.snapshot())

        def attempt() -> int:
            remaining = None if length is None else length - got
            if remaining == 0:
                return got
            self.backend.download(id, sink, offset=offset + got, length=remaining)
            return got

        seen = [0]

        def progressed() -> bool:  # a download that advances keeps its retry budget
            advanced, seen[0] = got > seen[0], got
            return advanced

        n = self.settings.retry.call(attempt, cancel=stop, what=f"downloading {id}", progressed=progressed)
        if on_progress is not None:
            tracker.finish_part(0, got)
            on_progress(tracker.snapshot())
        return n

    def info(self, id: str) -> FileInfo:
        """What the server knows about ``id``: size, metadata, upload progress."""
        return self.settings.retry.call(lambda: self.backend.info(id), cancel=self._signal(), what="info")

    def exists(self, id: str) -> bool:
        """Whether ``id`` is on the server."""
        return self.settings.retry.call(lambda: self.backend.exists(id), cancel=self._signal(), what="exists")

    def delete(self, id: str) -> None:
        """Remove ``id`` from the server."""
        self.settings.retry.call(lambda: self.backend.delete(id), cancel=self._signal(), what="delete")

    def abort(self, target: Union[str, "os.PathLike[str]"]) -> int:
        """Abandon unfinished uploads on the server and forget their resume points.

        ``target`` is an upload's id, or the path of a local file whose
        interrupted upload (to this client's destination) should be given up:
        the form to use when the upload went in parallel parts and has no
        single id yet.  Returns how many uploads were abandoned.  A finished
        upload that a ``journaled`` put kept a record of is not abandoned:
        the record is just forgotten.
        """
        records = []
        for rkey in list(self.store.keys()):
            record = self.store.load(rkey)
            if (record is not None and record.get("backend") == self.backend.name
                    and record.get("server") in (None, self._server())):  # None: a record of an older upclient
                records.append((rkey, record))
        path = os.fspath(target)
        if os.path.isfile(path):
            where = os.path.realpath(path)
            with open_source(path) as src:  # a record kept under another kind of identity than "local"
                own = source_identity(src, self.identity, self.backend.digests)
            mine = [(k, r) for k, r in records if (r.get("identity") or {}).get("path") == where
                    or r.get("identity") == own]
            abandoned = 0
            for rkey, record in mine:
                if not is_finished(record):  # a finished upload is the caller's file: only its record goes
                    state = record["state"]
                    self.settings.retry.call(lambda st=state: self.backend.abort_state(st),  # type: ignore[misc]
                                             cancel=self._signal(), what="abort")
                    abandoned += 1
                self.store.delete(rkey)
            return abandoned
        self.settings.retry.call(lambda: self.backend.abort(path), cancel=self._signal(), what="abort")
        for rkey, record in records:
            if record.get("id") == path:
                self.store.delete(rkey)
        return 1

    def _server(self) -> str:
        """This client's server as resume records name it: its URL without credentials."""
        return redact_url(self.backend.url)

    def iter(self, prefix: str = "", **options: Any) -> Iterator[FileInfo]:
        """Every stored file under ``prefix``, page by page, lazily.

        Each page is fetched under the client's cancel token: ``close()``
        stops a listing waiting on a silent server.
        """
        signal = self._signal()
        with signal.bound():
            pages = self.backend.iter(prefix, **options)  # bad options fail here, not at the first page

        def each() -> Iterator[FileInfo]:
            while True:
                with signal.bound():
                    try:
                        item = next(pages)
                    except StopIteration:
                        return
                yield item

        return each()


def _cancelled() -> UpClientError:
    from .errors import Cancelled

    return Cancelled("upload cancelled")


def _result_md5(result: UploadResult) -> Optional[str]:
    """The MD5 the server gave for an upload, where it gives one."""
    stored = getattr(result, "file", None)  # the community API's file object
    md5 = getattr(stored, "file_md5", None) or result.extra.get("md5")
    return str(md5).lower() if md5 else None


def _with_run_facts(
    result: UploadResult, session: UploadSession, tracker: ProgressTracker, elapsed: float
) -> UploadResult:
    return dataclasses.replace(
        result,
        resumed=session.resumed,
        sent_bytes=tracker.sent_bytes,
        elapsed=elapsed,
        expires=result.expires if result.expires is not None else session.expires,
    )
