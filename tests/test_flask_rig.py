"""What the Flask tests share: browsers on a socket, the example app under a real server, storage leftovers.

No tests here.  A "browser" sends a request the way a browser does: a
``Content-Length``, then the body in pieces (a raw PUT, or a
``multipart/form-data`` form built here, not by the code under test), and
can go away in the middle.  :func:`app_server` runs ``examples/flask_app.py``
under waitress (its own ``main``) or gunicorn's threaded worker in a
subprocess, stopped at the end whatever happens, and reports the serving
process's peak RSS.  :func:`leftovers` lists what a storage server holds,
finished or not, so a test can see that an aborted upload left nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
KiB = 1024
MiB = 1024 * KiB

# ------------------------------------------------------------------ request bodies


def blocks(seed: int, size: int, block: int = MiB) -> Iterator[bytes]:
    """``size`` pseudo-random bytes of ``seed``, in blocks: the same bytes every time, never all in memory."""
    rng = random.Random(seed)
    left = size
    while left:
        n = min(block, left)
        yield rng.randbytes(n)
        left -= n


def digest_of(seed: int, size: int) -> str:
    h = hashlib.sha256()
    for b in blocks(seed, size):
        h.update(b)
    return h.hexdigest()


@dataclass
class Body:
    """A request body: its headers and pieces; ``digests`` are those of the files in it, in order."""

    length: int
    content_type: str
    pieces: Callable[[], Iterator[bytes]]
    files: List[Tuple[int, int]] = field(default_factory=list)  # (seed, size) of each file

    def digests(self) -> List[str]:
        return [digest_of(seed, size) for seed, size in self.files]


def raw_body(seed: int, size: int, content_type: str = "application/octet-stream") -> Body:
    return Body(size, content_type, lambda: blocks(seed, size), [(seed, size)])


FilePiece = Tuple[str, str, int, int]  # field name, file name, seed, size


def form_body(parts: Iterable[Any], boundary: str = "----upclientFormBoundary7MA4YWxkTrZu0gW") -> Body:
    """A form as browsers send it: ``parts`` are ``(name, value)`` text fields and ``(name, filename,
    seed, size)`` files, in order; CRLF line ends, the closing boundary ended by CRLF."""
    layout: List[Any] = []
    files: List[Tuple[int, int]] = []
    length = 0
    for part in parts:
        if len(part) == 2:
            name, value = part
            head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode()
            data = str(value).encode()
            layout.append(head + data + b"\r\n")
            length += len(head) + len(data) + 2
        else:
            name, filename, seed, size = part
            head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n").encode()
            layout.append(head)
            layout.append((seed, size))
            layout.append(b"\r\n")
            files.append((seed, size))
            length += len(head) + size + 2
    tail = f"--{boundary}--\r\n".encode()
    layout.append(tail)
    length += len(tail)

    def pieces() -> Iterator[bytes]:
        for item in layout:
            if isinstance(item, bytes):
                yield item
            else:
                yield from blocks(*item)

    return Body(length, f"multipart/form-data; boundary={boundary}", pieces, files)


# ------------------------------------------------------------------ browsers


@dataclass
class Answer:
    status: int
    payload: Any
    seconds: float


def send(port: int, method: str, path: str, body: Body, *, timeout: float = 300,
         between: Optional[Callable[[int], None]] = None) -> Answer:
    """Send ``body`` with its ``Content-Length`` and read the JSON answer.

    ``between(sent)`` runs after each piece (a test holds the browser back
    there).  If the server answers before it has read the whole body, the
    answer is read all the same, as a browser does.
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Type", body.content_type)
        conn.putheader("Content-Length", str(body.length))
        conn.endheaders()
        sent = 0
        try:
            for piece in body.pieces():
                conn.send(piece)
                sent += len(piece)
                if between is not None:
                    between(sent)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: its answer is what counts
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        return Answer(resp.status, payload, time.monotonic() - started)
    finally:
        conn.close()


def send_and_vanish(port: int, method: str, path: str, body: Body, cut: int, *,
                    before_leaving: Callable[[], None] = lambda: None, reset: bool = False) -> None:
    """Send the head and the first ``cut`` bytes of ``body``, call ``before_leaving``, then go away.

    ``reset`` closes with a TCP reset (a crashed browser, a dropped network)
    instead of an orderly close (a closed tab).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {body.content_type}\r\n"
                f"Content-Length: {body.length}\r\n\r\n").encode()
        sock.sendall(head)
        sent = 0
        for piece in body.pieces():
            piece = piece[: cut - sent]
            sock.sendall(piece)
            sent += len(piece)
            if sent >= cut:
                break
        before_leaving()
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    finally:
        sock.close()


def wait_for(condition: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    """Poll ``condition`` until it is true; fail after a generous ``seconds`` (never a timing assertion)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------ the example app under a real server

