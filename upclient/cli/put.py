"""``upclient put``: files uploaded by :meth:`Client.put_many`, one progress line for all.

The library schedules the files (how many at once is measured, see
:mod:`upclient.pacing`); the command shows their progress, reports each one
as it ends and turns the outcomes into an exit status (:mod:`.exits`: the
worst of the files').  ``put_many`` runs in a thread of its own so that
Ctrl-C reaches the main thread at once, which fires the cancel token: the
requests in flight are shut down and the resume points kept.

A file that cannot be read (missing, a folder) is reported and the others
go on.  The files finished are kept in a journal (:mod:`upclient.journal`)
until the whole command has finished, so a re-run of an interrupted or
partly failed command never uploads a finished file a second time.
Standard input of unknown size goes to a backend that needs the size first
(UPYUN) through an anonymous temporary file (:func:`spool_stdin`); ``--size``
spares it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import tempfile
import threading
from typing import IO, Any, Callable, Dict, Generic, List, Optional, Sequence, TypeVar

from ..client import Client
from ..errors import BadInput, Cancelled
from ..transfer import StopSignal
from ..journal import Journal, JournalEntry
from ..result import PutOutcome, UploadResult
from ..source import Source, open_source
from ..store import FileStore
from .args import UsageError, put_options
from .command import INTERRUPTED_MESSAGE, Command
from .display import ProgressDisplay, format_bytes
from .exits import EXIT_INTERRUPTED, EXIT_OK, exit_status, worst_status

__all__ = ["put", "spool_stdin"]

T = TypeVar("T")

#: How long after Ctrl-C the uploads may take to stop before the command says it waits.
STOP_GRACE = 3.0
#: How long the client then has to end its worker threads before the command exits without them.
CLOSE_GRACE = 2.0


@dataclasses.dataclass
class _File:
    """One FILE argument: what it is, and what became of it."""

    arg: str
    size: Optional[int] = None
    stat: Optional[os.stat_result] = None
    error: Optional[BaseException] = None
    done: Optional[JournalEntry] = None  # finished by an earlier run of the same command

    @property
    def path(self) -> Optional[str]:
        """The real path of a regular file (what the journal knows it by)."""
        return os.path.realpath(self.arg) if self.stat is not None and stat.S_ISREG(self.stat.st_mode) else None


def _check_args(cmd: Command, files: Sequence[str]) -> None:
    a = cmd.args
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    if a.key is not None and len(files) > 1:
        raise UsageError("--key names one upload: give a single FILE")
    if a.size is not None and "-" not in files:
        raise UsageError("--size is the size of standard input: give - as a FILE")


def _look(arg: str) -> _File:
    """What a FILE argument is; an error for one that cannot be uploaded (the others still go)."""
    if arg == "-":
        return _File(arg)
    try:
        st = os.stat(arg)
    except FileNotFoundError:
        return _File(arg, error=FileNotFoundError(f"no such file: {arg}"))
    except OSError as exc:
        return _File(arg, error=BadInput(f"cannot read {arg}: {exc.strerror}"))
    if stat.S_ISDIR(st.st_mode):
        return _File(arg, error=BadInput(f"{arg} is a directory (upload the files in it with upclient sync, "
                                         "or an archive of it)"))
    if not os.access(arg, os.R_OK):
        return _File(arg, error=PermissionError(f"cannot read {arg}: permission denied"))
    return _File(arg, size=st.st_size if stat.S_ISREG(st.st_mode) else None, stat=st)


def spool_stdin(stream: IO[bytes], directory: Optional[str] = None) -> IO[bytes]:
    """All of ``stream`` in an anonymous temporary file, read back from its start.

    The file has no name from the start (it is gone when closed, or when the
    process dies in any way) and grows as big as the input: bounded by the
    disk of ``$TMPDIR`` (or ``directory``), not by memory.
    """
    spool = tempfile.TemporaryFile(prefix="upclient-stdin-", dir=directory)
    try:
        while True:
            block = stream.read(1024 * 1024)
            if not block:
                break
            spool.write(block)
        spool.flush()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _job(client: Client, cmd: Command, options: Dict[str, Any], files: Sequence[_File]) -> List[Any]:
    """What names this command for its journal: where it goes, how, and which files (no credentials)."""
    a = cmd.args
    # the arguments as given, missing files too: the re-run after one is created is the same command
    paths = sorted(os.path.abspath(f.arg) for f in files if f.arg != "-")
    return ["put", client.backend.destination(None, {}), a.key, options, sorted(a.metadata), paths]


def put(cmd: Command) -> int:
    """Upload the files with ``put_many``; report each as it ends; the exit status of them all."""
    a = cmd.args
    _check_args(cmd, a.files)
    files = [_look(f) for f in a.files]
    statuses: List[int] = []
    for f in files:
        if f.error is not None:
            cmd.report_failure(f.error, f.arg)
            statuses.append(exit_status(f.error))
    if "-" in a.files and sys.stdin.isatty() and not a.quiet:
        cmd.err("reading standard input from the terminal; end it with Ctrl-D")
    options = put_options(a.option)
    if a.category:
        options["category"] = a.category
    with cmd.client(**_client_settings(cmd)) as client:
        journal = None
        if not a.no_resume and any(f.path is not None for f in files):
            journal = Journal.for_job(_job(client, cmd, options, files), a.store or None)
            _recall(journal, files)
        for f in files:
            if f.done is not None:
                _report_done_before(cmd, f)
        todo = [i for i, f in enumerate(files) if f.error is None and f.done is None]
        if not todo:
            return _end(journal, statuses)
        status, finished = _upload(cmd, client, files, todo, options, journal)
        statuses.extend(status)
        if not finished:
            return EXIT_INTERRUPTED
        return _end(journal, statuses)


def _recall(journal: Journal, files: Sequence[_File]) -> None:
    """Mark the files an earlier run of this command finished and that have not changed since."""
    known = journal.load()
    for f in files:
        path = f.path
        if path is None or f.stat is None:
            continue
        entry = known.get((path, ""))
        if entry is not None and entry.same_source(f.stat.st_size, f.stat.st_mtime_ns, f.stat.st_ino):
            f.done = entry


def _end(journal: Optional[Journal], statuses: List[int]) -> int:
    """The exit status; a journal whose every file finished has done its job and goes."""
    status = worst_status(statuses)
    if journal is not None:
        if status == EXIT_OK:
            journal.remove()
        else:
            journal.close()
    return status


def _upload(cmd: Command, client: Client, files: List[_File], todo: List[int], options: Dict[str, Any],
            journal: Optional[Journal]) -> "tuple[List[int], bool]":
    """put_many of the files ``todo`` names; (their exit statuses, whether it ran to its end)."""
    a = cmd.args
    sources: List[Any] = []
    owned: List[IO[bytes]] = []  # spools, closed (and so gone) at the end
    for i in todo:
        f = files[i]
        if f.arg == "-":
            sources.append(_stdin_source(cmd, client, f, owned))
        else:
            sources.append(f.arg)
    sizes = [files[i].size for i in todo]
    show_bar = not (a.quiet or a.json or a.no_progress) and sys.stderr.isatty()
    total = None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
    first = files[todo[0]].arg
    label = a.key or ("stdin" if first == "-" else os.path.basename(first))
    cancel = StopSignal()  # tells the requests in flight itself when set: no watchdog polls it
    outcomes: Dict[int, PutOutcome] = {}
    statuses: List[int] = []

    def file_done(n: int, outcome: PutOutcome) -> None:
        i = todo[n]
        outcomes[i] = outcome
        f = files[i]
        if outcome.result is not None:
            r = outcome.result
            if journal is not None and f.path is not None and f.stat is not None:
                journal.record(JournalEntry(path=f.path, destination="", size=r.size, mtime_ns=f.stat.st_mtime_ns,
                                            inode=f.stat.st_ino, id=r.id))
                client.settle(r)  # the journal holds it: its finished record (see journaled below) goes
            cmd.display.file_finished(n, r.size)
            _report_put(cmd, f.arg, r)
        elif not (isinstance(outcome.error, Cancelled) and cancel.is_set()):
            assert outcome.error is not None
            statuses.append(exit_status(outcome.error))
            cmd.report_failure(outcome.error, f.arg)

    cmd.display = ProgressDisplay(show_bar, label, total, files=len(todo))
    run = _InThread(
        lambda: client.put_many(
            sources,
            keys=[a.key] if a.key is not None else None,
            metadata=dict(a.metadata),
            on_file_progress=cmd.display.update,
            on_file_done=file_done,
            cancel=cancel,
            # a finished file's resume point is kept until the journal holds it, so a kill
            # in between does not send it again (where the server names uploads: tus, FastDFS)
            journaled=journal is not None,
            **options,
        )
    )
    try:
        run.result()
    except KeyboardInterrupt:
        cancel.set()
        _wait_stopped(cmd, run)
        closed = _InThread(client.close).wait(CLOSE_GRACE)
        _report_interrupted(cmd, [files[i].arg for i in todo], {n: outcomes[i] for n, i in enumerate(todo)
                                                                 if i in outcomes})
        if not closed:
            # A thread is stuck where no cancel reaches, and the interpreter would
            # wait for it at exit.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return statuses, False
    finally:
        cancel.set()
        for src in sources:
            if isinstance(src, Source):
                src.close()
        for spool in owned:
            spool.close()
    return statuses, True


def _stdin_source(cmd: Command, client: Client, f: _File, owned: List[IO[bytes]]) -> Source:
    """Standard input as the backend can take it: a stream, of the size --size gives if any; spooled
    to a temporary file when its size is unknown and the backend needs it first."""
    a = cmd.args
    stdin = sys.stdin.buffer
    if a.size is None and not client.backend.streams:
        spool = spool_stdin(stdin)
        owned.append(spool)
        src = open_source(spool)
    else:
        src = open_source(stdin, size=a.size)
    f.size = src.size
    return src


def _report_done_before(cmd: Command, f: _File) -> None:
    """A file an earlier run of this command finished: reported as done, not sent again."""
    e = f.done
    assert e is not None
    if cmd.args.json:
        cmd.emit_json({"file": f.arg, "ok": True, "id": e.id, "url": None, "size": e.size, "resumed": False,
                       "deduplicated": False, "sent_bytes": 0, "elapsed": 0.0, "expires": None,
                       "skipped": True})
    elif cmd.args.quiet:
        cmd.out(e.id)
    else:
        cmd.out(f"{f.arg} -> {e.id}  (finished by an earlier run of this command; not sent again)")


def _client_settings(cmd: Command) -> Dict[str, Any]:
    """The Client settings only put has flags for."""
    a = cmd.args
    extra: Dict[str, Any] = {opt: getattr(a, opt) for opt in ("part_size", "concurrency", "max_files")
                             if getattr(a, opt) is not None}
    if a.no_resume:
        extra["store"] = None
    elif a.store:
        extra["store"] = FileStore(a.store)
    return extra


def _report_interrupted(cmd: Command, files: Sequence[str], outcomes: Dict[int, PutOutcome]) -> None:
    """After Ctrl-C: a JSON line for each file that did not end, and how to resume."""
    cmd.display.close()
    if cmd.args.json:
        for i, f in enumerate(files):
            o = outcomes.get(i)
            if o is None or isinstance(o.error, Cancelled):
                cmd.emit_json({"file": f, "ok": False, "error": {"type": "Interrupted", "message": "interrupted"}})
    hint = INTERRUPTED_MESSAGE
    if "-" in files:
        hint += " (standard input cannot be resumed: it is sent again from its start)"
    cmd.err(hint)


class _InThread(Generic[T]):
    """A call run in a thread of its own, waited for in short slices (Ctrl-C gets through).

    The wait is on an Event, not ``Thread.join``: a KeyboardInterrupt that
    lands inside ``join`` can leave a running thread marked as stopped
    (CPython 3.11), and the command would believe its uploads had ended.
    """

    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._value: Optional[T] = None
        self._error: Optional[BaseException] = None
        self._ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="upclient-cli", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the main thread
            self._error = exc
        finally:
            self._ended.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Whether the call ended within ``timeout`` seconds (None: wait for it)."""
        return self._ended.wait(timeout)

    def result(self) -> T:
        while not self.wait(0.2):
            pass
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def _wait_stopped(cmd: Command, run: "_InThread[Any]") -> None:
    """After Ctrl-C: let the uploads stop and save their resume points.

    The cancel shuts down the requests in flight, so this takes a moment;
    should it take longer, a second Ctrl-C quits at once (resume points are
    written atomically, so what is on disk stays usable).
    """
    try:
        if not run.wait(STOP_GRACE):
            cmd.err("waiting for the requests in flight to stop (Ctrl-C again to quit now)")
            while not run.wait(0.2):
                pass
    except KeyboardInterrupt:
        cmd.display.close()
        cmd.err(INTERRUPTED_MESSAGE)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def _report_put(cmd: Command, file: str, r: UploadResult) -> None:
    if cmd.args.json:
        cmd.emit_json(
            {
                "file": file,
                "ok": True,
                "id": r.id,
                "url": r.url,
                "size": r.size,
                "resumed": r.resumed,
                "deduplicated": r.deduplicated,
                "sent_bytes": r.sent_bytes,
                "elapsed": round(r.elapsed, 3),
                "expires": r.expires,
            }
        )
        return
    if cmd.args.quiet:
        cmd.out(r.id)
        return
    rate = r.sent_bytes / r.elapsed if r.elapsed > 0 else 0.0
    how = f"{format_bytes(r.size)} in {r.elapsed:.1f} s, {format_bytes(rate)}/s"
    if r.deduplicated:
        how = f"{format_bytes(r.size)}, deduplicated: the server had it, nothing sent"
    elif r.resumed:
        how = f"resumed: re-sent {format_bytes(r.sent_bytes)} of {format_bytes(r.size)} in {r.elapsed:.1f} s"
    name = "stdin" if file == "-" else file
    cmd.out(f"{name} -> {r.id}  ({how})")

# get, info, rm, ls ----------------------------------------------------------
