"""A short tour: an upload is interrupted, kept, resumed, verified and deduplicated.

Run it with ``python -m upclient.demo`` or ``make demo`` (``--size 256M`` for
a bigger file).  It starts a local tus server (``resumable-upload`` from
PyPI) on 127.0.0.1, behind a local proxy that slows each connection down so
that the progress bar can be watched; writes a file of random bytes; starts
uploading it and cancels it part way through; shows what the server kept;
uploads again (the second run sends only what is missing); downloads the
result and compares SHA-256 digests.  Then it uploads the same file twice
to a local emulator of a deduplicating API: the second upload sends
nothing.  Everything lives in one temporary directory, removed at the end,
also after an error or Ctrl-C; your own resume points are not touched, and
every server it started is stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from . import Client, FileStore, __version__
from .cli import ProgressDisplay, format_bytes, parse_size
from .errors import Cancelled, UpClientError
from .progress import Progress

T = TypeVar("T")
MiB = 1024 * 1024
#: The first upload is cancelled from its progress callback once this much is
#: reported sent; where it really stops, and what the server keeps, is
#: measured and shown.
STOP_AT = 0.40

_COLOUR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None and os.environ.get("TERM") != "dumb"


def _style(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _COLOUR else text


def bold(text: str) -> str:
    return _style(text, "1")


def dim(text: str) -> str:
    return _style(text, "2")


def green(text: str) -> str:
    return _style(text, "32")


def red(text: str) -> str:
    return _style(text, "31")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, title: str) -> None:
    say()
    say(bold(f"{n}. {title}"))


def fact(name: str, value: str) -> None:
    say(f"   {dim(f'{name:<14}')} {value}")


def write_random_file(path: Path, size: int) -> str:
    """``size`` random bytes; returns their hex SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MiB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def describe_resume_point(store: FileStore) -> Tuple[int, Optional[Dict[str, Any]]]:
    """How many records the store holds, and the first one."""
    keys = list(store.keys())
    return len(keys), (store.load(keys[0]) if keys else None)


def held_on_server(record: Dict[str, Any], client: Client) -> Optional[int]:
    """Bytes the server holds that a resume from ``record`` will not send again.

    Asked of the server: the offset of each partial upload the record names
    (a "concat" upload), or of the one upload (a serial one); an upload the
    server no longer knows counts 0.  None when the record names no upload.
    """
    state = record.get("state") or {}

    def offset(url: str) -> int:
        try:
            return client.info(url).offset or 0
        except UpClientError:  # gone or expired: a resume sends it again
            return 0

    if state.get("mode") == "concat":
        part, size = int(state["part_size"]), int(state["size"])
        partials = state.get("partials") or {}
        return sum(min(offset(p["url"]), part, size - int(i) * part) for i, p in partials.items() if p.get("url"))
    url = state.get("url") or record.get("id")
    return offset(url) if url else None


def settled(measure: Callable[[], T], pause: float = 0.2, tries: int = 50) -> T:
    """``measure()`` once two readings ``pause`` apart agree.

    A cancel stops the client at once, but bytes already in the sockets
    still reach the server for a moment after; the figure worth showing is
    the one the server ends with, which the resume will find.
    """
    before = measure()
    for _ in range(tries):
        time.sleep(pause)
        now = measure()
        if now == before:
            return now
        before = now
    return before


def on_server(url: str, server_url: str) -> str:
    """``url`` (as seen through the demo's proxy) with the server's own scheme and address."""
    theirs, ours = urllib.parse.urlsplit(url), urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit((ours.scheme, ours.netloc, theirs.path, theirs.query, theirs.fragment))


class Upload:
    """One ``put`` with a progress bar, optionally cancelled at a fraction."""

    def __init__(self, client: Client, path: Path, stop_at: Optional[float] = None) -> None:
        self.client = client
        self.path = path
        self.stop_at = stop_at
        self.cancel = threading.Event()

    def on_progress(self, p: Progress) -> None:
        self.display.update(0, p)
        if self.stop_at is not None and p.total and p.bytes_done >= self.stop_at * p.total:
            self.cancel.set()  # the upload stops within one block; finished parts are kept

    def run(self) -> Any:
        size = self.path.stat().st_size
        self.display = ProgressDisplay(sys.stderr.isatty(), f"   {self.path.name}", size)
        try:
            return self.client.put(self.path, on_progress=self.on_progress, cancel=self.cancel)
        finally:
            self.display.close()


#: Each connection is capped at this many bytes/s (through a local shaping
#: proxy), so the bar moves at a pace a person can follow: loopback alone
#: would finish before the first frame.
LINK_RATE = 12e6


#: What each kind of tus upload is, said where the demo first shows it.
UPLOAD_MODES = {
    "concat": "tus concatenation: the parts go up in parallel as partial uploads, and the server joins them",
    "serial": "one tus upload filled in order, part after part",
}


