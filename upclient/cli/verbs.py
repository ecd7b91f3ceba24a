"""The verbs besides put: get, info, rm, abort, ls, and the storage verbs mkdir, mv, cp, purge.

Each returns an exit status of :mod:`.exits`; what a verb raises becomes one
in :meth:`.Command.run`.  ``rm`` deletes on the server, always; ``abort``
gives up a local file's interrupted upload: neither guesses from what the
working directory holds.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from typing import Any, Callable, Dict, List

from ..client import Client
from ..errors import BadInput, NotFound, UpClientError, Unsupported
from ..store import FileStore
from .args import UsageError
from .command import Command
from .exits import EXIT_FAILED, EXIT_OK
from .display import ProgressDisplay, format_bytes
from .exits import exit_status

__all__ = ["get", "info", "rm", "abort", "ls", "mkdir", "mv", "cp", "purge"]


def get(cmd: Command) -> int:
    a = cmd.args
    if a.dest is None and sys.stdout.isatty():
        raise UsageError("refusing to write the file's bytes to the terminal: give a DEST file, "
                         "pipe the output, or pass - as DEST to write them to the terminal anyway")
    client = cmd.client()
    show_bar = not (a.quiet or a.json or getattr(a, "no_progress", False)) and sys.stderr.isatty()
    total = a.length
    if show_bar and total is None:  # for a bar with a percentage; without a size it just counts
        with contextlib.suppress(UpClientError):
            size = client.info(a.id).size
            total = None if size is None else max(0, size - (a.offset or 0))
    cmd.display = ProgressDisplay(show_bar, os.path.basename(a.id.rstrip("/")) or a.id, total)
    progress = (lambda p: cmd.display.update(0, p)) if show_bar else None
    with client:
        if a.dest in (None, "-"):
            out = sys.stdout.buffer
            try:
                client.get(a.id, out, offset=a.offset, length=a.length, on_progress=progress)
                out.flush()
            except BrokenPipeError:
                # The reader went away (e.g. `| head`): not worth a message.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
                return EXIT_FAILED
        else:
            # With a destination, get returns the byte count (typed Union[bytes, int]).
            n = int(client.get(a.id, a.dest, offset=a.offset, length=a.length, on_progress=progress))
    cmd.display.close()
    if a.dest in (None, "-"):
        return EXIT_OK  # stdout holds the bytes: nothing else goes there
    if a.json:
        cmd.emit_json({"id": a.id, "ok": True, "dest": a.dest, "bytes": n})
    elif not a.quiet:
        cmd.err(f"wrote {format_bytes(n)} ({n} bytes) to {a.dest}")
    return EXIT_OK

def info(cmd: Command) -> int:
    with cmd.client() as client:
        info = client.info(cmd.args.id)
    if cmd.args.json:
        cmd.emit_json(
            {
                "id": info.id,
                "ok": True,
                "size": info.size,
                "complete": info.complete,
                "offset": info.offset,
                "content_type": info.content_type,
                "modified": info.modified,
                "expires": info.expires,
                "metadata": dict(info.metadata),
                "extra": {k: v for k, v in info.extra.items() if isinstance(v, (str, int, float, bool))},
            }
        )
        return EXIT_OK
    rows = [
        ("id", info.id),
        ("size", "unknown (deferred)" if info.size is None else f"{info.size} ({format_bytes(info.size)})"),
        ("complete", "yes" if info.complete else f"no, {info.offset} bytes received"),
        ("content type", info.content_type or "-"),
    ]
    if info.modified is not None:
        rows.append(("modified", _iso(info.modified)))
    if info.expires is not None:
        rows.append(("expires", _iso(info.expires)))
    for k, v in sorted(info.metadata.items()):
        rows.append((f"metadata {k}", v))
    for k, v in info.extra.items():  # what only this backend tells (FastDFS: crc32, source ip...)
        if isinstance(v, (str, int, float, bool)):
            rows.append((k.replace("_", " "), f"{v:#010x}" if k == "crc32" else str(v)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        cmd.out(f"{k:<{width}}  {v}")
    return EXIT_OK

def rm(cmd: Command) -> int:
    """Delete ID on the server, whatever the working directory holds."""
    a = cmd.args
    with cmd.client() as client:
        try:
            client.delete(a.id)
        except NotFound as exc:
            cmd.report_failure(exc)
            if os.path.isfile(a.id) and not a.quiet:
                cmd.err(f"{a.id} is a local file: to give up its interrupted upload, "
                        f"run: upclient abort {a.id} --from URL")
            return exit_status(exc)
    if a.json:
        cmd.emit_json({"id": a.id, "ok": True, "deleted": True})
    elif not a.quiet:
        cmd.err(f"deleted {a.id}")
    return EXIT_OK


def abort(cmd: Command) -> int:
    """Give up the interrupted upload(s) of a local FILE to the server, and forget their resume points."""
    a = cmd.args
    if not os.path.isfile(a.file):
        raise BadInput(f"no such file: {a.file} (abort gives up the interrupted upload of a local FILE; "
                       "rm deletes a stored file)")
    path = os.path.abspath(a.file)  # never taken for an id on the server
    extra: Dict[str, Any] = {"store": FileStore(a.store)} if a.store else {}
    with cmd.client(**extra) as client:
        n = client.abort(path)
    if a.json:
        cmd.emit_json({"file": a.file, "ok": True, "aborted": n})
    elif not a.quiet:
        if n:
            cmd.err(f"gave up {n} interrupted upload{'s' if n != 1 else ''} of {a.file}")
        else:
            cmd.err(f"no interrupted upload of {a.file} to this server: nothing to give up")
    return EXIT_OK

def ls(cmd: Command) -> int:
    with cmd.client() as client:
        if "groups" in client.backend.extra_verbs:  # FastDFS: no file listing, but groups and storages
            return _ls_groups(cmd, client)
        try:
            for info in client.iter(cmd.args.prefix):
                if cmd.args.json:
                    cmd.emit_json({"id": info.id, "size": info.size, "modified": info.modified})
                else:
                    size = "-" if info.size is None else str(info.size)
                    cmd.out(f"{size:>12}  {info.id}")
        except Unsupported as exc:
            name = exc.backend or client.backend.name
            cmd.report_failure(
                Unsupported(
                    f"the {name} backend cannot list files: the protocol has no listing "
                    "(keep the ids put prints)",
                    backend=exc.backend, operation=exc.operation,
                )
            )
            return exit_status(exc)
    return EXIT_OK


def _ls_groups(cmd: Command, client: Client) -> int:
    """The groups a FastDFS tracker knows or, given a group name, that group's storage servers."""
    if not cmd.args.prefix:
        for g in client.groups():
            if cmd.args.json:
                cmd.emit_json({"group": g.name, "storages": g.storage_count, "free_mb": g.free_mb,
                                "total_mb": g.total_mb, "writable": g.writable_count})
            else:
                cmd.out(f"{g.name:<16}  {g.storage_count} storage(s), {g.writable_count} writable, "
                         f"{g.free_mb} MB free of {g.total_mb} MB")
        return EXIT_OK
    for st in client.storages(cmd.args.prefix):
        if cmd.args.json:
            cmd.emit_json({"group": cmd.args.prefix, "id": st.id, "ip": st.ip, "port": st.storage_port,
                            "status": st.status_name, "version": st.version, "free_mb": st.free_mb,
                            "total_mb": st.total_mb})
        else:
            cmd.out(f"{st.ip}:{st.storage_port:<6} {st.status_name:<8} {st.version:<8} "
                     f"{st.free_mb} MB free of {st.total_mb} MB  (id {st.id or '-'})")
    return EXIT_OK

