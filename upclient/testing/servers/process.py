"""What the tus server harnesses share: a server subprocess with a port, a log and a URL.

:class:`_ServerProcess` starts a server on ``127.0.0.1`` with a free port,
waits until it answers, and stops it (SIGTERM, then SIGKILL); the servers of
:mod:`upclient.testing.servers` fill in how to launch theirs and where it
keeps an upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

__all__ = ["ServerStartError", "free_port"]

log = logging.getLogger("upclient.testing.servers")

PathLike = Union[str, "os.PathLike[str]"]

_STDERR_TAIL = 4000


class ServerStartError(RuntimeError):
    """A server process could not be started or did not answer in time.

    The message includes the tail of the server's output; the full text is in
    :attr:`output`, and the exit status (``None`` if it was still running and
    had to be stopped) in :attr:`returncode`.
    """

    def __init__(self, message: str, output: str = "", returncode: Optional[int] = None):
        tail = output[-_STDERR_TAIL:] if output else ""
        full = message
        if tail:
            full += "\n--- server output (tail) ---\n" + tail.rstrip()
        super().__init__(full)
        self.output = output
        self.returncode = returncode


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now.

    The port is found by binding port 0 and closing the socket again, so
    another process could take it before the caller binds it; the servers in
    this module retry with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1024 * 1024)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def _kill_process_group(proc: "subprocess.Popen[bytes]") -> None:
    """Last-resort cleanup (garbage collection, interpreter exit)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


