"""get(id, path) in parallel ranges, end to end: UPYUN, community object URLs, FastDFS and @tus/server.

Every download is compared byte for byte with what the server stored (read
on the server side).  HTTP downloads go through :class:`RangeProxy`, a
loopback proxy of this module that logs each request's ``Range``, counts the
bytes it passes back, can slow each connection down and can cut a response
in the middle: what the server was asked for and what it served is seen
from outside the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest

import upclient
from upclient import errors
from upclient.testing import CommunityServer, FaultProxy, FdfsServer, UpyunServer

from .conftest import KiB, MiB, sha256_file

PASSWORD = "pw-for-downloads"
TOKEN = "tok-for-downloads"
PART = MiB
FAST_RETRY = upclient.RetryPolicy(attempts=5, backoff=0.01)


# -- a proxy that shows what a download asked for -------------------------------------


class RangeProxy:
    """HTTP/1.1 GET and HEAD to one upstream on 127.0.0.1, watched from outside the client.

    ``requests``: ``(method, Range header or None)`` of every request, in
    order.  ``bytes_down``: bytes passed back (heads and bodies).  ``rate``:
    bytes per second per connection (None: as fast as it goes).
    :meth:`cut_next` arms a cut: the next GET's answer is passed on up to
    ``after`` bytes, then both sides get a reset.
    """

    def __init__(self, upstream: Tuple[str, int], rate: Optional[float] = None) -> None:
        self.upstream = upstream
        self.rate = rate
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.bytes_down = 0
        self.connections = 0
        self._cuts: List[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socks: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RangeProxy":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(5)
        for sock in socks:
            sock.close()
        self._listener.close()

    def cut_next(self, after: int, times: int = 1) -> None:
        with self._lock:
            self._cuts.extend([after] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_down = 0
            self.connections = 0

    def ranges(self) -> List[Tuple[int, int]]:
        """The ``(first, last)`` of each ranged GET, in order."""
        out = []
        for method, value in list(self.requests):
            match = re.match(r"bytes=(\d+)-(\d+)$", value or "")
            if method == "GET" and match:
                out.append((int(match.group(1)), int(match.group(2))))
        return out

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._socks += [client, upstream]
                self.connections += 1
            budget: List[Optional[int]] = [None]
            self._spawn(self._requests, client, upstream, budget)
            self._spawn(self._answers, upstream, client, budget)

    def _requests(self, client: socket.socket, upstream: socket.socket, budget: List[Optional[int]]) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while True:
                data = client.recv(64 * KiB)
                if not data:
                    break
                buf += data
                while b"\r\n\r\n" in buf:  # GET and HEAD: a head, no body
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    method = lines[0].split(" ", 1)[0]
                    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                    ranged = {k.strip().lower(): v.strip() for k, v in fields.items()}.get("range")
                    with self._lock:
                        self.requests.append((method, ranged))
                        if method == "GET" and self._cuts:
                            budget[0] = self._cuts.pop(0)
                    upstream.sendall(head + b"\r\n\r\n")
            upstream.shutdown(socket.SHUT_WR)

    def _answers(self, upstream: socket.socket, client: socket.socket, budget: List[Optional[int]]) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = upstream.recv(16 * KiB)
                if not data:
                    client.shutdown(socket.SHUT_WR)
                    return
                left = budget[0]
                if left is not None:
                    data = data[:left]
                    budget[0] = left - len(data)
                client.sendall(data)
                with self._lock:
                    self.bytes_down += len(data)
                if budget[0] == 0:  # the cut: a reset to both sides, mid-answer
                    for sock in (client, upstream):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                if self.rate and self._stopping.wait(len(data) / self.rate):
                    return


def address_of(url: str) -> Tuple[str, int]:
    host, port = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


# -- servers and clients -----------------------------------------------------------------


@pytest.fixture
def upyun(tmp_path):
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password=PASSWORD) as server:
        yield server


def upyun_client(endpoint: str, **kw: Any) -> upclient.Client:
    kw.setdefault("part_size", PART)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("store", None)
    return upclient.Client("upyun://op@svc", endpoint=endpoint, password=PASSWORD, **kw)


@pytest.fixture
def community(tmp_path):
    with CommunityServer(tmp_path / "community", tokens={TOKEN}, min_part_size=64 * KiB) as server:
        yield server


def community_client(server: CommunityServer, **kw: Any) -> upclient.Client:
    kw.setdefault("part_size", PART)
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("store", None)
    return upclient.Client("community+" + server.url, token=TOKEN, **kw)


def stored_upyun(server: UpyunServer, path: Path, key: str = "/big.bin") -> str:
    with upyun_client(server.endpoint) as client:
        client.put(path, key)
    return key


def leftovers(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") or "upclient-part" in p.name)


def download_records(store: upclient.BaseStore) -> List[dict]:
    return [r for r in (store.load(k) for k in store.keys() if k.startswith("download-")) if r is not None]


# -- parallel, byte-exact, on every backend that serves ranges -----------------------------


def merged(intervals) -> List[Tuple[int, int]]:
    """``(first, last)`` byte intervals joined where they touch or overlap."""
    out: List[List[int]] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def test_a_slow_link_splits_the_stream_into_parallel_ranges(upyun, make_file, tmp_path):
    """4 MiB/s a connection: one stream first, then the ranges it has not reached, four at a time."""
    size = 16 * MiB + 7
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    seen: list = []
    with RangeProxy(address_of(upyun.endpoint), rate=4 * MiB) as proxy, \
            upyun_client(proxy.url, concurrency=4) as client:
        assert client.get(key, dest, on_progress=seen.append) == size
    assert sha256_file(dest) == upyun.stored_sha256(key) == digest
    asked = proxy.ranges()
    assert asked[0] == (0, size - 1), "it starts as one stream"
    assert len(asked) > 4 and proxy.connections >= 4, "the rest went in parallel ranges"
    assert all(first % MiB == 0 and (last + 1) % MiB in (0, 7) for first, last in asked[1:])
    assert merged(asked) == [(0, size - 1)]
    assert proxy.bytes_down < size + 2 * MiB, "bytes were fetched twice"  # the stream stops within a block
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert (seen[-1].bytes_done, seen[-1].total, seen[-1].parts_done, seen[-1].parts_total) == (size, size, 17, 17)
    assert leftovers(dest.parent) == []


def test_a_fast_link_starts_as_one_stream_and_fetches_nothing_twice(upyun, make_file, tmp_path):
    """Over loopback one stream takes what the machine can (whether more would pay is measured:
    see the unit tests of the width)."""
    size = 64 * MiB
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, part_size=4 * MiB) as client:
        client.get(key, tmp_path / "copy.bin")
    assert sha256_file(tmp_path / "copy.bin") == digest
    assert proxy.ranges()[0] == (0, size - 1) and merged(proxy.ranges()) == [(0, size - 1)]
    assert proxy.bytes_down < size + 2 * MiB


def test_community_get_reads_the_object_url_in_ranges(community, make_file, tmp_path):
    size = 6 * MiB + 1
    path, digest = make_file(size)
    with community_client(community, concurrency=3) as client, \
            RangeProxy(address_of(community.url), rate=2 * MiB) as proxy:
        result = client.put(path)
        community.public_url = proxy.url  # the object URLs the API hands out lead through the proxy
        assert client.get(result.id, tmp_path / "copy.bin") == size
    assert sha256_file(tmp_path / "copy.bin") == community.stored_sha256(result.id) == digest
    assert len(proxy.ranges()) > 1 and merged(proxy.ranges()) == [(0, size - 1)]
    assert proxy.bytes_down < size + 2 * MiB and proxy.connections >= 2
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("concurrency", [4, 1])
def test_fdfs_get_reads_offset_and_length_ranges(tmp_path, make_file, concurrency):
    """The first download request is held 1 s: the client fetches the other ranges meanwhile."""
    size = 5 * MiB + 3
    path, digest = make_file(size)
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, part_size=PART, concurrency=concurrency, store=None,
                             retry=FAST_RETRY) as client:
            result = client.put(path)
            server.reset_counts()
            server.stall(14, seconds=1.0, role="storage")
            assert client.get(result.id, tmp_path / "copy.bin") == size
        downloads = server.counts[14]
    assert sha256_file(tmp_path / "copy.bin") == server.stored_sha256(result.id) == digest
    if concurrency > 1:
        assert 3 <= downloads <= 6, "the held stream kept two ranges, the others went on their own"
    else:
        assert downloads == 1
    assert leftovers(tmp_path) == []


def test_a_window_of_a_file_goes_in_ranges_too(upyun, make_file, tmp_path):
    path, _ = make_file(8 * MiB)
    key = stored_upyun(upyun, path)
    with RangeProxy(address_of(upyun.endpoint), rate=2 * MiB) as proxy, upyun_client(proxy.url) as client:
        assert client.get(key, tmp_path / "window.bin", offset=MiB + 5, length=3 * MiB) == 3 * MiB
    assert (tmp_path / "window.bin").read_bytes() == path.read_bytes()[MiB + 5: 4 * MiB + 5]
    asked = proxy.ranges()
    assert asked[0] == (MiB + 5, 4 * MiB + 4) and merged(asked) == [(MiB + 5, 4 * MiB + 4)]
    assert all((first - MiB - 5) % MiB == 0 for first, _ in asked)


def test_a_small_file_is_one_request_with_no_resume_point(upyun, make_file, tmp_path):
    path, digest = make_file(PART)
    key = stored_upyun(upyun, path)
    store = upclient.MemoryStore()
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, store=store) as client:
        client.get(key, tmp_path / "small.bin")
    assert sha256_file(tmp_path / "small.bin") == digest
    assert [m for m, _ in proxy.requests] == ["HEAD", "GET"] and proxy.connections == 1
    assert download_records(store) == [] and leftovers(tmp_path) == []


def test_an_empty_file_to_a_path_needs_no_get(upyun, tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    key = stored_upyun(upyun, empty, "/empty.bin")
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url) as client:
        assert client.get(key, tmp_path / "copy.bin") == 0
    assert (tmp_path / "copy.bin").read_bytes() == b""
    assert [m for m, _ in proxy.requests] == ["HEAD"] and leftovers(tmp_path) == []


def test_a_single_stream_client_sends_one_get(upyun, make_file, tmp_path):
    path, digest = make_file(4 * MiB + 1)
    key = stored_upyun(upyun, path)
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, concurrency=1) as client:
        client.get(key, tmp_path / "copy.bin")
    assert sha256_file(tmp_path / "copy.bin") == digest
    assert proxy.ranges() == [(0, 4 * MiB)]


# -- a server that ignores Range ------------------------------------------------------


def test_a_server_that_ignores_range_gives_exact_bytes_through_one_stream(node_server, make_file, tmp_path):
    """@tus/server 2.4.5 answers every GET with 200 and the whole file."""
    size = 12 * MiB + 9
    path, digest = make_file(size)
    with upclient.Client("tus+" + node_server.url, store=None) as client:
        upload = client.put(path).id.rsplit("/", 1)[-1]
    with RangeProxy(address_of(node_server.url), rate=4 * MiB) as proxy:
        endpoint = "tus+" + proxy.url + "/files/"
        with upclient.Client(endpoint, part_size=PART, concurrency=4, store=None) as client:
            assert client.get(upload, tmp_path / "first.bin") == size
            first = [m for m, _ in proxy.requests].count("GET")
            proxy.reset()
            assert client.get(upload, tmp_path / "second.bin") == size
            second = proxy.requests
    assert node_server.stored_sha256(upload) == digest
    assert sha256_file(tmp_path / "first.bin") == sha256_file(tmp_path / "second.bin") == digest
    # one stream, a split that met whole files (each at most one try per worker), then one stream
    assert 3 <= first <= 1 + 4 + 1
    assert [m for m, _ in second] == ["HEAD", "GET"], "the backend remembers the server sends whole files"
    assert leftovers(tmp_path) == []


# -- faults: a cut mid-range, a stalled server ---------------------------------------------


def test_a_connection_cut_mid_answer_resumes_from_the_last_block_received(upyun, make_file, tmp_path):
    """The body is read in blocks of 1 MiB: what a cut leaves of the block being read is fetched again."""
    size = 12 * MiB
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, part_size=4 * MiB) as client:
        proxy.cut_next(2 * MiB + 700 * KiB, times=2)
        client.get(key, tmp_path / "copy.bin")
    assert sha256_file(tmp_path / "copy.bin") == digest
    assert proxy.ranges() == [(0, size - 1), (2 * MiB, size - 1), (4 * MiB, size - 1)]
    assert proxy.bytes_down < size + 2 * (700 * KiB) + 16 * KiB, "received blocks were fetched again"


def test_a_dropped_fdfs_download_is_tried_again(tmp_path, make_file):
    path, digest = make_file(4 * MiB + 1)
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, part_size=PART, store=None, retry=FAST_RETRY) as client:
            result = client.put(path)
            server.reset_counts()
            server.fail(14, times=2)  # the connection dropped before the answer
            client.get(result.id, tmp_path / "copy.bin")
        assert server.counts[14] == 1 + 2, "one stream, tried three times"
    assert sha256_file(tmp_path / "copy.bin") == digest


def test_timeout_holds_against_a_server_that_never_answers_a_range(upyun, make_file, tmp_path):
    path, _ = make_file(4 * MiB)
    key = stored_upyun(upyun, path)
    store = upclient.MemoryStore()
    with FaultProxy(upyun.endpoint) as proxy, upyun_client(f"127.0.0.1:{proxy.port}", store=store) as client:
        proxy.stall(60, method="GET", times=None)
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded):
            client.get(key, tmp_path / "copy.bin", timeout=2)
        elapsed = time.monotonic() - started
    assert elapsed < 10, f"get(timeout=2) took {elapsed:.1f} s"
    assert not (tmp_path / "copy.bin").exists()
    assert leftovers(tmp_path) == [] and download_records(store) == [], "nothing arrived: nothing to keep"


def test_timeout_holds_against_a_stalled_fdfs_storage(tmp_path, make_file):
    path, _ = make_file(3 * MiB)
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, part_size=PART, store=None) as client:
            result = client.put(path)
            server.stall(14, role="storage", times=None)
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded):
                client.get(result.id, tmp_path / "copy.bin", timeout=2)
            elapsed = time.monotonic() - started
    assert elapsed < 10, f"get(timeout=2) took {elapsed:.1f} s"


# -- interrupted downloads resume ------------------------------------------------------------


def cancel_after(parts: int, cancel: threading.Event):
    def watch(progress):
        if progress.parts_done >= parts:
            cancel.set()
    return watch


def missing_ranges(record: dict, size: int) -> List[Tuple[int, int]]:
    step = record["range_size"]
    done = {i for first, stop in record["done"] for i in range(first, stop)}
    count = -(-size // step)
    return [(i * step, min((i + 1) * step, size) - 1) for i in range(count) if i not in done]


def test_a_cancelled_download_keeps_a_part_file_and_the_next_get_fetches_only_the_rest(
        upyun, make_file, tmp_path):
    size = 16 * MiB + 11
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    store = upclient.FileStore(tmp_path / "store")
    dest = tmp_path / "copy.bin"
    cancel = threading.Event()
    with RangeProxy(address_of(upyun.endpoint), rate=2 * MiB) as proxy, \
            upyun_client(proxy.url, store=store) as client:
        with pytest.raises(errors.Cancelled):
            client.get(key, dest, cancel=cancel, on_progress=cancel_after(3, cancel))
    assert not dest.exists()
    (record,) = download_records(store)
    (part,) = leftovers(tmp_path)
    assert (tmp_path / part).stat().st_size == size and record["part"] == str(tmp_path / part)
    missing = missing_ranges(record, size)
    assert 0 < len(missing) < 17
    text = "".join(p.read_text() for p in (tmp_path / "store").glob("*.json"))
    assert PASSWORD not in text and "op:" not in text, "a secret in the resume point"

    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, store=store) as client:
        result = client.get(key, dest)
    assert result == size
    assert merged(proxy.ranges()) == merged(missing), "only the missing ranges"
    served = sum(last - first + 1 for first, last in missing)
    assert served <= proxy.bytes_down < served + len(missing) * 2 * KiB + 4 * KiB
    assert sha256_file(dest) == upyun.stored_sha256(key) == digest
    assert leftovers(tmp_path) == [] and download_records(store) == []


def test_a_download_killed_with_sigkill_resumes_in_the_next_process(upyun, make_file, tmp_path):
    import subprocess
    import sys

    size = 12 * MiB + 5
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    store_dir, dest = tmp_path / "store", tmp_path / "copy.bin"
    with RangeProxy(address_of(upyun.endpoint), rate=MiB) as proxy:
        script = (
            "import sys, upclient\n"
            f"c = upclient.Client('upyun://op@svc', endpoint={proxy.url!r}, password={PASSWORD!r}, "
            f"part_size={PART}, store=upclient.FileStore({str(store_dir)!r}))\n"
            f"c.get({key!r}, {str(dest)!r})\n"
        )
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        child = subprocess.Popen([sys.executable, "-c", script], env=env)
        try:
            store = upclient.FileStore(store_dir)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                records = download_records(store)
                if records and sum(b - a for a, b in records[0]["done"]) >= 3:
                    break
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait()
    (record,) = download_records(store)
    missing = missing_ranges(record, size)
    assert 0 < len(missing) < 13
    with RangeProxy(address_of(upyun.endpoint)) as proxy, \
            upyun_client(proxy.url, store=upclient.FileStore(store_dir)) as client:
        client.get(key, dest)
    assert merged(proxy.ranges()) == merged(missing)
    assert sha256_file(dest) == digest
    assert leftovers(tmp_path) == [] and download_records(store) == []


def test_a_file_changed_on_the_server_is_downloaded_afresh(upyun, make_file, tmp_path):
    size = 8 * MiB
    old, _ = make_file(size)
    key = stored_upyun(upyun, old)
    store, dest, cancel = upclient.MemoryStore(), tmp_path / "copy.bin", threading.Event()
    with RangeProxy(address_of(upyun.endpoint), rate=2 * MiB) as proxy, \
            upyun_client(proxy.url, store=store) as client:
        with pytest.raises(errors.Cancelled):
            client.get(key, dest, cancel=cancel, on_progress=cancel_after(2, cancel))
    assert download_records(store)
    new, digest = make_file(size)  # the same size, other bytes
    stored_upyun(upyun, new, key)
    with RangeProxy(address_of(upyun.endpoint)) as proxy, upyun_client(proxy.url, store=store) as client:
        client.get(key, dest)
    assert merged(proxy.ranges()) == [(0, size - 1)], "every range again: the kept ones are of the old file"
    assert proxy.bytes_down >= size
    assert sha256_file(dest) == digest
    assert leftovers(tmp_path) == [] and download_records(store) == []


def test_a_damaged_part_file_fails_the_md5_check_and_is_not_put_in_place(upyun, make_file, tmp_path):
    size = 8 * MiB
    path, digest = make_file(size)
    key = stored_upyun(upyun, path)
    store, dest, cancel = upclient.MemoryStore(), tmp_path / "copy.bin", threading.Event()
    with RangeProxy(address_of(upyun.endpoint), rate=2 * MiB) as proxy, \
            upyun_client(proxy.url, store=store) as client:
        with pytest.raises(errors.Cancelled):
            client.get(key, dest, cancel=cancel, on_progress=cancel_after(2, cancel))
    (record,) = download_records(store)
    first_done = record["done"][0][0] * record["range_size"]
    with open(record["part"], "r+b") as f:  # one byte of a range already on disk goes bad
        f.seek(first_done + 100)
        byte = f.read(1)
        f.seek(first_done + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with upyun_client(upyun.endpoint, store=store) as client:
        with pytest.raises(errors.ChecksumMismatch):
            client.get(key, dest)
        assert not dest.exists() and leftovers(tmp_path) == [] and download_records(store) == []
        client.get(key, dest)
    assert sha256_file(dest) == digest


def test_a_community_resume_point_holds_no_token(community, make_file, tmp_path):
    size = 6 * MiB
    path, digest = make_file(size)
    store, dest, cancel = upclient.FileStore(tmp_path / "store"), tmp_path / "copy.bin", threading.Event()
    with community_client(community, store=None) as client:
        result = client.put(path)
    with RangeProxy(address_of(community.url), rate=MiB) as proxy:
        community.public_url = proxy.url  # the object URLs the API hands out lead through the proxy
        with community_client(community, store=store) as client:
            with pytest.raises(errors.Cancelled):
                client.get(result.id, dest, cancel=cancel, on_progress=cancel_after(2, cancel))
    (record,) = download_records(store)
    text = json.dumps(record) + "".join(p.read_text() for p in (tmp_path / "store").glob("*.json"))
    assert TOKEN not in text and "X-Amz" not in text and "Signature" not in text
    community.public_url = None
    with community_client(community, store=store) as client:
        client.get(result.id, dest)
    assert sha256_file(dest) == digest and download_records(store) == []