def run_demo(size: int, part_size: int, workdir: Path) -> int:
    from .testing.servers import ResumableUploadServer
    from .testing.shaping import ShapingProxy

    say(bold(f"upclient {__version__} demo: an upload that survives an interruption"))
    with ResumableUploadServer(workdir / "server") as server, ShapingProxy(
        server.url, delay=0.002, rate=LINK_RATE
    ) as link:
        url = "tus+" + link.url_for(server.url)
        fact("server", f"a tus server (resumable-upload) at {server.url}")
        fact("link", f"the client reaches it through a local proxy at {link.url}, which caps each")
        fact("", f"connection at {LINK_RATE / 1e6:.0f} MB/s so that the progress bar can be watched")
        fact("work dir", f"{workdir}  (removed at the end)")

        src = workdir / "demo.bin"
        digest = write_random_file(src, size)
        fact("file", f"{src.name}, {format_bytes(size)} of random bytes")
        fact("sha256", digest)

        store = FileStore(workdir / "resume")
        fact("resume points", f"kept in {store.directory}")
        with Client(url, part_size=part_size, concurrency=4, store=store) as client:
            step(1, "Upload, cancelled part way through")
            first = Upload(client, src, stop_at=STOP_AT)
            try:
                result = first.run()
            except Cancelled:
                pass
            else:  # the file went up before a progress report could stop it: too small to interrupt
                say(f"   the upload finished before it could be interrupted ({result.id}); try a larger --size")
                return 1

            count, record = describe_resume_point(store)
            if record is None:
                say(red("   no resume point was kept!"))
                return 1
            held = settled(lambda: held_on_server(record, client)) or 0
            fact("cancelled", f"the server keeps {format_bytes(held)} of {format_bytes(size)} ({held / size:.0%})")
            mode = (record.get("state") or {}).get("mode", "?")
            fact("resume point", f"{count} record in {store.directory.name}/: backend {record.get('backend')},"
                 f" a {mode} upload")
            if mode in UPLOAD_MODES:
                fact(f"{mode} upload", UPLOAD_MODES[mode])

            step(2, "The same upload again: it resumes")
            second = Upload(client, src).run()
            fact("resumed", green("yes") if second.resumed else red("no"))
            fact("sent", f"{format_bytes(second.sent_bytes)} of {format_bytes(second.size)}:"
                 " only what the server did not keep")
            fact("took", f"{second.elapsed:.2f} s")
            upload_id = on_server(second.id, server.url)
            fact("id", upload_id)
            fact("", f"(the upload's URL on the server; the client saw it through the proxy, port {link.port})")
            count, _ = describe_resume_point(store)
            fact("resume points", f"{count} left (a finished upload forgets its resume point)")

            step(3, "Download it back and compare")
            copy = workdir / "downloaded.bin"
            t = time.monotonic()
            with Client("tus+" + server.url, store=None) as reader:  # straight from the server, not the slow link
                n = int(reader.get(upload_id, copy))  # with a path, get returns the byte count
            got = sha256_of(copy)
            fact("downloaded", f"{format_bytes(n)} in {time.monotonic() - t:.2f} s")
            fact("sha256 source", digest)
            fact("sha256 server", got)
            ok = got == digest and n == size
            say("   " + (green("identical: the server holds exactly the source's bytes") if ok
                         else red("MISMATCH: the server's bytes differ from the source")))
            if not ok:
                return 1
        if run_dedup(src, digest, workdir) != 0:
            return 1
    say()
    say(dim("servers stopped; cleaning up"))
    return 0


def run_dedup(src: Path, digest: str, workdir: Path) -> int:
    """Step 4: the same file to a deduplicating server (the community API emulator), twice."""
    from .testing.community import CommunityServer

    step(4, "Deduplication: the same bytes twice to a deduplicating server")
    token = "demo-token"
    with CommunityServer(workdir / "community", tokens={token}) as server:
        fact("server", f"{server.url}: a local emulator of the \"community multipart API\", which")
        fact("", "knows files by their MD5: a file it already holds is not sent again")
        store = FileStore(workdir / "resume")
        with Client("community+" + server.url, token=token, store=store, concurrency=4) as client:
            t = time.monotonic()
            first = Upload(client, src).run()
            fact("first upload", f"{format_bytes(first.sent_bytes)} sent in {time.monotonic() - t:.2f} s "
                                 f"(the file's MD5 read first, then the parts in parallel)")
            hashed: List[Any] = []
            t = time.monotonic()
            second = client.put(src, on_md5_progress=hashed.append)
            fact("second upload", f"{format_bytes(second.sent_bytes)} sent in {time.monotonic() - t:.3f} s: "
                                  + ("deduplicated, the server already had it" if second.deduplicated
                                     else "NOT deduplicated"))
            fact("same id", f"{'yes' if first.id == second.id else 'no'} ({first.id})")
            fact("MD5", "remembered from the first upload, not read again (the file is unchanged)" if not hashed
                 else "read again")
        ok = second.deduplicated and second.sent_bytes == 0 and server.stored_sha256(first.id) == digest
        say("   " + (green("one copy on the server, byte for byte the source; the second upload sent nothing")
                     if ok else red("deduplication did not happen")))
        return 0 if ok else 1


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m upclient.demo",
        description="Upload a file to a local tus server, interrupt it, resume it, verify it; "
        "then upload it twice to a deduplicating server.",
    )
    parser.add_argument("--size", default="64M", help="size of the demo file, e.g. 64M, 1G (default 64M)")
    parser.add_argument("--part-size", default="2M", help="part size (default 2M)")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
        part_size = parse_size(args.part_size)
    except ValueError as exc:
        parser.error(str(exc))
    if size < 2 * part_size:
        parser.error(f"--size must be at least two parts ({format_bytes(2 * part_size)}) to be interrupted")

    if importlib.util.find_spec("resumable_upload") is None:
        print("The demo runs a local tus server from the resumable-upload package, which is not installed:\n"
              "    pip install 'upclient[testing]'    (or: pip install resumable-upload==0.3.0)",
              file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="upclient-demo-"))
    started = time.monotonic()
    try:
        status = run_demo(size, part_size, workdir)
    except KeyboardInterrupt:
        say()
        say("interrupted; cleaning up")
        status = 130
    except Exception as exc:
        say()
        say(red(f"demo failed: {type(exc).__name__}: {exc}"))
        status = 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status == 0:
        say(dim(f"done in {time.monotonic() - started:.1f} s"))
    return status


if __name__ == "__main__":
    sys.exit(main())
