"""Shared fixtures: real tus servers on 127.0.0.1, random files, clients.

upclient's own pytest plugin (upclient.testing.plugin: the upclient_*
fixtures users get) is loaded through its entry point once upclient is
installed with it; :func:`pytest_configure` registers it here when it is not
(an editable install that predates the entry point), never a second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import upclient
import upclient.testing.plugin
from upclient.testing.servers import ResumableUploadServer, TusNodeServer

KiB = 1024
MiB = 1024 * KiB


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    name = upclient.testing.plugin.__name__  # the entry point's name too
    if not manager.is_registered(upclient.testing.plugin) and not manager.is_blocked(name):
        manager.register(upclient.testing.plugin, name)


def sha256_file(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Tuple[Path, str]]:
    """make_file(size, name=...) -> (path, sha256 of its random content)."""
    counter = iter(range(10**6))

    def make(size: int, name: str = "") -> Tuple[Path, str]:
        path = tmp_path / (name or f"src-{next(counter)}-{size}.bin")
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, MiB))
                f.write(block)
                h.update(block)
                left -= len(block)
        return path, h.hexdigest()

    return make


@pytest.fixture(scope="session")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TusNodeServer]:
    """The reference tus server (@tus/server + @tus/file-store), one per test session."""
    reason = TusNodeServer.unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"@tus/server is not installed: {reason} (run make test)")
    if reason:
        pytest.skip(f"@tus/server not installed: {reason}; `make test` installs it")
    with TusNodeServer(tmp_path_factory.mktemp("tus-node")) as server:
        yield server


@pytest.fixture(scope="session")
def rus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResumableUploadServer]:
    """The resumable-upload tus server: checksum and concatenation, one per session."""
    with ResumableUploadServer(tmp_path_factory.mktemp("tus-rus")) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> upclient.FileStore:
    return upclient.FileStore(tmp_path / "resume")


#: The last line ``python -m upclient.testing`` prints before serving.
SERVING = "serving until Ctrl-C"


def parse_announcement(lines: List[str]) -> Dict[str, str]:
    """What ``python -m upclient.testing`` printed: ``url`` (the first line) and each ``label: value`` line."""
    fields = {"url": lines[0]}
    for line in lines[1:]:
        label, sep, value = line.partition(": ")
        if sep:
            fields[label] = value
    return fields


def stop_process(proc: "subprocess.Popen[Any]", timeout: float = 20.0) -> None:
    """Stop a ``python -m upclient.testing`` child as Ctrl-C does, so it stops its own server
    process too (a tus server runs in its own session: SIGKILL to the parent would orphan it);
    SIGKILL only if it does not exit within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def emulator_process(*args: str, timeout: float = 15.0) -> Iterator[Tuple["subprocess.Popen[bytes]", Dict[str, str]]]:
    """``python -m upclient.testing ARGS`` as a child: yields (process, :func:`parse_announcement` of its output).

    The process is killed if its announcement takes longer than ``timeout``,
    and stopped (:func:`stop_process`) at the end if it still runs, whatever happened.
    """
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    command = [sys.executable, "-m", "upclient.testing", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as proc:
        try:
            assert proc.stdout is not None
            watchdog = threading.Timer(timeout, proc.kill)
            watchdog.start()
            lines: List[str] = []
            try:
                while not lines or lines[-1] != SERVING:
                    line = proc.stdout.readline().decode()
                    if not line:
                        break
                    lines.append(line.strip())
            finally:
                watchdog.cancel()
            assert lines and lines[-1] == SERVING, f"{command}: printed {lines}, status {proc.poll()}"
            yield proc, parse_announcement(lines)
        finally:
            stop_process(proc)
