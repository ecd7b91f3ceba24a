"""``upclient put``: files uploaded by :meth:`Client.put_many`, one progress line for all.

The library schedules the files (how many at once is measured, see
:mod:`upclient.pacing`); the command shows their progress, reports each one
as it ends and turns the outcomes into an exit status.  ``put_many`` runs in
a thread of its own so that Ctrl-C reaches the main thread at once, which
fires the cancel token: the requests in flight are shut down and the
resume points kept.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from typing import Any, Callable, Dict, Generic, List, Optional, Sequence, TypeVar

from ..errors import BadInput, Cancelled
from ..result import PutOutcome, UploadResult
from ..store import FileStore
from .args import UsageError, put_options
from .command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, INTERRUPTED_MESSAGE, Command
from .display import ProgressDisplay, format_bytes

__all__ = ["put"]

T = TypeVar("T")

#: How long after Ctrl-C the uploads may take to stop before the command says it waits.
STOP_GRACE = 3.0
#: How long the client then has to end its worker threads before the command exits without them.
CLOSE_GRACE = 2.0


def _check_files(cmd: Command, files: Sequence[str]) -> List[Optional[int]]:
    """Sizes of the files (None for stdin and pipes); BadInput before anything is sent."""
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    if cmd.args.key is not None and len(files) > 1:
        raise UsageError("--key names one upload: give a single FILE")
    sizes: List[Optional[int]] = []
    for f in files:
        if f == "-":
            sizes.append(None)
            continue
        try:
            st = os.stat(f)
        except FileNotFoundError:
            raise BadInput(f"no such file: {f}") from None
        except OSError as exc:
            raise BadInput(f"cannot read {f}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{f} is a directory (upload the files in it, or an archive of it)")
        if not os.access(f, os.R_OK):
            raise BadInput(f"cannot read {f}: permission denied")
        sizes.append(st.st_size if stat.S_ISREG(st.st_mode) else None)
    return sizes


def put(cmd: Command) -> int:
    """Upload the files with ``put_many``; report each as it ends; the exit status of them all."""
    a = cmd.args
    files: List[str] = list(a.files)
    sizes = _check_files(cmd, files)
    show_bar = not (a.quiet or a.json or a.no_progress) and sys.stderr.isatty()
    total = None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
    label = a.key or ("stdin" if files[0] == "-" else os.path.basename(files[0]))
    if "-" in files and sys.stdin.isatty() and not a.quiet:
        cmd.err("reading standard input from the terminal; end it with Ctrl-D")
    options = put_options(a.option)
    if a.category:
        options["category"] = a.category
    cancel = threading.Event()
    outcomes: Dict[int, PutOutcome] = {}

    def file_done(i: int, outcome: PutOutcome) -> None:
        outcomes[i] = outcome
        if outcome.result is not None:
            cmd.display.file_finished(i, outcome.result.size)
            _report_put(cmd, files[i], outcome.result)
        elif not (isinstance(outcome.error, Cancelled) and cancel.is_set()):
            assert outcome.error is not None
            cmd.report_failure(outcome.error, files[i])

    with cmd.client(**_client_settings(cmd)) as client:
        cmd.display = ProgressDisplay(show_bar, label, total, files=len(files))
        sources = [sys.stdin.buffer if f == "-" else f for f in files]
        run = _InThread(
            lambda: client.put_many(
                sources,
                keys=[a.key] if a.key is not None else None,
                metadata=dict(a.metadata),
                on_file_progress=cmd.display.update,
                on_file_done=file_done,
                cancel=cancel,
                **options,
            )
        )
        try:
            results = run.result()
        except KeyboardInterrupt:
            cancel.set()
            _wait_stopped(cmd, run)
            closed = _InThread(client.close).wait(CLOSE_GRACE)
            _report_interrupted(cmd, files, outcomes)
            if not closed:
                # A thread is stuck where no cancel reaches (a read of standard input
                # that never returns) and the interpreter would wait for it at exit.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)
            return EXIT_INTERRUPTED
        finally:
            cancel.set()
    errors = [o.error for o in results if o.error is not None]
    if any(isinstance(e, BadInput) for e in errors):
        return EXIT_USAGE
    return EXIT_FAILED if errors else EXIT_OK


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
