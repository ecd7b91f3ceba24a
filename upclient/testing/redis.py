"""A real ``redis-server`` on 127.0.0.1 for tests: :class:`RedisServer` and the ``upclient_redis_server`` fixture.

The server runs as a child process on a free port, with its working
directory in a temporary (or given) directory, persistence off
(``--save '' --appendonly no``), and is stopped when the ``with`` block
ends, whatever happened in it::

    with RedisServer() as redis_server:
        store = upclient.RedisStore(redis_server.url)

:meth:`RedisServer.unavailable_reason` says why it cannot run here (no
``redis-server`` on PATH: ``apt-get install redis-server``).  In a pytest
run, ``pytest_plugins = ["upclient.testing.redis"]`` in a ``conftest.py``
gives the ``upclient_redis_server`` fixture (one server per test, skipped
when ``redis-server`` is missing, failed instead under ``$CI``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

__all__ = ["RedisServer", "RedisStartError", "upclient_redis_server"]

PathLike = Union[str, "os.PathLike[str]"]


class RedisStartError(RuntimeError):
    """``redis-server`` did not start or did not answer in time; the message ends with its output."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:``port`` (raw RESP: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = sock.recv(64)
            return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")  # up, with a password
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1, a free port and a private directory, as a context manager.

    :param directory: the server's ``--dir`` (created if needed); None makes a
        temporary one, removed by :meth:`stop`.
    :param executable: the server binary (default: ``redis-server`` on PATH).
    :param startup_timeout: seconds the server may take to answer PING.
    :param args: more command-line arguments (``["--maxmemory", "64mb"]``).
    """

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        executable: str = "redis-server",
        startup_timeout: float = 20.0,
        args: Optional[List[str]] = None,
    ) -> None:
        self._own_directory = directory is None
        self.directory = Path(directory) if directory is not None else None
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.args = list(args or [])
        self.port: Optional[int] = None
        self._proc: Optional["subprocess.Popen[bytes]"] = None

    @classmethod
    def unavailable_reason(cls, executable: str = "redis-server") -> Optional[str]:
        """None if ``redis-server`` can run here, else why not."""
        if shutil.which(executable) is None:
            return f"{executable} is not on PATH (apt-get install redis-server)"
        return None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: what ``RedisStore`` and Celery take."""
        if self.port is None:
            raise RuntimeError("the Redis server has not been started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> "RedisServer":
        """Start the server and wait until it answers PING (three ports are tried if one is taken)."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the Redis server is already running")
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="upclient-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        fixed = self.port
        for attempt in range(3):
            port = fixed if fixed is not None else _free_port()
            output = self.directory / "redis-server.log"
            with open(output, "wb") as log_file:
                self._proc = subprocess.Popen(
                    [self.executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                     "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                     *self.args],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C meant for the tests does not reach it first
                )
            self.port = port
            deadline = time.monotonic() + self.startup_timeout
            while self._proc.poll() is None and time.monotonic() < deadline:
                if _ping(port):
                    return self
                time.sleep(0.02)
            text = output.read_text(errors="replace")
            self._kill()
            if fixed is None and attempt < 2 and "address already in use" in text.lower():
                continue
            raise RedisStartError(f"redis-server on port {port} did not answer within {self.startup_timeout} s"
                                  f"\n--- redis-server output ---\n{text[-4000:]}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # redis-server exits at once, and saves nothing with --save ''
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove a temporary directory."""
        self._kill()
        if self._own_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url if self.port else '(not started)'}>"


try:
    import pytest
except ImportError:  # pragma: no cover - the harness works without pytest
    pass
else:

    @pytest.fixture
    def upclient_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
        """A ``redis-server`` of this test on 127.0.0.1 (``.url``), stopped afterwards."""
        reason = RedisServer.unavailable_reason()
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"redis-server is needed: {reason}")
            pytest.skip(reason)
        with contextlib.ExitStack() as stack:
            yield stack.enter_context(RedisServer(tmp_path / "upclient-redis"))
