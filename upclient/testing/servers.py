"""Run real third-party tus servers as subprocesses, for tests and benchmarks.

Two servers are supported:

:class:`TusNodeServer`
    The reference Node.js implementation, ``@tus/server`` 2.4.5 with
    ``@tus/file-store`` 2.1.1, started through ``tests/servers/tus-node-server.mjs``
    (needs ``node`` >= 20.19 and ``npm ci --prefix tests/servers``; the
    harness runs ``npm ci`` itself the first time if ``node_modules`` is
    missing).

:class:`ResumableUploadServer`
    The ``resumable-upload`` 0.3.0 package from PyPI (``resumable-upload serve``),
    run with the current Python interpreter.

Both are context managers that start the server on ``127.0.0.1`` with a free
port, wait until it answers, and stop it (SIGTERM, then SIGKILL after a few
seconds) when the ``with`` block ends, also when the block raised::

    with TusNodeServer(tmp_path / "uploads") as server:
        upload_url = create_and_upload(server.url, data)
        assert server.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()

``stop()`` and ``start()`` restart a server on the same port and directory,
so a client can be shown a server that goes away and comes back.

What the servers do (as observed with these exact versions):

* ``@tus/server`` + ``@tus/file-store``: ``Tus-Extension: creation,
  creation-with-upload,creation-defer-length,termination,expiration``; no
  checksum, no concatenation (``Upload-Concat`` answers 501); absolute
  ``Location`` built from the request's ``Host`` header (so through a proxy it
  names the proxy); an upload ``<id>`` (32 hex digits) is stored as the file
  ``<directory>/<id>`` with its record in ``<directory>/<id>.json`` (metadata
  decoded to strings, ``size``, ``creation_date``; the ``offset`` in the JSON
  stays 0, the real offset is the file's size); ``GET <upload url>`` returns
  the bytes of a *finished* upload (404 while unfinished); an empty
  ``Upload-Metadata`` header answers 400; responses have an empty reason
  phrase (``HTTP/1.1 204 ``) and idle keep-alive connections are closed after
  5 s; ``Upload-Expires`` is sent on POST and on PATCH responses while the
  upload is unfinished; after expiry HEAD and PATCH answer 410, finished or
  not. A PATCH cut off midway (reset or FIN) keeps the bytes that arrived:
  HEAD reports them.
* ``resumable-upload`` 0.3.0: ``Tus-Extension: creation,creation-with-upload,
  creation-defer-length,termination,checksum,expiration,concatenation,
  concatenation-unfinished,checksum-trailer`` (``expiration`` is advertised
  even when no expiry is configured; ``Upload-Expires`` is only sent with
  ``--upload-expiry``, and then also for finished uploads);
  ``Tus-Checksum-Algorithm`` lists the configured algorithms; relative
  ``Location`` (``/files/<uuid4>``); an upload is stored as the file
  ``<upload-dir>/<uuid4>`` and its record (metadata as JSON, length, offset,
  expiry) in the SQLite database ``--db-path``; ``GET`` of a finished upload
  only with ``--enable-downloads`` (this harness enables it), else 404; a
  PATCH body is read whole into memory before anything is written, so a
  PATCH cut off by a connection reset stores nothing, while one whose client
  closes its sending side early (FIN) stores the short body and is answered
  204 with the smaller ``Upload-Offset``; an empty ``Upload-Metadata`` header
  is accepted; stopping takes about 0.5 s (its accept loop polls).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlsplit

__all__ = [
    "ServerStartError",
    "TusNodeServer",
    "ResumableUploadServer",
    "free_port",
]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming the directory that holds tus-node-server.mjs,
#: package.json and node_modules.
NODE_DIR_ENV = "UPCLIENT_TUS_NODE_DIR"
#: Environment variable naming the ``node`` executable to use.
NODE_BIN_ENV = "UPCLIENT_NODE"
#: Oldest Node.js that @tus/server 2.4.5 supports.
MIN_NODE_VERSION = (20, 19, 0)

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


def _default_node_dir() -> Path:
    env = os.environ.get(NODE_DIR_ENV)
    if env:
        return Path(env)
    # upclient/testing/servers.py -> <repo>/tests/servers
    return Path(__file__).resolve().parents[2] / "tests" / "servers"


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
        """``http://HOST:PORT`` without a path."""
        return f"http://{self.host}:{self.port}"

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
                    url = f"http://{self.host}:{port}{self._path()}"
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


