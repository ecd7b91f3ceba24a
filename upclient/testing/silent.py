"""A TCP server that accepts connections and never answers, for deadline tests.

:class:`SilentServer` listens on ``127.0.0.1`` and holds every connection it
accepts open without a word.  With ``reads=True`` it reads and drops what the
client sends, so the client waits for an answer that never comes; with
``reads=False`` it never reads either, so a large request body fills the
socket buffers and the client's send blocks, as with a hung server::

    with SilentServer(reads=False) as silent:
        client = upclient.Client(f"tus+http://127.0.0.1:{silent.port}/files/")
        client.put(path, timeout=2)   # DeadlineExceeded after 2 s, not read_timeout

Stopping it closes every connection; nothing is left running.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any, List, Optional

__all__ = ["SilentServer"]

log = logging.getLogger("upclient.testing.silent")


class SilentServer:
    """See the module docstring."""

    def __init__(self, *, reads: bool = True, host: str = "127.0.0.1", port: int = 0) -> None:
        self.reads = reads
        self.host = host
        self._port = port
        self._listener: Optional[socket.socket] = None
        self._conns: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted = 0

    @property
    def port(self) -> int:
        assert self._listener is not None, "not started"
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> "SilentServer":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        self._spawn(self._accept, "silent-accept")
        log.debug("silent server on %s (reads=%s)", self.address, self.reads)
        return self

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            if self.reads:
                self._spawn(self._drain, "silent-read", conn)

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if not conn.recv(1 << 20):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
            threads, self._threads = self._threads, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        for thread in threads:
            thread.join(2)

    def __enter__(self) -> "SilentServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