class _ServerProcess:
    """Common machinery: a server subprocess with a log file, a port and a URL.

    Subclasses implement :meth:`_command`, :meth:`_ready_url` and the storage
    lookups.
    """

    #: Short name used in log messages and errors.
    name = "server"

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._owns_directory = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix=f"upclient-{self.name}-")
        self.directory: Path = Path(directory).resolve()
        self.host = host
        self._port: Optional[int] = port
        self._fixed_port = port is not None
        self.startup_timeout = float(startup_timeout)
        self.stop_timeout = float(stop_timeout)
        self.env: Dict[str, str] = dict(env or {})
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self._finalizer: Optional[weakref.finalize] = None
        self._log_dir: Optional[Path] = None
        self._log_handle: Optional[IO[bytes]] = None
        self._stdout_path: Optional[Path] = None
        self._url: Optional[str] = None
        self._closed = False

    # ------------------------------------------------------------------ API

    @property
    def url(self) -> str:
        """The creation URL (``http://127.0.0.1:PORT/files/``).

        Known once the server has been started; it stays the same across
        :meth:`stop` and :meth:`start`.
        """
        if self._url is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._url

    @property
    def port(self) -> int:
        """The TCP port the server listens on (known once started)."""
        if self._port is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (``https://`` for a server over TLS) without a path."""
        scheme = "https" if self._probe_context() is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """The process id of the server while it runs (else ``None``)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """The exit status of the last server process, ``None`` while running."""
        return None if self._proc is None else self._proc.poll()

    def start(self) -> "_ServerProcess":
        """Start the server and wait until it answers; returns ``self``.

        The first start picks a free port (unless one was given); later starts
        reuse the same port and directory. Raises :class:`ServerStartError`
        with the server's output if it exits or does not answer within
        ``startup_timeout`` seconds.
        """
        if self._closed:
            raise RuntimeError(f"{self.name} was closed; create a new one")
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self._proc.pid})")  # type: ignore[union-attr]
        self._prepare()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix=f"upclient-{self.name}-log-"))
        attempts = 1 if (self._fixed_port or self._url is not None) else 3
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
                return self
            except ServerStartError as exc:
                if attempt < attempts and "address already in use" in exc.output.lower():
                    log.warning("%s: port %s was taken, retrying with another", self.name, self._port)
                    self._port = None
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> Optional[int]:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        Idempotent. Returns the process's exit status (``None`` if it was not
        started). The port, URL and directory are kept for :meth:`start`.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            log.debug("%s: stopping pid %s", self.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: pid %s did not stop within %.1f s after SIGTERM; killing it",
                    self.name,
                    proc.pid,
                    self.stop_timeout,
                )
                _kill_process_group(proc)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        log.info("%s: stopped (exit status %s)", self.name, proc.returncode)
        return proc.returncode

    def restart(self) -> "_ServerProcess":
        """:meth:`stop` then :meth:`start` on the same port and directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary files.

        Removes the log directory and, if no ``directory`` was given to the
        constructor, the upload directory too. A closed server cannot be
        started again.
        """
        try:
            self.stop()
        finally:
            self._closed = True
            if self._log_dir is not None:
                shutil.rmtree(self._log_dir, ignore_errors=True)
                self._log_dir = None
            if self._owns_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "_ServerProcess":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"running pid={self._proc.pid}" if self.running else "stopped"  # type: ignore[union-attr]
        return f"<{type(self).__name__} {self._url or '(not started)'} {state} dir={self.directory}>"

    def output(self) -> str:
        """Everything the server process wrote to stdout and stderr so far."""
        text = ""
        for path in (self._stdout_path, self._log_path):
            if path is not None and path.exists():
                text += path.read_text("utf-8", errors="replace")
        return text

    def upload_id(self, upload_url: str) -> str:
        """The server's id of an upload: the last segment of its URL's path.

        ``upload_url`` may be absolute, relative (as in a ``Location``), or
        already a bare id; the same holds for every ``stored_*`` method.
        """
        path = urlsplit(upload_url).path.rstrip("/")
        upload_id = unquote(path.rsplit("/", 1)[-1])
        if not upload_id or upload_id in (".", "..") or "/" in upload_id or "\\" in upload_id or "\0" in upload_id:
            raise ValueError(f"no upload id in {upload_url!r}")
        return upload_id

    def stored_path(self, upload_url: str) -> Path:
        """The file on disk that holds the bytes of the upload at ``upload_url``.

        The path is returned whether or not the file exists (after a
        termination it no longer does).
        """
        return self.directory / self.upload_id(upload_url)

    def stored_sha256(self, upload_url: str) -> str:
        """Hex SHA-256 of the bytes the server stored for ``upload_url``.

        Raises :class:`FileNotFoundError` if the server holds no such file.
        """
        return _file_sha256(self.stored_path(upload_url))

    def stored_size(self, upload_url: str) -> int:
        """How many bytes of the upload are on disk."""
        return self.stored_path(upload_url).stat().st_size

    def stored_metadata(self, upload_url: str) -> Dict[str, Optional[str]]:
        """The upload's metadata as the server recorded it (decoded values)."""
        raise NotImplementedError

    # ------------------------------------------------------------ internals

    @property
    def _log_path(self) -> Optional[Path]:
        return None if self._log_dir is None else self._log_dir / "server.log"

    def _prepare(self) -> None:
        """Checks before spawning (executables, installs)."""

    def _command(self, port: int) -> List[str]:
        raise NotImplementedError

    def _cwd(self) -> Optional[Path]:
        return None

    def _uses_stdout_url(self) -> bool:
        return False

    def _path(self) -> str:
        return "/files/"

    def _probe_context(self) -> Optional[ssl.SSLContext]:
        """The TLS context that reaches the server, or None if it speaks plain HTTP."""
        return None

    def _spawn_and_wait(self) -> None:
        assert self._log_dir is not None
        port = self._port
        if port is None and not self._uses_stdout_url():
            port = free_port(self.host)
        cmd = self._command(port or 0)
        env = dict(os.environ)
        env.update(self.env)
        self._stdout_path = self._log_dir / "stdout.log"
        stdout_handle = open(self._stdout_path, "wb")
        self._log_handle = open(self._log_path, "ab")  # type: ignore[arg-type]
        log.info("%s: starting %s", self.name, " ".join(cmd))
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=stdout_handle,
                stderr=self._log_handle,
                cwd=self._cwd(),
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            stdout_handle.close()
            raise ServerStartError(f"{self.name}: cannot run {cmd[0]!r}: {exc}") from exc
        finally:
            # The child has its own copy of the descriptor.
            stdout_handle.close()
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill_process_group, proc)

        deadline = time.monotonic() + self.startup_timeout
        url: Optional[str] = None
        last_error = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with status {code} during startup ({' '.join(cmd)})",
                    self.output(),
                    code,
                )
            if url is None:
                if self._uses_stdout_url():
                    url = self._url_from_stdout()
                else:
                    scheme = "https" if self._probe_context() is not None else "http"
                    url = f"{scheme}://{self.host}:{port}{self._path()}"
            if url is not None:
                ok, last_error = self._probe(url)
                if ok:
                    break
            if time.monotonic() >= deadline:
                output = self.output()
                self.stop()
                raise ServerStartError(
                    f"{self.name} did not answer within {self.startup_timeout:.0f} s "
                    f"({last_error}; {' '.join(cmd)})",
                    output,
                )
            time.sleep(0.05)

        parts = urlsplit(url)
        if self._port is not None and parts.port != self._port:
            self.stop()
            raise ServerStartError(f"{self.name} listens on {url}, expected port {self._port}", self.output())
        self._port = parts.port
        self._url = url
        log.info("%s: ready at %s (pid %s, directory %s)", self.name, url, proc.pid, self.directory)

    def _url_from_stdout(self) -> Optional[str]:
        assert self._stdout_path is not None
        try:
            text = self._stdout_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        if "\n" not in text:
            return None
        line = text.split("\n", 1)[0].strip()
        if not re.match(r"^https?://", line):
            raise ServerStartError(f"{self.name} printed an unexpected first line: {line!r}", self.output())
        return line

    def _probe(self, url: str) -> Tuple[bool, str]:
        parts = urlsplit(url)
        conn: http.client.HTTPConnection
        context = self._probe_context()
        if parts.scheme == "https":
            if context is None:
                raise ServerStartError(f"{self.name} serves {url} but this harness started it without TLS")
            conn = http.client.HTTPSConnection(parts.hostname or self.host, parts.port, timeout=2.0, context=context)
        else:
            conn = http.client.HTTPConnection(parts.hostname or self.host, parts.port, timeout=2.0)
        try:
            conn.request("OPTIONS", parts.path or "/")
            response = conn.getresponse()
            response.read()
            if response.status < 500:
                return True, f"OPTIONS answered {response.status}"
            return False, f"OPTIONS answered {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            return False, f"OPTIONS failed: {exc}"
        finally:
            conn.close()