# ---------------------------------------------------------------- Node server

_install_lock = threading.Lock()
_node_version_cache: Dict[str, Tuple[int, ...]] = {}


def _node_version(node: str) -> Tuple[int, ...]:
    if node not in _node_version_cache:
        try:
            out = subprocess.run(
                [node, "--version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerStartError(f"cannot run {node!r} --version: {exc}") from exc
        match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", out)
        if not match:
            raise ServerStartError(f"unexpected output of {node} --version: {out!r}")
        _node_version_cache[node] = tuple(int(x) for x in match.groups())
    return _node_version_cache[node]


class TusNodeServer(_ServerProcess):
    """The reference tus server, ``@tus/server`` + ``@tus/file-store``, on Node.js.

    :param directory: where the file store keeps uploads (created if needed).
        ``None`` makes a temporary directory that :meth:`close` removes.
    :param node_dir: the directory holding ``tus-node-server.mjs``,
        ``package.json`` and ``node_modules``; default: the environment
        variable ``UPCLIENT_TUS_NODE_DIR``, else ``<repo>/tests/servers``.
    :param node: the ``node`` executable (default: ``$UPCLIENT_NODE`` or
        ``node`` on ``PATH``).
    :param expiration: seconds after creation when an unfinished upload
        expires (``Upload-Expires`` is sent); 0 turns expiration off.
    :param max_size: ``Tus-Max-Size`` in bytes (``None``: no limit).
    :param relative_location: send a relative ``Location`` instead of an
        absolute one built from the request's ``Host`` header.
    :param auto_install: run ``npm ci`` in ``node_dir`` if ``node_modules``
        lacks ``@tus/server``.
    :param host, port, startup_timeout, stop_timeout, env: see
        :class:`ResumableUploadServer`; ``port=None`` lets the server pick a
        free port itself.

    Storage layout: the bytes of upload ``<id>`` are in ``<directory>/<id>``
    and its record (JSON: ``id``, ``size``, ``metadata``, ``creation_date``)
    in ``<directory>/<id>.json``.
    """

    name = "tus-node-server"
    script_name = "tus-node-server.mjs"

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        node_dir: Optional[PathLike] = None,
        node: Optional[str] = None,
        expiration: float = 3600.0,
        max_size: Optional[int] = None,
        relative_location: bool = False,
        auto_install: bool = True,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(
            directory,
            host=host,
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            env=env,
        )
        self.node_dir = Path(node_dir) if node_dir is not None else _default_node_dir()
        self.node = node or os.environ.get(NODE_BIN_ENV) or "node"
        self.expiration = float(expiration)
        self.max_size = max_size
        self.relative_location = relative_location
        self.auto_install = auto_install

    @classmethod
    def unavailable_reason(cls, node: Optional[str] = None) -> Optional[str]:
        """Why this server cannot run here (no suitable ``node``), or ``None``.

        Meant for ``pytest.skip``; it does not check ``node_modules``, which
        :meth:`start` installs when missing.
        """
        node = node or os.environ.get(NODE_BIN_ENV) or "node"
        if shutil.which(node) is None:
            return f"{node!r} not found"
        try:
            version = _node_version(node)
        except ServerStartError as exc:
            return str(exc)
        if version < MIN_NODE_VERSION:
            return "Node.js %s is older than %s" % (
                ".".join(map(str, version)),
                ".".join(map(str, MIN_NODE_VERSION)),
            )
        return None

    def _script(self) -> Path:
        return self.node_dir / self.script_name

    def _prepare(self) -> None:
        script = self._script()
        if not script.is_file():
            raise ServerStartError(
                f"{script} not found; set {NODE_DIR_ENV} to the directory holding "
                f"{self.script_name}, package.json and package-lock.json"
            )
        node_path = shutil.which(self.node)
        if node_path is None:
            raise ServerStartError(f"{self.node!r} not found; @tus/server needs Node.js >= 20.19")
        version = _node_version(self.node)
        if version < MIN_NODE_VERSION:
            raise ServerStartError(
                "Node.js %s is too old for @tus/server 2.4.5 (needs >= 20.19)" % ".".join(map(str, version))
            )
        self._ensure_installed()

    def _ensure_installed(self) -> None:
        marker = self.node_dir / "node_modules" / "@tus" / "server" / "package.json"
        if marker.is_file():
            return
        if not self.auto_install:
            raise ServerStartError(
                f"@tus/server is not installed in {self.node_dir}; run: npm ci --prefix {self.node_dir}"
            )
        npm = shutil.which("npm")
        if npm is None:
            raise ServerStartError(f"@tus/server is not installed in {self.node_dir} and npm is not available")
        with _install_lock, _interprocess_lock(self.node_dir):
            if marker.is_file():
                return
            log.info("installing the Node test servers: npm ci --prefix %s", self.node_dir)
            result = subprocess.run(
                [npm, "ci", "--prefix", str(self.node_dir), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=600,
                stdin=subprocess.DEVNULL,
            )
            if result.returncode != 0 or not marker.is_file():
                raise ServerStartError(
                    f"npm ci --prefix {self.node_dir} failed with status {result.returncode}",
                    result.stdout + result.stderr,
                    result.returncode,
                )

    def _uses_stdout_url(self) -> bool:
        return True

    def _cwd(self) -> Optional[Path]:
        return self.node_dir

    def _command(self, port: int) -> List[str]:
        cmd = [
            self.node,
            str(self._script()),
            "--dir",
            str(self.directory),
            "--host",
            self.host,
            "--port",
            str(port),
            "--expiration-ms",
            str(int(round(self.expiration * 1000))),
        ]
        if self.max_size:
            cmd += ["--max-size", str(int(self.max_size))]
        if self.relative_location:
            cmd.append("--relative-location")
        return cmd

    def record_path(self, upload_url: str) -> Path:
        """The JSON file holding the upload's record (``<directory>/<id>.json``)."""
        return self.directory / (self.upload_id(upload_url) + ".json")

    def stored_metadata(self, upload_url: str) -> Dict[str, Optional[str]]:
        """The upload's metadata from its JSON record (values decoded).

        A key sent without a value maps to ``None``. Raises
        :class:`FileNotFoundError` for an unknown upload.
        """
        record = json.loads(self.record_path(upload_url).read_text("utf-8"))
        return dict(record.get("metadata") or {})


@contextlib.contextmanager
def _interprocess_lock(directory: Path) -> Any:
    """Serialize ``npm ci`` between processes (pytest-xdist workers)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"upclient-npm-{key}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------ resumable-upload server


class ResumableUploadServer(_ServerProcess):
    """The ``resumable-upload`` 0.3.0 tus server (PyPI), run as a subprocess.

    Runs ``python -m resumable_upload serve`` with the given interpreter
    (default: the current one, which must have ``resumable-upload`` installed).

    :param directory: ``--upload-dir``, where upload bytes are kept (created if
        needed). ``None`` makes a temporary directory that :meth:`close`
        removes.
    :param db_path: ``--db-path``, the SQLite database of upload records;
        default ``<directory>/.uploads.sqlite3``.
    :param checksum_algorithms: ``--checksum-algorithms`` (the server always
        advertises the ``checksum`` extension; sha1 is the protocol's minimum).
    :param upload_expiry: ``--upload-expiry`` in seconds (``Upload-Expires``
        is sent); ``None`` for no expiry (the extension is still advertised).
    :param enable_downloads: ``--enable-downloads``: ``GET <upload url>``
        returns a finished upload's bytes.
    :param max_size: ``--max-size`` in bytes (``Tus-Max-Size``).
    :param max_chunk_size: ``--max-chunk-size``: larger PATCH bodies get 413.
    :param request_timeout: ``--request-timeout``: the server's socket read
        timeout in seconds.
    :param log_level: ``--log-level`` of the server's own log (see
        :meth:`output`).
    :param extra_args: more ``serve`` arguments, appended as given.
    :param python: the interpreter that runs the server.
    :param host: the address to listen on.
    :param port: the port; ``None`` picks a free one (by binding port 0).
    :param startup_timeout: seconds to wait for the server to answer.
    :param stop_timeout: seconds between SIGTERM and SIGKILL when stopping.
    :param env: extra environment variables for the process.

    Storage layout: the bytes of upload ``<uuid>`` are in
    ``<directory>/<uuid>``; its record (metadata as JSON text, length,
    offset, expiry, concatenation parts) is a row of table ``uploads`` in the
    SQLite database.
    """

    name = "resumable-upload"
    DEFAULT_CHECKSUM_ALGORITHMS: Tuple[str, ...] = ("sha1", "sha256", "sha512", "md5")

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        db_path: Optional[PathLike] = None,
        checksum_algorithms: Iterable[str] = DEFAULT_CHECKSUM_ALGORITHMS,
        upload_expiry: Optional[float] = 3600,
        enable_downloads: bool = True,
        max_size: Optional[int] = None,
        max_chunk_size: Optional[int] = None,
        request_timeout: Optional[float] = None,
        log_level: str = "INFO",
        extra_args: Sequence[str] = (),
        python: Optional[str] = None,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(
            directory,
            host=host,
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            env=env,
        )
        if isinstance(checksum_algorithms, str):
            checksum_algorithms = [a for a in checksum_algorithms.split(",")]
        self.checksum_algorithms: Tuple[str, ...] = tuple(a.strip().lower() for a in checksum_algorithms if a.strip())
        self.db_path = Path(db_path).resolve() if db_path is not None else self.directory / ".uploads.sqlite3"
        self.upload_expiry = upload_expiry
        self.enable_downloads = enable_downloads
        self.max_size = max_size
        self.max_chunk_size = max_chunk_size
        self.request_timeout = request_timeout
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.python = python or sys.executable

    @classmethod
    def unavailable_reason(cls, python: Optional[str] = None) -> Optional[str]:
        """Why this server cannot run (package missing), or ``None``."""
        if python is None or python == sys.executable:
            import importlib.util

            if importlib.util.find_spec("resumable_upload") is None:
                return "resumable-upload is not installed (pip install resumable-upload==0.3.0)"
        return None

    def _prepare(self) -> None:
        reason = self.unavailable_reason(self.python)
        if reason:
            raise ServerStartError(reason)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)

    def _command(self, port: int) -> List[str]:
        cmd = [
            self.python,
            "-m",
            "resumable_upload",
            "serve",
            "--host",
            self.host,
            "--port",
            str(port),
            "--base-path",
            "/files",
            "--upload-dir",
            str(self.directory),
            "--db-path",
            str(self.db_path),
            "--log-level",
            self.log_level,
        ]
        if self.checksum_algorithms:
            cmd += ["--checksum-algorithms", ",".join(self.checksum_algorithms)]
        if self.upload_expiry is not None:
            cmd += ["--upload-expiry", str(int(self.upload_expiry))]
        if self.enable_downloads:
            cmd.append("--enable-downloads")
        if self.max_size:
            cmd += ["--max-size", str(int(self.max_size))]
        if self.max_chunk_size:
            cmd += ["--max-chunk-size", str(int(self.max_chunk_size))]
        if self.request_timeout is not None:
            cmd += ["--request-timeout", str(self.request_timeout)]
        cmd += self.extra_args
        return cmd

    def _record(self, upload_url: str) -> Dict[str, Any]:
        upload_id = self.upload_id(upload_url)
        if not self.db_path.exists():
            raise FileNotFoundError(str(self.db_path))
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise FileNotFoundError(f"no upload {upload_id!r} in {self.db_path}")
        return dict(row)

    def stored_record(self, upload_url: str) -> Dict[str, Any]:
        """The upload's row in the server's SQLite database, as a dict.

        Columns: ``upload_id``, ``upload_length`` (-1 while deferred),
        ``offset``, ``metadata`` (JSON text), ``created_at``, ``completed``,
        ``is_partial``, ``expires_at``, ``concat_partial_ids``. Raises
        :class:`FileNotFoundError` for an unknown upload.
        """
        return self._record(upload_url)

    def stored_metadata(self, upload_url: str) -> Dict[str, Optional[str]]:
        """The upload's metadata from the database (values decoded)."""
        raw = self._record(upload_url).get("metadata")
        return dict(json.loads(raw)) if raw else {}