#: gunicorn's threaded worker, with the root logger writing to stderr as the example's own main does.
GUNICORN = (
    "import logging, sys; "
    "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s'); "
    "from gunicorn.app.wsgiapp import run; sys.argv[0] = 'gunicorn'; sys.exit(run())"
)


def settings_env(url: str, settings: Mapping[str, Any]) -> Dict[str, str]:
    """The app's settings as ``FLASK_UPCLIENT_*`` environment variables (``from_prefixed_env`` reads JSON)."""
    env = {"FLASK_UPCLIENT_URL": url}
    for name, value in settings.items():
        env[f"FLASK_UPCLIENT_{name.upper()}"] = json.dumps(value) if not isinstance(value, str) else value
    return env


@dataclass
class AppProcess:
    kind: str
    proc: "subprocess.Popen[bytes]"
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> List[Any]:
        import psutil

        return list(psutil.Process(self.proc.pid).children())

    def serving_pid(self) -> int:
        """The process that runs the app: waitress's own, gunicorn's worker."""
        if self.kind == "waitress":
            return self.proc.pid
        workers = self.workers()
        assert len(workers) == 1, workers
        return int(workers[0].pid)

    def peak_rss(self) -> int:
        """The serving process's peak resident memory so far, in bytes (``VmHWM``)."""
        status = Path(f"/proc/{self.serving_pid()}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        assert match, status
        return int(match.group(1)) * KiB


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def app_server(kind: str, url: str, settings: Mapping[str, Any], tmp_path: Path,
               threads: int = 16) -> Iterator[AppProcess]:
    """``examples/flask_app.py`` served by ``kind`` (``waitress`` or ``gunicorn``) on 127.0.0.1; stopped after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "UPCLIENT_", "UPYUN_"))}
    env.update(settings_env(url, settings), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    log_path = tmp_path / f"{kind}.log"
    if kind == "waitress":
        command = [sys.executable, str(EXAMPLES / "flask_app.py"), url, "--port", "0", "--threads", str(threads)]
    elif kind == "gunicorn":
        pytest.importorskip("gunicorn")
        from upclient.testing import free_port

        port = free_port()
        command = [sys.executable, "-c", GUNICORN, "--worker-class", "gthread", "--workers", "1",
                   "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--timeout", "300",
                   "--graceful-timeout", "10", "--chdir", str(EXAMPLES), "flask_app:create_app()"]
    else:
        raise ValueError(kind)
    with open(log_path, "wb") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env,
                                                       cwd=REPO) as proc:
        try:
            if kind == "waitress":
                assert proc.stdout is not None
                watchdog = threading.Timer(60, proc.kill)
                watchdog.start()
                try:
                    first = proc.stdout.readline().decode()
                finally:
                    watchdog.cancel()
                match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)/\n", first)
                assert match, (first, log_path.read_text())
                port = int(match.group(1))
            else:
                wait_for(lambda: proc.poll() is not None or _listening(port), "gunicorn to listen")
                assert proc.poll() is None, log_path.read_text()
                running = AppProcess(kind, proc, port, log_path)
                wait_for(lambda: len(running.workers()) == 1, "gunicorn's worker")
            yield AppProcess(kind, proc, port, log_path)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if kind == "waitress" else signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()


# ------------------------------------------------------------------ what a storage server holds


def leftovers(running: Any) -> List[str]:
    """Everything ``running`` holds of uploads, finished or not: empty once an aborted upload is gone."""
    backend = running.backend
    server = running.server
    if backend == "tus":
        return sorted(p.name for p in Path(server.directory).iterdir() if p.is_file())
    if backend == "community":
        return [i for i in running.file_ids() if running.file_object(i)["deleted_at"] is None]
    if backend == "upyun":
        stored = [str(p) for p in (Path(server.directory) / "files").rglob("*") if p.is_file()]
        return sorted(list(running.uploads()) + stored)
    if backend == "fdfs":
        return sorted(str(p) for p in Path(server.root).glob("*/data/**/*")
                      if p.is_file() and not p.name.endswith(("-m", "-m.tmp")))
    raise ValueError(backend)


def started_on_storage(running: Any) -> Optional[Callable[[], bool]]:
    """A test that an upload has begun on the storage server, where one can see it (None for the
    community API: a stream's parts go only once all of it is read, for the MD5 that ``init`` needs)."""
    if running.backend == "community":
        return None
    return lambda: bool(leftovers(running))
