"""Zero-copy bodies: a file's bytes go to a plain socket with ``os.sendfile`` (issue 16, item 2),
and an answer's head is read without the email package (item 3).

Every test counts what ``os.sendfile`` sent from the uploaded file itself
(a wrapper that calls the real one and notes its file and byte count), and
checks what the server stored.  HTTPS stays on the copy path.  A sendfile
body still answers to the call's cancel token (its socket is shut down) and
to ``read_timeout`` when the server stops reading.
"""

from __future__ import annotations

import http.client
import io
import os
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import upclient
from upclient import errors
from upclient.source import FileSource
from upclient.testing import FdfsServer, SilentServer, TLSCertificates, UpyunServer
from upclient.connections import _header_lines, _header_message

from .conftest import MiB, sha256_file


class SendfileLog:
    """What ``os.sendfile`` sent, per source file (resolved path -> bytes, calls)."""

    def __init__(self) -> None:
        self.bytes: Dict[str, int] = {}
        self.calls: Dict[str, int] = {}
        self.started = threading.Event()
        self._lock = threading.Lock()

    def sent_from(self, path: Path) -> int:
        return self.bytes.get(str(Path(path).resolve()), 0)

    def calls_from(self, path: Path) -> int:
        return self.calls.get(str(Path(path).resolve()), 0)


@pytest.fixture
def sendfile_log(monkeypatch) -> Iterator[SendfileLog]:
    log = SendfileLog()
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset, count: int) -> int:
        try:
            name = os.readlink(f"/proc/self/fd/{in_fd}")
        except OSError:
            name = "?"
        log.started.set()
        sent = real(out_fd, in_fd, offset, count)
        with log._lock:
            log.bytes[name] = log.bytes.get(name, 0) + sent
            log.calls[name] = log.calls.get(name, 0) + 1
        return sent

    monkeypatch.setattr(os, "sendfile", counting)
    yield log


def upyun(address: str, **kw) -> upclient.Client:
    kw.setdefault("store", None)
    return upclient.Client("upyun://op@svc", endpoint=address, password="pw", **kw)


@pytest.fixture
def upyun_server(tmp_path) -> Iterator[UpyunServer]:
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password="pw") as server:
        yield server


def test_a_tus_patch_body_goes_with_sendfile_and_arrives_whole(node_server, sendfile_log, make_file):
    size = 20 * MiB + 3
    path, digest = make_file(size)
    seen: List[upclient.Progress] = []
    with upclient.Client("tus+" + node_server.url, store=None, checksum=False) as client:
        result = client.put(path, on_progress=seen.append)
    assert node_server.stored_sha256(result.id) == digest
    assert sendfile_log.sent_from(path) == size  # every byte, none through the interpreter
    assert seen[-1].bytes_done == size and [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


def test_upyun_parts_with_their_md5_go_with_sendfile(upyun_server, sendfile_log, make_file):
    size = 3 * MiB + 17
    path, digest = make_file(size)
    with upyun(upyun_server.endpoint, part_size=MiB, concurrency=3) as client:
        result = client.put(path, key="z.bin")
    assert upyun_server.stored_sha256("z.bin") == digest and result.extra["uuid"]
    assert sendfile_log.sent_from(path) == 3 * MiB  # the 17-byte last part rides with its request


def test_a_fastdfs_upload_and_its_appends_go_with_sendfile(tmp_path, sendfile_log, make_file):
    size = 2 * MiB + 5
    path, digest = make_file(size)
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, store=None, part_size=MiB) as client:
            appended = client.put(path, resumable=True)  # created with part 1, then two appends
            one = client.put(path, resumable=False)  # one upload request
        assert server.stored_sha256(appended.id) == server.stored_sha256(one.id) == digest
    # the 5-byte last append rides in its request's segment; every other byte went with sendfile
    assert sendfile_log.sent_from(path) == 2 * MiB + size
    assert sendfile_log.calls_from(path) >= 3


def test_a_small_fastdfs_file_rides_with_its_request(tmp_path, sendfile_log, make_file):
    path, digest = make_file(10 * 1024)
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, store=None) as client:
            result = client.put(path)
        assert server.stored_sha256(result.id) == digest
    assert sendfile_log.calls_from(path) == 0  # one segment: header and bytes in one send


def test_https_bodies_take_the_copy_path(tmp_path, sendfile_log, make_file):
    size = 4 * MiB + 1
    path, digest = make_file(size)
    with TLSCertificates() as certs, UpyunServer(tmp_path / "upyun", service="svc", operator="op",
                                                 password="pw", tls=certs) as server:
        with upclient.Client("upyun://op@svc", endpoint=server.endpoint, password="pw", store=None,
                             verify=str(certs.ca_pem), part_size=MiB) as client:
            client.put(path, key="tls.bin")
        assert server.stored_sha256("tls.bin") == digest
    assert sendfile_log.sent_from(path) == 0


