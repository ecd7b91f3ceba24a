"""The transport's direct way (plain HTTP straight to urllib3, no requests objects) sends what requests would.

A loopback server records every request as it arrived: its target, its
header lines (names as sent, duplicates kept), its body and the client's
address (one connection reused shows one address).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Tuple

import pytest

from upclient.transport import HttpTransport


class Seen:
    def __init__(self, method: str, target: str, headers: List[Tuple[str, str]], body: bytes, peer: tuple) -> None:
        self.method, self.target, self.headers, self.body, self.peer = method, target, headers, body, peer

    def values(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Recorder:
    """Answers every request 200 with a 100 KiB body (``b"x"`` repeated), recording it first."""

    BODY = b"x" * (100 * 1024)

    def __init__(self) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


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
