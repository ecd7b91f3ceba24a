"""``upclient sync SRC DST``: a tree (or a backend's files) made present on a backend; re-runs do what is left.

SRC is a local folder, a backend that lists (``upyun://...``,
``community+https://...``), or, with ``--from-list FILE``, a backend whose
files the list names (FastDFS ids, tus upload URLs).  DST is any backend.
The run is :class:`upclient.sync.SyncRun`; this module turns the command line
into it, shows its progress on a terminal, reports each file (a line, or a
JSON object with ``--json``) and a summary, and returns the exit status of
:mod:`.exits`.  A second run of the same job while one runs exits with
``EXIT_LOCKED`` at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from ..client import Client
from ..transfer import StopSignal
from ..journal import Journal
from ..store import FileStore
from ..sync import (
    JobLock,
    Locked,
    Plan,
    Skipped,
    SourceFile,
    SyncEvent,
    SyncRun,
    SyncSummary,
    backend_files,
    listed_files,
    normalise_prefix,
    read_id_list,
    walk_tree,
)
from ..sync.listing import lists
from .args import UsageError
from .command import INTERRUPTED_MESSAGE, Command
from .display import ProgressDisplay, format_bytes
from .exits import EXIT_INTERRUPTED, EXIT_LOCKED, exit_status, worst_status
from .put import CLOSE_GRACE, _InThread, _wait_stopped

__all__ = ["sync", "COPY_PART_SIZE"]

#: The part size of a copy from a backend when no --part-size is given: a
#: copy holds its parts in memory (a stream cannot be read twice), so they
#: are smaller than a file's.
COPY_PART_SIZE = 6 * 1024 * 1024

#: The credential and endpoint flags, each given to the backends that take it.
def _client(cmd: Command, url: str, **extra: Any) -> Client:
    """A client of ``url`` with the command's settings, and only the credentials its backend takes."""
    return cmd.client(url, only_its_own=True, **extra)


def _job(kind: str, source: str, destination: Client, prefix: str, source_prefix: str) -> List[str]:
    """What names the job, and so its journal and lock: no credentials in it."""
    return ["sync", kind, source, source_prefix, destination.backend.destination(None, {}), prefix]


class _Report:
    """Each file's line (or JSON object) and the summary."""

    def __init__(self, cmd: Command) -> None:
        self.cmd = cmd

    def event(self, e: SyncEvent) -> None:
        cmd, a = self.cmd, self.cmd.args
        if a.json:
            obj: Dict[str, Any] = {"key": e.key, "action": e.action, "bytes": e.bytes, "id": e.id}
            if e.source is not None:
                obj["source"] = e.source
            if e.reason:
                obj["reason"] = e.reason
            if e.action == "uploaded":
                obj.update(resumed=e.resumed, sent_bytes=e.sent_bytes)
            if e.error is not None:
                obj["error"] = cmd.error_obj(e.error)
            cmd.emit_json(obj)
            if e.error is None:
                return
        if e.action == "failed":
            assert e.error is not None
            why = f" ({e.reason})" if e.reason else ""
            cmd.err(f"error: {e.key}{why}: {e.error} [{type(e.error).__name__}]")
            return
        if a.quiet:
            return
        if e.action in ("skipped", "skip"):
            if a.verbose:
                cmd.out(f"{'skipped' if e.action == 'skipped' else 'would skip'} {e.key} ({e.reason})")
            return
        where = f" -> {e.id}" if e.id and e.id != e.key else ""
        if e.action == "uploaded":
            how = f"resumed, sent {format_bytes(e.sent_bytes)} of " if e.resumed else ""
            cmd.out(f"uploaded {e.key}{where} ({how}{format_bytes(e.bytes)}, {e.reason})")
        elif e.action == "upload":
            cmd.out(f"would upload {e.key} ({format_bytes(e.bytes)}, {e.reason})")
        elif e.action == "deleted":
            cmd.out(f"deleted {e.key}{where}")
        elif e.action == "delete":
            cmd.out(f"would delete {e.key}{where}")

    def summary(self, s: SyncSummary, status: int) -> None:
        cmd, a = self.cmd, self.cmd.args
        if a.json:
            cmd.emit_json({"summary": True, "uploaded": s.uploaded, "skipped": s.skipped, "failed": s.failed,
                           "deleted": s.deleted, "bytes": s.bytes_uploaded, "sent_bytes": s.bytes_sent,
                           "elapsed": round(s.elapsed, 3), "dry_run": s.dry_run, "interrupted": s.interrupted,
                           "status": status})
            return
        if s.dry_run:
            line = (f"dry run: {s.uploaded} to upload ({format_bytes(s.bytes_uploaded)}), {s.skipped} to skip, "
                    f"{s.deleted} to delete, {s.failed} failed; nothing was changed")
        else:
            line = (f"{s.uploaded} uploaded ({format_bytes(s.bytes_uploaded)}), {s.skipped} skipped, "
                    f"{s.deleted} deleted, {s.failed} failed in {s.elapsed:.1f} s")
        if s.interrupted:
            cmd.err(f"{line}; {INTERRUPTED_MESSAGE}")
        elif s.failed:
            cmd.err(line)
        elif not a.quiet:
            cmd.out(line)


