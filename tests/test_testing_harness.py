"""Tests of upclient.testing: real tus servers, FaultProxy and ShapingProxy.

Only ``requests`` talks to the servers here, so these tests do not depend on
upclient's own client.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional, Tuple, Type, Union
from urllib.parse import urljoin, urlsplit

import pytest
import requests

import upclient
import upclient.testing.servers
from upclient.testing import (
    FaultProxy,
    ResumableUploadServer,
    ServerStartError,
    ShapingProxy,
    TusNodeServer,
    free_port,
)

from .conftest import KiB, emulator_process, stop_process

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"

NODE_EXTENSIONS = {"creation", "creation-with-upload", "creation-defer-length", "termination", "expiration"}
RUS_EXTENSIONS = NODE_EXTENSIONS | {"checksum", "concatenation", "concatenation-unfinished", "checksum-trailer"}

AnyServer = Union[TusNodeServer, ResumableUploadServer]


def _require_node() -> None:
    reason = TusNodeServer.unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"Node.js for @tus/server is missing: {reason}")
    if reason:
        pytest.skip(reason)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _create(session: requests.Session, creation_url: str, length: int, **headers: str) -> str:
    response = session.post(
        creation_url,
        headers={**TUS, "Upload-Length": str(length), **headers},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return urljoin(creation_url, response.headers["Location"])


def _patch(session: requests.Session, upload_url: str, offset: int, data: bytes, **kwargs) -> requests.Response:
    return session.patch(
        upload_url,
        data=data,
        headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS},
        timeout=kwargs.pop("timeout", 10),
        **kwargs,
    )


def _offset(session: requests.Session, upload_url: str) -> int:
    response = session.head(upload_url, headers=TUS, timeout=10)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def _threads_named(prefix: str) -> list:
    deadline = time.monotonic() + 1.0
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


# ------------------------------------------------------------------ servers


@pytest.mark.parametrize(
    "server_cls, extensions, location_absolute",
    [
        (TusNodeServer, NODE_EXTENSIONS, True),
        (ResumableUploadServer, RUS_EXTENSIONS, False),
    ],
    ids=["tus-node-server", "resumable-upload"],
)
def test_server_stores_exact_bytes_restarts_and_stops(
    server_cls: Type[AnyServer], extensions: set, location_absolute: bool, tmp_path
) -> None:
    if server_cls is TusNodeServer:
        _require_node()
    data = os.urandom(5 * 1024 + 123)
    digest = hashlib.sha256(data).hexdigest()
    session = requests.Session()

    with server_cls(tmp_path / "uploads") as server:
        assert server.running
        assert server.url.startswith("http://127.0.0.1:")
        assert server.url.endswith("/files/")
        assert server.directory == (tmp_path / "uploads").resolve()
        pid = server.pid
        assert pid is not None

        options = session.options(server.url, timeout=10)
        assert options.status_code in (200, 204)
        assert options.headers["Tus-Version"] == "1.0.0"
        advertised = {e.strip() for e in options.headers["Tus-Extension"].split(",")}
        assert advertised == extensions

        response = session.post(
            server.url,
            headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": "filename aGVsbG8uYmlu"},
            timeout=10,
        )
        assert response.status_code == 201
        assert response.headers.get("Upload-Expires")  # both run with an expiry
        location = response.headers["Location"]
        assert location.startswith("http://") is location_absolute
        upload_url = urljoin(server.url, location)

        # Two PATCHes: the second continues from the offset of the first.
        first = _patch(session, upload_url, 0, data[:2000])
        assert first.status_code == 204
        assert first.headers["Upload-Offset"] == "2000"
        second = _patch(session, upload_url, 2000, data[2000:])
        assert second.status_code == 204
        assert second.headers["Upload-Offset"] == str(len(data))

        path = server.stored_path(upload_url)
        assert path.parent == server.directory
        assert path.read_bytes() == data
        assert server.stored_sha256(upload_url) == digest
        assert server.stored_sha256(server.upload_id(upload_url)) == digest  # a bare id works too
        assert server.stored_metadata(upload_url) == {"filename": "hello.bin"}

        download = session.get(upload_url, timeout=10)
        assert download.status_code == 200
        assert download.content == data

        # Restart on the same port and directory: the upload is still known.
        url_before = server.url
        session.close()
        server.stop()
        assert not server.running
        assert _pid_gone(pid)
        with pytest.raises(requests.ConnectionError):
            requests.options(server.url, timeout=2)
        server.start()
        assert server.url == url_before
        assert server.pid != pid
        pid = server.pid
        assert _offset(requests.Session(), upload_url) == len(data)

        # Termination removes the stored file.
        deleted = requests.delete(upload_url, headers=TUS, timeout=10)
        assert deleted.status_code == 204
        assert not server.stored_path(upload_url).exists()

    assert not server.running
    assert server.returncode is not None
    assert _pid_gone(pid)


def test_server_is_stopped_when_the_body_raises(tmp_path) -> None:
    with pytest.raises(KeyError):
        with ResumableUploadServer(tmp_path / "up") as server:
            pid = server.pid
            raise KeyError("boom")
    assert pid is not None and _pid_gone(pid)
    assert not server.running


def test_server_start_failure_reports_stderr(tmp_path) -> None:
    server = ResumableUploadServer(tmp_path / "up", extra_args=["--no-such-flag"], startup_timeout=20)
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert "--no-such-flag" in str(info.value)
    assert info.value.returncode not in (None, 0)
    assert not server.running
    server.close()


# --------------------------------------------------------------- FaultProxy


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Iterator[AnyServer]:
    """A real tus server behind the proxies: the Node one, else resumable-upload."""
    if TusNodeServer.unavailable_reason() is None:
        server: AnyServer = TusNodeServer(tmp_path_factory.mktemp("fault-node"))
    else:
        server = ResumableUploadServer(tmp_path_factory.mktemp("fault-rus"))
    with server:
        yield server


def test_faultproxy_forwards_keep_alive_and_chunked_requests(upstream: AnyServer) -> None:
    data = os.urandom(300 * 1024)
    with FaultProxy(upstream) as proxy:
        session = requests.Session()
        base = proxy.url_for(upstream.url)
        upload_url = _create(session, base, len(data))
        assert upload_url.startswith(proxy.url)
        assert _patch(session, upload_url, 0, data[:100_000]).status_code == 204
        # A generator body goes out chunked; the proxy must frame it correctly.
        chunks = (data[i : i + 50_000] for i in range(100_000, len(data), 50_000))
        response = _patch(session, upload_url, 100_000, chunks)  # type: ignore[arg-type]
        assert response.status_code == 204, response.text
        assert _offset(session, upload_url) == len(data)
        session.close()
        assert upstream.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()
        assert proxy.connections == 1  # everything went over one keep-alive connection
        assert proxy.requests == {"POST": 1, "PATCH": 2, "HEAD": 1}
        assert [m for m, _ in proxy.request_log] == ["POST", "PATCH", "PATCH", "HEAD"]
        assert proxy.faults_fired == {}


def test_faultproxy_reset_after(upstream: AnyServer) -> None:
    data = os.urandom(256 * 1024)
    with FaultProxy(upstream) as proxy:
        session = requests.Session()
        upload_url = _create(session, proxy.url_for(upstream.url), len(data))
        proxy.reset_after(4096, method="PATCH")
        with pytest.raises(requests.ConnectionError):
            _patch(session, upload_url, 0, data)
        assert proxy.faults_fired == {"reset": 1}
        assert proxy.pending_faults == []
        # The fault was one-shot: the upload resumes from whatever was stored.
        offset = _offset(session, upload_url)
        assert 0 <= offset < 4096
        assert _patch(session, upload_url, offset, data[offset:]).status_code == 204
        assert upstream.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()
        assert proxy.request_count("PATCH") == 2
        assert proxy.connections == 2


def test_faultproxy_respond(upstream: AnyServer) -> None:
    data = os.urandom(20 * 1024)
    with FaultProxy(upstream) as proxy:
        session = requests.Session()
        upload_url = _create(session, proxy.url_for(upstream.url), len(data))
        proxy.respond(503, {"Retry-After": "1"}, method="PATCH", times=2)
        for _ in range(2):
            response = _patch(session, upload_url, 0, data)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
        assert proxy.faults_fired == {"respond": 2}
        # Nothing reached the server.
        assert _offset(session, upload_url) == 0
        assert upstream.stored_size(upload_url) == 0
        # A fault with method=None matches anything, here a HEAD.
        proxy.respond(429, {"Retry-After": "2"}, body="slow down")
        limited = session.head(upload_url, headers=TUS, timeout=10)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert _patch(session, upload_url, 0, data).status_code == 204
        assert proxy.request_count("PATCH") == 3


def test_faultproxy_stall(upstream: AnyServer) -> None:
    with FaultProxy(upstream) as proxy:
        session = requests.Session()
        upload_url = _create(session, proxy.url_for(upstream.url), 10)
        proxy.stall(3.0, method="HEAD")
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            session.head(upload_url, headers=TUS, timeout=(2, 0.3))
        assert time.monotonic() - started < 2.0
        assert proxy.faults_fired == {"stall": 1}
        assert _offset(session, upload_url) == 0  # one-shot: the next HEAD is answered


def test_faultproxy_stops_quickly_with_open_connections(upstream: AnyServer) -> None:
    proxy = FaultProxy(upstream).start()
    idle = requests.Session()
    idle.options(proxy.url_for(upstream.url), timeout=10)  # leaves a keep-alive connection
    proxy.stall(30.0, method="OPTIONS")
    outcome: list = []

    def stalled_request() -> None:
        try:
            requests.options(proxy.url_for(upstream.url), timeout=20)
            outcome.append("answered")
        except requests.RequestException as exc:
            outcome.append(exc)

    stalled = threading.Thread(target=stalled_request, daemon=True)
    stalled.start()
    assert proxy.wait_for_requests(2, "OPTIONS")
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 1.5
    assert _threads_named("FaultProxy") == []
    stalled.join(5)
    assert not stalled.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
    idle.close()


def test_faultproxy_resets_clients_when_the_upstream_is_down() -> None:
    with FaultProxy(("127.0.0.1", free_port())) as proxy:
        with pytest.raises(requests.ConnectionError):
            requests.options(proxy.url + "/files/", timeout=5)
        assert proxy.request_count("OPTIONS") == 1


class _CountingUpstream:
    """A bare TCP server that reads one connection to its end and counts the bytes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    self.received += len(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


BIG_BODY = 32 << 20


def _put_head(size: int) -> bytes:
    return f"PUT /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode("ascii")


def _send_until_blocked(sock: socket.socket, size: int, patience: float) -> Tuple[int, Optional[float]]:
    """Send up to ``size`` zero bytes; ``(bytes sent, when a send blocked for ``patience`` s or None)``."""
    block = bytes(1 << 20)
    sent = 0
    sock.settimeout(patience)
    while sent < size:
        try:
            sent += sock.send(block[: size - sent])
        except socket.timeout:
            return sent, time.monotonic()
    return sent, None


def _send_until_closed(sock: socket.socket, timeout: float) -> Optional[OSError]:
    """Keep sending until the peer's close makes a send fail; the error, or None after ``timeout``."""
    block = bytes(1 << 20)
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.send(block)
        except socket.timeout:
            continue
        except OSError as exc:
            return exc
    return None


def test_faultproxy_stop_reading_blocks_a_body_send_then_closes() -> None:
    upstream = _CountingUpstream()
    head = _put_head(BIG_BODY)
    try:
        with FaultProxy(upstream.url) as proxy:
            proxy.stop_reading(1.5, method="PUT", after=64 * 1024)
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(head)
                sent, blocked_at = _send_until_blocked(sock, BIG_BODY, patience=0.3)
                assert blocked_at is not None, "the whole 32 MiB body went through"
                assert sent < BIG_BODY
                assert blocked_at - started < 2.0
                error = _send_until_closed(sock, timeout=5)
            ended = time.monotonic() - started
            assert isinstance(error, (ConnectionResetError, BrokenPipeError)), error
            assert 1.4 <= ended < 4.0, ended
            assert proxy.faults_fired == {"stop_reading": 1}
            assert proxy.pending_faults == []
        upstream.thread.join(5)
        # The upstream got the head and exactly ``after`` body bytes.
        assert upstream.received == len(head) + 64 * 1024
    finally:
        upstream.close()


def test_faultproxy_stop_reading_ends_when_the_proxy_stops(sink: str) -> None:
    proxy = FaultProxy(sink).start()
    proxy.stop_reading(30.0)  # any method, from the first body byte
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(_put_head(BIG_BODY))
        sent, blocked_at = _send_until_blocked(sock, BIG_BODY, patience=0.3)
        assert blocked_at is not None and sent < BIG_BODY
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 1.5
        assert _threads_named("FaultProxy") == []
        assert isinstance(_send_until_closed(sock, timeout=5), OSError)
        assert time.monotonic() - started < 3.0


def test_faultproxy_stop_reading_checks_its_arguments(upstream: AnyServer) -> None:
    with FaultProxy(upstream) as proxy:
        with pytest.raises(ValueError):
            proxy.stop_reading(-1)
        with pytest.raises(ValueError):
            proxy.stop_reading(1, after=-1)
        with pytest.raises(ValueError):
            proxy.stop_reading(1, times=0)
        assert proxy.pending_faults == []


# ------------------------------------------------------------- ShapingProxy


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    """Reads request bodies and answers 204; GET returns 4 MiB."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            block = self.rfile.read(min(left, 1 << 20))
            if not block:
                return
            left -= len(block)
        self.send_response(204)
        self.end_headers()

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        size = 4 << 20
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            self.wfile.write(block)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_shaping_proxy_adds_round_trip_latency(sink: str) -> None:
    with ShapingProxy(sink, delay=0.020, rate=20e6) as proxy:
        session = requests.Session()
        session.options(proxy.url_for(sink), timeout=10)  # open the connection
        times = []
        for _ in range(3):
            started = time.monotonic()
            assert session.options(proxy.url_for(sink), timeout=10).status_code == 204
            times.append(time.monotonic() - started)
        session.close()
        assert min(times) >= 0.040
        assert min(times) < 0.5
    assert _threads_named("Shaping") == []


def test_shaping_proxy_caps_one_connection(sink: str) -> None:
    payload = b"\x5a" * (8 << 20)
    with ShapingProxy(sink, delay=0.020, rate=20e6) as proxy:
        session = requests.Session()
        started = time.monotonic()
        assert session.put(proxy.url_for(sink), data=payload, timeout=30).status_code == 204
        up_rate = len(payload) / (time.monotonic() - started)
        started = time.monotonic()
        body = session.get(proxy.url_for(sink), timeout=30).content
        down_rate = len(body) / (time.monotonic() - started)
        session.close()
        assert len(body) == 4 << 20
        assert proxy.bytes_up >= len(payload)
        assert proxy.bytes_down >= len(body)
    assert 2e6 < up_rate < 30e6, up_rate
    assert 2e6 < down_rate < 30e6, down_rate


def test_shaping_proxy_carries_a_tus_upload_intact(upstream: AnyServer) -> None:
    data = os.urandom(1 << 20)
    with ShapingProxy(upstream, delay=0.005, rate=50e6) as proxy:
        session = requests.Session()
        upload_url = _create(session, proxy.url_for(upstream.url), len(data))
        assert _patch(session, upload_url, 0, data).status_code == 204
        session.close()
    assert upstream.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------- python -m upclient.testing

#: Where each command's server keeps the files it stored, under its --dir.
STORED_UNDER = {"tus": ".", "community": "objects", "upyun": "files", "fdfs": "."}


def _refused(url: str) -> bool:
    """Whether nothing listens any more on the host and port of ``url``."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _stored_digests(directory: Path) -> set:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.rglob("*") if p.is_file()}


def _run_cli_line(line: str, path: Path, env: Optional[dict] = None) -> dict:
    """Run the ``cli:`` line the command printed, with FILE replaced by ``path``: its JSON answer."""
    words = shlex.split(line.replace("FILE", shlex.quote(str(path))))
    assignments = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=.*", w))
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)]
    assert words[:2] == ["upclient", "put"], line
    run = subprocess.run(
        [sys.executable, "-m", "upclient", *words[1:], "--json", "--no-resume", "--no-progress"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {}), **assignments},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def _client_of_python_line(line: str) -> upclient.Client:
    """The client the ``python:`` line makes (with store=None, so no resume point is left behind)."""
    assert line.startswith("upclient.Client(") and line.endswith(")"), line
    return eval(line, {"upclient": SimpleNamespace(Client=functools.partial(upclient.Client, store=None))})


