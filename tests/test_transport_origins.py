"""The transport sends the client's credentials only to trusted origins, and never a query string to logs."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Optional

import pytest

from upclient import errors
from upclient.origins import origin_of, trusted_origins
from upclient.settings import Settings
from upclient.transport import HttpTransport

from .loopback_http import LoopbackHTTP


class Recorder(LoopbackHTTP):
    """A loopback HTTP server that records each request's headers; ``redirect`` answers 302 to it."""

    def __init__(self) -> None:
        self.seen: List[Dict[str, str]] = []
        self.redirect: Optional[str] = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.seen.append({k.lower(): v for k, v in self.headers.items()})
                if owner.redirect:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def home() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def other() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def transport(home: Recorder, *trusted: str) -> HttpTransport:
    return HttpTransport(
        headers={"X-Api-Key": "HEADERSECRET"},
        auth=("user", "AUTHSECRET"),
        origins=[origin_of(home.url), *trusted_origins(list(trusted))],  # type: ignore[list-item]
    )


def get(t: HttpTransport, url: str, **kw: object) -> int:
    return t.request("GET", url, backend="test", operation="get", **kw).status_code  # type: ignore[arg-type]


def credentials(headers: Dict[str, str]) -> List[str]:
    return [k for k in ("authorization", "x-api-key") if k in headers]


def test_credentials_go_to_the_home_origin_only(home, other):
    t = transport(home)
    try:
        assert get(t, home.url + "/a") == 200
        assert get(t, other.url + "/b") == 200
        assert get(t, other.url + "/needs%20quoting/\u00e9") == 200  # the slow path too
    finally:
        t.close()
    assert credentials(home.seen[0]) == ["authorization", "x-api-key"]
    assert [credentials(h) for h in other.seen] == [[], []]
    assert other.seen[0]["user-agent"].startswith("upclient/")


def test_a_trusted_origin_gets_them(home, other):
    t = transport(home, other.url + "/")
    try:
        get(t, other.url + "/b")
    finally:
        t.close()
    assert credentials(other.seen[0]) == ["authorization", "x-api-key"]


def test_a_redirect_elsewhere_drops_credentials_but_keeps_the_range(home, other):
    home.redirect = other.url + "/moved"
    t = transport(home)
    try:
        assert get(t, home.url + "/a", headers={"Range": "bytes=0-1", "Authorization": "Bearer PERREQUEST"}) == 200
    finally:
        t.close()
    assert credentials(home.seen[0]) == ["authorization", "x-api-key"]
    assert credentials(other.seen[0]) == []
    assert other.seen[0]["range"] == "bytes=0-1"


def test_endless_redirects_end(home):
    home.redirect = home.url + "/again"
    t = transport(home)
    try:
        with pytest.raises(errors.NetworkError):
            get(t, home.url + "/a")
    finally:
        t.close()
    assert 2 <= len(home.seen) <= 11


@pytest.mark.parametrize("bad", ["cdn.example.com", "ftp://x", "https://u:p@x", "https://x/path", "https://x?q", 5])
def test_trusted_origins_take_origins_only(bad):
    with pytest.raises(errors.BadInput, match="origin"):
        Settings(trusted_origins=[bad])  # type: ignore[list-item]


def test_origins_are_canonical():
    assert Settings(trusted_origins=["HTTPS://CDN.example.com", "https://cdn.example.com:443/"]).trusted_origins == (
        "https://cdn.example.com:443",
    )
    assert origin_of("tus+http://u:p@[::1]/files/") == "http://[::1]:80"
    assert origin_of("upyun://op@svc") is None


def test_urllib3_debug_logs_show_no_query_string(home, caplog):
    t = HttpTransport()
    try:
        with caplog.at_level(logging.DEBUG):
            get(t, home.url + "/part?X-Signature=QUERYSECRET&x=1")
    finally:
        t.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/part" in text and "QUERYSECRET" not in text