def _storage_verb(cmd: Command, method: str, run: Callable[[Client], Any], done: str) -> int:
    """A verb only storage backends have: Unsupported says so plainly."""
    with cmd.client() as client:
        if method not in client.backend.extra_verbs:
            name = client.backend.name
            cmd.report_failure(Unsupported(f"the {name} backend has no {cmd.args.verb}",
                                            backend=name, operation=cmd.args.verb))
            return EXIT_FAILED
        outcome = run(client)
    if cmd.args.json:
        cmd.emit_json({"ok": True, "verb": cmd.args.verb, "result": outcome})
    elif not cmd.args.quiet:
        cmd.err(done)
    return EXIT_OK

def mkdir(cmd: Command) -> int:
    a = cmd.args
    return _storage_verb(cmd, "mkdir", lambda c: c.mkdir(a.path), f"created {a.path}")

def mv(cmd: Command) -> int:
    a = cmd.args
    return _storage_verb(cmd, "move", lambda c: c.move(a.src, a.dst), f"moved {a.src} to {a.dst}")

def cp(cmd: Command) -> int:
    a = cmd.args
    return _storage_verb(cmd, "copy", lambda c: c.copy(a.src, a.dst), f"copied {a.src} to {a.dst}")

def purge(cmd: Command) -> int:
    a = cmd.args
    refused: List[str] = []

    def purge(c: Client) -> List[str]:
        refused.extend(c.purge(a.targets, domain=a.domain))
        return refused

    status = _storage_verb(cmd, "purge", purge, f"asked the CDN to refresh {len(a.targets)} URL(s)")
    for url in refused:
        cmd.err(f"not purged (not a domain of this service): {url}")
    return EXIT_FAILED if refused else status


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")