@pytest.mark.parametrize("backend", ["tus", "community", "upyun", "fdfs"])
def test_the_command_prints_the_url_and_what_a_client_needs(backend, tmp_path, make_file) -> None:
    """First line: the URL for Client / --to; then the flags, a Python line and a CLI line that work as printed."""
    directory = tmp_path / "served"
    with emulator_process(backend, "--port", "0", "--dir", str(directory)) as (proc, printed):
        url = printed["url"]
        assert url.startswith({"tus": "tus+http://127.0.0.1:", "community": "community+http://127.0.0.1:",
                               "upyun": "upyun://op@svc", "fdfs": "fdfs://127.0.0.1:"}[backend]), printed
        assert printed["cli"].startswith(f"upclient put FILE --to {url}")
        assert printed["cli"].endswith(printed.get("flags", "").strip())
        assert printed["files"] == str(directory.resolve() if backend == "tus" else directory)
        stored = directory / STORED_UNDER[backend]

        path, digest = make_file(200 * KiB + 3)
        with _client_of_python_line(printed["python"]) as client:
            result = client.put(path)
        assert result.backend == backend and digest in _stored_digests(stored)

        path, digest = make_file(100 * KiB + 1)
        answer = _run_cli_line(printed["cli"], path)
        assert answer["ok"] and answer["size"] == 100 * KiB + 1
        assert digest in _stored_digests(stored)

        proc.send_signal(signal.SIGHUP if backend == "tus" else signal.SIGINT)  # a closed terminal, or Ctrl-C
        assert proc.wait(timeout=20) == 0
        listener = "//" + printed["flags"].split()[1] if backend == "upyun" else url  # upyun: its --endpoint
        assert _refused(listener)  # the server went with the command (tus: its own process too)