def _source(cmd: Command) -> Any:
    """(kind, what names it, the source client or None, what it holds): from SRC and its flags."""
    a = cmd.args
    if a.from_list is not None:
        if "://" not in a.src:
            raise UsageError("--from-list FILE names ids on a backend: SRC must be that backend's URL")
        if a.source_prefix:
            raise UsageError("--source-prefix is for a source that lists, not for --from-list")
        client = _client(cmd, a.src, store=None)
        if a.from_list == "-":
            ids = read_id_list(sys.stdin)
            name = "-"
        else:
            try:
                with open(a.from_list, encoding="utf-8") as f:
                    ids = read_id_list(f)
            except FileNotFoundError:
                raise FileNotFoundError(f"no such list file: {a.from_list}") from None
            name = os.path.abspath(a.from_list)
        found: Iterable[Union[SourceFile, Skipped]] = listed_files(client, ids)
        return "list", f"{name}|{client.backend.destination(None, {})}", client, found
    if "://" in a.src:
        client = _client(cmd, a.src, store=None)
        if not lists(client):
            client.close()
            raise UsageError(f"the {client.backend.name} backend cannot list its files: name them in a file "
                             "and give it with --from-list FILE")
        source_prefix = normalise_prefix(a.source_prefix)
        return "backend", client.backend.destination(None, {}), client, backend_files(client, source_prefix)
    if a.source_prefix:
        raise UsageError("--source-prefix is for a source backend; for a folder, give the folder")
    root = Path(a.src)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {a.src}")
    if not root.is_dir():
        raise UsageError(f"{a.src} is not a folder: sync takes a folder (upclient put takes files)")
    return "dir", str(root.resolve()), None, walk_tree(root, follow_symlinks=a.follow_symlinks)


def sync(cmd: Command) -> int:
    """Run one sync; report each file and a summary; the exit status."""
    a = cmd.args
    if a.follow_symlinks and ("://" in a.src or a.from_list is not None):
        raise UsageError("--follow-symlinks is for a local folder")
    prefix = normalise_prefix(a.prefix)
    report = _Report(cmd)
    try:
        kind, source_name, src_client, found = _source(cmd)
    except FileNotFoundError as exc:
        cmd.report_failure(exc)
        return exit_status(exc)
    extra: Dict[str, Any] = {opt: getattr(a, opt) for opt in ("part_size", "concurrency", "max_files")
                             if getattr(a, opt) is not None}
    if src_client is not None and "part_size" not in extra:
        extra["part_size"] = COPY_PART_SIZE
    extra["store"] = FileStore(a.store) if a.store else FileStore()
    try:
        dst_client = _client(cmd, a.dst, **extra)
    except BaseException:
        if src_client is not None:
            src_client.close()
        raise
    with dst_client, (src_client or contextlib.nullcontext()):
        if a.delete and not lists(dst_client):
            raise UsageError(f"--delete needs a destination that lists its files (upyun, community); "
                             f"the {dst_client.backend.name} backend cannot")
        journal = Journal.for_job(_job(kind, source_name, dst_client, prefix, normalise_prefix(a.source_prefix)),
                                  a.store)
        lock = JobLock(journal.lock_path)
        try:
            lock.acquire()
        except Locked as exc:
            cmd.report_failure(exc)
            return EXIT_LOCKED
        try:
            return _run(cmd, report, dst_client, src_client, journal, prefix, found)
        finally:
            journal.close()
            lock.release()


def _run(cmd: Command, report: _Report, dst: Client, src: Optional[Client], journal: Journal, prefix: str,
         found: Iterable[Union[SourceFile, Skipped]]) -> int:
    a = cmd.args
    cancel = StopSignal()  # tells the requests in flight itself when set: no watchdog polls it
    show_bar = not (a.quiet or a.json or a.no_progress) and sys.stderr.isatty()

    def planned(plan: Plan) -> None:
        if not a.dry_run and plan.uploads:
            label = "1 file" if len(plan.uploads) == 1 else f"{len(plan.uploads)} files"
            cmd.display = ProgressDisplay(show_bar, label, plan.upload_bytes, files=len(plan.uploads))

    run = SyncRun(
        dst, journal, prefix=prefix, source=src, dry_run=a.dry_run, delete=a.delete,
        check_server=not a.trust_journal, on_event=report.event, on_plan=planned,
        on_file_progress=(lambda i, p: cmd.display.update(i, p)) if show_bar else None,
        on_file_done=lambda i, size: cmd.display.file_finished(i, size),
        cancel=cancel,
    )
    job = _InThread(lambda: run.run(found))
    try:
        summary = job.result()
    except KeyboardInterrupt:
        cancel.set()
        _wait_stopped(cmd, job)
        _InThread(dst.close).wait(CLOSE_GRACE)
        cmd.display.close()
        summary = run.summary
        summary.interrupted = True
        report.summary(summary, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    cmd.display.close()
    status = EXIT_INTERRUPTED if summary.interrupted else worst_status(exit_status(e) for e in summary.errors)
    report.summary(summary, status)
    return status

