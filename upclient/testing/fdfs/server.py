"""The emulator's life and test-facing surface: :class:`FdfsServer` starts the listeners, finds files, arms faults."""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from upclient.testing.faults import Fault, FaultBook
from upclient.testing.fdfs.codec import GROUP_NAME_LEN, FileIdCodec, Status, parse_metadata
from upclient.testing.fdfs.connection import Listener
from upclient.testing.fdfs.node import StorageNode
from upclient.testing.fdfs.storage import StorageHandler
from upclient.testing.fdfs.store import FileStore
from upclient.testing.fdfs.tracker import TrackerHandler

__all__ = ["FdfsServer"]

LOG = logging.getLogger("upclient.testing.fdfs")

_IPS = (15, 45)


class FdfsServer(FaultBook):
    """FastDFS trackers and storages on ``127.0.0.1``, as a context manager (see the package docstring).

    ``root_dir`` holds the files (``None``: a temporary directory removed at :meth:`stop`); ``port``
    is the first tracker's (0: a free one; the other trackers and every storage take free ports);
    ``ip_size`` is 15 (the 6.16 default) or 45 (``response_ip_addr_size = IPv6``); one storage per
    name in ``groups``; ``trackers`` trackers that share one state.

    Addresses: :attr:`tracker`, :attr:`trackers`, :attr:`url` (``fdfs://host:port,...``),
    :meth:`storage`. Files: :meth:`path`, :meth:`stored_sha256`, :meth:`metadata`, :meth:`files`,
    :meth:`is_appender`. Faults and outages: :meth:`fail`, :meth:`stall`, :meth:`clear_faults`,
    :attr:`pending_faults`, :meth:`stop_tracker`, :meth:`start_tracker`. Counters: :attr:`counts`,
    :attr:`connections`, :meth:`reset_counts`.

    Faults and request counters are a :class:`~upclient.testing.faults.FaultBook`: a request's facts
    are its ``cmd`` (the command number), ``role`` (``"tracker"`` or ``"storage"``) and ``group``
    (the storage's group; None on a tracker); the book counts it under ``str(cmd)``.
    """

    log = LOG

    def __init__(
        self,
        root_dir: Union[str, os.PathLike, None] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ip_size: int = 15,
        groups: Sequence[str] = ("group1",),
        trackers: int = 1,
    ) -> None:
        if ip_size not in _IPS:
            raise ValueError("ip_size must be 15 or 45")
        if trackers < 1:
            raise ValueError("trackers must be >= 1")
        groups = tuple(groups)
        if not groups or len(set(groups)) != len(groups):
            raise ValueError("groups must be distinct names, at least one")
        for group in groups:
            if not group or len(group.encode("ascii")) > GROUP_NAME_LEN or not re.fullmatch(r"[A-Za-z0-9_]+", group):
                raise ValueError(f"invalid group name {group!r}")
        self.host = host
        self.ip_size = ip_size
        self.advertised_ip = host if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", host) and host != "0.0.0.0" else "127.0.0.1"
        self._own_root = root_dir is None
        self.root = Path(tempfile.mkdtemp(prefix="fdfs-emulator-")) if root_dir is None else Path(root_dir)
        if self._own_root:  # removed at stop(), or when the server is garbage collected unstarted
            weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self._lock = threading.Lock()
        self._requests: "collections.Counter[str]" = collections.Counter()
        self._connections = 0
        self._faults: List[Fault] = []
        self._nodes: Dict[str, StorageNode] = {
            group: StorageNode(group, FileStore(self.root, group, self.advertised_ip)) for group in groups
        }
        self._tracker_ports: List[int] = [port] + [0] * (trackers - 1)
        self._trackers: List[Optional[Listener]] = [None] * trackers
        self._storages: Dict[str, Listener] = {}  # group -> its storage's listener, while running
        self._running = False

    # life
    def start(self) -> "FdfsServer":
        if self._running:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for node in self._nodes.values():
                node.store.prepare()
                listener = Listener((self.host, node.port), StorageHandler, self, node, f"storage-{node.group}")
                self._storages[node.group] = listener
                node.port = listener.port
                node.up_time = int(time.time())
                listener.start()
            for i in range(len(self._trackers)):
                self.start_tracker(i)
        except BaseException:
            self._close_listeners()
            raise
        self._running = True
        LOG.debug("fdfs emulator: trackers %s, storages %s", self.trackers, {g: self.storage(g) for g in self._nodes})
        return self

    def stop(self) -> None:
        """Close every listening socket and client connection, join the threads; remove a temporary root."""
        self._close_listeners()
        self._running = False
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _close_listeners(self) -> None:
        for i in range(len(self._trackers)):
            self.stop_tracker(i)
        for group in list(self._storages):
            self._storages.pop(group).close()

    def __enter__(self) -> "FdfsServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop_tracker(self, i: int) -> None:
        """Take tracker ``i`` down: its port refuses connections and its open connections are closed."""
        listener = self._trackers[i]
        if listener is not None:
            self._trackers[i] = None
            listener.close()

    def start_tracker(self, i: int) -> None:
        """Bring tracker ``i`` (back) up, on the same port as before."""
        if self._trackers[i] is not None:
            return
        listener = Listener((self.host, self._tracker_ports[i]), TrackerHandler, self, None, f"tracker-{i}")
        self._tracker_ports[i] = listener.port
        self._trackers[i] = listener
        listener.start()

    # addresses
    @property
    def trackers(self) -> List[str]:
        """``host:port`` of every tracker (all share the same state)."""
        return [f"{self.advertised_ip}:{port}" for port in self._tracker_ports]

    @property
    def tracker(self) -> str:
        return self.trackers[0]

    @property
    def url(self) -> str:
        return "fdfs://" + ",".join(self.trackers)

    def storage(self, group: str = "group1") -> str:
        """``host:port`` of the storage of ``group``."""
        try:
            node = self._nodes[group]
        except KeyError:
            raise KeyError(f"no group {group!r}; groups: {list(self._nodes)}") from None
        return f"{self.advertised_ip}:{node.port}"

    def _first_node(self) -> StorageNode:
        """The group a store query without a group gets: all groups share one disk, so the real
        default (``store_lookup = 2``, the most free space) is a tie and the first one wins."""
        return next(iter(self._nodes.values()))

    # files
    def _locate(self, file_id: str) -> Tuple[FileStore, str]:
        group, sep, remote = file_id.partition("/")
        if re.fullmatch(r"M[0-9A-F]{2}", group):
            group, remote = self._first_node().group, file_id
        elif not sep:
            raise ValueError(f"not a file id: {file_id!r}")
        node = self._nodes.get(group)
        if node is None:
            raise ValueError(f"no group {group!r} in {file_id!r}")
        try:
            return node.store, FileStore.true_name(remote)
        except Status as exc:
            raise ValueError(f"not a file id: {file_id!r} ({exc.reason})") from None

    def path(self, file_id: str) -> Path:
        """Where the bytes of ``file_id`` (``group1/M00/...``) are (or would be) on disk."""
        store, true_name = self._locate(file_id)
        return store.path(true_name)

    def stored_sha256(self, file_id: str) -> str:
        h = hashlib.sha256()
        with open(self.path(file_id), "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                h.update(block)
        return h.hexdigest()

    def metadata(self, file_id: str) -> Dict[str, str]:
        """The metadata of ``file_id`` ({} when it has none)."""
        store, true_name = self._locate(file_id)
        try:
            raw = store.meta_path(true_name).read_bytes()
        except FileNotFoundError:
            return {}
        return {
            k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
            for k, v in parse_metadata(raw).items()
        }

    def files(self) -> List[str]:
        """Every stored file id."""
        return [
            f"{group}/{FileStore.remote(name)}" for group, node in self._nodes.items() for name in node.store.names()
        ]

    def is_appender(self, file_id: str) -> bool:
        """Whether the name of ``file_id`` carries the appender flag."""
        return FileIdCodec.decode(file_id).is_appender

    # faults and counters
    def fail(self, cmd: int, *, after: int = 0, times: Optional[int] = 1, status: Optional[int] = None) -> None:
        """Break the next ``times`` requests with command ``cmd`` (None: until cleared): drop the
        connection after ``after`` body bytes (``status=None``), or answer ``status`` (the storage
        closes after a 22)."""
        if after < 0:
            raise ValueError("after must be >= 0")
        if status is None:
            self._arm(Fault("drop", times=times, match={"cmd": cmd}, after=after))
            return
        if not 1 <= status <= 255:
            raise ValueError("status must be an errno, 1..255")
        self._arm(Fault("status", times=times, match={"cmd": cmd}, errno=status))

    def stall(
        self,
        cmd: Optional[int] = None,
        *,
        seconds: Optional[float] = None,
        after: Optional[int] = None,
        times: Optional[int] = 1,
        role: Optional[str] = None,
        group: Optional[str] = None,
    ) -> None:
        """Hang the next ``times`` requests (None: until cleared) as a server stopped with SIGSTOP would.

        Which requests: command ``cmd`` (None: any), on the ``role`` side (``"tracker"``,
        ``"storage"``; None: both), at the storage of ``group`` (None: any). The connection is
        accepted and the header read; then with ``after=None`` the whole body is read, the command
        takes effect and its reply is held back; with ``after=N`` nothing past the first ``N`` body
        bytes is read (the client's send blocks once the socket buffers are full) and nothing is
        answered. The hold lasts ``seconds`` (None: until the server stops); then the request goes
        on as after a SIGCONT, if the client is still there. Stopping the server (or that tracker)
        ends every stall at once and closes its connection.
        """
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0 or None")
        if after is not None and after < 0:
            raise ValueError("after must be >= 0 or None")
        if role not in (None, "tracker", "storage"):
            raise ValueError("role must be 'tracker', 'storage' or None")
        if group is not None and group not in self._nodes:
            raise ValueError(f"no group {group!r}; groups: {list(self._nodes)}")
        match = {"cmd": cmd, "role": role, "group": group}
        self._arm(Fault("stall", times=times, match=match, seconds=seconds, after=after))

    @staticmethod
    def _count_key(key: str) -> str:
        return str(key)  # request_count(11) as well as request_count("11")

    def _on_request(self, cmd: int, **facts: Any) -> Optional[Fault]:
        """Count a request and take the fault it meets, if one is armed for it."""
        self._count(str(cmd))
        return self._take_fault(cmd=cmd, **facts)

    def _on_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def counts(self) -> "collections.Counter[int]":
        """Requests seen per command number, trackers and storages together (a copy)."""
        with self._lock:
            return collections.Counter({int(cmd): n for cmd, n in self._requests.items()})

    @property
    def connections(self) -> int:
        """TCP connections accepted so far, trackers and storages together."""
        with self._lock:
            return self._connections

    def reset_counts(self) -> None:
        """Zero :attr:`counts` and :attr:`connections`."""
        with self._lock:
            self._requests.clear()
            self._connections = 0

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<FdfsServer {state} trackers={self.trackers} groups={list(self._nodes)} root={str(self.root)!r}>"