def test_the_command_over_https_prints_the_ca_to_trust(tmp_path, make_file) -> None:
    with emulator_process("community", "--port", "0", "--tls", "--dir", str(tmp_path / "c")) as (proc, printed):
        assert printed["url"].startswith("community+https://127.0.0.1:")
        ca = printed["ca"]
        assert f"verify={ca!r}" in printed["python"]
        assert printed["cli"].startswith(f"REQUESTS_CA_BUNDLE={ca} upclient put FILE")
        path, digest = make_file(50 * KiB)
        with _client_of_python_line(printed["python"]) as client:
            client.put(path)
        assert digest in _stored_digests(tmp_path / "c" / "objects")
        path, digest = make_file(60 * KiB)
        _run_cli_line(printed["cli"], path, env={"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""})
        assert digest in _stored_digests(tmp_path / "c" / "objects")
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    assert not Path(ca).exists()  # the throwaway CA went with the server


def test_tus_without_the_npm_packages_is_the_python_server(tmp_path, make_file) -> None:
    empty = tmp_path / "no-node-modules"
    empty.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), UPCLIENT_TUS_NODE_MODULES=str(empty))
    command = [sys.executable, "-m", "upclient.testing", "tus", "--port", "0", "--dir", str(tmp_path / "t")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("tus+http://127.0.0.1:") and url.endswith("/files/")
            note = proc.stderr.readline()
            assert "resumable-upload" in note and str(empty) in note and "npm install --prefix" in note
            path, digest = make_file(70 * KiB)
            with upclient.Client(url, store=None) as client:
                result = client.put(path)
            assert (tmp_path / "t" / result.id.rsplit("/", 1)[1]).read_bytes() == path.read_bytes()
            assert "concatenation" in requests.options(url.removeprefix("tus+"), timeout=10).headers["Tus-Extension"]
        finally:
            stop_process(proc)
    assert proc.returncode == 0 and _refused(url)  # its server process went with it
    https = subprocess.run([*command, "--tls", "--server", "python"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert https.returncode != 0 and "no TLS" in https.stderr


def test_tus_listens_on_1080_when_it_is_free() -> None:
    from upclient.testing.__main__ import TUS_PORT
    from upclient.testing.running import port_or_free

    assert TUS_PORT == 1080
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_or_free(port) == 0  # busy: a free port instead
    assert port_or_free(port) == port


# ----------------------------------------------- @tus/server's npm packages


def test_the_npm_packages_named_are_the_ones_the_checkout_pins() -> None:
    from upclient.testing.servers.nodepackages import TUS_NODE_PACKAGES, install_command

    pinned = json.loads((Path(__file__).parent / "servers" / "package.json").read_text())["dependencies"]
    assert pinned == TUS_NODE_PACKAGES
    assert install_command(Path("/x")).endswith("@tus/server@2.4.5 @tus/file-store@2.1.1")


def test_the_npm_packages_are_looked_for_in_order(tmp_path, monkeypatch) -> None:
    from upclient.testing.servers import nodepackages

    checkout_modules = Path(__file__).parent / "servers" / "node_modules"
    if not nodepackages.holds_packages(checkout_modules):
        pytest.skip("npm ci --prefix tests/servers has not run")
    for name in ("UPCLIENT_TUS_NODE_MODULES", "UPCLIENT_TUS_NODE_DIR", "NODE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # run from this checkout, upclient finds the checkout's packages; installed (as tox runs it), nothing
    beside = checkout_modules.resolve() if nodepackages.checkout_node_dir() is not None else None
    assert nodepackages.find_node_modules().found == beside

    monkeypatch.setattr(nodepackages, "checkout_node_dir", lambda: None)  # as from a wheel
    search = nodepackages.find_node_modules()
    assert search.found is None and search.installable is None
    message = search.missing_message()
    assert nodepackages.install_command() in message and "UPCLIENT_TUS_NODE_MODULES" in message
    assert str(tmp_path / "cache" / "upclient" / "tus-node") in nodepackages.install_command()

    monkeypatch.setenv("NODE_PATH", f"{tmp_path / 'nothing'}{os.pathsep}{checkout_modules}")
    assert nodepackages.find_node_modules().found == checkout_modules
    monkeypatch.delenv("NODE_PATH")

    cached = tmp_path / "cache" / "upclient" / "tus-node" / "node_modules"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(checkout_modules.resolve())
    assert nodepackages.find_node_modules().found == cached

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("UPCLIENT_TUS_NODE_MODULES", str(empty))  # when given, the only place looked at
    assert nodepackages.find_node_modules().found is None
    assert nodepackages.find_node_modules(node_modules=cached).found == cached


def test_tus_node_server_without_its_packages_says_how_to_get_them(tmp_path) -> None:
    _require_node()
    server = TusNodeServer(tmp_path / "up", node_modules=tmp_path)
    with pytest.raises(ServerStartError) as info:
        server.start()
    message = str(info.value)
    assert "npm install --prefix" in message and "@tus/server@2.4.5" in message and str(tmp_path) in message
    assert not server.running
    server.close()
    reason = TusNodeServer.unavailable_reason(installed=True, node_modules=tmp_path)
    assert reason is not None and "npm install" in reason


def test_tus_node_server_runs_its_packaged_script_with_the_packages_given(tmp_path) -> None:
    _require_node()
    from upclient.testing.servers.nodepackages import SCRIPT

    modules = Path(__file__).parent / "servers" / "node_modules"
    assert SCRIPT.is_file() and SCRIPT.parent == Path(upclient.testing.servers.__file__).parent
    data = os.urandom(3000)
    with TusNodeServer(tmp_path / "up", node_modules=modules) as server:
        assert server.node_modules == modules
        session = requests.Session()
        upload_url = _create(session, server.url, len(data))
        assert _patch(session, upload_url, 0, data).status_code == 204
        session.close()
        assert server.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()
