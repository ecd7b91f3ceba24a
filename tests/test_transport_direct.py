"""The transport's direct way (plain HTTP straight to urllib3, no requests objects) sends what requests would.

A loopback server records every request as it arrived: its target, its
header lines (names as sent, duplicates kept), its body and the client's
address (one connection reused shows one address).
"""

from __future__ import annotations

import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional, Tuple

import pytest

from upclient import errors
from upclient.testing import TLSCertificates
from upclient.transport import HttpTransport

from .loopback_http import LoopbackHTTP


class Seen:
    def __init__(self, method: str, target: str, headers: List[Tuple[str, str]], body: bytes, peer: tuple) -> None:
        self.method, self.target, self.headers, self.body, self.peer = method, target, headers, body, peer

    def values(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Recorder(LoopbackHTTP):
    """Answers every request 200 with a 100 KiB body (``b"x"`` repeated), recording it first."""

    BODY = b"x" * (100 * 1024)

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self.seen: List[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.seen.append(Seen(self.command, self.path, list(self.headers.items()), body,
                                       self.client_address))
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.BODY)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(owner.BODY)

            do_GET = do_POST = do_PATCH = do_PUT = do_HEAD = _any  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a connection the client dropped mid-answer (on purpose, in one test)

        server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:  # each handshake in the accepting thread: enough for one client at a time
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self.serve(server, "https" if tls else "http")


@pytest.fixture
def server() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def send(t: HttpTransport, method: str, url: str, **kw: object):  # type: ignore[no-untyped-def]
    return t.request(method, url, backend="test", operation="test", **kw)  # type: ignore[arg-type]


def test_headers_merge_whatever_their_case_and_the_request_s_own_win(server, no_proxy_env):
    t = HttpTransport(headers={"X-Api-Key": "client", "user-agent": "mine/1"})
    try:
        send(t, "GET", server.url + "/a", headers={"x-api-key": "call", "Tus-Resumable": "1.0.0"})
    finally:
        t.close()
    seen = server.seen[0]
    assert seen.values("X-Api-Key") == ["call"]
    assert seen.values("User-Agent") == ["mine/1"]
    assert seen.values("Tus-Resumable") == ["1.0.0"]
    assert seen.values("Accept-Encoding") == ["identity"]


def test_basic_auth_from_a_pair_is_what_requests_sends(server, no_proxy_env):
    import requests.auth

    t = HttpTransport(auth=("us\u00e9r", "p\u00e4ss:word"))
    try:
        send(t, "GET", server.url + "/a")
    finally:
        t.close()
    expected = requests.auth._basic_auth_str("us\u00e9r", "p\u00e4ss:word")
    assert server.seen[0].values("Authorization") == [expected]


def test_a_header_callable_runs_for_every_request(server, no_proxy_env):
    tokens = iter(["one", "two"])
    t = HttpTransport(auth=lambda: {"authorization": "Bearer " + next(tokens)})
    try:
        send(t, "GET", server.url + "/a")
        send(t, "GET", server.url + "/b")
    finally:
        t.close()
    assert [s.values("Authorization") for s in server.seen] == [["Bearer one"], ["Bearer two"]]


def test_bodies_are_framed_by_length_and_empty_writes_say_zero(server, no_proxy_env):
    t = HttpTransport()
    try:
        send(t, "POST", server.url + "/files/", body=b"hello")
        send(t, "PATCH", server.url + "/files/1?x=1#frag")
    finally:
        t.close()
    post, patch = server.seen
    assert (post.method, post.target, post.body, post.values("Content-Length")) == ("POST", "/files/", b"hello", ["5"])
    assert (patch.method, patch.target, patch.values("Content-Length")) == ("PATCH", "/files/1?x=1", ["0"])
    assert post.values("Transfer-Encoding") == []


def test_a_streamed_answer_read_to_its_end_gives_its_connection_back(server, no_proxy_env):
    t = HttpTransport()
    try:
        resp = send(t, "GET", server.url + "/big", stream=True)
        got = b"".join(resp.iter_content(8192))
        resp.close()
        assert got == Recorder.BODY
        assert send(t, "GET", server.url + "/small").content == Recorder.BODY
        half = send(t, "GET", server.url + "/cut", stream=True)
        next(iter(half.iter_content(1024)))
        half.close()  # not read to its end: that connection is dropped, not reused
        assert send(t, "HEAD", server.url + "/after").status == 200
    finally:
        t.close()
    peers = [s.peer for s in server.seen]
    assert peers[0] == peers[1] == peers[2]
    assert peers[3] != peers[2]


def test_a_proxy_named_by_the_environment_is_used(server, monkeypatch):
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", server.url)
    t = HttpTransport()
    try:
        assert send(t, "GET", "http://upclient-test.invalid/through?q=1").status == 200
    finally:
        t.close()
    assert server.seen[0].target == "http://upclient-test.invalid/through?q=1"


@pytest.fixture(scope="module")
def certs() -> Iterator[TLSCertificates]:
    with TLSCertificates() as made:
        yield made


@pytest.fixture
def tls_server(certs) -> Iterator[Recorder]:
    r = Recorder(certs.server_context())
    yield r
    r.close()


@pytest.fixture
def mtls_server(certs) -> Iterator[Recorder]:
    r = Recorder(certs.server_context(require_client_cert=True))
    yield r
    r.close()


def test_https_goes_the_direct_way_trusting_the_ca_it_is_given(tls_server, certs, no_proxy_env):
    t = HttpTransport(verify=str(certs.ca_pem), auth=("user", "pw"))
    try:
        assert send(t, "POST", tls_server.url + "/files/", body=b"abc").status == 200
        assert send(t, "GET", tls_server.url + "/again").content == Recorder.BODY
        assert t._session is None  # no requests session was needed
    finally:
        t.close()
    first, second = tls_server.seen
    assert first.body == b"abc" and first.values("Authorization")
    assert first.peer == second.peer  # one TLS connection, reused


def test_https_refuses_a_server_whose_ca_is_not_trusted(tls_server, no_proxy_env):
    t = HttpTransport()  # certifi's CAs: not the test CA
    try:
        with pytest.raises(errors.TLSError, match="not trusted"):
            send(t, "GET", tls_server.url + "/a")
    finally:
        t.close()
    assert tls_server.seen == []


def test_https_with_verify_false_sends(tls_server, no_proxy_env):
    t = HttpTransport(verify=False)
    try:
        assert send(t, "GET", tls_server.url + "/a").status == 200
    finally:
        t.close()


def test_https_client_certificate_is_presented(mtls_server, certs, no_proxy_env):
    t = HttpTransport(verify=str(certs.ca_pem), cert=certs.client_cert_pair)
    try:
        assert send(t, "GET", mtls_server.url + "/a").status == 200
    finally:
        t.close()
    bare = HttpTransport(verify=str(certs.ca_pem))
    try:
        with pytest.raises((errors.TLSError, errors.NetworkError)):
            send(bare, "GET", mtls_server.url + "/a")
    finally:
        bare.close()
    assert len(mtls_server.seen) == 1


def test_https_with_a_ca_file_that_is_not_there_says_so(tls_server, tmp_path, no_proxy_env):
    t = HttpTransport(verify=str(tmp_path / "missing.pem"))
    try:
        with pytest.raises(errors.NetworkError, match="CA certificate bundle"):
            send(t, "GET", tls_server.url + "/a")
    finally:
        t.close()
    assert tls_server.seen == []