def test_a_sendfile_body_the_server_stops_reading_is_a_timeout_after_read_timeout(sendfile_log, make_file):
    path, _ = make_file(48 * MiB)  # more than the socket buffers hold
    with SilentServer(reads=False) as deaf:
        with upyun(deaf.address, part_size=64 * MiB, checksum=False, read_timeout=1,
                   retry=upclient.RetryPolicy.never()) as client:
            started = time.monotonic()
            with pytest.raises(errors.Timeout):
                client.put(path, key="deaf.bin")
            elapsed = time.monotonic() - started
    assert sendfile_log.calls_from(path) >= 1
    assert elapsed < 10, f"a 1 s read timeout took {elapsed:.1f} s"


def test_a_cancel_stops_a_sendfile_body_at_once(sendfile_log, make_file):
    path, _ = make_file(48 * MiB)
    cancel = threading.Event()
    stopped_at: List[float] = []

    def fire() -> None:
        sendfile_log.started.wait(30)
        time.sleep(0.2)  # the body is well under way, held by a server that reads nothing
        stopped_at.append(time.monotonic())
        cancel.set()

    with SilentServer(reads=False) as deaf:
        with upyun(deaf.address, part_size=64 * MiB, checksum=False, read_timeout=60) as client:
            firing = threading.Thread(target=fire)
            firing.start()
            try:
                with pytest.raises(errors.Cancelled):
                    client.put(path, key="c.bin", cancel=cancel)
                late = time.monotonic() - stopped_at[0]
            finally:
                firing.join(30)
    assert sendfile_log.calls_from(path) >= 1
    assert late < 5, f"the call ended {late:.1f} s after the cancel"


def test_a_file_cut_short_under_a_sendfile_body_is_refused(upyun_server, sendfile_log, make_file):
    path, _ = make_file(20 * MiB)  # more than one sendfile step (8 MiB)
    with FileSource(path) as src:
        os.truncate(path, 3 * MiB)  # the same file, shorter than when it was opened
        with upyun(upyun_server.endpoint, part_size=32 * MiB, checksum=False) as client:
            with pytest.raises(errors.SourceChanged):
                client.put(src, key="cut.bin")
    assert sendfile_log.sent_from(path) == 3 * MiB  # then it found the end of the file
    with pytest.raises(FileNotFoundError):
        upyun_server.stored_sha256("cut.bin")


def test_a_source_that_reads_its_own_way_is_read_through_read(upyun_server, sendfile_log, make_file):
    path, digest = make_file(2 * MiB)
    reads: List[int] = []

    class Counted(FileSource):
        def read(self, offset: int, length: int) -> bytes:
            reads.append(length)
            return super().read(offset, length)

    with Counted(path) as src, upyun(upyun_server.endpoint, part_size=4 * MiB) as client:
        client.put(src, key="own.bin")
    assert upyun_server.stored_sha256("own.bin") == digest
    assert sendfile_log.sent_from(path) == 0 and sum(reads) == 2 * MiB  # read once, with its digest
    assert sha256_file(path) == digest


# -- the answer's head: read without the email package, the same message as http.client's ---------


@pytest.mark.parametrize("block", [
    b"Content-Length: 5\r\nUpload-Offset: 0\r\n\r\n",
    b"A:b\r\nB:   c  \r\n\r\n",  # no space after the colon; trailing spaces kept, as http.client keeps them
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",  # repeated names stay two headers
    b"Folded: b\r\n c\r\n\r\n",  # an obsolete folded line: the email parser's reading
    b"Bad Header: x\r\nC: d\r\n\r\n",  # not a header name: the email parser's reading and defect
    b"X: \xe9t\xe9\r\n\r\n",  # Latin-1, as HTTP/1.1 allows
    b"Bare: lf\n\n",
    b"Empty:\r\n\r\n",
])
def test_an_answers_headers_read_the_same_as_http_client_reads_them(block):
    ours = _header_message(_header_lines(io.BytesIO(block)))
    theirs = http.client.parse_headers(io.BytesIO(block))
    assert ours.items() == theirs.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert (ours.get_payload() or "") == (theirs.get_payload() or "")


def test_a_header_block_past_http_clients_limits_is_refused_as_it_refuses_it():
    with pytest.raises(http.client.LineTooLong):
        _header_lines(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        _header_lines(io.BytesIO(b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"))


def _raw_exchange(send) -> bytes:
    """What a server on a loopback socket received for one request made by ``send(port)``."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while not (got.endswith(b"hello") or got.endswith(b"0\r\n\r\n")):
                block = conn.recv(65536)
                if not block:
                    return
                got.extend(block)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        send(listener.getsockname()[1])
    finally:
        thread.join(10)
        listener.close()
    return bytes(got)


@pytest.mark.parametrize("headers, ending", [
    ({}, b"Content-Length: 5\r\n\r\nhello"),  # the head and a small body, one send
    ({"Transfer-Encoding": "chunked"}, b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),  # framed by the caller: left to urllib3
])
def test_a_small_body_follows_its_head_framed_as_the_headers_say(headers, ending):
    from upclient.connections import WatchedHTTPConnection

    def send(port: int) -> None:
        conn = WatchedHTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/up", body=b"hello", headers=headers)
            assert conn.getresponse().status == 200
        finally:
            conn.close()

    assert _raw_exchange(send).endswith(ending)
